"""Cheap image checks with Pillow (never torch): format, dimensions and aspect ratio, completeness, cost.

First the bytes' structure is read without Pillow (``functions.common.image_structure``, which infer runs too): how
many scans a progressive JPEG makes its decoder run, how many segments, chunks, blocks or strips Pillow's parsers
would walk one by one in Python, how much PNG metadata inflates. An image beyond a cap is refused (413) before
Pillow parses it, so a refusal costs about what reading its bytes does. The same walk checks completeness: a JPEG's
headers parse and an end-of-image marker follows its scan data; a PNG's chunks all pass their CRCs up to IEND.

Then Pillow reads the header: a WebP's RIFF container must hold as many bytes as its header says. A truncated
upload is refused; an image corrupt inside its compressed data is accepted, and infer (which decodes it anyway)
answers ``failed`` when it cannot. Entropy-decoding JPEGs here was ~10% of the HTTP process's CPU per upload, and a
1.5 KB lossless WebP can decode to 160 MB.

A multi-picture JPEG (MPO, as many phone cameras write) is a JPEG: accepted as ``image/jpeg`` and classified by its
first picture. A format Pillow names that the tables below lack is refused (415) naming it.

GIF, BMP and TIFF are decoded in full, at most ``UPLOAD_DECODE_SLOTS`` at a time per process: a decode that
finds no slot within ``UPLOAD_DECODE_WAIT_S`` (default: none free now) is answered 503 with ``Retry-After``
(``Busy``; the CLI retries it), so a flood of them bounds the process's memory (slots x ``MAX_PIXELS`` x 4
bytes) and does not hold the execution environments that ordinary uploads need."""

from __future__ import annotations

import io
import threading
import warnings
from dataclasses import dataclass
from functools import lru_cache

from PIL import Image, UnidentifiedImageError

from functions.common.errors import BadRequest, Busy, PayloadTooLarge, ServiceError, UnsupportedMedia
from functions.common.image_limits import ImageLimits, Violation
from functions.common.image_structure import structure_violation

CONTENT_TYPES = {
    "JPEG": "image/jpeg",
    "PNG": "image/png",
    "WEBP": "image/webp",
    "GIF": "image/gif",
    "BMP": "image/bmp",
    "TIFF": "image/tiff",
}
_SIGNATURES = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a", b"BM", b"II*\x00", b"MM\x00*")
EXTENSIONS = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "GIF": ".gif", "BMP": ".bmp", "TIFF": ".tiff"}
SAME_AS = {"MPO": "JPEG"}  # Pillow's name for a JPEG holding more pictures (its first is the image)


@dataclass(frozen=True)
class ImageInfo:
    format: str
    width: int
    height: int

    @property
    def content_type(self) -> str:
        return CONTENT_TYPES[self.format]

    @property
    def extension(self) -> str:
        return EXTENSIONS[self.format]


def inspect_image(data: bytes, limits: ImageLimits, decode_slots: int = 2, decode_wait_s: float = 0.0) -> ImageInfo:
    """Raise a 4xx ``ServiceError`` unless ``data`` is a complete image of a supported format, sane size and
    bounded decoding cost (``Busy``, a 503, when a full decode finds no free slot)."""
    if not data:
        raise BadRequest("payload is empty")
    if (violation := structure_violation(data, limits)) is not None:
        raise _refusal(violation)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=list(CONTENT_TYPES)) as img:
                width, height = img.size
                fmt = accepted_format(img.format)
                if (violation := limits.violation(width, height)) is not None:
                    raise _refusal(violation)
                _check_complete(img, fmt, data, decode_slots, decode_wait_s)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise PayloadTooLarge(f"image rejected as a decompression bomb: {exc}") from exc
    except UnidentifiedImageError as exc:
        if data.startswith(_SIGNATURES) or (data[:4] == b"RIFF" and data[8:12] == b"WEBP"):
            raise BadRequest("image is corrupt or truncated: its header cannot be read") from exc
        raise UnsupportedMedia(f"payload is not a supported image ({', '.join(CONTENT_TYPES)})") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise BadRequest(f"image is corrupt or truncated: {exc}") from exc
    return ImageInfo(fmt, width, height)


def accepted_format(name: str | None) -> str:
    """The table's name for the format Pillow reports (an MPO is a JPEG); 415 naming any other."""
    fmt = SAME_AS.get(str(name), str(name))
    if fmt not in CONTENT_TYPES:
        raise UnsupportedMedia(f"image format {name} is not accepted (only {', '.join(CONTENT_TYPES)})")
    return fmt


def _refusal(violation: Violation) -> ServiceError:
    return (PayloadTooLarge if violation.status == 413 else BadRequest)(violation.message)


def _check_complete(img: Image.Image, fmt: str, data: bytes, decode_slots: int, decode_wait_s: float) -> None:
    """JPEG and PNG were checked by their structure (``structure_violation``); a WebP by its container length; the
    other formats by decoding them."""
    if fmt in ("JPEG", "PNG"):
        return
    if fmt == "WEBP":
        declared = int.from_bytes(data[4:8], "little") + 8
        if len(data) < declared:
            raise BadRequest(f"image is corrupt or truncated: the WebP holds {len(data)} of its {declared} bytes")
        return
    slots = _decode_slots(decode_slots)
    if not slots.acquire(timeout=decode_wait_s):
        raise Busy(f"too many {fmt} images are being checked at once; retry in a second")
    try:
        img.load()
    finally:
        slots.release()


@lru_cache(maxsize=8)
def _decode_slots(count: int) -> threading.BoundedSemaphore:
    """One semaphore per process (and slot count): shared by every handler thread of the process."""
    return threading.BoundedSemaphore(count)
