"""Collect use case: apply results to the store; duplicates and stale answers change nothing."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence

from functions.common.blobs import BlobStore
from functions.common.contracts import InferenceResult
from functions.common.store import Applied, Store

log = logging.getLogger(__name__)

__all__ = ["Applied", "process"]


async def process(
    store: Store, results: Sequence[InferenceResult], expire_blobs: BlobStore | None = None
) -> dict[str, int]:
    """Returns how many results were applied, duplicate or for unknown requests (DB errors raise: retry), and of the
    applied ones how many were ``classified`` (done) and ``failed``.

    With ``expire_blobs``, the image of a request that is now ``done`` is deleted (claim check redeemed).
    """
    counts: Counter[str] = Counter()
    for result, outcome in zip(results, await store.apply_results(results), strict=True):
        if outcome is Applied.APPLIED and result.status != "retrying":
            counts["classified" if result.status == "done" else "failed"] += 1
        if outcome is Applied.UNKNOWN:
            log.warning("result for unknown request %s skipped", result.key)
        elif outcome is Applied.APPLIED and result.status == "done" and expire_blobs is not None:
            row = await store.get_request(result.uuid, result.seq)
            if row is not None:
                await expire_blobs.delete(row.blob_key)
        counts[outcome.value] += 1
    return dict(counts)
