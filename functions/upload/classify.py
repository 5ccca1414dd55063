"""``POST /classify``: one call for one image, through the same pipeline as every upload (a session of its own,
seq 0, published to Kafka, classified by infer, stored by collect), answered with the result when it is stored
within ``wait`` seconds, else with where to poll for it.

Waiting is billed: the upload function runs (at its memory size) for as long as it waits, where ``POST /image``
answers at once and ``GET /result`` is a later short call (docs/usage.md).
"""

from __future__ import annotations

import asyncio
import time
import uuid as uuid_lib

from functions.common.contracts import Classified

from .service import Deps, accept, stage

FIRST_POLL_S, LONGEST_POLL_S = 0.05, 0.5


async def classify(deps: Deps, data: bytes, topk: int, wait_s: float) -> Classified:
    """The image checked as ``POST /image`` checks it (nothing stored when refused), then queued and waited for."""
    uuid = str(uuid_lib.uuid4())
    staged = stage(deps.settings, uuid, 0, topk, data)
    await deps.store.create_session(uuid)
    await accept(deps, staged)
    deadline, pause = time.monotonic() + wait_s, FIRST_POLL_S
    while True:
        row = await deps.store.get_request(uuid, 0)
        if row is not None and row.status != "queued":
            return Classified(
                uuid=uuid, seq=0, status=row.status, predictions=list(row.labels), scores=list(row.scores),
                error=row.error, model=row.model,
            )  # fmt: skip
        left = deadline - time.monotonic()
        if left <= 0:
            return Classified(uuid=uuid, seq=0, status="queued", poll=f"/result?uuid={uuid}&seqStart=0&seqEnd=0")
        await asyncio.sleep(min(pause, left))
        pause = min(pause * 2, LONGEST_POLL_S)
