"""The size limits every accepted image obeys, checked from its header alone (upload) and again before
preprocessing (infer): each bounds a cost that the image's bytes do not.

A tiny file can claim a huge or extreme image: a 143-byte PNG of 20000x1 px is resized by its short side to
256 x 5,120,000 px (5 GB, 15 s of CPU). ``MAX_PIXELS`` and ``MAX_IMAGE_SIDE`` bound the decode;
``MAX_ASPECT_RATIO`` bounds what resizing by the short side makes of it. ``MAX_JPEG_SCANS`` bounds how often a
progressive JPEG makes the decoder pass over every block (``image_structure``, which counts them before decoding).
"""

from __future__ import annotations

from dataclasses import dataclass

from .settings import Settings


@dataclass(frozen=True)
class Violation:
    status: int  # 400: the image is wrong; 413: it is too big
    message: str


@dataclass(frozen=True)
class ImageLimits:
    max_pixels: int = 40_000_000
    max_side: int = 20_000
    max_aspect_ratio: float = 20.0
    # libjpeg-turbo's own decompression fuzzer refuses beyond 100 scans; real progressive photos have ~10
    max_jpeg_scans: int = 100
    # infer: CPU seconds one image's decode and preprocessing may take before it is a ``failed`` result
    decode_budget_s: float = 10.0

    @classmethod
    def of(cls, settings: Settings) -> ImageLimits:
        return cls(
            settings.max_pixels, settings.max_image_side, settings.max_aspect_ratio, settings.max_jpeg_scans,
            settings.infer_decode_budget_s,
        )  # fmt: skip

    def violation(self, width: int, height: int) -> Violation | None:
        """What is wrong with an image of these dimensions, or ``None``."""
        if width < 1 or height < 1:
            return Violation(400, f"image has empty dimensions {width}x{height}")
        if width > self.max_side or height > self.max_side:
            return Violation(413, f"image dimensions {width}x{height} exceed the {self.max_side} px side limit")
        if width * height > self.max_pixels:
            return Violation(413, f"image has {width * height} pixels, more than the limit of {self.max_pixels}")
        ratio = max(width, height) / min(width, height)
        if ratio > self.max_aspect_ratio:
            return Violation(
                400,
                f"image dimensions {width}x{height} have an aspect ratio of {ratio:.1f}:1, beyond the limit of "
                f"{self.max_aspect_ratio:g}:1 (MAX_ASPECT_RATIO)",
            )
        return None
