"""Every HTTP route, declared once: method, path, the function that serves it, its inputs and its answers.

The apps' routes (``routes``: handlers bound by the endpoint's name), the OpenAPI document (``openapi.py``), the
API key's open paths, each route's body limit (``guards.BodyLimitMiddleware``) and, checked by a test, the
template's HttpApi events all follow from ``ENDPOINTS``. A path belongs to one function, because one API
Gateway route invokes one function; locally the gateway routes by the template as API Gateway does."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel
from starlette.routing import Route

from functions.common.contracts import (
    BatchAccepted,
    Classified,
    ErrorBody,
    Health,
    ImageAccepted,
    PresignedUpload,
    RegisterResponse,
    ResultPage,
)
from functions.common.http_edge.params import (
    BatchForm,
    ClassifyForm,
    ConfirmForm,
    ImageForm,
    Inputs,
    ResultQuery,
    UploadUrlForm,
)

HttpFunction = Literal["upload", "query"]
# What a request body may hold: a form of fields only, one image (MAX_UPLOAD_BYTES) or a batch (MAX_BATCH_BYTES).
Body = Literal["form", "image", "batch"]


@dataclass(frozen=True)
class Reply:
    description: str
    model: type[BaseModel] | None = None  # JSON of this model; None: ``media_type`` as text
    media_type: str = "application/json"


@dataclass(frozen=True)
class Endpoint:
    name: str  # the app binds its handler by this name
    method: Literal["GET", "POST"]
    path: str
    function: HttpFunction
    summary: str
    replies: Mapping[int, Reply]
    form: type[Inputs] | None = None  # multipart/form-data fields
    query: type[Inputs] | None = None  # query-string parameters
    files: Mapping[str, bool] = field(default_factory=dict)  # file parts of the form: name -> repeated
    guarded: bool = True  # needs ``x-api-key`` when API_KEY is set
    body: Body = "form"
    documented: bool = True  # an operation of the OpenAPI document (the docs page's own files are not)


def _refusals(*codes: int) -> dict[int, Reply]:
    return {code: Reply("refused; `error` says why", ErrorBody) for code in codes}


_QUEUED = Reply("queued (or already known, same bytes)", ImageAccepted)
_UPLOAD_REFUSALS = _refusals(400, 401, 404, 409, 413, 415, 503)
_HTML = Reply("HTML", media_type="text/html")

ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint("register", "POST", "/register", "upload", "Create a session",
             {200: Reply("the new session's uuid", RegisterResponse), **_refusals(401, 503)}),
    Endpoint("image", "POST", "/image", "upload", "Upload one image", {202: _QUEUED, **_UPLOAD_REFUSALS},
             form=ImageForm, files={"payload": False}, body="image"),
    Endpoint("images", "POST", "/images", "upload", "Upload several images; the i-th gets seq seqStart+i",
             {202: Reply("all queued", BatchAccepted), **_UPLOAD_REFUSALS}, form=BatchForm, files={"payload": True},
             body="batch"),
    Endpoint("classify", "POST", "/classify", "upload",
             "Classify one image in one call: the result if it is stored within `wait` seconds, else where to poll",
             {200: Reply("classified (`status` done or failed)", Classified),
              202: Reply("still queued: `poll` is the GET /result that will hold it", Classified),
              **_refusals(400, 401, 413, 415, 503)}, form=ClassifyForm, files={"payload": False}, body="image"),
    Endpoint("upload_url", "POST", "/upload-url", "upload",
             "A presigned S3 upload for one image (POST the fields, then the file as `file`, to `url`)",
             {200: Reply("where and how to upload", PresignedUpload), **_refusals(400, 401, 404, 503)},
             form=UploadUrlForm),
    Endpoint("confirm", "POST", "/image/confirm", "upload",
             "The presigned upload of `key` arrived: check, store and queue it as POST /image does",
             {202: _QUEUED, **_UPLOAD_REFUSALS}, form=ConfirmForm),
    Endpoint("health", "GET", "/health", "upload",
             "Database and broker reachability, and whether inference keeps up",
             {200: Reply("all ok", Health), 503: Reply("degraded; `checks` says which", Health)}, guarded=False),
    Endpoint("result", "GET", "/result", "query",
             "Finished results of a seq range (inclusive); pending seqs listed apart",
             {200: Reply("items in seq order", ResultPage), **_refusals(400, 401, 404, 503)}, query=ResultQuery),
    Endpoint("page", "GET", "/", "query", "Web page for uploading images and watching results", {200: _HTML},
             guarded=False),
    Endpoint("openapi", "GET", "/openapi.json", "query", "This document",
             {200: Reply("OpenAPI 3.1", media_type="application/json")}, guarded=False),
    Endpoint("docs", "GET", "/docs", "query", "Interactive API documentation (Swagger UI)", {200: _HTML},
             guarded=False),
    Endpoint("docs_stylesheet", "GET", "/docs/swagger-ui.css", "query", "Swagger UI's style sheet",
             {200: Reply("CSS", media_type="text/css")}, guarded=False, documented=False),
    Endpoint("docs_script", "GET", "/docs/swagger-ui-bundle.js", "query", "Swagger UI's script",
             {200: Reply("JavaScript", media_type="text/javascript")}, guarded=False, documented=False),
    Endpoint("metrics", "GET", "/metrics", "query", "Prometheus metrics of every HTTP process (local runtime)",
             {200: Reply("text exposition format", media_type="text/plain"), **_refusals(401)}),
)  # fmt: skip

OPEN_PATHS = frozenset(e.path for e in ENDPOINTS if not e.guarded)


def endpoints(function: HttpFunction) -> tuple[Endpoint, ...]:
    return tuple(e for e in ENDPOINTS if e.function == function)


def routes(function: HttpFunction, handlers: Mapping[str, Callable[..., Any]]) -> list[Route]:
    """The app's Starlette routes: one handler for each declared endpoint of ``function`` (by its name), no more,
    no less."""
    declared = endpoints(function)
    names = {e.name for e in declared}
    if names != set(handlers):
        raise RuntimeError(f"{function}: handlers for {sorted(handlers)} but endpoints declared: {sorted(names)}")
    return [Route(e.path, handlers[e.name], methods=[e.method]) for e in declared]


def named(name: str) -> Endpoint:
    return next(e for e in ENDPOINTS if e.name == name)


def endpoint_at(method: str, path: str) -> Endpoint | None:
    return next((e for e in ENDPOINTS if (e.method, e.path) == (method, path)), None)
