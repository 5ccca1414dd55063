"""Request metrics of the HTTP functions: every request counted and timed by route (``metrics.record_request``)."""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from functions.common.http_edge.routes import HttpFunction, endpoints
from functions.common.metrics import record_request


class MetricsMiddleware:
    """Counts and times every request by route (the path of a route ``api`` declares for ``function``, else
    "other")."""

    def __init__(self, app: ASGIApp, function: HttpFunction) -> None:
        self.app = app
        self.function = function
        self.routes = frozenset(e.path for e in endpoints(function))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route = scope["path"] if scope["path"] in self.routes else "other"
        status = 500
        started = time.perf_counter()

        async def observed_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, observed_send)
        finally:
            record_request(self.function, scope["method"], route, status, time.perf_counter() - started)
