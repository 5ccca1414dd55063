"""CPU per image of the store work the HTTP + collect process does, on SQLite and MariaDB.

``python -m bench.store [--images N] [--rounds R] [--mariadb URL] [--json PATH]``. In this process, per image,
what the pipeline asks of the store: the upload's insert-if-absent (16 at once, as the load client uploads),
collect's upsert of the result (batches of 8, as the event-source mapping delivers them) and the client's
polling of 64-seq pages. The figure is process CPU (``time.process_time``: every thread, SQLite's included)
divided by the images, the median of ``R`` rounds, each on fresh tables. Used to hold the store's cost while
its code changes (#20: before and after the split into backends, on one machine).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
import uuid as uuid_lib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import table
from functions.common.contracts import InferenceResult
from functions.common.store import RequestRow, Store, open_store

CONCURRENCY = 16
RESULT_BATCH = 8
POLL_PAGE = 64


async def _one_round(store: Store, n: int) -> float:
    session = str(uuid_lib.uuid4())
    await store.create_session(session)
    gate = asyncio.Semaphore(CONCURRENCY)

    async def upload(seq: int) -> None:
        async with gate:
            await store.add_request(RequestRow(session, seq, 5, f"{session}/{seq}.jpg", "0" * 64, "image/jpeg"))

    finished = datetime.now(UTC)
    results = [
        InferenceResult(
            uuid=session, seq=s, status="done", labels=["a", "b"], scores=[0.6, 0.4], model="m", finished_at=finished
        )
        for s in range(n)
    ]
    start = time.process_time()
    await asyncio.gather(*(upload(s) for s in range(n)))
    for i in range(0, n, RESULT_BATCH):
        await store.apply_results(results[i : i + RESULT_BATCH])
    for lo in range(0, n, POLL_PAGE):
        rows = await store.get_range(session, lo, lo + POLL_PAGE - 1, limit=POLL_PAGE)
        assert all(r.status == "done" for r in rows), "every result was applied"
    return (time.process_time() - start) * 1000 / n


async def measure(url: str, n: int, rounds: int) -> dict[str, Any]:
    store = open_store(url)
    try:
        await store.init_schema()
        await _one_round(store, min(n, 64))  # warm-up: connections, caches
        per_image = [await _one_round(store, n) for _ in range(rounds)]
    finally:
        await store.close()
    return {"cpu_ms_per_image": round(statistics.median(per_image), 3), "rounds": [round(x, 3) for x in per_image]}


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        out: dict[str, Any] = {
            "images": args.images,
            "sqlite": await measure(f"sqlite:///{Path(tmp) / 'bench.db'}", args.images, args.rounds),
        }
    if args.mariadb:
        out["mariadb"] = await measure(args.mariadb, args.images, args.rounds)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--mariadb", default="", help="also measure this MariaDB, e.g. mysql://root@127.0.0.1/test")
    parser.add_argument("--json", type=Path, default=Path("bench/results/store.json"))
    args = parser.parse_args()
    out = asyncio.run(main_async(args))
    rows = [(name, f"{out[name]['cpu_ms_per_image']:.3f}", " ".join(map(str, out[name]["rounds"])))
            for name in ("sqlite", "mariadb") if name in out]  # fmt: skip
    title = f"Store CPU per image ({args.images} images, median of {args.rounds} rounds)"
    print(table(title, ["backend", "CPU ms", "rounds"], rows))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
