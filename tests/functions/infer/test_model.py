"""Model loading and preprocessing against torchvision's own definitions."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch
from PIL import Image
from torchvision.models import ResNet18_Weights

from functions.infer.catalog import ModelSpec, load_classifier
from functions.infer.model import UndecodableImage
from tests.helpers import image_bytes, photo


@pytest.fixture(scope="module")
def classifier(tiny_weights: Path):  # type: ignore[no-untyped-def]
    return load_classifier(ModelSpec("resnet18", str(tiny_weights)))


def test_state_dict_file_is_loaded_exactly(classifier, tiny_weights: Path) -> None:  # type: ignore[no-untyped-def]
    saved = torch.load(tiny_weights, weights_only=True)
    loaded = classifier.net.state_dict()
    assert all(torch.equal(saved[k], loaded[k]) for k in saved)
    assert not classifier.net.training
    assert list(classifier.labels) == ResNet18_Weights.IMAGENET1K_V1.meta["categories"]


def test_preprocessing_equals_torchvision_transform(classifier) -> None:  # type: ignore[no-untyped-def]
    data = photo("chelsea.jpg")
    reference = ResNet18_Weights.IMAGENET1K_V1.transforms()(Image.open(io.BytesIO(data)).convert("RGB"))
    ours = classifier.preprocess(data, max_pixels=10**8)
    assert ours.shape == (3, 224, 224)
    assert torch.equal(ours, reference)


@pytest.mark.parametrize("mode", ["L", "RGBA", "CMYK", "P", "I;16"])
def test_any_colour_mode_becomes_rgb(classifier, mode: str) -> None:  # type: ignore[no-untyped-def]
    fmt = "TIFF" if mode in ("CMYK", "I;16") else "PNG"
    assert classifier.preprocess(image_bytes(fmt, (300, 200), mode), max_pixels=10**8).shape == (3, 224, 224)


def test_exif_orientation_is_applied(classifier) -> None:  # type: ignore[no-untyped-def]
    stored = Image.new("RGB", (400, 200), (255, 0, 0))
    stored.paste((0, 0, 255), (0, 0, 200, 200))  # left half blue: where it ends up depends on the rotation
    exif = stored.getexif()
    exif[0x0112] = 6  # displayed rotated 90° clockwise: the blue half on top
    buffer = io.BytesIO()
    stored.save(buffer, format="PNG", exif=exif)
    upright = stored.transpose(Image.Transpose.ROTATE_270)
    ours = classifier.preprocess(buffer.getvalue(), 10**8)
    assert torch.allclose(ours, ResNet18_Weights.IMAGENET1K_V1.transforms()(upright), atol=1e-5)
    assert not torch.allclose(ours, ResNet18_Weights.IMAGENET1K_V1.transforms()(stored), atol=0.5)


@pytest.mark.parametrize("data", [b"", b"garbage bytes", image_bytes("PNG")[:40]])
def test_undecodable_bytes_raise_a_per_record_error(classifier, data: bytes) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(UndecodableImage):
        classifier.preprocess(data, max_pixels=10**8)


def test_pixel_limit_applies_in_infer_too(classifier) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(UndecodableImage, match="pixels"):
        classifier.preprocess(image_bytes("PNG", (500, 500)), max_pixels=1000)


def test_predict_returns_topk_sorted_probabilities(classifier) -> None:  # type: ignore[no-untyped-def]
    batch = torch.stack([classifier.preprocess(photo(n), 10**8) for n in ("chelsea.jpg", "coffee.jpg")])
    out = classifier.predict(batch, [3, 7])
    assert [len(labels) for labels, _ in out] == [3, 7]
    for labels, scores in out:
        assert scores == sorted(scores, reverse=True) and len(set(labels)) == len(labels)
