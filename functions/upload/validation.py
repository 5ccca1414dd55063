"""Cheap image checks with Pillow (never torch): format, dimensions, pixel count, decodability."""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from functions.common.errors import BadRequest, PayloadTooLarge, UnsupportedMedia

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


def inspect_image(data: bytes, max_pixels: int, max_side: int) -> ImageInfo:
    """Raise a 4xx ``ServiceError`` unless ``data`` is a complete image of a supported format and sane size."""
    if not data:
        raise BadRequest("payload is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=list(CONTENT_TYPES)) as img:
                width, height = img.size
                fmt = str(img.format)
                if width < 1 or height < 1:
                    raise BadRequest(f"image has empty dimensions {width}x{height}")
                if width > max_side or height > max_side:
                    raise PayloadTooLarge(f"image dimensions {width}x{height} exceed the {max_side} px side limit")
                if width * height > max_pixels:
                    raise PayloadTooLarge(f"image has {width * height} pixels, more than the limit of {max_pixels}")
                img.draft("RGB", (max(1, width // 8), max(1, height // 8)))  # JPEG: decode at 1/8 scale, still whole
                img.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise PayloadTooLarge(f"image rejected as a decompression bomb: {exc}") from exc
    except UnidentifiedImageError as exc:
        if data.startswith(_SIGNATURES) or (data[:4] == b"RIFF" and data[8:12] == b"WEBP"):
            raise BadRequest("image is corrupt or truncated: its header cannot be read") from exc
        raise UnsupportedMedia(f"payload is not a supported image ({', '.join(CONTENT_TYPES)})") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise BadRequest(f"image is corrupt or truncated: {exc}") from exc
    return ImageInfo(fmt, width, height)
