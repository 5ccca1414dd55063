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

from bench import client
from bench.common import engine, local_stack, percentile, photos, save_json, table


async def _send(http: Any, seq: int, prepared: client.PreparedUpload) -> None:
    status = await client.send_upload(http, prepared)
    if status != 202:
        raise RuntimeError(f"upload {seq} answered {status}")


async def _upload(http: Any, session: str, seq: int, data: bytes) -> None:
    await _send(http, seq, await client.prepare_upload(session, seq, data))


POLL_PAGE = 64  # seqs per poll: results finish roughly in upload order, so the open ones sit at the front
# Between polls, as the prototype's own client waits (our CLI waits 0.5 s): each poll is an API Gateway request
# (~1.7 ms of CPU on this 2-core box), so polling every 50 ms took ~1.5% of the CPU away from inference, while the
# end of the run is seen at most 0.1 s late (< 0.2% of a 2,000-photo run).
POLL_INTERVAL_S = 0.1


async def _wait_all_done(http: Any, session: str, n: int) -> None:
    """Poll until every seq has a final status; each poll asks for one page from the first seq still queued."""
    first_open = 0
    while first_open < n:
        items = await client.results(http, session, first_open, min(n, first_open + POLL_PAGE) - 1)
        finals = {i["seq"] for i in items if i["status"] != "queued"}
        while first_open in finals:
            first_open += 1
        if first_open < n:
            await asyncio.sleep(POLL_INTERVAL_S)


async def _load(base: str, images: list[bytes], concurrency: int) -> tuple[str, float]:
    async with client.session(base, concurrency) as http:
        session = await client.register(http)
        gate = asyncio.Semaphore(concurrency)
        bodies = [await client.prepare_upload(session, seq, data) for seq, data in enumerate(images)]

        async def one(seq: int, prepared: client.PreparedUpload) -> None:
            async with gate:
                await _send(http, seq, prepared)

        started = time.perf_counter()
        await asyncio.gather(*(one(i, b) for i, b in enumerate(bodies)))
        await _wait_all_done(http, session, len(images))
        return session, time.perf_counter() - started


async def _low_load(base: str, images: list[bytes]) -> list[float]:
    latencies = []
    async with client.session(base, 4) as http:
        session = await client.register(http)
        for seq, data in enumerate(images):
            started = time.perf_counter()
            await _upload(http, session, seq, data)
            while True:
                items = await client.results(http, session, seq, seq)
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
    from functions.common.image_limits import ImageLimits
    from functions.infer.config import ModelSpec
    from functions.infer.loading import load_classifier

    classifier = load_classifier(ModelSpec(model, "random", threads=1, engine=engine()))
    times = []
    for data in images:
        started = time.perf_counter()
        classifier.predict(classifier.preprocess(data, ImageLimits())[None], [5])
        times.append(time.perf_counter() - started)
    return statistics.median(times[1:] or times)


def run(n_images: int, concurrency: int, low_load: int, model: str = "resnet18") -> dict[str, Any]:
    images = photos(n_images)
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
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--low-load", type=int, default=20)
    parser.add_argument("--model", default="resnet18")
    args = parser.parse_args(argv)
    result = run(args.images, args.concurrency, args.low_load, args.model)
    print(report(result))
    save_json("pipeline", result)
    return result


if __name__ == "__main__":
    main()
