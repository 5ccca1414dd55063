"""Limit and prototype design: raw images/s including decode + preprocessing, per batch size and layout.

``python -m bench.limit [--images N] [--model resnet18]``. Each layout runs P processes x T torch threads
that start together (a barrier) and classify their share of the same photos. Batch 1 is the prototype's
design: one image per invocation, no batching.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import queue
import time
from multiprocessing.synchronize import Barrier
from typing import Any

from bench.common import engine, photos, save_json, table

LAYOUTS = ((1, 2), (2, 1))  # processes x threads that fit 2 cores (2 x 2 would oversubscribe)


def _worker(images: list[bytes], batch: int, threads: int, model: str, barrier: Barrier, out: Any) -> None:
    import numpy as np

    from functions.common.image_limits import ImageLimits
    from functions.infer.config import ModelSpec
    from functions.infer.loading import load_classifier

    classifier = load_classifier(ModelSpec(model, "random", threads=threads, engine=engine()))
    warm = np.stack([classifier.preprocess(images[0], ImageLimits())] * min(batch, 2))
    classifier.predict(warm, [1] * len(warm))
    barrier.wait()
    started = time.perf_counter()
    for i in range(0, len(images), batch):
        chunk = [classifier.preprocess(data, ImageLimits()) for data in images[i : i + batch]]
        classifier.predict(np.stack(chunk), [5] * len(chunk))
    out.put(time.perf_counter() - started)


def measure(images: list[bytes], processes: int, threads: int, batch: int, model: str) -> float:
    """Images per second of the whole layout (all processes, wall clock from the common start)."""
    ctx = multiprocessing.get_context("spawn")
    barrier, out = ctx.Barrier(processes), ctx.Queue()
    shares = [images[i::processes] for i in range(processes)]
    procs = [ctx.Process(target=_worker, args=(share, batch, threads, model, barrier, out)) for share in shares]
    for p in procs:
        p.start()
    times: list[float] = []
    deadline = time.monotonic() + 900
    while len(times) < len(procs):  # a worker that dies fails the run at once (its peers wait at the barrier)
        if failed := [p.exitcode for p in procs if p.exitcode not in (None, 0)]:
            for p in procs:
                p.kill()
            raise RuntimeError(f"a limit worker exited with {failed}")
        if time.monotonic() > deadline:
            raise TimeoutError("limit workers did not finish within 900 s")
        with contextlib.suppress(queue.Empty):
            times.append(out.get(timeout=0.5))
    elapsed = max(times)
    for p in procs:
        p.join()
    return len(images) / elapsed


def run(n_images: int, model: str, batches: tuple[int, ...] = (1, 8, 32)) -> dict[tuple[int, int, int], float]:
    images = photos(n_images)
    results = {}
    for processes, threads in LAYOUTS:
        for batch in batches:
            results[(processes, threads, batch)] = measure(images, processes, threads, batch, model)
    return results


def report(results: dict[tuple[int, int, int], float], cores: int) -> str:
    best = max(results.values())
    best_layout = max(results, key=lambda k: results[k])
    prototype = max(v for (p, t, b), v in results.items() if b == 1)
    rows = [(f"{p}x{t}", b, v, f"{v / best:.2f}") for (p, t, b), v in sorted(results.items())]
    lines = [
        table(
            f"Model limit incl. decode+preprocess ({cores} cores)",
            ["procs x threads", "batch", "img/s", "x best"],
            rows,
        )
    ]
    p, t, b = best_layout
    lines.append(f"best layout: {p} processes x {t} threads, batch {b}: {best:.1f} img/s")
    lines.append(f"prototype design (batch 1) best: {prototype:.1f} img/s = {prototype / best:.2f}x the best layout")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[tuple[int, int, int], float]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--images", type=int, default=250, help="a multiple of bench.common.PERIOD keeps the photo mix exact"
    )
    parser.add_argument("--model", default="resnet18")
    args = parser.parse_args(argv)
    results = run(args.images, args.model)
    print(report(results, os.cpu_count() or 1))
    save_json("limit", results)
    return results


if __name__ == "__main__":
    main()
