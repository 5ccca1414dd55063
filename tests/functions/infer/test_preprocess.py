"""The torch-free preprocessing against torchvision's own, step by step, and every ordinary image mode and format.

torchvision is the reference here only (the tests import it; ``functions.infer.preprocess`` never does).
"""

from __future__ import annotations

import io
import itertools

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps
from torchvision.models import ResNet18_Weights
from torchvision.transforms import functional as F

from functions.common.image_limits import ImageLimits
from functions.infer.catalog import LITE_PREPROCESSING, preprocessing_of
from functions.infer.preprocess import Preprocessing, UndecodableImage, _centre_crop, _resize_short_side, decode
from tests.helpers import photo

LIMITS = ImageLimits()
RESNET = preprocessing_of(ResNet18_Weights.IMAGENET1K_V1)


def _encoded(img: Image.Image, fmt: str, orientation: int | None = None) -> bytes:
    buffer = io.BytesIO()
    exif = img.getexif()
    if orientation is not None:
        exif[0x0112] = orientation
    img.save(buffer, format=fmt, exif=exif, **({"quality": 92} if fmt == "JPEG" else {}))
    return buffer.getvalue()


def _reference_rgb(data: bytes) -> Image.Image:
    """What torchvision's users do: open, turn upright by EXIF, convert to RGB."""
    return ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB")


def _photos() -> list[tuple[str, bytes]]:
    """Real photos of several sizes (below the decode-reduce threshold), formats and EXIF orientations."""
    chelsea = Image.open(io.BytesIO(photo("chelsea.jpg"))).convert("RGB")
    coffee = Image.open(io.BytesIO(photo("coffee.jpg"))).convert("RGB")
    cases = [("chelsea.jpg as shipped", photo("chelsea.jpg")), ("camera.png as shipped", photo("camera.png"))]
    for (name, img), size, fmt, orientation in [
        (("chelsea", chelsea), (640, 480), "JPEG", 6),
        (("chelsea", chelsea), (333, 517), "PNG", 3),
        (("coffee", coffee), (1000, 700), "JPEG", 8),
        (("coffee", coffee), (250, 250), "WEBP", None),
        (("coffee", coffee), (224, 180), "BMP", None),  # smaller than the crop: padded, as torchvision pads
    ]:
        resized = img.resize(size, Image.Resampling.BICUBIC)
        cases.append((f"{name} {size} {fmt} orientation {orientation}", _encoded(resized, fmt, orientation)))
    return cases


PHOTOS = _photos()


@pytest.mark.parametrize(("name", "data"), PHOTOS, ids=[n for n, _ in PHOTOS])
def test_decode_gives_the_upright_rgb_picture_torchvision_users_open(name: str, data: bytes) -> None:
    ours = decode(data, LIMITS, RESNET.resize)
    assert ours.mode == "RGB"
    assert np.array_equal(np.asarray(ours), np.asarray(_reference_rgb(data)))


@pytest.mark.parametrize(("name", "data"), PHOTOS, ids=[n for n, _ in PHOTOS])
@pytest.mark.parametrize("prep", [RESNET, LITE_PREPROCESSING, Preprocessing(232, 224, interpolation="bicubic")])
def test_each_step_equals_torchvision(name: str, data: bytes, prep: Preprocessing) -> None:
    rgb = _reference_rgb(data)
    interpolation = F.InterpolationMode(prep.interpolation)
    resized = _resize_short_side(rgb, prep.resize, Image.Resampling[prep.interpolation.upper()])
    theirs = F.resize(rgb, [prep.resize], interpolation=interpolation, antialias=True)
    assert resized.size == theirs.size and np.array_equal(np.asarray(resized), np.asarray(theirs))
    cropped = _centre_crop(resized, prep.crop)
    theirs = F.center_crop(theirs, [prep.crop])
    assert cropped.size == theirs.size and np.array_equal(np.asarray(cropped), np.asarray(theirs))
    normalised = torch.from_numpy(prep(rgb))
    reference = F.normalize(F.to_tensor(theirs), list(prep.mean), list(prep.std))
    assert normalised.dtype == reference.dtype == torch.float32
    assert (normalised - reference).abs().max().item() <= 1e-6


@pytest.mark.parametrize(("name", "data"), PHOTOS, ids=[n for n, _ in PHOTOS])
def test_the_whole_preprocessing_equals_the_weights_own_transforms(name: str, data: bytes) -> None:
    reference = ResNet18_Weights.IMAGENET1K_V1.transforms()(_reference_rgb(data))
    ours = torch.from_numpy(RESNET(decode(data, LIMITS, RESNET.resize)))
    assert ours.shape == reference.shape == (3, 224, 224)
    assert (ours - reference).abs().max().item() <= 1e-6


