"""Model loading and preprocessing against torchvision's own definitions."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.models import ResNet18_Weights

from functions.common.image_limits import ImageLimits
from functions.infer.config import ModelSpec
from functions.infer.loading import load_classifier
from functions.infer.model import UndecodableImage
from tests.helpers import image_bytes, photo

LIMITS = ImageLimits()


@pytest.fixture(scope="module")
def classifier(tiny_weights: Path):  # type: ignore[no-untyped-def]
    return load_classifier(ModelSpec("resnet18", str(tiny_weights)))


def test_state_dict_file_is_loaded_exactly(classifier, tiny_weights: Path) -> None:  # type: ignore[no-untyped-def]
    saved = torch.load(tiny_weights, weights_only=True)
    loaded = classifier.net.module.state_dict()
    assert all(torch.equal(saved[k], loaded[k]) for k in saved)
    assert not classifier.net.module.training
    assert list(classifier.labels) == ResNet18_Weights.IMAGENET1K_V1.meta["categories"]


def test_preprocessing_equals_torchvision_transform(classifier) -> None:  # type: ignore[no-untyped-def]
    data = photo("chelsea.jpg")
    reference = ResNet18_Weights.IMAGENET1K_V1.transforms()(Image.open(io.BytesIO(data)).convert("RGB"))
    ours = torch.from_numpy(classifier.preprocess(data, LIMITS))
    assert ours.shape == (3, 224, 224)
    assert (ours - reference).abs().max().item() <= 1e-6


@pytest.mark.parametrize("mode", ["L", "RGBA", "CMYK", "P", "I;16"])
def test_any_colour_mode_becomes_rgb(classifier, mode: str) -> None:  # type: ignore[no-untyped-def]
    fmt = "TIFF" if mode in ("CMYK", "I;16") else "PNG"
    assert classifier.preprocess(image_bytes(fmt, (300, 200), mode), LIMITS).shape == (3, 224, 224)


def test_exif_orientation_is_applied(classifier) -> None:  # type: ignore[no-untyped-def]
    stored = Image.new("RGB", (400, 200), (255, 0, 0))
    stored.paste((0, 0, 255), (0, 0, 200, 200))  # left half blue: where it ends up depends on the rotation
    exif = stored.getexif()
    exif[0x0112] = 6  # displayed rotated 90° clockwise: the blue half on top
    buffer = io.BytesIO()
    stored.save(buffer, format="PNG", exif=exif)
    upright = stored.transpose(Image.Transpose.ROTATE_270)
    ours = torch.from_numpy(classifier.preprocess(buffer.getvalue(), LIMITS))
    assert torch.allclose(ours, ResNet18_Weights.IMAGENET1K_V1.transforms()(upright), atol=1e-5)
    assert not torch.allclose(ours, ResNet18_Weights.IMAGENET1K_V1.transforms()(stored), atol=0.5)


@pytest.mark.parametrize("data", [b"", b"garbage bytes", image_bytes("PNG")[:40]])
def test_undecodable_bytes_raise_a_per_record_error(classifier, data: bytes) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(UndecodableImage):
        classifier.preprocess(data, LIMITS)


def test_pixel_limit_applies_in_infer_too(classifier) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(UndecodableImage, match="pixels"):
        classifier.preprocess(image_bytes("PNG", (500, 500)), ImageLimits(max_pixels=1000))


def test_predict_returns_topk_sorted_probabilities(classifier) -> None:  # type: ignore[no-untyped-def]
    batch = np.stack([classifier.preprocess(photo(n), LIMITS) for n in ("chelsea.jpg", "coffee.jpg")])
    out = classifier.predict(batch, [3, 7])
    assert [len(labels) for labels, _ in out] == [3, 7]
    for labels, scores in out:
        assert scores == sorted(scores, reverse=True) and len(set(labels)) == len(labels)


def test_an_extreme_aspect_ratio_fails_the_record_before_decoding(classifier) -> None:  # type: ignore[no-untyped-def]
    """What upload refuses is refused here too (a record published before the limit, or by another producer)."""
    with pytest.raises(UndecodableImage, match=r"aspect ratio of 20000.0:1, beyond the limit of 20:1"):
        classifier.preprocess(image_bytes("PNG", (20_000, 1), "L"), LIMITS)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_a_large_photo_is_decoded_small_and_gives_the_same_input(classifier, fmt: str) -> None:  # type: ignore[no-untyped-def]
    """A JPEG decodes at reduced DCT scale, other formats are box-reduced, to >= 2x the resize target; the tensor
    stays within rounding of the full-size path's."""
    large = Image.open(io.BytesIO(photo("chelsea.jpg"))).convert("RGB").resize((3608, 2400), Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    large.save(buffer, format=fmt, quality=95)
    reference = ResNet18_Weights.IMAGENET1K_V1.transforms()(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))
    ours = torch.from_numpy(classifier.preprocess(buffer.getvalue(), LIMITS))
    assert ours.shape == reference.shape == (3, 224, 224)
    assert (ours - reference).abs().mean() < 0.008  # measured 0.004; a nearest-neighbour shrink gives 0.013
    assert not torch.equal(ours, reference)  # it did take the reduced path


def test_an_image_whose_decode_exceeds_the_cpu_budget_fails_saying_so(classifier) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(UndecodableImage, match=r"beyond the budget of 1e-09 s per image \(INFER_DECODE_BUDGET_S\)"):
        classifier.preprocess(photo("chelsea.jpg"), ImageLimits(decode_budget_s=1e-9))
    assert classifier.preprocess(photo("chelsea.jpg"), ImageLimits()).shape == (3, 224, 224)
