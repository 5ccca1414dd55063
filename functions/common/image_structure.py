"""What an image's structure will cost, read from its bytes before any decoder (or Pillow's header parser) runs.

A small file can cost more than its pixels: a progressive JPEG makes the decoder pass over every block once per
scan, and nothing in the format bounds the number of scans (libjpeg-turbo calls this LJT-01-003 and offers a
scan limit for "security-critical applications": ``TJPARAM_SCANLIMIT`` in ``src/turbojpeg.h``, ``djpeg -maxscans``
in ``doc/djpeg.1``; its own decompression fuzzer, ``fuzz/decompress.cc``, sets 100; see
https://libjpeg-turbo.org/pmwiki/uploads/About/TwoIssueswiththeJPEGStandard.pdf). Here a 4 MP scan costs ~2.5 ms, so
20,000 repeats of one 16-byte scan are 345 KB and ~50 s of CPU. Pillow's own parsers walk a file in Python, one
step per JPEG segment, PNG chunk, GIF block or TIFF strip (a 4 MB JPEG of a million empty segments takes ~0.9 s to
open, an 8 MB TIFF of a million strip offsets ~5 s); PNG text chunks each inflate up to 1 MB (Pillow's
``MAX_TEXT_CHUNK``, CVE-2014-9601, whose fix "doesn't defend against images that have many just under the limit
text segments", python-pillow/Pillow#1060); a BMP's run-length code is decoded in Python, one step per run.

So each of those is counted here, in C-speed searches or in a loop that stops at its cap, and an image beyond a cap
is refused (413) before anything decodes it. The caps sit above what encoders write: libjpeg writes 10 scans per
progressive colour JPEG (6 for grey), and a JPEG's metadata segments hold up to 64 KB each (~160 in a 10 MB file);
libpng writes 8 KB IDAT chunks (1,280 for a 10 MB PNG); real TIFFs have a few dozen tags and at most one strip per
row. ``MAX_JPEG_SCANS`` is a setting (``ImageLimits.max_jpeg_scans``); the structural caps are constants. Cost at a
cap, measured on 2 vCPU: 100 scans of a 4 MP JPEG ~0.25 s to decode (in infer); 20,000 one-row TIFF strips ~90 ms to
decode at upload; the rest a few ms.

Structural faults that make a JPEG or PNG unreadable (cut short, a failed chunk CRC) are 400s, as is a JPEG whose
scan data is not followed by an end-of-image marker.
"""

from __future__ import annotations

import re
import struct
import zlib
from collections.abc import Callable

from .image_limits import ImageLimits, Violation

MAX_JPEG_SEGMENTS = 1024
MAX_PNG_CHUNKS = 4096
MAX_PNG_COMPRESSED_CHUNKS = 16  # zTXt, compressed iTXt, iCCP: each inflates up to 1 MB in Pillow
MAX_GIF_BLOCKS = 4096  # extension sub-blocks (and stray bytes) before the first image
MAX_TIFF_ENTRIES = 1024  # tags in the first directory
MAX_TIFF_STRIPS = 20_000  # strips or tiles: one per row of the tallest image the default limits allow
MAX_BMP_RLE_BYTES = 256 * 1024  # ~35 ms of Pillow's Python run-length decoder at its slowest (1-pixel runs)

# A marker that starts a segment (or ends the image), after any fill bytes. FF 00 inside scan data is a stuffed
# byte and FF D0-D7 a restart marker; neither ends a scan. SOI (D8) and the reserved 01-BF never start one.
_SEGMENT = re.compile(rb"\xff+([\xc0-\xcf\xd9-\xfe])")
_NEXT_MARKER = re.compile(rb"\xff[\xc0-\xcf\xd9-\xfe]")
_SOS, _EOI = 0xDA, 0xD9
_NO_SCAN = Violation(400, "image is corrupt or truncated: the JPEG has no scan data")
_NO_END = Violation(400, "image is corrupt or truncated: the JPEG has no end-of-image marker after its scan data")
_CHUNK_HEAD = struct.Struct(">I4s")


class _Refused(Exception):
    def __init__(self, violation: Violation) -> None:
        super().__init__(violation.message)
        self.violation = violation


def _too_costly(message: str) -> _Refused:
    return _Refused(Violation(413, message))


