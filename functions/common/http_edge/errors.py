"""Errors answered as JSON ``{"error": ...}`` in one place, for both HTTP functions."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from pydantic import BaseModel
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from functions.common.errors import Busy, ServiceError, infrastructure_errors

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


def exception_handlers(
    dependency_errors: Iterable[type[BaseException]] = (),
) -> dict[int | type[Exception], Callable[..., object]]:
    """The app's handlers: service errors as themselves, ``dependency_errors`` (what the adapters the function uses
    raise when their service is down: ``store.dependency_errors()``, ...) and the standard library's as 503."""
    unavailable = (*infrastructure_errors(), *dependency_errors)
    return {
        ServiceError: service_error,
        HTTPException: http_error,
        **{cls: dependency_error for cls in unavailable if issubclass(cls, Exception)},
        Exception: unexpected_error,  # a bug: answered as JSON, then re-raised by Starlette for the server's log
    }


def pydantic_response(model: BaseModel, status_code: int = 200) -> Response:
    """The model as JSON, serialised once by pydantic (the same compact form ``JSONResponse`` writes)."""
    return Response(model.model_dump_json(), status_code=status_code, media_type="application/json")
