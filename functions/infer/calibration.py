"""Real photos with fixed augmentations: int8 calibration (``INFER_CALIBRATION_DIR``), and the accuracy gate's
evaluation set (``bench/accuracy.py``, another seed). Deterministic: the same folder and seed give the same bytes."""

from __future__ import annotations

import io
import random
from pathlib import Path

from PIL import Image, ImageEnhance, ImageOps

# The shipped CC0 / public-domain photos (demo/photos/SOURCES.md), present in a checkout, not in a deployed image.
DEMO_PHOTOS = Path(__file__).resolve().parents[2] / "demo" / "photos"
SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
CALIBRATION_SEED = 2  # int8 calibration; the accuracy gate evaluates on another seed


def sources(folder: Path) -> list[Image.Image]:
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in SUFFIXES) if folder.is_dir() else []
    return [Image.open(p).convert("RGB") for p in files]


def augmented(folder: Path, n: int, seed: int) -> list[bytes]:
    """``n`` JPEGs made from the folder's photos in turn: a random crop (60-100% of each side), a mirror half of
    the time, a rotation within 15 degrees, brightness and colour within 30-40%, JPEG quality 70, 85 or 95."""
    photos = sources(folder)
    rng = random.Random(seed)
    return [_augment(photos[i % len(photos)], rng) for i in range(n)] if photos else []


def _augment(img: Image.Image, rng: random.Random) -> bytes:
    w, h = img.size
    scale = rng.uniform(0.6, 1.0)
    cw, ch = max(1, int(w * scale)), max(1, int(h * scale))
    left, top = rng.randrange(w - cw + 1), rng.randrange(h - ch + 1)
    out = img.crop((left, top, left + cw, top + ch))
    if rng.random() < 0.5:
        out = ImageOps.mirror(out)
    out = out.rotate(rng.uniform(-15, 15), resample=Image.Resampling.BILINEAR)
    out = ImageEnhance.Brightness(out).enhance(rng.uniform(0.7, 1.3))
    out = ImageEnhance.Color(out).enhance(rng.uniform(0.6, 1.4))
    buffer = io.BytesIO()
    out.save(buffer, format="JPEG", quality=rng.choice((70, 85, 95)))
    return buffer.getvalue()
