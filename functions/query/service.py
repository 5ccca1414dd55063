"""Query use case: the results of a seq range of one session."""

from __future__ import annotations

from functions.common.contracts import ResultItem, ResultPage
from functions.common.db import Store
from functions.common.errors import BadRequest, NotFound


async def results(store: Store, session: str, seq_start: int, seq_end: int, max_range: int) -> ResultPage:
    if seq_start > seq_end:
        raise BadRequest(f"seqStart ({seq_start}) must not be greater than seqEnd ({seq_end})")
    if seq_end - seq_start + 1 > max_range:
        raise BadRequest(f"range covers {seq_end - seq_start + 1} seqs; at most {max_range} per query")
    if not await store.session_exists(session):
        raise NotFound(f"unknown session {session}")
    rows = await store.get_range(session, seq_start, seq_end)
    return ResultPage(
        items=[
            ResultItem(
                seq=r.seq,
                status=r.status,
                predictions=list(r.labels),
                scores=list(r.scores),
                error=r.error,
                model=r.model,
            )
            for r in rows
        ]
    )
