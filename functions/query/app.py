"""Query function: ``GET /result?uuid&seqStart&seqEnd`` (Starlette app, Lambda via Mangum)."""

from __future__ import annotations

from pathlib import Path

from mangum import Mangum
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from functions.common import api, resources
from functions.common.http_function import EXCEPTION_HANDLERS, ApiKeyMiddleware, pydantic_response
from functions.common.metrics_http import MetricsMiddleware, metrics
from functions.common.openapi import openapi
from functions.common.params import ResultQuery, parse
from functions.common.settings import get_settings

from . import docs, service

_INDEX = Path(__file__).resolve().parent / "static" / "index.html"


async def index(request: Request) -> Response:
    """The web page: pick or drop images, watch them queue and fill in with labels (public API only)."""
    return HTMLResponse(_INDEX.read_text(encoding="utf-8"))


async def result(request: Request) -> Response:
    query = parse(ResultQuery, request.query_params)
    page = await service.results(
        resources.store.get(), query.uuid, query.seqStart, query.seqEnd, get_settings().max_range
    )
    return pydantic_response(page)


ROUTES = api.routes(
    "query",
    {
        "/result": result,
        "/": index,
        "/openapi.json": openapi,
        "/docs": docs.page,
        "/docs/swagger-ui.css": docs.stylesheet,
        "/docs/swagger-ui-bundle.js": docs.script,
        "/metrics": metrics,
    },
)

app = Starlette(
    routes=ROUTES,
    middleware=[
        Middleware(MetricsMiddleware, function="query"),
        Middleware(ApiKeyMiddleware),
    ],
    exception_handlers=EXCEPTION_HANDLERS,  # type: ignore[arg-type]
)

handler = Mangum(app, lifespan="off")

# Called by the local runtime from each handler thread at exit (Lambda has no such moment: it freezes the process).
shutdown = resources.close_thread_loop
