"""Infer use case: fetch blobs, decode in parallel, classify in batched forward passes, one result per request."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from concurrent.futures import Executor

import numpy as np

from functions.common.blobs import BlobNotFound, BlobStore, UnusableBlobKey
from functions.common.contracts import InferenceRequest, InferenceResult
from functions.common.image_limits import ImageLimits
from functions.common.kafka_edge.outcomes import RecordFailed, failed

from .model import Classifier, UndecodableImage

log = logging.getLogger(__name__)


async def _fetch_and_decode(
    request: InferenceRequest, blobs: BlobStore, classifier: Classifier, pool: Executor, limits: ImageLimits
) -> np.ndarray:
    """The preprocessed array. ``RecordFailed`` says why this record cannot be classified; infrastructure errors
    raise as they are (the batch is retried)."""
    if request.topk > len(classifier.labels):
        raise RecordFailed(f"topk {request.topk} exceeds the model's {len(classifier.labels)} classes")
    try:
        data = await blobs.get(request.blob)
    except UnusableBlobKey as exc:
        raise RecordFailed(f"image blob key {request.blob[:100]!r} cannot name a blob: {exc}") from None
    except BlobNotFound:
        raise RecordFailed(f"image blob {request.blob!r} not found (expired or never stored)") from None
    try:
        return await asyncio.get_running_loop().run_in_executor(pool, classifier.preprocess, data, limits)
    except UndecodableImage as exc:
        raise RecordFailed(str(exc)) from None


async def process(
    requests: Sequence[InferenceRequest],
    blobs: BlobStore,
    classifier: Classifier,
    pool: Executor,
    max_batch: int,
    limits: ImageLimits,
) -> list[InferenceResult]:
    """Every request gets exactly one result, in input order; a bad record never fails the others."""
    decoding = [asyncio.ensure_future(_fetch_and_decode(r, blobs, classifier, pool, limits)) for r in requests]
    results: dict[int, InferenceResult] = {}
    pending: list[tuple[int, np.ndarray]] = []

    async def flush() -> None:
        batch = np.stack([array for _, array in pending])
        topks = [requests[i].topk for i, _ in pending]
        predictions = await asyncio.to_thread(classifier.predict, batch, topks)
        for (i, _), (labels, scores) in zip(pending, predictions, strict=True):
            r = requests[i]
            results[i] = InferenceResult(
                uuid=r.uuid, seq=r.seq, status="done", labels=labels, scores=scores, model=classifier.name
            )
        pending.clear()

    try:
        # Decoding of later records continues in the pool while a full chunk runs through the model.
        for i, future in enumerate(decoding):
            try:
                array = await future
            except RecordFailed as exc:
                log.info("request %s failed: %s", requests[i].key, exc)
                results[i] = failed(requests[i].uuid, requests[i].seq, str(exc), classifier.name)
                continue
            pending.append((i, array))
            if len(pending) == max_batch:
                await flush()
        if pending:
            await flush()
    finally:
        for future in decoding:
            future.cancel()
    return [results[i] for i in range(len(requests))]
