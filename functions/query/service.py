"""Query use case: the results of a seq range of one session."""

from __future__ import annotations

from typing import Literal

from functions.common.contracts import ResultItem, ResultPage
from functions.common.errors import BadRequest, NotFound
from functions.common.store import Store

# A Lambda response is at most 6 MB with its envelope; a page of results stays under this (topk 1000 over 1000
# seqs would be ~33 MB).
PAGE_BUDGET_BYTES = 5 * 1024 * 1024


async def results(
    store: Store, uuid: str, seq_start: int, seq_end: int, max_range: int, budget: int = PAGE_BUDGET_BYTES
) -> ResultPage:
    """One page of the range: at most ``max_range`` stored seqs and ``budget`` bytes; ``nextSeq``: the first stored
    seq of the next page, when there is one (a sparse or huge range costs no empty pages)."""
    if seq_start > seq_end:
        raise BadRequest(f"seqStart ({seq_start}) must not be greater than seqEnd ({seq_end})")
    if not await store.session_exists(uuid):
        raise NotFound(f"unknown session {uuid}")
    rows = await store.get_range(uuid, seq_start, seq_end, limit=max_range + 1)
    after = rows[max_range].seq if len(rows) > max_range else None
    items: list[ResultItem] = []
    pending: list[int] = []
    size = 0
    for r in rows[:max_range]:
        item = None
        if r.status != "queued":
            status: Literal["done", "failed"] = "done" if r.status == "done" else "failed"
            item = ResultItem(
                seq=r.seq,
                status=status,
                predictions=list(r.labels),
                scores=list(r.scores),
                error=r.error,
                model=r.model,
            )
        size += len(item.model_dump_json()) + 1 if item is not None else len(str(r.seq)) + 1
        if size > budget and (items or pending):
            return ResultPage(items=items, pending=pending, nextSeq=r.seq)
        if item is None:
            pending.append(r.seq)
        else:
            items.append(item)
    return ResultPage(items=items, pending=pending, nextSeq=after)
