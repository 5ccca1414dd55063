"""What an image costs, read before decoding: ordinary files of every format pass, each hostile shape is refused at
its cap (the cap itself passes), and structural faults in JPEG and PNG say what is wrong."""

from __future__ import annotations

import io
import re
import struct
import zlib

import pytest
from PIL import Image

from functions.common.image_limits import ImageLimits, Violation
from functions.common.image_structure import (
    MAX_BMP_RLE_BYTES,
    MAX_GIF_BLOCKS,
    MAX_JPEG_SEGMENTS,
    MAX_PNG_CHUNKS,
    MAX_PNG_COMPRESSED_CHUNKS,
    MAX_TIFF_ENTRIES,
    MAX_TIFF_STRIPS,
    _jpeg_scan_start,
    structure_violation,
)
from tests.helpers import photo

LIMITS = ImageLimits()
NO_SCAN = Violation(400, "image is corrupt or truncated: the JPEG has no scan data")
NO_END = Violation(400, "image is corrupt or truncated: the JPEG has no end-of-image marker after its scan data")


def _saved(img: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, fmt, **options)
    return buffer.getvalue()


def _scene(mode: str = "RGB", size: tuple[int, int] = (96, 64)) -> Image.Image:
    return Image.open(io.BytesIO(photo("chelsea.jpg"))).convert(mode).resize(size)


@pytest.mark.parametrize(
    ("fmt", "mode", "options"),
    [
        ("JPEG", "RGB", {}),
        ("JPEG", "RGB", {"progressive": True}),
        ("JPEG", "L", {"progressive": True}),
        ("JPEG", "CMYK", {}),
        ("JPEG", "RGB", {"restart_marker_blocks": 1}),  # FF D0-D7 inside the scan data do not end it
        ("PNG", "RGB", {}),
        ("PNG", "P", {"optimize": True}),
        ("PNG", "I;16", {}),
        ("GIF", "P", {}),
        ("GIF", "P", {"comment": b"x" * 5000}),  # a comment of many sub-blocks
        ("TIFF", "RGB", {}),
        ("TIFF", "RGB", {"compression": "tiff_deflate"}),
        ("TIFF", "RGB", {"big_tiff": True}),
        ("BMP", "RGB", {}),
        ("WEBP", "RGB", {}),
    ],
)
def test_ordinary_images_of_every_format_pass(fmt: str, mode: str, options: dict[str, object]) -> None:
    assert structure_violation(_saved(_scene(mode), fmt, **options), LIMITS) is None


def test_a_multi_picture_jpeg_passes_and_its_second_picture_is_not_read() -> None:
    second = _saved(_scene(), "JPEG", progressive=True)
    mpo = _saved(_scene(), "MPO", save_all=True, append_images=[_scene(size=(40, 30))])
    assert structure_violation(mpo, LIMITS) is None
    assert structure_violation(photo("chelsea.jpg") + second * 20, LIMITS) is None  # 200 scans after its EOI


def _progressive(extra_scans: int) -> bytes:
    """A real progressive JPEG from Pillow (10 scans), with its smallest refinement scan repeated ``extra_scans``
    times before EOI: the shape of a scan bomb, each repeat another pass of the decoder over every block."""
    data = _saved(Image.new("RGB", (64, 64), (120, 130, 140)), "JPEG", progressive=True)
    starts = [m.start() for m in re.finditer(rb"\xff\xda", data)]
    end = data.rindex(b"\xff\xd9")
    assert len(starts) == 10
    scans = [data[a:b] for a, b in zip(starts, [*starts[1:], end], strict=True)]
    return data[:end] + min(scans[1:], key=len) * extra_scans + data[end:]


def test_scans_up_to_the_limit_pass_and_one_more_is_413_naming_the_setting() -> None:
    assert structure_violation(_progressive(90), LIMITS) is None
    refused = structure_violation(_progressive(91), LIMITS)
    assert refused is not None and refused.status == 413
    assert refused.message.startswith("the JPEG has more than 100 scans (MAX_JPEG_SCANS;")
    assert structure_violation(_progressive(0), ImageLimits(max_jpeg_scans=9)) is not None
    assert structure_violation(_progressive(20_000), LIMITS) == refused  # 20,000 repeats: ~50 s of decoding