def _picture(mode: str, size: tuple[int, int]) -> Image.Image:
    """A picture with content (a gradient and a disc) in ``mode``."""
    base = Image.radial_gradient("L").resize(size)
    rgb = Image.merge("RGB", (base, ImageOps.invert(base), base.transpose(Image.Transpose.ROTATE_90).resize(size)))
    if mode == "I;16":
        return Image.fromarray((np.asarray(base, dtype=np.uint16) * 257).astype(np.uint16)).convert("I;16")
    if mode == "PA":
        return rgb.convert("P").convert("PA")
    if mode == "LA":
        return Image.merge("LA", (base, base.point(lambda v: 255 - v)))
    return rgb.convert(mode) if mode not in ("I", "F") else base.convert(mode)


MODES = ("1", "L", "P", "LA", "PA", "I", "I;16", "F", "RGB", "RGBA", "CMYK", "YCbCr")
FORMATS = ("PNG", "TIFF", "BMP", "GIF", "JPEG", "WEBP")
# Below the box-reduce threshold (twice the resize target, 512 px), and above it (short side >= 1024: reduced).
SIZES = ((300, 200), (1100, 1030))


def _saved(mode: str, fmt: str, size: tuple[int, int]) -> bytes | None:
    """The picture as Pillow writes it in ``fmt``, or None where Pillow cannot write that mode in that format."""
    buffer = io.BytesIO()
    try:
        _picture(mode, size).save(buffer, format=fmt)
    except (OSError, ValueError, KeyError):
        return None
    return buffer.getvalue()


CASES = [(m, f, s) for m, f, s in itertools.product(MODES, FORMATS, SIZES) if _saved(m, f, s) is not None]


def test_the_matrix_covers_every_mode_and_format() -> None:
    """Each mode is written in at least one format and each format holds several modes, at both sizes."""
    assert {m for m, _, _ in CASES} == set(MODES)
    assert {f for _, f, _ in CASES} == set(FORMATS)
    assert len(CASES) >= 40


@pytest.mark.parametrize(("mode", "fmt", "size"), CASES, ids=[f"{m}-{f}-{s[0]}x{s[1]}" for m, f, s in CASES])
def test_every_mode_in_every_format_at_every_size_is_classified(mode: str, fmt: str, size: tuple[int, int]) -> None:
    data = _saved(mode, fmt, size)
    assert data is not None
    rgb = decode(data, LIMITS, RESNET.resize)
    reduced = min(size) >= 4 * RESNET.resize  # box-reduced (or DCT-scaled) to no less than twice the target
    assert rgb.mode == "RGB" and (min(rgb.size) >= 2 * RESNET.resize if reduced else rgb.size == size)
    array = RESNET(rgb)
    assert array.shape == (3, 224, 224) and array.dtype == np.float32 and np.isfinite(array).all()
    assert array.std() > 0.05  # the content survived the mode conversion (not a flat grey)


def test_sixteen_bit_samples_keep_their_range() -> None:
    """A 16-bit picture is scaled into 8 bits by its range, not clipped to white."""
    data = _saved("I;16", "PNG", (300, 200))
    assert data is not None
    grey = np.asarray(decode(data, LIMITS, 256).convert("L"), dtype=np.float64)
    reference = np.asarray(Image.radial_gradient("L").resize((300, 200)), dtype=np.float64)  # what was scaled by 257
    assert grey.shape == reference.shape and np.abs(grey - reference).max() <= 1


def test_an_animated_gif_is_classified_by_its_first_frame() -> None:
    frames = [_picture("P", (300, 200)), Image.new("P", (300, 200), 7)]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:])
    ours = decode(buffer.getvalue(), LIMITS, 256)
    assert np.array_equal(np.asarray(ours), np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")))


@pytest.mark.parametrize("data", [b"", b"garbage bytes", _encoded(Image.new("RGB", (64, 48)), "PNG")[:40]])
def test_undecodable_bytes_raise_a_per_record_error(data: bytes) -> None:
    with pytest.raises(UndecodableImage):
        decode(data, LIMITS, 256)


def test_a_scan_bomb_is_refused_before_decoding() -> None:
    """A progressive JPEG with more scans than MAX_JPEG_SCANS is refused from its structure (no decode)."""
    buffer = io.BytesIO()
    _picture("RGB", (64, 64)).save(buffer, format="JPEG", progressive=True)
    data = buffer.getvalue()
    scans = data.count(b"\xff\xda")
    assert scans > 2
    with pytest.raises(UndecodableImage, match="scans"):
        decode(data, ImageLimits(max_jpeg_scans=scans - 1), 256)
    assert decode(data, ImageLimits(max_jpeg_scans=scans), 256).size == (64, 64)
