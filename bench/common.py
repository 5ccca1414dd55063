"""What the benchmarks share: photos of mixed sizes, a tiny table printer, percentiles, the runtime process."""

from __future__ import annotations

import io
import random
import statistics
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from PIL import Image

from tools.launcher import launched

ROOT = Path(__file__).resolve().parent.parent
PHOTOS = ROOT / "demo" / "photos"
SIZES = (0.5, 0.75, 1.0, 1.5, 2.0)
PERIOD = len(SIZES) * sum(1 for p in PHOTOS.iterdir() if p.suffix in (".jpg", ".png"))  # 25: 5 photos x 5 sizes


def photos(n: int, seed: int = 1) -> list[bytes]:
    """``n`` real photos of mixed sizes: the demo photos rescaled and cropped, re-encoded as JPEG.

    The mix is the same in every run of ``PERIOD`` consecutive photos (each source at each size once), so benches
    that compare throughputs (pipeline against the model limit) see the same per-image cost whatever their counts;
    ``photos(m, s)`` is the first ``m`` of ``photos(n, s)``. Crop and JPEG quality vary with ``seed``.
    """
    rng = random.Random(seed)
    sources = [Image.open(p).convert("RGB") for p in sorted(PHOTOS.iterdir()) if p.suffix in (".jpg", ".png")]
    out = []
    for i in range(n):
        img = sources[i % len(sources)]
        scale = SIZES[(i // len(sources)) % len(SIZES)]
        w, h = int(img.width * scale), int(img.height * scale)
        resized = img.resize((w, h))
        left, top = rng.randrange(max(1, w // 8)), rng.randrange(max(1, h // 8))
        buffer = io.BytesIO()
        resized.crop((left, top, w - left, h - top)).save(buffer, format="JPEG", quality=rng.choice((80, 90, 95)))
        out.append(buffer.getvalue())
    return out


RESULTS = ROOT / "bench" / "results"


def save_json(name: str, result: Any, path: Path | None = None) -> Path:
    """``bench/results/<name>.json`` (or ``path``): the result under ``result``, with when and where it was
    measured (tuple keys written as ``a/b/c``)."""
    import json
    import os
    import platform
    from datetime import UTC, datetime

    def plain(value: Any) -> Any:
        if isinstance(value, dict):
            return {"/".join(map(str, k)) if isinstance(k, tuple) else str(k): plain(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [plain(v) for v in value]
        return value

    stamped = {"date": datetime.now(UTC).isoformat(timespec="seconds"),
               "machine": f"{platform.machine()}, {os.cpu_count()} cores", "result": plain(result)}  # fmt: skip
    path = path or RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(stamped, indent=2) + "\n")
    return path


def engine() -> Any:
    """The inference engine the service runs by default (settings' INFER_BACKEND / INFER_PRECISION, where the
    runtime keeps it): the limit and the pipeline measure the same engine."""
    from functions.common.settings import Settings
    from functions.infer.config import engine_spec

    return engine_spec(Settings())


def percentile(values: Sequence[float], q: float) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def table(title: str, header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[str(c) for c in header], *[[f"{c:.1f}" if isinstance(c, float) else str(c) for c in r] for r in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = [
        f"\n## {title}",
        "  ".join(h.ljust(w) for h, w in zip(cells[0], widths, strict=True)),
        "  ".join("-" * w for w in widths),
    ]
    lines += ["  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in cells[1:]]
    return "\n".join(lines)


@contextmanager
def local_stack(workdir: Path, extra_args: Sequence[str] = (), env: dict[str, str] | None = None) -> Iterator[str]:
    """``python -m runtime.local`` on embedded defaults (resnet18, random weights) in ``workdir``."""
    defaults = {"LOG_LEVEL": "WARNING", "INFER_MODEL": "resnet18", "INFER_WEIGHTS": "random"}
    with launched(workdir, extra_args, {**defaults, **(env or {})}) as runtime:
        yield runtime.base_url