def _with_segments(jpeg: bytes, segment: bytes, count: int) -> bytes:
    return jpeg[:2] + segment * count + jpeg[2:]


def test_marker_bytes_inside_header_segments_are_not_scans() -> None:
    """FF DA and FF D9 in a comment (as in an EXIF thumbnail) are skipped with the segment that holds them."""
    text = b"\xff\xda\xff\xd9" * 100
    comment = b"\xff\xfe" + (len(text) + 2).to_bytes(2, "big") + text
    data = _with_segments(photo("chelsea.jpg"), comment, 1)
    assert structure_violation(data, ImageLimits(max_jpeg_scans=1)) is None
    assert structure_violation(data[:-100], LIMITS) == NO_END


def test_header_segments_up_to_the_cap_pass_and_more_are_413() -> None:
    jpeg = photo("chelsea.jpg")
    header_segments = _jpeg_scan_start(jpeg)[1]
    empty_comment = b"\xff\xfe\x00\x02"
    assert structure_violation(_with_segments(jpeg, empty_comment, MAX_JPEG_SEGMENTS - header_segments), LIMITS) is None
    flood = _with_segments(jpeg, empty_comment, 1_000_000)  # 4 MB: Pillow alone takes ~0.9 s to open it
    assert structure_violation(flood, LIMITS) == Violation(
        413, f"the JPEG has more than {MAX_JPEG_SEGMENTS} marker segments before its first scan"
    )


def test_segments_between_scans_count_too() -> None:
    jpeg = photo("chelsea.jpg")
    eoi = jpeg.rindex(b"\xff\xd9")
    flood = jpeg[:eoi] + b"\xff\xfe\x00\x02" * MAX_JPEG_SEGMENTS + jpeg[eoi:]
    assert structure_violation(flood, LIMITS) == Violation(
        413, f"the JPEG has more than {MAX_JPEG_SEGMENTS} marker segments"
    )


def _sos_offset(jpeg: bytes) -> int:
    """Where the scan data starts, found the plain way: the SOS marker (FF DA) and its segment length."""
    sos = jpeg.index(b"\xff\xda")
    return sos + 2 + int.from_bytes(jpeg[sos + 2 : sos + 4], "big")


def test_the_scan_start_is_found_after_every_header_segment() -> None:
    jpeg = photo("chelsea.jpg")
    assert _jpeg_scan_start(jpeg)[0] == _sos_offset(jpeg)
    for fill in (1, 2, 3):  # fill bytes before a marker (allowed by the spec), odd and even counts
        padded = jpeg[:2] + b"\xff" * fill + jpeg[2:]
        assert _jpeg_scan_start(padded)[0] == _sos_offset(jpeg) + fill
    commented = jpeg[:2] + b"\xff\xfe" + (302).to_bytes(2, "big") + b"x" * 300 + jpeg[2:]
    assert _jpeg_scan_start(commented)[0] == _sos_offset(jpeg) + 304


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (photo("chelsea.jpg")[:20], NO_SCAN),
        (photo("chelsea.jpg")[:100], NO_SCAN),
        (b"\xff\xd8\xff\x00\x00\x00" + photo("chelsea.jpg"), NO_SCAN),
        (b"\xff\xd8\xff\xfe\x00\x01" + photo("chelsea.jpg")[2:], NO_SCAN),  # a segment length below 2
        (photo("chelsea.jpg")[:-2], NO_END),
        (photo("chelsea.jpg")[:-5000], NO_END),
    ],
    ids=["cut-in-a-header", "cut-before-sos", "no-marker-after-soi", "impossible-length", "no-eoi", "cut-in-scan"],
)
def test_a_broken_jpeg_says_where(data: bytes, expected: Violation) -> None:
    assert structure_violation(data, LIMITS) == expected


def _chunk(kind: bytes, body: bytes = b"") -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png_with(chunks: bytes) -> bytes:
    """A real PNG with ``chunks`` inserted after IHDR (before IDAT: Pillow parses them when it opens the file)."""
    png = _saved(_scene(), "PNG")
    return png[:33] + chunks + png[33:]