def structure_violation(data: bytes, limits: ImageLimits) -> Violation | None:
    """What makes ``data`` too costly (413) or structurally broken (400) to decode, or ``None``. Formats are told
    by their signature; a format not checked here (WebP, whose container libwebp parses in C) or a header too
    short to read is left to the decoder, which refuses it as it would."""
    for signatures, check in _CHECKS:
        if data.startswith(signatures):
            try:
                check(data, limits)
            except _Refused as refused:
                return refused.violation
            return None
    return None


def _jpeg_scan_start(data: bytes) -> tuple[int, int]:
    """Where the first scan's entropy-coded data begins (after its SOS segment), and how many segments precede
    it: the header segments walked from SOI by their lengths, as a decoder reads them."""
    pos, segments = 2, 0
    while True:
        marker = _SEGMENT.match(data, pos)
        if marker is None or marker[1][0] == _EOI:
            raise _Refused(_NO_SCAN)
        segments += 1
        if segments > MAX_JPEG_SEGMENTS:
            raise _too_costly(f"the JPEG has more than {MAX_JPEG_SEGMENTS} marker segments before its first scan")
        end = _segment_end(data, marker.end(), _NO_SCAN)
        if marker[1][0] == _SOS:
            return end, segments
        pos = end


def _segment_end(data: bytes, start: int, refusal: Violation) -> int:
    """Where the marker segment whose length field is at ``start`` ends; ``refusal`` when the length cannot be."""
    length = int.from_bytes(data[start : start + 2], "big")
    if length < 2 or start + length > len(data):
        raise _Refused(refusal)
    return start + length


def _check_jpeg(data: bytes, limits: ImageLimits) -> None:
    """Walk from SOI to the first EOI after the scans, counting scans and segments. Scan data is skipped by a
    regular expression (~0.4 ms per MB, faster than even counting FF DA), segments between scans by their lengths;
    an FF D9 in a header segment (an EXIF thumbnail's) is skipped with it, and bytes after that EOI (a second
    picture of an MPO, a camera's trailer) are not read."""
    scan_start, segments = _jpeg_scan_start(data)
    pos, scans = scan_start, 1
    while (marker := _NEXT_MARKER.search(data, pos)) is not None:
        if data[marker.start() + 1] == _EOI:
            return
        segments += 1
        if segments > MAX_JPEG_SEGMENTS:
            raise _too_costly(f"the JPEG has more than {MAX_JPEG_SEGMENTS} marker segments")
        end = _segment_end(data, marker.end(), _NO_END)
        if data[marker.start() + 1] == _SOS:
            scans += 1
            if scans > limits.max_jpeg_scans:
                raise _too_costly(
                    f"the JPEG has more than {limits.max_jpeg_scans} scans (MAX_JPEG_SCANS; a progressive photo has "
                    "about 10), and each scan is a pass of the decoder over the whole image"
                )
        pos = end
    raise _Refused(_NO_END)


def _check_png(data: bytes, limits: ImageLimits) -> None:
    """Every chunk up to IEND is whole and passes its CRC (what Pillow's ``verify`` checked), within the caps. The
    walk starts at the signature whatever the first chunk is: Pillow reads chunks placed before IHDR too."""
    view = memoryview(data)
    pos, chunks, compressed = 8, 0, 0
    while True:
        fault = ""
        if pos + 12 > len(data):
            fault = "the PNG ends before its IEND chunk"
        else:
            length, kind = _CHUNK_HEAD.unpack_from(data, pos)
            end = pos + 12 + length
            chunks += 1
            if chunks > MAX_PNG_CHUNKS:
                raise _too_costly(f"the PNG has more than {MAX_PNG_CHUNKS} chunks")
            if end > len(data):
                fault = "the PNG ends inside a chunk"
            elif zlib.crc32(view[pos + 4 : end - 4]) != int.from_bytes(view[end - 4 : end], "big"):
                fault = f"the PNG's {kind.decode('latin-1')} chunk fails its CRC"
        if fault:
            fault = fault if chunks > 1 else "its header cannot be read"
            raise _Refused(Violation(400, f"image is corrupt or truncated: {fault}"))
        if kind in (b"zTXt", b"iCCP") or (kind == b"iTXt" and _itxt_compressed(data, pos + 8, end - 4)):
            compressed += 1
            if compressed > MAX_PNG_COMPRESSED_CHUNKS:
                raise _too_costly(
                    f"the PNG has more than {MAX_PNG_COMPRESSED_CHUNKS} compressed metadata chunks (zTXt, iTXt, iCCP)"
                )
        if kind == b"IEND":
            return
        pos = end


