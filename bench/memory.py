"""Memory of an infer worker over many images: the handler's resident set size, sampled as it goes.

``python -m bench.memory [--images N] [--batch B]``. Runs the real infer handler in this process on Lambda
Kafka events of B records each (photos of mixed sizes from the blob store, results published to the
embedded broker) and reports RSS after warm-up, half-way and at the end, in a fresh interpreter started with
the malloc setting the template gives the infer function (``MALLOC_ARENA_MAX=2``).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.common import photos, save_json, table
from runtime.kafka.broker import EmbeddedBroker, ensure_topics
from runtime.lambdafn.memory_watch import rss_mib
from runtime.template import load_template


def _infer_malloc_env() -> dict[str, str]:
    infer = load_template(Path(__file__).resolve().parent.parent / "template.yaml").function("InferSelfManagedFunction")
    return {"MALLOC_ARENA_MAX": infer.env["MALLOC_ARENA_MAX"]}


def _event(bootstrap: str, first: int, count: int, n_blobs: int) -> dict[str, Any]:
    records = []
    for offset in range(first, first + count):
        value = json.dumps({"uuid": "bench", "seq": offset, "topk": 5, "blob": f"bench/{offset % n_blobs}.jpg"})
        records.append(
            {
                "topic": "inference-request",
                "partition": 0,
                "offset": offset,
                "timestamp": 0,
                "timestampType": "CREATE_TIME",
                "key": base64.b64encode(f"bench:{offset}".encode()).decode(),
                "value": base64.b64encode(value.encode()).decode(),
                "headers": [],
            }
        )
    return {
        "eventSource": "SelfManagedKafka",
        "bootstrapServers": bootstrap,
        "records": {"inference-request-0": records},
    }


def run(n_images: int, batch: int, model: str) -> dict[str, float]:
    """Measured in a fresh interpreter with the environment the runtime gives infer workers; the engine made before
    in a process of its own, as the runtime's build step (and ``sam build``) makes it."""
    engine = {**os.environ, "INFER_MODEL": model, "INFER_WEIGHTS": "random"}
    subprocess.run([sys.executable, "-m", "functions.infer.prepare"], env=engine, capture_output=True, check=True)
    args = ["--images", str(n_images), "--batch", str(batch), "--model", model, "--json"]
    done = subprocess.run(
        [sys.executable, "-m", "bench.memory", *args],
        env={**os.environ, **_infer_malloc_env()},
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _measure(n_images: int, batch: int, model: str) -> dict[str, float]:
    with EmbeddedBroker() as bootstrap, tempfile.TemporaryDirectory() as tmp:
        asyncio.run(ensure_topics(bootstrap, {"inference-result": 1, "inference-dlq": 1}))
        from functions.common.blobs import blob_store_from_url
        from functions.common.settings import use_function_environment
        from functions.infer import app

        use_function_environment(  # the infer function's environment, as the runtime gives it
            {
                **os.environ,
                "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
                "BLOB_URL": f"file://{tmp}",
                "INFER_MODEL": model,
                "INFER_WEIGHTS": "random",
                "INFER_THREADS": "1",
            }
        )
        blobs = blob_store_from_url(f"file://{tmp}")
        images = photos(50, seed=2)
        for i, data in enumerate(images):
            asyncio.run(blobs.put(f"bench/{i}.jpg", data, "image/jpeg"))
        app.handler(_event(bootstrap, 0, batch, len(images)), None)  # warm-up: model, pools, producer
        start = rss_mib(os.getpid())
        samples = [start]
        done = 0
        for first in range(batch, n_images + batch, batch):
            summary = app.handler(_event(bootstrap, first, batch, len(images)), None)
            done += summary["done"]
            samples.append(rss_mib(os.getpid()))
        app.shutdown()
    half = samples[len(samples) // 2]
    return {
        "images": float(done),
        "rss_start_mib": start,
        "rss_half_mib": half,
        "rss_end_mib": samples[-1],
        "rss_max_mib": max(samples),
        "torch_loaded": float("torch" in sys.modules),
    }


def report(r: dict[str, float]) -> str:
    rows = [
        ("images classified", f"{r['images']:.0f}"),
        ("RSS after warm-up", f"{r['rss_start_mib']:.0f} MiB"),
        ("RSS half-way", f"{r['rss_half_mib']:.0f} MiB"),
        ("RSS at the end", f"{r['rss_end_mib']:.0f} MiB"),
        ("RSS peak", f"{r['rss_max_mib']:.0f} MiB"),
        ("growth after warm-up", f"{r['rss_end_mib'] - r['rss_start_mib']:+.0f} MiB"),
        ("growth in the second half", f"{r['rss_end_mib'] - r['rss_half_mib']:+.0f} MiB"),
        ("torch loaded", "yes" if r.get("torch_loaded") else "no"),
    ]
    return table("Infer worker memory", ["measure", "value"], rows)


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--json", action="store_true", help="measure in this process, print JSON (used by run)")
    args = parser.parse_args(argv)
    if args.json:
        result = _measure(args.images, args.batch, args.model)
        print(json.dumps(result))
    else:
        result = run(args.images, args.batch, args.model)
        print(report(result))
        save_json("memory", result)
    return result


if __name__ == "__main__":
    main()
