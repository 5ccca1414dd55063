"""HTTP functions under concurrent load: upload requests/s and query latency on the embedded stack.

``python -m bench.http_load [--uploads N] [--queries N] [--concurrency C]``. Runs only the HTTP functions of
``python -m runtime.local`` (embedded broker and SQLite included, so each upload is validated, stored,
recorded and published) and drives it from one client process on loopback, bounded in count.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from PIL import Image

from bench.common import PHOTOS, local_stack, percentile, table


def small_photo() -> bytes:
    buffer = io.BytesIO()
    Image.open(PHOTOS / "chelsea.jpg").resize((160, 106)).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


async def _drive(base: str, uploads: int, queries: int, concurrency: int) -> dict[str, Any]:
    data = small_photo()
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as client:
        session = (await client.post("/register")).json()["uuid"]
        gate = asyncio.Semaphore(concurrency)
        statuses: list[int] = []
        latencies: list[float] = []

        async def upload(seq: int) -> None:
            async with gate:
                r = await client.post(
                    "/image",
                    data={"uuid": session, "seq": str(seq), "topk": "5"},
                    files={"payload": ("p.jpg", data, "image/jpeg")},
                )
                statuses.append(r.status_code)

        async def query(i: int) -> None:
            async with gate:
                start = (i * 37) % max(1, uploads - 100)
                t = time.perf_counter()
                r = await client.get("/result", params={"uuid": session, "seqStart": start, "seqEnd": start + 99})
                latencies.append(time.perf_counter() - t)
                statuses.append(r.status_code)

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


def run(uploads: int, queries: int, concurrency: int) -> dict[str, Any]:
    with (
        tempfile.TemporaryDirectory() as tmp,
        local_stack(Path(tmp), ["--functions", "UploadFunction,QueryFunction"]) as base,
    ):
        asyncio.run(_drive(base, 20, 5, 4))  # warm-up: connections, pools, producer
        return asyncio.run(_drive(base, uploads, queries, concurrency))


def report(r: dict[str, Any], concurrency: int) -> str:
    rows = [
        ("upload", f"{r['upload_rps']:.0f} req/s", f"{r['uploads']} uploads, {concurrency} concurrent"),
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
    args = parser.parse_args(argv)
    result = run(args.uploads, args.queries, args.concurrency)
    print(report(result, args.concurrency))
    return result


if __name__ == "__main__":
    main()