def _chunk_count(png: bytes) -> int:
    pos, count = 8, 0
    while pos < len(png):
        pos += 12 + int.from_bytes(png[pos : pos + 4], "big")
        count += 1
    return count


def test_png_chunks_up_to_the_cap_pass_and_more_are_413() -> None:
    present = _chunk_count(_png_with(b""))
    assert structure_violation(_png_with(_chunk(b"tEXt") * (MAX_PNG_CHUNKS - present)), LIMITS) is None
    png = _saved(_scene(), "PNG")
    after_idat = png[:-12] + _chunk(b"tEXt") * MAX_PNG_CHUNKS + _chunk(b"IEND")
    before_ihdr = png[:8] + _chunk(b"tEXt", b"a\x00b") * MAX_PNG_CHUNKS + png[8:]  # Pillow reads these too
    for flood in (_png_with(_chunk(b"tEXt") * 350_000), after_idat, before_ihdr):
        assert structure_violation(flood, LIMITS) == Violation(413, f"the PNG has more than {MAX_PNG_CHUNKS} chunks")


def test_compressed_png_metadata_is_bounded_in_count() -> None:
    """Pillow inflates each zTXt/iTXt/iCCP up to 1 MB: 17 of ~1 KB each would be 17 MB (64 MB before its own cap)."""
    bomb = zlib.compress(b"\x00" * ((1 << 20) - 1), 9)
    ztxt = _chunk(b"zTXt", b"Comment\x00\x00" + bomb)
    itxt = _chunk(b"iTXt", b"Comment\x00\x01\x00\x00\x00" + bomb)
    plain_itxt = _chunk(b"iTXt", b"Comment\x00\x00\x00\x00\x00" + b"\x01" * 100)
    cap = MAX_PNG_COMPRESSED_CHUNKS
    assert structure_violation(_png_with(ztxt * (cap // 2) + itxt * (cap - cap // 2) + plain_itxt * 50), LIMITS) is None
    expected = Violation(413, f"the PNG has more than {cap} compressed metadata chunks (zTXt, iTXt, iCCP)")
    assert structure_violation(_png_with(ztxt * cap + itxt), LIMITS) == expected
    assert structure_violation(_png_with(_chunk(b"iCCP", b"icc\x00\x00" + bomb) * (cap + 1)), LIMITS) == expected


def test_a_broken_png_says_what_is_wrong() -> None:
    png = _saved(_scene(), "PNG")
    idat = png.index(b"IDAT") + 6
    corrupt = png[:idat] + bytes([png[idat] ^ 0xFF]) + png[idat + 1 :]
    assert structure_violation(corrupt, LIMITS) == Violation(
        400, "image is corrupt or truncated: the PNG's IDAT chunk fails its CRC"
    )
    assert structure_violation(png[:-20], LIMITS) == Violation(
        400, "image is corrupt or truncated: the PNG ends inside a chunk"
    )
    assert structure_violation(png[:-12], LIMITS) == Violation(
        400, "image is corrupt or truncated: the PNG ends before its IEND chunk"
    )
    assert structure_violation(b"\x89PNG\r\n\x1a\n" + b"\x00" * 30, LIMITS) == Violation(
        400, "image is corrupt or truncated: its header cannot be read"
    )


def _gif_with(blocks: bytes) -> bytes:
    """A real GIF with ``blocks`` inserted before its first image (after the global colour table)."""
    gif = _saved(_scene("P"), "GIF")
    table = 3 << ((gif[10] & 7) + 1) if gif[10] & 0x80 else 0
    return gif[: 13 + table] + blocks + gif[13 + table :]


def test_gif_blocks_before_the_first_image_are_bounded() -> None:
    expected = Violation(413, f"the GIF has more than {MAX_GIF_BLOCKS} blocks before its first image")
    empty_comment = b"\x21\xfe\x00"  # one block: Pillow reads it in Python
    assert structure_violation(_gif_with(empty_comment * MAX_GIF_BLOCKS), LIMITS) is None
    assert structure_violation(_gif_with(empty_comment * 1_300_000), LIMITS) == expected
    one_byte_sub_blocks = b"\x21\xfe" + b"\x01x" * MAX_GIF_BLOCKS + b"\x00"
    assert structure_violation(_gif_with(one_byte_sub_blocks), LIMITS) == expected
    assert structure_violation(_gif_with(b"\x00" * (MAX_GIF_BLOCKS + 1)), LIMITS) == expected  # stray bytes


def tiff_of_strips(
    strips: int, entries: int = 0, order: str = "<", width: int = 50, height: int | None = None
) -> bytes:
    """An uncompressed 8-bit TIFF, one row per strip, every strip offset pointing at the same row (Pillow builds a
    tile and a decoder per offset, even past the last row): ``entries`` unknown tags pad its directory."""
    e = struct.Struct(order + "HHII")
    row = bytes(width)
    directory = 8 + len(row)
    tags = 9 + entries
    arrays = directory + 2 + tags * 12 + 4
    fields = [(256, 4, 1, width), (257, 4, 1, height or strips), (258, 4, 1, 8), (259, 4, 1, 1), (262, 4, 1, 1)]
    fields += [(273, 4, strips, arrays), (277, 4, 1, 1), (278, 4, 1, 1), (279, 4, strips, arrays + 4 * strips)]
    fields += [(65000, 4, 1, 0)] * entries
    packed = b"".join(e.pack(*field) for field in fields)
    head = (b"II*\x00" if order == "<" else b"MM\x00*") + struct.pack(order + "I", directory)
    offsets = struct.pack(f"{order}{strips}I", *[8] * strips)
    counts = struct.pack(f"{order}{strips}I", *[len(row)] * strips)
    return head + row + struct.pack(order + "H", tags) + packed + b"\x00" * 4 + offsets + counts


@pytest.mark.parametrize("order", ["<", ">"])
def test_tiff_strips_and_tags_are_bounded(order: str) -> None:
    assert structure_violation(tiff_of_strips(1000, order=order), LIMITS) is None
    with Image.open(io.BytesIO(tiff_of_strips(1000, order=order))) as img:  # the crafted file is a TIFF Pillow reads
        assert (img.size, len(img.tile)) == ((50, 1000), 1000)
    strips = MAX_TIFF_STRIPS + 1
    assert structure_violation(tiff_of_strips(strips, order=order), LIMITS) == Violation(
        413, f"the TIFF has {strips} strips or tiles, more than {MAX_TIFF_STRIPS}"
    )
    entries = MAX_TIFF_ENTRIES + 1
    assert structure_violation(tiff_of_strips(10, entries - 9, order), LIMITS) == Violation(
        413, f"the TIFF's first directory has {entries} entries, more than {MAX_TIFF_ENTRIES}"
    )
    swapped = tiff_of_strips(strips, order=order)  # the byte-swapped magic number Pillow also accepts
    swapped = swapped[:2] + swapped[3:1:-1] + swapped[4:]
    assert structure_violation(swapped, LIMITS) == structure_violation(tiff_of_strips(strips, order=order), LIMITS)


def _rle8_bmp(encoded: int) -> bytes:
    """An 8-bit BMP, run-length encoded in 1-pixel runs (the slowest for Pillow's Python decoder)."""
    width = 100
    rows = encoded // (2 * width + 2)
    body = (b"\x01\x07" * width + b"\x00\x00") * rows + b"\x00\x01"
    palette = bytes(range(256)) * 4
    offset = 14 + 40 + len(palette)
    info = struct.pack("<IiiHHIIiiII", 40, width, rows, 1, 8, 1, len(body), 2835, 2835, 256, 0)
    return b"BM" + struct.pack("<IHHI", offset + len(body), 0, 0, offset) + info + palette + body


def test_run_length_bmp_data_is_bounded() -> None:
    small = _rle8_bmp(MAX_BMP_RLE_BYTES - 300)
    assert structure_violation(small, LIMITS) is None
    with Image.open(io.BytesIO(small)) as img:  # the crafted file is a BMP Pillow decodes
        img.load()
        assert img.getpixel((0, 0)) == 7
    big = _rle8_bmp(MAX_BMP_RLE_BYTES + 1000)
    refused = structure_violation(big, LIMITS)
    assert refused is not None and refused.status == 413
    assert refused.message.startswith("the BMP's run-length-encoded pixel data is ")
    assert structure_violation(_saved(_scene(size=(800, 600)), "BMP"), LIMITS) is None  # 1.4 MB, not run-length
