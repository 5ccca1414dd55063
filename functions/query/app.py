"""Query function: ``GET /result?uuid&seqStart&seqEnd`` (Starlette app, Lambda via Mangum)."""

from __future__ import annotations

from pathlib import Path

from mangum import Mangum
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from functions.common import resources
from functions.common.http import EXCEPTION_HANDLERS, ApiKeyMiddleware, health, pydantic_response
from functions.common.metrics import MetricsMiddleware, metrics
from functions.common.openapi import openapi
from functions.common.params import parse_seq, parse_uuid
from functions.common.settings import get_settings

from . import service

_INDEX = Path(__file__).resolve().parent / "static" / "index.html"


async def index(request: Request) -> Response:
    """The web page: pick or drop images, watch them queue and fill in with labels (public API only)."""
    return HTMLResponse(_INDEX.read_text(encoding="utf-8"))


async def result(request: Request) -> Response:
    params = request.query_params
    session = parse_uuid(params.get("uuid"))
    seq_start = parse_seq(params.get("seqStart"), "seqStart")
    seq_end = parse_seq(params.get("seqEnd"), "seqEnd")
    page = await service.results(resources.store.get(), session, seq_start, seq_end, get_settings().max_range)
    return pydantic_response(page)


ROUTES = [
    Route("/", index, methods=["GET"]),
    Route("/result", result, methods=["GET"]),
    Route("/health", health, methods=["GET"]),
    Route("/openapi.json", openapi, methods=["GET"]),
    Route("/metrics", metrics, methods=["GET"]),
]

app = Starlette(
    routes=ROUTES,
    middleware=[Middleware(MetricsMiddleware, routes=frozenset(r.path for r in ROUTES)), Middleware(ApiKeyMiddleware)],
    exception_handlers=EXCEPTION_HANDLERS,  # type: ignore[arg-type]
)

handler = Mangum(app, lifespan="off")

# Called by the local runtime from each handler thread at exit (Lambda has no such moment: it freezes the process).
shutdown = resources.close_thread_loop
