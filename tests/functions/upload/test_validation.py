"""A JPEG is accepted by its structure (headers parse, an end-of-image marker follows the scan), not by decoding; an
MPO is a JPEG; an image whose structure would cost too much to parse or decode is refused before Pillow reads it."""

from __future__ import annotations

import io
import re
import zlib

import pytest
from PIL import Image

from functions.common.errors import BadRequest, Busy, PayloadTooLarge, UnsupportedMedia
from functions.common.image_limits import ImageLimits
from functions.common.image_structure import MAX_GIF_BLOCKS, MAX_JPEG_SEGMENTS, MAX_PNG_CHUNKS, MAX_TIFF_STRIPS
from functions.common.settings import Settings
from functions.upload import validation
from functions.upload.service import stage
from functions.upload.validation import _check_complete, _decode_slots, accepted_format, inspect_image
from tests.functions.common.test_image_structure import tiff_of_strips
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
    message = r"^image is corrupt or truncated: the JPEG has no end-of-image marker after its scan data$"
    with pytest.raises(BadRequest, match=message):
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


def test_refusals_say_exactly_what_is_wrong() -> None:
    with pytest.raises(BadRequest) as empty:
        inspect_image(b"", LIMITS)
    assert empty.value.message == "payload is empty"
    with pytest.raises(UnsupportedMedia) as text:
        inspect_image(b"plain text, not an image", LIMITS)
    assert text.value.message == "payload is not a supported image (JPEG, PNG, WEBP, GIF, BMP, TIFF)"


@pytest.mark.parametrize(
    "header",
    [b"\x89PNG\r\n\x1a\n" + b"\x00" * 30, b"RIFF\x10\x00\x00\x00WEBPJUNK" + b"\x00" * 20, b"GIF89a\x00", b"BM\x00"],
    ids=["png", "webp", "gif", "bmp"],
)
def test_a_known_signature_with_an_unreadable_header_is_corrupt_not_unsupported(header: bytes) -> None:
    with pytest.raises(BadRequest) as caught:
        inspect_image(header, LIMITS)
    assert not isinstance(caught.value, UnsupportedMedia)
    assert caught.value.message == "image is corrupt or truncated: its header cannot be read"


def test_riff_that_is_not_webp_is_unsupported() -> None:
    with pytest.raises(UnsupportedMedia):
        inspect_image(b"RIFF\x10\x00\x00\x00WAVEfmt " + b"\x00" * 20, LIMITS)


def test_the_webp_container_length_is_checked_even_where_pillow_would_not_notice() -> None:
    """Pillow 13 refuses a truncated WebP itself (at open); the RIFF length check stays as the backstop for the
    decoders that read lazily, and says how much arrived."""
    whole = _encoded("WEBP", (64, 48), "RGB", lossless=True)
    declared = int.from_bytes(whole[4:8], "little") + 8
    assert declared == len(whole)
    _check_complete(None, "WEBP", whole, 2, 0.0)  # type: ignore[arg-type]  # the image is not read for WebP
    with pytest.raises(BadRequest) as caught:
        _check_complete(None, "WEBP", whole[:-3], 2, 0.0)  # type: ignore[arg-type]
    assert caught.value.message == (
        f"image is corrupt or truncated: the WebP holds {len(whole) - 3} of its {declared} bytes"
    )


def test_too_many_pixels_is_413_and_a_bomb_names_itself() -> None:
    with pytest.raises(PayloadTooLarge) as caught:
        inspect_image(_encoded("PNG", (300, 200)), ImageLimits(max_pixels=50_000))
    assert caught.value.message == "image has 60000 pixels, more than the limit of 50000"
    with pytest.raises(PayloadTooLarge, match=r"^image rejected as a decompression bomb: Image size"):
        inspect_image(_encoded("PNG", (12_000, 12_000), mode="1"), ImageLimits(max_pixels=10**9, max_side=10**6))


@pytest.mark.parametrize("fmt", ["ICO", "PCX", "TGA", "PPM"])
def test_formats_pillow_reads_but_we_do_not_accept_are_unsupported(fmt: str) -> None:
    with pytest.raises(UnsupportedMedia):
        inspect_image(_encoded(fmt, (32, 32), "RGB"), LIMITS)


