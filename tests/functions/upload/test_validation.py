"""A JPEG is accepted by its structure (headers parse, an end-of-image marker follows the scan), not by decoding."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from functions.common.errors import BadRequest, Busy
from functions.common.image_limits import ImageLimits
from functions.upload.validation import _decode_slots, inspect_image
from tests.helpers import photo

LIMITS = ImageLimits()


def _with_comment(jpeg: bytes, text: bytes) -> bytes:
    """The same JPEG with a COM segment right after SOI (a marker in it must not count)."""
    return jpeg[:2] + b"\xff\xfe" + (len(text) + 2).to_bytes(2, "big") + text + jpeg[2:]


@pytest.mark.parametrize("progressive", [False, True])
def test_complete_jpeg_is_accepted_with_its_dimensions(progressive: bool) -> None:
    buffer = io.BytesIO()
    Image.open(io.BytesIO(photo("chelsea.jpg"))).save(buffer, "JPEG", progressive=progressive)
    info = inspect_image(buffer.getvalue() + b"trailing bytes some cameras append", LIMITS)
    assert (info.format, info.width, info.height) == ("JPEG", 451, 300)


@pytest.mark.parametrize("cut", [2, 1, 500, 15_000])
def test_jpeg_cut_anywhere_in_its_scan_is_refused(cut: int) -> None:
    with pytest.raises(BadRequest, match="no end-of-image marker"):
        inspect_image(photo("chelsea.jpg")[:-cut], LIMITS)


def test_an_end_marker_before_the_scan_does_not_make_a_cut_jpeg_whole() -> None:
    """An EXIF thumbnail (or any header segment) may hold FF D9 of its own, before the main scan starts."""
    data = _with_comment(photo("chelsea.jpg"), b"thumbnail \xff\xd9 ends here")
    assert inspect_image(data, LIMITS).format == "JPEG"
    with pytest.raises(BadRequest, match="no end-of-image marker"):
        inspect_image(data[:-500], LIMITS)


def _encoded(fmt: str, size: tuple[int, int], mode: str = "L", **options: object) -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size).save(buffer, format=fmt, **options)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("fmt", "size"),
    [("PNG", (20_000, 1)), ("JPEG", (1, 19_000)), ("GIF", (4200, 200)), ("PNG", (10, 211))],
    ids=["png-20000x1", "jpeg-1x19000", "gif-21:1", "png-1:21.1"],
)
def test_an_extreme_aspect_ratio_is_refused_from_the_header(fmt: str, size: tuple[int, int]) -> None:
    with pytest.raises(BadRequest, match=r"aspect ratio of [0-9.]+:1, beyond the limit of 20:1 \(MAX_ASPECT_RATIO\)"):
        inspect_image(_encoded(fmt, size), LIMITS)


def test_a_panorama_within_the_limit_is_accepted() -> None:
    assert inspect_image(_encoded("JPEG", (4000, 200)), LIMITS).width == 4000


def test_a_lossless_webp_is_checked_by_its_container() -> None:
    """16383x2400 px in ~1.5 KB: decoding it would be 118 MB and ~1 s; its RIFF container is checked instead."""
    data = _encoded("WEBP", (16383, 2400), "RGB", lossless=True)
    assert len(data) < 4000
    with Image.open(io.BytesIO(data)) as img:
        assert img.size == (16383, 2400)
    assert inspect_image(data, LIMITS).format == "WEBP"
    grown = data[:4] + (int.from_bytes(data[4:8], "little") + 100).to_bytes(4, "little") + data[8:]
    for broken in (grown, data[:-10]):
        with pytest.raises(BadRequest, match="corrupt or truncated"):
            inspect_image(broken, LIMITS)


def test_a_png_is_checked_by_its_chunk_crcs() -> None:
    data = _encoded("PNG", (300, 200), "RGB")
    assert inspect_image(data, LIMITS).format == "PNG"
    with pytest.raises(BadRequest, match="corrupt or truncated"):
        inspect_image(data[:-20], LIMITS)
    idat = data.index(b"IDAT") + 6
    corrupt = data[:idat] + bytes([data[idat] ^ 0xFF]) + data[idat + 1 :]
    with pytest.raises(BadRequest, match="corrupt or truncated"):
        inspect_image(corrupt, LIMITS)


@pytest.mark.parametrize("fmt", ["GIF", "BMP", "TIFF"])
def test_formats_without_a_structural_check_are_decoded_and_a_truncated_one_refused(fmt: str) -> None:
    data = _encoded(fmt, (300, 200), "RGB" if fmt != "GIF" else "P")
    assert inspect_image(data, LIMITS).format == fmt
    with pytest.raises(BadRequest, match="corrupt or truncated"):
        inspect_image(data[: len(data) // 2], LIMITS)


def test_a_decode_that_finds_no_free_slot_is_busy_not_queued_without_bound() -> None:
    slots = _decode_slots(1)
    tiff = _encoded("TIFF", (300, 200), "RGB")
    assert slots.acquire(timeout=1)  # another request is decoding
    try:
        with pytest.raises(Busy, match="too many TIFF images are being checked at once") as caught:
            inspect_image(tiff, LIMITS, decode_slots=1, decode_wait_s=0.05)
        assert caught.value.status_code == 503 and caught.value.retry_after_s == 1
        assert inspect_image(photo("chelsea.jpg"), LIMITS, decode_slots=1, decode_wait_s=0.05).format == "JPEG"
    finally:
        slots.release()
    assert inspect_image(tiff, LIMITS, decode_slots=1, decode_wait_s=0.05).format == "TIFF"
