"""Guards in front of both HTTP functions: the API key and the body size."""

from __future__ import annotations

import hmac

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from functions.common.errors import PayloadTooLarge
from functions.common.settings import get_settings

from .errors import error_response
from .routes import OPEN_PATHS, Body, Endpoint, endpoint_at

FORM_OVERHEAD = 64 * 1024  # the multipart framing and fields around the files
FORM_PART_BYTES = 64 * 1024  # a field that is not a file


def body_limit(body: Body) -> int:
    """The bytes a request body of this kind may hold (an undeclared route gets the form's)."""
    settings = get_settings()
    if body == "image":
        return settings.max_upload_bytes + FORM_OVERHEAD
    if body == "batch":
        return settings.max_batch_bytes
    return FORM_OVERHEAD


def file_limit(endpoint: Endpoint) -> int:
    """The file parts a form of this endpoint may carry: one per declared file, MAX_BATCH_FILES for a repeated one."""
    if any(endpoint.files.values()):
        return get_settings().max_batch_files
    return len(endpoint.files)


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
    """Rejects a body over its endpoint's declared limit (``Endpoint.body``) from its Content-Length, or while it
    streams in: nothing is buffered past the limit."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared_at = endpoint_at(scope.get("method", ""), scope.get("path", ""))
        limit = body_limit(declared_at.body if declared_at else "form")
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
