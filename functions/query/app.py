"""Query function: ``GET /result?uuid&seqStart&seqEnd`` (Starlette app, Lambda via Mangum)."""

from __future__ import annotations

from pathlib import Path

from mangum import Mangum
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from functions.common import loops
from functions.common import store as stores
from functions.common.http_edge import routes
from functions.common.http_edge.errors import exception_handlers, pydantic_response
from functions.common.http_edge.guards import ApiKeyMiddleware
from functions.common.http_edge.metrics import MetricsMiddleware
from functions.common.http_edge.openapi import openapi
from functions.common.http_edge.params import ResultQuery, parse
from functions.common.settings import get_settings

from . import docs, service
from .metrics import metrics

_INDEX = Path(__file__).resolve().parent / "static" / "index.html"


async def index(request: Request) -> Response:
    """The web page: pick or drop images, watch them queue and fill in with labels (public API only)."""
    return HTMLResponse(_INDEX.read_text(encoding="utf-8"))


async def result(request: Request) -> Response:
    query = parse(ResultQuery, request.query_params)
    page = await service.results(
        stores.per_loop.get(), query.uuid, query.seqStart, query.seqEnd, get_settings().max_range
    )
    return pydantic_response(page)


ROUTES = routes.routes(
    "query",
    {
        "result": result,
        "page": index,
        "openapi": openapi,
        "docs": docs.page,
        "docs_stylesheet": docs.stylesheet,
        "docs_script": docs.script,
        "metrics": metrics,
    },
)

app = Starlette(
    routes=ROUTES,
    middleware=[
        Middleware(MetricsMiddleware, function="query"),
        Middleware(ApiKeyMiddleware),
    ],
    exception_handlers=exception_handlers(stores.dependency_errors()),  # type: ignore[arg-type]
)

handler = Mangum(app, lifespan="off")

# Called by the local runtime from each handler thread at exit (Lambda has no such moment: it freezes the process).
shutdown = loops.close_thread_loop
