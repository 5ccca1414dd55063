"""Cheap image checks with Pillow (never torch): format, dimensions and aspect ratio, completeness.

Most formats are checked by their structure, without decoding: a JPEG's headers parse (Pillow reads them up to
the first scan) and an end-of-image marker follows the scan data; a PNG's chunks all pass their CRCs up to IEND
(Pillow's ``verify``, which does not inflate the pixels); a WebP's RIFF container holds as many bytes as its
header says. A truncated upload is refused; an image corrupt inside its compressed data is accepted, and infer
(which decodes it anyway) answers ``failed`` when it cannot. Entropy-decoding JPEGs here was ~10% of the HTTP
process's CPU per upload, and a 1.5 KB lossless WebP can decode to 160 MB.

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

from functions.common.errors import BadRequest, Busy, PayloadTooLarge, UnsupportedMedia
from functions.common.image_limits import ImageLimits

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
    """Raise a 4xx ``ServiceError`` unless ``data`` is a complete image of a supported format and sane size
    (``Busy``, a 503, when a full decode finds no free slot)."""
    if not data:
        raise BadRequest("payload is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=list(CONTENT_TYPES)) as img:
                width, height = img.size
                fmt = str(img.format)
                if (violation := limits.violation(width, height)) is not None:
                    raise (PayloadTooLarge if violation.status == 413 else BadRequest)(violation.message)
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


def _check_complete(img: Image.Image, fmt: str, data: bytes, decode_slots: int, decode_wait_s: float) -> None:
    if fmt == "JPEG":
        _check_jpeg_ends(data)
    elif fmt == "PNG":
        img.verify()  # every chunk's CRC up to IEND; the pixel data is not inflated
    elif fmt == "WEBP":
        declared = int.from_bytes(data[4:8], "little") + 8
        if len(data) < declared:
            raise BadRequest(f"image is corrupt or truncated: the WebP holds {len(data)} of its {declared} bytes")
    else:
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


def _jpeg_scan_start(data: bytes) -> int:
    """Where the first scan's entropy-coded data begins: after the SOS segment (markers walked from SOI; Pillow
    has already parsed them, but does not say where the scan starts)."""
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            break
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        length = int.from_bytes(data[i + 2 : i + 4], "big")
        if marker == 0xDA:  # SOS
            return i + 2 + length
        i += 2 + length
    raise BadRequest("image is corrupt or truncated: the JPEG has no scan data")


def _check_jpeg_ends(data: bytes) -> None:
    """An EOI marker (FF D9) after the start of the scan data (one in a header segment, e.g. in an EXIF
    thumbnail, comes before it and does not count). FF D9 cannot occur inside entropy-coded data."""
    if data.rfind(b"\xff\xd9", _jpeg_scan_start(data)) < 0:
        raise BadRequest("image is corrupt or truncated: the JPEG has no end-of-image marker after its scan data")
