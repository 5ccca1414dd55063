"""Upload function: ``POST /register``, ``/image``, ``/images``, ``/classify``, the presigned upload and ``/health``
(Starlette app, Lambda via Mangum)."""

from __future__ import annotations

from functools import lru_cache

from mangum import Mangum
from starlette._utils import AwaitableOrContextManager
from starlette.applications import Starlette
from starlette.datastructures import FormData, UploadFile
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response

from functions.common import blobs, loops
from functions.common import store as stores
from functions.common.contracts import MAX_SEQ, BatchAccepted, PresignedUpload, RegisterResponse
from functions.common.errors import BadRequest, Misconfigured, NotFound, PayloadTooLarge
from functions.common.http_edge import routes
from functions.common.http_edge.errors import exception_handlers, pydantic_response
from functions.common.http_edge.guards import FORM_PART_BYTES, ApiKeyMiddleware, BodyLimitMiddleware, file_limit
from functions.common.http_edge.metrics import MetricsMiddleware
from functions.common.http_edge.params import BatchForm, ClassifyForm, ConfirmForm, ImageForm, UploadUrlForm, parse
from functions.common.kafka_edge import auth as kafka_auth
from functions.common.kafka_edge import producer
from functions.common.settings import get_settings

from . import service
from .classify import classify as classify_one
from .health import health
from .staging import Staging

# Init phase: a wrong KafkaAuth or a missing KafkaSecretArn stops the cold start with a message naming it.
kafka_auth.check(get_settings())


def _deps() -> service.Deps:
    return service.Deps(get_settings(), stores.per_loop.get(), blobs.per_loop.get(), producer.per_loop.get())


def _form(request: Request, endpoint: str) -> AwaitableOrContextManager[FormData]:
    """``async with _form(request, name) as form``: at most the files that endpoint declares; spooled upload files
    are closed when the block ends."""
    return request.form(max_files=file_limit(routes.named(endpoint)), max_fields=16, max_part_size=FORM_PART_BYTES)


async def _read_file(part: str | UploadFile | None, name: str) -> bytes:
    if not isinstance(part, UploadFile):
        raise BadRequest(f"field '{name}' must be a file part")
    limit = get_settings().max_upload_bytes
    data = await part.read(limit + 1)
    if len(data) > limit:
        raise PayloadTooLarge(f"'{name}' exceeds {limit} bytes")
    return data


async def register(request: Request) -> Response:
    return pydantic_response(RegisterResponse(uuid=await service.register(_deps())))


async def image(request: Request) -> Response:
    async with _form(request, "image") as form:
        fields = parse(ImageForm, form)
        data = await _read_file(form.get("payload"), "payload")
    accepted = await service.submit(_deps(), fields.uuid, fields.seq, fields.topk, data)
    return pydantic_response(accepted, status_code=202)


async def classify(request: Request) -> Response:
    async with _form(request, "classify") as form:
        fields = parse(ClassifyForm, form)
        data = await _read_file(form.get("payload"), "payload")
    answer = await classify_one(_deps(), data, fields.topk, fields.wait)
    return pydantic_response(answer, status_code=202 if answer.status == "queued" else 200)


async def images(request: Request) -> Response:
    async with _form(request, "images") as form:
        fields = parse(BatchForm, form)
        parts = form.getlist("payload")
        if not parts:
            raise BadRequest("field 'payload' is required (one or more files)")
        blobs = [await _read_file(part, f"payload[{i}]") for i, part in enumerate(parts)]
    last = fields.seqStart + len(blobs) - 1
    if last > MAX_SEQ:  # checked before anything is stored
        raise BadRequest(
            f"seqStart {fields.seqStart} with {len(blobs)} files would reach seq {last}; seqs go up to {MAX_SEQ}"
        )
    items = await service.submit_batch(_deps(), fields.uuid, fields.seqStart, fields.topk, blobs)
    return pydantic_response(BatchAccepted(uuid=fields.uuid, items=items), status_code=202)


@lru_cache(maxsize=4)
def _staging(url: str, endpoint_url: str) -> Staging:
    return Staging.from_url(url, endpoint_url)


def staging() -> Staging:
    settings = get_settings()
    if not settings.upload_staging_url:
        raise Misconfigured("presigned uploads need UPLOAD_STAGING_URL (s3://bucket/prefix; the template sets it)")
    return _staging(settings.upload_staging_url, settings.s3_endpoint_url)


async def upload_url(request: Request) -> Response:
    """A presigned S3 upload for one image of a session (for images larger than a Lambda request)."""
    async with _form(request, "upload_url") as form:
        fields = parse(UploadUrlForm, form)
    settings = get_settings()
    target = staging()
    if not await stores.per_loop.get().session_exists(fields.uuid):
        raise NotFound(f"unknown session {fields.uuid}; POST /register first")
    post = target.presign(fields.uuid, fields.seq, settings.max_upload_bytes, settings.presign_expires_s)
    body = PresignedUpload(**post, expiresIn=settings.presign_expires_s, maxBytes=settings.max_upload_bytes)
    return pydantic_response(body)


async def confirm(request: Request) -> Response:
    """The presigned upload of ``key`` arrived: check, store and publish it as ``POST /image`` does."""
    async with _form(request, "confirm") as form:
        fields = parse(ConfirmForm, form)
    data = await staging().take(fields.uuid, fields.seq, fields.key, get_settings().max_upload_bytes)
    accepted = await service.submit(_deps(), fields.uuid, fields.seq, fields.topk, data)
    return pydantic_response(accepted, status_code=202)


ROUTES = routes.routes(
    "upload",
    {
        "register": register,
        "image": image,
        "images": images,
        "classify": classify,
        "upload_url": upload_url,
        "confirm": confirm,
        "health": health,
    },
)

app = Starlette(
    routes=ROUTES,
    middleware=[
        Middleware(MetricsMiddleware, function="upload"),
        Middleware(ApiKeyMiddleware),
        Middleware(BodyLimitMiddleware),
    ],
    exception_handlers=exception_handlers(
        (*stores.dependency_errors(), *blobs.dependency_errors(), *producer.dependency_errors())
    ),  # type: ignore[arg-type]
)

handler = Mangum(app, lifespan="off")

# Called by the local runtime from each handler thread at exit (Lambda has no such moment: it freezes the process).
shutdown = loops.close_thread_loop
