"""Hostile images: what each costs upload and infer (time, peak memory), and ordinary uploads under a flood.

``python -m bench.hostile [--flood-seconds S] [--json PATH]``.

1. Per image, in a fresh interpreter each (so peak RSS is that image's): upload's check (``inspect_image``) and
   infer's preprocessing (``Classifier.preprocess``), with the answer each gives, next to ordinary photos.
2. On the embedded stack: an ordinary photo uploaded every 0.25 s, alone and while 24 clients each upload one
   image a second: ordinary photos (the control), 16383x2400 lossless WebPs (1.5 KB each, 118 MB and ~1 s of
   infer CPU decoded: infer stays saturated), 4000x4000 TIFFs (that upload has to decode); p50/p95 of the
   ordinary uploads and the flood's answers.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image

from bench import client
from bench.common import PHOTOS, local_stack, percentile, table


def _plain(fmt: str, size: tuple[int, int], mode: str = "L", **options: Any) -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size).save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _photo(size: tuple[int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.open(PHOTOS / "chelsea.jpg").convert("RGB").resize(size).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def _jpeg_claiming(width: int, height: int) -> bytes:
    data = bytearray(_plain("JPEG", (8, 8)))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return bytes(data)


IMAGES: dict[str, Callable[[], bytes]] = {
    "photo 451x300 (demo)": lambda: (PHOTOS / "chelsea.jpg").read_bytes(),
    "photo 4032x3024 (phone)": lambda: _photo((4032, 3024)),
    "PNG 20000x1 (143 B)": lambda: _plain("PNG", (20_000, 1)),
    "JPEG claiming 1x19000": lambda: _jpeg_claiming(1, 19_000),
    "PNG 20000x1000 (20:1)": lambda: _plain("PNG", (20_000, 1000)),
    "WebP lossless 16383x2400": lambda: _plain("WEBP", (16383, 2400), "RGB", lossless=True),
    "PNG 6300x6300 (39.7 Mpx)": lambda: _plain("PNG", (6300, 6300), "RGB"),
    "PNG bomb 12000x12000": lambda: _plain("PNG", (12_000, 12_000), "1"),
}

# Runs in a fresh interpreter: ``stage`` of one image file; prints its answer, seconds and RSS growth (MB).
_PROBE = """
import json, resource, sys, time
from functions.common.image_limits import ImageLimits
stage, path = sys.argv[1], sys.argv[2]
data = open(path, "rb").read()
if stage == "upload":
    from functions.upload.validation import inspect_image
    run = lambda: inspect_image(data, ImageLimits())
else:
    from functions.infer.config import ModelSpec
    from functions.infer.loading import load_classifier
    classifier = load_classifier(ModelSpec("resnet18", "random", None, None, 1))
    run = lambda: tuple(classifier.preprocess(data, ImageLimits()).shape)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
started = time.perf_counter()
try:
    answer = "ok"
    run()
except Exception as exc:
    answer = getattr(exc, "status_code", None) or "failed"
    answer = f"{answer}: {getattr(exc, 'message', str(exc))[:60]}"
elapsed = time.perf_counter() - started
print(json.dumps({"answer": str(answer), "ms": elapsed * 1000,
                  "peak_mb": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024}))
"""


def cost(workdir: Path) -> list[dict[str, Any]]:
    rows = []
    for name, make in IMAGES.items():
        path = workdir / "image"
        path.write_bytes(make())
        row: dict[str, Any] = {"image": name, "bytes": path.stat().st_size}
        for stage in ("upload", "infer"):
            out = subprocess.run(
                [sys.executable, "-c", _PROBE, stage, str(path)], capture_output=True, text=True, check=True
            )
            row[stage] = json.loads(out.stdout.strip().splitlines()[-1])
        rows.append(row)
    return rows


async def _ordinary_uploads(base: str, session: str, count: int, start_seq: int) -> list[float]:
    data = _photo((640, 426))
    latencies = []
    async with client.session(base, 2) as http:
        for i in range(count):
            started = time.perf_counter()
            status = await client.upload(http, session, start_seq + i, data)
            latencies.append((time.perf_counter() - started) * 1000)
            assert status == 202, status
            await asyncio.sleep(0.25)
    return latencies


async def _flood(
    base: str, session: str, data: bytes, first_seq: int, stop: asyncio.Event, answers: Counter[int]
) -> None:
    async with client.session(base, 24) as http:

        async def one_client(k: int) -> None:
            seq = first_seq + k * 100_000
            while not stop.is_set():
                started = time.perf_counter()
                answers[await client.upload(http, session, seq, data)] += 1
                seq += 1
                await asyncio.sleep(max(0.0, 1.0 - (time.perf_counter() - started)))  # one upload a second

        await asyncio.gather(*(one_client(k) for k in range(24)))


async def _scenario(base: str, seconds: float) -> dict[str, Any]:
    count = int(seconds / 0.3)
    async with client.session(base, 1) as http:
        session = await client.register(http)
    out: dict[str, Any] = {"alone": await _ordinary_uploads(base, session, count, 0)}
    floods = (
        ("photo flood (control)", _photo((640, 426))),
        ("WebP flood", _plain("WEBP", (16383, 2400), "RGB", lossless=True)),
        ("TIFF flood", _plain("TIFF", (4000, 4000), "RGB", compression="tiff_deflate")),
    )
    for n, (name, flood) in enumerate(floods):
        stop, answers = asyncio.Event(), Counter[int]()
        flooding = asyncio.create_task(_flood(base, session, flood, 10_000_000 * (n + 1), stop, answers))
        await asyncio.sleep(1)
        out[name] = await _ordinary_uploads(base, session, count, 10_000 * (len(out) + 1))
        stop.set()
        await flooding
        out[f"{name} answers"] = dict(answers)
    return out


def flood(workdir: Path, seconds: float) -> dict[str, Any]:
    with local_stack(workdir) as base:
        return asyncio.run(_scenario(base, seconds))


def report(costs: list[dict[str, Any]], floods: dict[str, Any]) -> str:
    rows = [
        (c["image"], c["bytes"], c["upload"]["answer"][:34], c["upload"]["ms"], c["upload"]["peak_mb"],
         c["infer"]["answer"][:34], c["infer"]["ms"], c["infer"]["peak_mb"])
        for c in costs
    ]  # fmt: skip
    text = table(
        "Cost per image (fresh process each; peak = RSS growth)",
        ["image", "bytes", "upload answer", "upload ms", "upload peak MB", "infer answer", "infer ms", "infer peak MB"],
        rows,
    )
    lat = [
        (name, len(v), percentile(v, 50), percentile(v, 95), json.dumps(floods.get(f"{name} answers", {})))
        for name, v in floods.items()
        if not name.endswith("answers")
    ]
    return text + table(
        "Ordinary uploads (640x426 JPEG, one every 0.25 s)", ["while", "n", "p50 ms", "p95 ms", "flood answers"], lat
    )


def main() -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench.hostile", description=__doc__.splitlines()[0])
    parser.add_argument("--flood-seconds", type=float, default=20.0, help="length of each latency series")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        costs = cost(Path(tmp))
        floods = flood(Path(tmp), args.flood_seconds)
    print(report(costs, floods))
    result = {"costs": costs, "floods": floods}
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
