"""Upload use cases: register a session, accept an image (claim check + request row + Kafka message)."""

from __future__ import annotations

import hashlib
import logging
import time
import uuid as uuid_lib
from dataclasses import dataclass

from functions.common.blobs import BlobStore
from functions.common.contracts import ImageAccepted, InferenceRequest
from functions.common.errors import Conflict, NotFound, ServiceError
from functions.common.image_limits import ImageLimits
from functions.common.kafka_edge.producer import Producer
from functions.common.settings import Settings
from functions.common.store import RequestRow, Store, UnknownSession

from .validation import inspect_image

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Deps:
    settings: Settings
    store: Store
    blobs: BlobStore
    producer: Producer


async def register(deps: Deps) -> str:
    uuid = str(uuid_lib.uuid4())
    await deps.store.create_session(uuid)
    return uuid


@dataclass(frozen=True)
class Staged:
    """An upload checked and addressed, nothing stored yet."""

    uuid: str
    seq: int
    topk: int
    data: bytes
    digest: str
    blob_key: str
    content_type: str


def stage(settings: Settings, uuid: str, seq: int, topk: int, data: bytes) -> Staged:
    """Check one image (4xx ``ServiceError`` if it is refused) and address it; no I/O."""
    # In the caller's thread: a Lambda execution environment serves one request at a time (locally: one thread per
    # instance), so a worker thread would only add a hop; full decodes are bounded per process (``validation``).
    info = inspect_image(data, ImageLimits.of(settings), settings.upload_decode_slots, settings.upload_decode_wait_s)
    digest = hashlib.sha256(data).hexdigest()
    blob_key = f"{uuid}/{seq}-{digest[:16]}{info.extension}"  # content-addressed: a replay rewrites the same
    return Staged(uuid, seq, topk, data, digest, blob_key, info.content_type)


def conflict(staged: Staged, row: RequestRow) -> Conflict | None:
    """Why ``staged`` may not be accepted for a seq that already holds ``row`` (``None``: it is a replay)."""
    if row.content_hash != staged.digest:
        return Conflict(f"seq {row.seq} of session {row.uuid} already holds a different image")
    if row.topk != staged.topk:
        return Conflict(
            f"seq {row.seq} of session {row.uuid} already holds this image with topk {row.topk}; "
            f"re-send it with topk {row.topk}, or use another seq for topk {staged.topk}"
        )
    return None


async def submit(deps: Deps, uuid: str, seq: int, topk: int, data: bytes) -> ImageAccepted:
    """Accept one image; identical re-submissions are idempotent, different bytes or topk for a taken seq conflict."""
    return await accept(deps, stage(deps.settings, uuid, seq, topk, data))


async def submit_batch(deps: Deps, uuid: str, seq_start: int, topk: int, blobs: list[bytes]) -> list[ImageAccepted]:
    """All files or none: every file is checked, and every seq compared with what is stored, before any is stored.

    (Two clients writing the same seqs at the same moment can still interleave; each seq stays consistent.)
    """
    staged = []
    for i, data in enumerate(blobs):
        try:
            staged.append(stage(deps.settings, uuid, seq_start + i, topk, data))
        except ServiceError as exc:
            exc.message = f"payload[{i}]: {exc.message}"
            raise
    if not await deps.store.session_exists(uuid):
        raise NotFound(f"unknown session {uuid}; POST /register first")
    stored = {row.seq: row for row in await deps.store.get_range(uuid, seq_start, seq_start + len(blobs) - 1)}
    for i, item in enumerate(staged):
        if item.seq in stored and (refused := conflict(item, stored[item.seq])) is not None:
            raise Conflict(f"payload[{i}]: {refused.message}")
    return [await accept(deps, item) for item in staged]


async def accept(deps: Deps, staged: Staged) -> ImageAccepted:
    """Store the claim check, then the row; publish once per (uuid, seq) unless the sweeper's period has passed."""
    await deps.blobs.put(staged.blob_key, staged.data, staged.content_type)  # exists before the row points to it
    now = time.time()
    row = RequestRow(
        staged.uuid, staged.seq, staged.topk, staged.blob_key, staged.digest, staged.content_type, submitted_at=now
    )
    try:
        row, created = await deps.store.add_request(row)
    except UnknownSession:
        await deps.blobs.delete(staged.blob_key)
        raise NotFound(f"unknown session {staged.uuid}; POST /register first") from None
    if (refused := conflict(staged, row)) is not None:
        if row.content_hash != staged.digest:
            await deps.blobs.delete(staged.blob_key)  # ours, not the stored image's (the keys differ by digest)
        raise refused
    # The creator publishes; a replay of a queued row publishes only if no publish was claimed within the
    # sweeper's period (or the last one failed): 30 concurrent re-uploads publish once.
    if row.status == "queued" and (
        created or await deps.store.claim_publish(row.uuid, row.seq, now, now - deps.settings.sweep_after_s)
    ):
        try:
            await publish(deps, row)
        except BaseException:
            await deps.store.release_publish(row.uuid, row.seq)  # the next replay (or the sweeper) publishes
            raise
    return ImageAccepted(uuid=staged.uuid, seq=staged.seq, status=row.status)


async def publish(deps: Deps, row: RequestRow) -> None:
    message = InferenceRequest(
        uuid=row.uuid, seq=row.seq, topk=row.topk, blob=row.blob_key, content_type=row.content_type
    )
    await deps.producer.publish(deps.settings.request_topic, [(message.key, message.model_dump_json().encode(), [])])
