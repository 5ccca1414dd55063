"""Upload use cases: register a session, accept an image (claim check + request row + Kafka message)."""

from __future__ import annotations

import hashlib
import logging
import time
import uuid as uuid_lib
from dataclasses import dataclass

from functions.common.blobs import BlobStore
from functions.common.contracts import ImageAccepted, InferenceRequest
from functions.common.db import RequestRow, Store, UnknownSession
from functions.common.errors import Conflict, NotFound
from functions.common.producer import Producer
from functions.common.settings import Settings

from .validation import inspect_image

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Deps:
    settings: Settings
    store: Store
    blobs: BlobStore
    producer: Producer


async def register(deps: Deps) -> str:
    session = str(uuid_lib.uuid4())
    await deps.store.create_session(session)
    return session


async def submit(deps: Deps, session: str, seq: int, topk: int, data: bytes) -> ImageAccepted:
    """Accept one image; identical re-submissions are idempotent, different bytes for a taken seq conflict."""
    # In the caller's thread: a Lambda execution environment serves one request at a time (locally: one thread per
    # instance), so a worker thread would only add a hop; the instance count bounds concurrent decodes.
    info = inspect_image(data, deps.settings.max_pixels, deps.settings.max_image_side)
    digest = hashlib.sha256(data).hexdigest()
    blob_key = f"{session}/{seq}-{digest[:16]}{info.extension}"  # content-addressed: a replay rewrites the same
    await deps.blobs.put(blob_key, data, info.content_type)  # the claim check exists before the row points to it
    try:
        row, _ = await deps.store.add_request(
            RequestRow(session, seq, topk, blob_key, digest, info.content_type, submitted_at=time.time())
        )
    except UnknownSession:
        await deps.blobs.delete(blob_key)
        raise NotFound(f"unknown session {session}; POST /register first") from None
    if row.content_hash != digest:
        await deps.blobs.delete(blob_key)  # ours, not the stored image's (the keys differ by digest)
        raise Conflict(f"seq {seq} of session {session} already holds a different image")
    if row.status == "queued":
        # Publishing again for a queued replay is safe: collect is idempotent. It also heals a 202 whose
        # earlier publish failed after the row was written.
        await publish(deps, row)
    return ImageAccepted(uuid=session, seq=seq, status=row.status)


async def publish(deps: Deps, row: RequestRow) -> None:
    message = InferenceRequest(
        uuid=row.uuid, seq=row.seq, topk=row.topk, blob=row.blob_key, content_type=row.content_type
    )
    await deps.producer.publish(deps.settings.request_topic, [(message.key, message.model_dump_json().encode(), [])])
