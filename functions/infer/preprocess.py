"""From image bytes to the network's input, with Pillow and numpy only (no torch at run time).

``decode`` turns any image Pillow opens into an upright RGB picture no larger than the model needs: the limits are
checked from the header first, a JPEG decodes at 1/2..1/8 scale by DCT scaling (``draft``), other formats are
box-reduced after decoding, and every mode (1, L, P, LA, PA, I, I;16, F, RGB, RGBA, CMYK, YCbCr, ...) ends as 8-bit
RGB. ``Preprocessing`` is each model's own resize, centre crop and normalisation, computed as torchvision computes
them on a PIL image (Pillow's resize, the same crop box, ``/255``, ``(x - mean) / std``), so the ONNX engine sees
what the eager network was checked with (tests compare the two step by step).
"""

from __future__ import annotations

import io
import warnings
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from PIL import ExifTags, Image

from functions.common.image_limits import ImageLimits
from functions.common.image_structure import structure_violation

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# EXIF orientation -> the transpose that shows the image upright (as ``ImageOps.exif_transpose`` does).
_UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_RESAMPLE = {"nearest": Image.Resampling.NEAREST, "bilinear": Image.Resampling.BILINEAR,
             "bicubic": Image.Resampling.BICUBIC, "lanczos": Image.Resampling.LANCZOS}  # fmt: skip
_REDUCIBLE = frozenset({"L", "LA", "I", "F", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr", "LAB", "HSV"})


class UndecodableImage(ValueError):
    """The bytes are not an image this worker can classify (a permanent, per-record failure)."""


@dataclass(frozen=True)
class Preprocessing:
    """Resize the short side to ``resize``, crop the centre ``crop`` square, scale to 0..1, normalise per channel."""

    resize: int = 256
    crop: int = 224
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    interpolation: str = "bilinear"

    def __post_init__(self) -> None:
        if self.interpolation not in _RESAMPLE:
            raise ValueError(f"interpolation {self.interpolation!r}: one of {', '.join(_RESAMPLE)}")

    def __call__(self, rgb: Image.Image) -> np.ndarray:
        """A float32 CHW array of ``rgb`` (an RGB image), ready for the network."""
        cropped = _centre_crop(_resize_short_side(rgb, self.resize, _RESAMPLE[self.interpolation]), self.crop)
        pixels = np.asarray(cropped, dtype=np.uint8).astype(np.float32) / np.float32(255)
        mean, std = np.asarray(self.mean, dtype=np.float32), np.asarray(self.std, dtype=np.float32)
        return np.ascontiguousarray(((pixels - mean) / std).transpose(2, 0, 1))

    def as_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Preprocessing:
        return cls(
            resize=int(raw["resize"]), crop=int(raw["crop"]), mean=tuple(float(v) for v in raw["mean"]),
            std=tuple(float(v) for v in raw["std"]), interpolation=str(raw["interpolation"]),
        )  # fmt: skip


def _resize_short_side(img: Image.Image, size: int, resample: Image.Resampling) -> Image.Image:
    """torchvision's ``Resize(size)`` of a PIL image: the short side to ``size``, the long side truncated."""
    width, height = img.size
    short, long = min(width, height), max(width, height)
    new_short, new_long = size, int(size * long / short)
    new_size = (new_short, new_long) if width <= height else (new_long, new_short)
    return img if new_size == img.size else img.resize(new_size, resample)


def _centre_crop(img: Image.Image, crop: int) -> Image.Image:
    """torchvision's ``CenterCrop(crop)`` of a PIL image (an image smaller than ``crop`` is padded with black)."""
    width, height = img.size
    if width < crop or height < crop:
        padded = Image.new(img.mode, (max(width, crop), max(height, crop)))
        padded.paste(img, ((padded.width - width) // 2, (padded.height - height) // 2))
        img, (width, height) = padded, padded.size
    top, left = round((height - crop) / 2.0), round((width - crop) / 2.0)
    return img.crop((left, top, left + crop, top + crop))


def decode(data: bytes, limits: ImageLimits, short_side: int) -> Image.Image:
    """Upright 8-bit RGB, decoded no larger than twice ``short_side``; ``UndecodableImage`` says why not. What a
    decode would cost beyond the image's size (scans, segments, chunks) is checked from the structure first."""
    if (violation := structure_violation(data, limits)) is not None:
        raise UndecodableImage(violation.message)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                if (violation := limits.violation(*img.size)) is not None:
                    raise UndecodableImage(violation.message)
                orientation = img.getexif().get(ExifTags.Base.Orientation, 1)
                img.draft(None, (2 * short_side, 2 * short_side))
                img.load()
                small = _reduced(_reducible(img), 2 * short_side)
                if orientation in _UPRIGHT:
                    small = small.transpose(_UPRIGHT[orientation])
                return _rgb(small)
    except UndecodableImage:
        raise
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombWarning) as exc:
        raise UndecodableImage(f"cannot decode image: {exc}") from exc


def _reducible(img: Image.Image) -> Image.Image:
    """``img`` in a mode ``Image.reduce`` accepts, losing nothing: 1 → L, P → RGB(A), 16-bit → 32-bit I."""
    if img.mode in _REDUCIBLE:
        return img
    if img.mode.startswith("I;16"):
        return img.convert("I")
    if img.mode == "1":
        return img.convert("L")
    if img.mode in ("P", "PA"):
        return img.convert("RGBA" if img.mode == "PA" or "transparency" in img.info else "RGB")
    return img.convert("RGBA" if "A" in img.mode or "a" in img.mode else "RGB")


def _reduced(img: Image.Image, short_side: int) -> Image.Image:
    """``img`` box-reduced by the largest integer factor that keeps its short side >= ``short_side``."""
    factor = min(img.size) // short_side
    return img.reduce(factor) if factor >= 2 else img


def _rgb(img: Image.Image) -> Image.Image:
    """8-bit RGB; integer and float pictures (16-bit scans, HDR-ish TIFFs) scaled into 0..255 by their range."""
    if img.mode in ("I", "F"):
        values = np.asarray(img, dtype=np.float32)
        high = float(values.max()) if values.size else 0.0
        low = float(values.min()) if values.size else 0.0
        if high > 255 and low >= 0 and high <= 65535:  # 16-bit samples
            values = values * np.float32(255 / 65535)
        elif high > 255 or low < 0:  # another range: stretched to 0..255
            values = (values - low) * np.float32(255 / max(high - low, 1e-6))
        img = Image.fromarray(np.clip(values, 0, 255).astype(np.uint8), "L")
    return img if img.mode == "RGB" else img.convert("RGB")
