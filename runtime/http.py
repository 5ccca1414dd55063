"""One ASGI app serving every HTTP function's routes, like the API gateway in front of them."""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from typing import Any

from starlette.types import Receive, Scope, Send

from .loader import load_asgi_app, load_shutdown
from .template import FunctionSpec


class Gateway:
    """Dispatches ``(method, path)`` to the function the template routes it to; 404/405 as JSON otherwise."""

    def __init__(self, functions: tuple[FunctionSpec, ...]) -> None:
        self.routes: dict[tuple[str, str], Any] = {}
        self._shutdown_hooks: list[Callable[[], Any]] = []
        for spec in functions:
            if spec.routes:
                app = load_asgi_app(spec)
                for route in spec.routes:
                    self.routes[(route.method, route.path)] = app
                hook = load_shutdown(spec)
                if hook is not None and hook not in self._shutdown_hooks:
                    self._shutdown_hooks.append(hook)

    async def shutdown(self) -> None:
        """Run the functions' shutdown hooks on the serving loop (where their resources live)."""
        for hook in self._shutdown_hooks:
            result = hook()
            if inspect.isawaitable(result):
                await result

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path = scope["path"]
        app = self.routes.get((scope["method"], path)) or self.routes.get(("ANY", path))
        if app is not None:
            await app(scope, receive, send)
            return
        allowed = sorted(m for m, p in self.routes if p == path)
        status, error = (405, f"method not allowed; use {', '.join(allowed)}") if allowed else (404, "not found")
        body = json.dumps({"error": error}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})
