"""Our pipeline end to end: photos uploaded over HTTP, through the broker, infer, collect, until queryable.

``python -m bench.pipeline [--images N] [--concurrency C]``. Runs ``python -m runtime.local`` on embedded
defaults with the worker x thread layout the runtime picks by default (resnet18, random weights).
After a warm-up (each worker's cold start: model load):
- throughput: N / (first upload -> all results queryable);
- latency under load per image from the database's own timestamps (upload accepted -> infer finished);
- low-load overhead: sequential uploads, each polled until queryable, minus the model time of one image
  (decode + preprocess + forward, batch 1) measured in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.common import local_stack, percentile, photos, table


async def _upload(client: httpx.AsyncClient, session: str, seq: int, data: bytes) -> None:
    response = await client.post(
        "/image",
        data={"uuid": session, "seq": str(seq), "topk": "5"},
        files={"payload": (f"{seq}.jpg", data, "image/jpeg")},
    )
    response.raise_for_status()


async def _all_done(client: httpx.AsyncClient, session: str, n: int) -> bool:
    for start in range(0, n, 1000):
        items = (
            await client.get("/result", params={"uuid": session, "seqStart": start, "seqEnd": min(n, start + 1000) - 1})
        ).json()["items"]
        if len(items) < min(1000, n - start) or any(i["status"] == "queued" for i in items):
            return False
    return True


async def _load(base: str, images: list[bytes], concurrency: int) -> tuple[str, float]:
    async with httpx.AsyncClient(base_url=base, timeout=120) as client:
        session = (await client.post("/register")).json()["uuid"]
        gate = asyncio.Semaphore(concurrency)

        async def one(seq: int, data: bytes) -> None:
            async with gate:
                await _upload(client, session, seq, data)

        started = time.perf_counter()
        await asyncio.gather(*(one(i, d) for i, d in enumerate(images)))
        while not await _all_done(client, session, len(images)):  # noqa: ASYNC110 - polling the API is the point
            await asyncio.sleep(0.25)
        return session, time.perf_counter() - started


async def _low_load(base: str, images: list[bytes]) -> list[float]:
    latencies = []
    async with httpx.AsyncClient(base_url=base, timeout=60) as client:
        session = (await client.post("/register")).json()["uuid"]
        for seq, data in enumerate(images):
            started = time.perf_counter()
            await _upload(client, session, seq, data)
            while True:
                items = (await client.get("/result", params={"uuid": session, "seqStart": seq, "seqEnd": seq})).json()[
                    "items"
                ]
                if items and items[0]["status"] != "queued":
                    break
                await asyncio.sleep(0.002)
            latencies.append(time.perf_counter() - started)
    return latencies


def _db_latencies(db: Path, session: str) -> list[float]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT finished_at - submitted_at FROM requests WHERE uuid = ? AND status = 'done'", (session,)
        ).fetchall()
    return [float(r[0]) for r in rows]


def model_time_per_image(images: list[bytes], model: str) -> float:
    """Median seconds to decode, preprocess and classify one image alone (1 thread, as a worker does)."""
    from functions.infer.model import load_classifier

    classifier = load_classifier(model, "random", threads=1)
    times = []
    for data in images:
        started = time.perf_counter()
        classifier.predict(classifier.preprocess(data, 10**9)[None], [5])
        times.append(time.perf_counter() - started)
    return statistics.median(times[1:] or times)


def run(n_images: int, concurrency: int, low_load: int, model: str = "resnet18") -> dict[str, Any]:
    images = photos(n_images, seed=1)
    with tempfile.TemporaryDirectory() as tmp, local_stack(Path(tmp), env={"INFER_MODEL": model}) as base:
        asyncio.run(_load(base, images[:8], concurrency))  # warm-up: every worker loads its model (cold start)
        low = asyncio.run(_low_load(base, images[:low_load]))
        session, wall = asyncio.run(_load(base, images, concurrency))
        db_lat = _db_latencies(Path(tmp) / ".faasinfer" / "faasinfer.db", session)
    model_s = model_time_per_image(images[: max(3, low_load)], model)
    return {
        "images": n_images,
        "wall_s": wall,
        "img_per_s": n_images / wall,
        "p50_s": percentile(db_lat, 50),
        "p95_s": percentile(db_lat, 95),
        "low_p50_s": percentile(low, 50),
        "low_p95_s": percentile(low, 95),
        "model_s": model_s,
        "overhead_p50_s": percentile(low, 50) - model_s,
    }


def report(r: dict[str, Any]) -> str:
    rows = [
        ("throughput", f"{r['img_per_s']:.1f} img/s", f"{r['images']} photos in {r['wall_s']:.1f} s"),
        (
            "latency under load p50 / p95",
            f"{r['p50_s'] * 1000:.0f} / {r['p95_s'] * 1000:.0f} ms",
            "upload accepted -> infer finished",
        ),
        (
            "latency at low load p50 / p95",
            f"{r['low_p50_s'] * 1000:.0f} / {r['low_p95_s'] * 1000:.0f} ms",
            "upload start -> queryable",
        ),
        ("model time per image", f"{r['model_s'] * 1000:.0f} ms", "decode+preprocess+forward, batch 1"),
        ("pipeline overhead p50 (low load)", f"{r['overhead_p50_s'] * 1000:.0f} ms", "latency - model time"),
    ]
    return table("Pipeline end to end (python -m runtime.local, default layout)", ["measure", "value", "what"], rows)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=320)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--low-load", type=int, default=20)
    parser.add_argument("--model", default="resnet18")
    args = parser.parse_args(argv)
    result = run(args.images, args.concurrency, args.low_load, args.model)
    print(report(result))
    return result


if __name__ == "__main__":
    main()
