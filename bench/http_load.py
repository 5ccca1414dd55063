"""HTTP functions under concurrent load: upload requests/s and query latency on the embedded stack.

``python -m bench.http_load [--uploads N] [--queries N] [--concurrency C] [--http-processes P]``. Runs only the
HTTP functions of ``python -m runtime.local`` (embedded broker and SQLite included, so each upload is validated,
stored, recorded and published) in P processes (default: one per core) and drives it from one client process on
loopback, bounded in count.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from PIL import Image

from bench import client
from bench.common import PHOTOS, local_stack, percentile, save_json, table


def small_photo() -> bytes:
    buffer = io.BytesIO()
    Image.open(PHOTOS / "chelsea.jpg").resize((160, 106)).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


async def _drive(base: str, uploads: int, queries: int, concurrency: int) -> dict[str, Any]:
    data = small_photo()
    async with client.session(base, concurrency) as http:
        session = await client.register(http)
        gate = asyncio.Semaphore(concurrency)
        statuses: list[int] = []
        latencies: list[float] = []

        async def upload(seq: int) -> None:
            async with gate:
                statuses.append(await client.upload(http, session, seq, data))

        async def query(i: int) -> None:
            async with gate:
                start = (i * 37) % max(1, uploads - 100)
                t = time.perf_counter()
                async with http.get(
                    "/result", params={"uuid": session, "seqStart": start, "seqEnd": start + 99}
                ) as response:
                    await response.read()
                latencies.append(time.perf_counter() - t)
                statuses.append(response.status)

        t0 = time.perf_counter()
        await asyncio.gather(*(upload(i) for i in range(uploads)))
        upload_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        await asyncio.gather(*(query(i) for i in range(queries)))
        query_s = time.perf_counter() - t1
    errors = sum(1 for s in statuses if s >= 400)
    return {
        "uploads": uploads,
        "upload_rps": uploads / upload_s,
        "queries": queries,
        "query_rps": queries / query_s,
        "query_p50_s": percentile(latencies, 50),
        "query_p95_s": percentile(latencies, 95),
        "errors": errors,
    }


def run(uploads: int, queries: int, concurrency: int, http_processes: int) -> dict[str, Any]:
    args = ["--functions", "UploadFunction,QueryFunction", "--http-processes", str(http_processes)]
    with tempfile.TemporaryDirectory() as tmp, local_stack(Path(tmp), args) as base:
        asyncio.run(_drive(base, 20, 5, 4))  # warm-up: connections, pools, producer
        return {"http_processes": http_processes, **asyncio.run(_drive(base, uploads, queries, concurrency))}


def report(r: dict[str, Any], concurrency: int) -> str:
    rows = [
        (
            "upload",
            f"{r['upload_rps']:.0f} req/s",
            f"{r['uploads']} uploads, {concurrency} concurrent, {r['http_processes']} HTTP processes",
        ),
        (
            "query (100 seqs)",
            f"{r['query_rps']:.0f} req/s",
            f"p50 {r['query_p50_s'] * 1000:.1f} ms, p95 {r['query_p95_s'] * 1000:.1f} ms",
        ),
        ("errors", str(r["errors"]), "responses >= 400"),
    ]
    return table("HTTP functions on the embedded stack (SQLite, Tansu)", ["endpoint", "rate", "detail"], rows)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--uploads", type=int, default=1000)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument(
        "--http-processes",
        type=int,
        default=os.cpu_count() or 1,
        help="runtime.local --http-processes (default: cores)",
    )
    args = parser.parse_args(argv)
    result = run(args.uploads, args.queries, args.concurrency, args.http_processes)
    print(report(result, args.concurrency))
    save_json("http_load", result)
    return result


if __name__ == "__main__":
    main()