def _mpo() -> bytes:
    """A multi-picture JPEG as phone cameras write it: a 451x300 first picture, a smaller second one."""
    first = Image.open(io.BytesIO(photo("chelsea.jpg")))
    buffer = io.BytesIO()
    first.save(buffer, "MPO", save_all=True, append_images=[first.resize((120, 80))])
    return buffer.getvalue()


def test_a_multi_picture_jpeg_is_staged_as_a_jpeg_of_its_first_picture() -> None:
    """Through ``stage``, the check and addressing ``POST /image`` and ``POST /images`` run on every file."""
    data = _mpo()
    with Image.open(io.BytesIO(data)) as img:
        assert (img.format, getattr(img, "n_frames", 1)) == ("MPO", 2)
    staged = stage(Settings(), "11111111-2222-4333-8444-555555555555", 7, 5, data)
    assert staged.content_type == "image/jpeg" and staged.blob_key.endswith(".jpg")
    info = inspect_image(data, LIMITS)
    assert (info.format, info.width, info.height) == ("JPEG", 451, 300)


def test_a_format_pillow_names_that_the_table_lacks_is_a_415_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(validation, "SAME_AS", {})  # as if MPO had no entry: Pillow still reports it
    with pytest.raises(UnsupportedMedia) as caught:
        inspect_image(_mpo(), LIMITS)
    assert caught.value.message == "image format MPO is not accepted (only JPEG, PNG, WEBP, GIF, BMP, TIFF)"
    with pytest.raises(UnsupportedMedia, match=r"^image format None is not accepted"):
        accepted_format(None)


def _scan_bomb(scans: int) -> bytes:
    """A progressive JPEG from Pillow (10 scans) with one small scan repeated up to ``scans`` scans."""
    buffer = io.BytesIO()
    Image.new("RGB", (512, 512), (120, 130, 140)).save(buffer, "JPEG", progressive=True)
    data = buffer.getvalue()
    starts = [m.start() for m in re.finditer(rb"\xff\xda", data)]
    end = data.rindex(b"\xff\xd9")
    scan = min((data[a:b] for a, b in zip(starts[1:], [*starts[2:], end], strict=True)), key=len)
    return data[:end] + scan * (scans - len(starts)) + data[end:]


def test_a_progressive_jpeg_beyond_the_scan_limit_is_413_and_one_at_it_is_accepted() -> None:
    assert inspect_image(_scan_bomb(100), LIMITS).format == "JPEG"
    with pytest.raises(PayloadTooLarge, match=r"^the JPEG has more than 100 scans \(MAX_JPEG_SCANS;"):
        inspect_image(_scan_bomb(20_000), LIMITS)
    with pytest.raises(PayloadTooLarge, match=r"more than 12 scans"):
        inspect_image(_scan_bomb(13), ImageLimits(max_jpeg_scans=12))


def _png_chunk(kind: bytes) -> bytes:
    return b"\x00\x00\x00\x00" + kind + zlib.crc32(kind).to_bytes(4, "big")


def _floods() -> dict[str, bytes]:
    """One file per shape whose cost Pillow pays per structure, not per byte, each just past its cap (the TIFF:
    1001x20000 px, within every size limit, and one strip more than it has rows)."""
    jpeg, png, gif = photo("chelsea.jpg"), _encoded("PNG", (64, 48), "RGB"), _encoded("GIF", (64, 48), "P")
    return {
        "jpeg-segments": jpeg[:2] + b"\xff\xfe\x00\x02" * MAX_JPEG_SEGMENTS + jpeg[2:],
        "png-chunks": png[:33] + _png_chunk(b"tEXt") * MAX_PNG_CHUNKS + png[33:],
        "gif-blocks": gif[:13] + b"\x21\xfe\x00" * (MAX_GIF_BLOCKS + 1) + gif[13:],
        "tiff-strips": tiff_of_strips(MAX_TIFF_STRIPS + 1, width=1001, height=20_000),
    }


@pytest.mark.parametrize("name", ["jpeg-segments", "png-chunks", "gif-blocks", "tiff-strips"])
def test_a_flood_of_structures_is_413_before_pillow_parses_it(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    data = _floods()[name]

    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("Pillow opened an image whose structure was beyond a cap")

    monkeypatch.setattr(Image, "open", never)
    with pytest.raises(PayloadTooLarge, match=r"^the (JPEG|PNG|GIF|TIFF) has (more than )?\d+ "):
        inspect_image(data, LIMITS)
