"""A JPEG is accepted by its structure (headers parse, an end-of-image marker follows the scan), not by decoding."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from functions.common.errors import BadRequest
from functions.upload.validation import inspect_image
from tests.helpers import photo

LIMITS = (40_000_000, 20_000)


def _with_comment(jpeg: bytes, text: bytes) -> bytes:
    """The same JPEG with a COM segment right after SOI (a marker in it must not count)."""
    return jpeg[:2] + b"\xff\xfe" + (len(text) + 2).to_bytes(2, "big") + text + jpeg[2:]


@pytest.mark.parametrize("progressive", [False, True])
def test_complete_jpeg_is_accepted_with_its_dimensions(progressive: bool) -> None:
    buffer = io.BytesIO()
    Image.open(io.BytesIO(photo("chelsea.jpg"))).save(buffer, "JPEG", progressive=progressive)
    info = inspect_image(buffer.getvalue() + b"trailing bytes some cameras append", *LIMITS)
    assert (info.format, info.width, info.height) == ("JPEG", 451, 300)


@pytest.mark.parametrize("cut", [2, 1, 500, 15_000])
def test_jpeg_cut_anywhere_in_its_scan_is_refused(cut: int) -> None:
    with pytest.raises(BadRequest, match="no end-of-image marker"):
        inspect_image(photo("chelsea.jpg")[:-cut], *LIMITS)


def test_an_end_marker_before_the_scan_does_not_make_a_cut_jpeg_whole() -> None:
    """An EXIF thumbnail (or any header segment) may hold FF D9 of its own, before the main scan starts."""
    data = _with_comment(photo("chelsea.jpg"), b"thumbnail \xff\xd9 ends here")
    assert inspect_image(data, *LIMITS).format == "JPEG"
    with pytest.raises(BadRequest, match="no end-of-image marker"):
        inspect_image(data[:-500], *LIMITS)