def _itxt_compressed(data: bytes, start: int, end: int) -> bool:
    """An iTXt chunk's compression flag: the byte after its keyword (1-79 bytes) and the NUL that ends it."""
    nul = data.find(b"\x00", start, min(end, start + 80))
    return 0 <= nul < end - 1 and data[nul + 1] == 1


def _check_gif(data: bytes, limits: ImageLimits) -> None:
    """Count the blocks Pillow reads one by one in Python before the first image descriptor (0x2C): extensions,
    their sub-blocks, and any stray byte. The image data itself is read by Pillow's C decoder."""
    if len(data) < 13:
        return
    flags = data[10]
    pos = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)  # after the global colour table
    blocks = 0
    while pos < len(data) and data[pos] not in (0x2C, 0x3B):  # an image, or the trailer
        if data[pos] == 0x21:  # an extension: introducer, label, then sub-blocks up to an empty one
            pos += 2
            while pos < len(data) and data[pos]:
                blocks = _one_more_gif_block(blocks)
                pos += data[pos] + 1
        blocks = _one_more_gif_block(blocks)
        pos += 1


def _one_more_gif_block(blocks: int) -> int:
    if blocks >= MAX_GIF_BLOCKS:
        raise _too_costly(f"the GIF has more than {MAX_GIF_BLOCKS} blocks before its first image")
    return blocks + 1


def _check_tiff(data: bytes, limits: ImageLimits) -> None:
    """The first directory's tag count, and how many strips or tiles it points at: Pillow builds one Python tile
    (and a decoder) per offset, however many the image needs."""
    order = "<" if data[:2] == b"II" else ">"
    big = data[2:4] in (b"+\x00", b"\x00+")  # BigTIFF: 8-byte offsets and counts, 20-byte entries
    offset, count, entry = (struct.Struct(order + code) for code in (("Q", "Q", "HHQ") if big else ("I", "H", "HHI")))
    if len(data) < 16:
        return
    directory = offset.unpack_from(data, 8 if big else 4)[0]
    if directory + count.size > len(data):
        return
    entries = count.unpack_from(data, directory)[0]
    if entries > MAX_TIFF_ENTRIES:
        raise _too_costly(f"the TIFF's first directory has {entries} entries, more than {MAX_TIFF_ENTRIES}")
    for i in range(entries):
        at = directory + count.size + i * (entry.size + offset.size)  # tag, type, count, then value or offset
        if at + entry.size > len(data):
            return
        tag, _, pieces = entry.unpack_from(data, at)
        if tag in (273, 324) and pieces > MAX_TIFF_STRIPS:  # StripOffsets, TileOffsets
            raise _too_costly(f"the TIFF has {pieces} strips or tiles, more than {MAX_TIFF_STRIPS}")


def _check_bmp(data: bytes, limits: ImageLimits) -> None:
    """Pillow decodes RLE8/RLE4 bitmaps in Python, one step per 2-byte run: bound the run-length data."""
    if len(data) < 34 or int.from_bytes(data[14:18], "little") < 40:  # a header without a compression field
        return
    compression = int.from_bytes(data[30:34], "little")
    encoded = len(data) - int.from_bytes(data[10:14], "little")
    if compression in (1, 2) and encoded > MAX_BMP_RLE_BYTES:
        raise _too_costly(f"the BMP's run-length-encoded pixel data is {encoded} bytes, more than {MAX_BMP_RLE_BYTES}")


_CHECKS: tuple[tuple[tuple[bytes, ...], Callable[[bytes, ImageLimits], None]], ...] = (
    ((b"\xff\xd8\xff",), _check_jpeg),
    ((b"\x89PNG\r\n\x1a\n",), _check_png),
    ((b"GIF87a", b"GIF89a"), _check_gif),
    ((b"II*\x00", b"MM\x00*", b"II\x00*", b"MM*\x00", b"II+\x00", b"MM\x00+"), _check_tiff),  # as Pillow's PREFIXES
    ((b"BM",), _check_bmp),
)
