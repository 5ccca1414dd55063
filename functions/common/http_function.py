"""What both HTTP functions share: error mapping, API-key and body-size guards, health, OpenAPI."""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import Awaitable, Callable

from pydantic import BaseModel
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import resources
from .api import OPEN_PATHS
from .contracts import Health
from .errors import Busy, PayloadTooLarge, ServiceError, infrastructure_errors
from .settings import get_settings

log = logging.getLogger(__name__)


def error_response(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def service_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ServiceError)
    if exc.status_code >= 500:
        log.warning("%s %s -> %d: %s", request.method, request.url.path, exc.status_code, exc.message)
    response = error_response(exc.status_code, exc.message)
    if isinstance(exc, Busy):
        response.headers["Retry-After"] = str(exc.retry_after_s)
    return response


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return error_response(exc.status_code, str(exc.detail))


async def dependency_error(request: Request, exc: Exception) -> Response:
    log.warning("%s %s: dependency unavailable: %r", request.method, request.url.path, exc)
    return error_response(503, f"a backing service is unavailable, retry later ({type(exc).__name__})")


async def unexpected_error(request: Request, exc: Exception) -> Response:
    log.error("%s %s failed: %r", request.method, request.url.path, exc)
    return error_response(500, "internal error")


EXCEPTION_HANDLERS: dict[int | type[Exception], Callable[..., object]] = {
    ServiceError: service_error,
    HTTPException: http_error,
    **{cls: dependency_error for cls in infrastructure_errors() if issubclass(cls, Exception)},
    Exception: unexpected_error,  # a bug: answered as JSON, then re-raised by Starlette for the server's log
}


class ApiKeyMiddleware:
    """When ``API_KEY`` is set, every guarded route needs the ``x-api-key`` header. Open: the health probe, the web
    page (it asks for the key and sends it on its API calls), the API's description and its docs page (``api``)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        expected = get_settings().api_key
        if scope["type"] == "http" and expected and scope["path"] not in OPEN_PATHS:
            given = dict(scope["headers"]).get(b"x-api-key", b"")
            if not hmac.compare_digest(given, expected.encode()):
                await error_response(401, "missing or wrong x-api-key header")(scope, receive, send)
                return
        await self.app(scope, receive, send)


class BodyLimitMiddleware:
    """Rejects an oversized body from its Content-Length, or while it streams in: nothing is buffered past the limit."""

    def __init__(self, app: ASGIApp, limit: Callable[[Scope], int]) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit(scope)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isascii() and declared.isdigit() and int(declared) > limit:
            await error_response(413, f"request body exceeds {limit} bytes")(scope, receive, send)
            return
        seen = 0

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > limit:
                raise PayloadTooLarge(f"request body exceeds {limit} bytes")
            return message

        await self.app(scope, limited_receive, send)


HEALTH_PROBE_TIMEOUT_S = 1.5  # every probe runs at once: /health answers within 2 s even when one hangs


async def health(request: Request) -> Response:
    """Each dependency and the inference path: the database (answering, tables present), the broker (answering),
    inference (no request queued longer than ``HEALTH_QUEUED_LIMIT_S``). 503 with the details when degraded."""
    store, settings = resources.store.get(), get_settings()

    async def inference() -> None:
        count, oldest = await store.queued_since(time.time() - settings.health_queued_limit_s)
        if count:
            raise RuntimeError(
                f"{count} requests queued for more than {settings.health_queued_limit_s:g} s (oldest "
                f"{time.time() - (oldest or 0):.0f} s): inference is not keeping up, failing or not running"
            )

    probes: dict[str, Callable[[], Awaitable[None]]] = {
        "database": store.ping,
        "broker": resources.producer.get().ping,
        "inference": inference,
    }
    outcomes = await asyncio.gather(*(_probe(probe) for probe in probes.values()))
    checks = dict(zip(probes, outcomes, strict=True))
    if checks["database"] != "ok":
        checks["inference"] = "unknown: the database is unavailable"
    body = Health(status="ok" if all(v == "ok" for v in checks.values()) else "degraded", checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if body.status == "ok" else 503)


async def _probe(probe: Callable[[], Awaitable[None]]) -> str:
    try:
        async with asyncio.timeout(HEALTH_PROBE_TIMEOUT_S):
            await probe()
    except TimeoutError:
        return f"error: no answer within {HEALTH_PROBE_TIMEOUT_S:g} s"
    except Exception as exc:
        text = str(exc) if isinstance(exc, RuntimeError) else f"{type(exc).__name__}: {exc}"
        return f"error: {text}"[:300]
    return "ok"


def pydantic_response(model: BaseModel, status_code: int = 200) -> Response:
    """The model as JSON, serialised once by pydantic (the same compact form ``JSONResponse`` writes)."""
    return Response(model.model_dump_json(), status_code=status_code, media_type="application/json")
