"""Model loading and preprocessing against torchvision's own definitions."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch
from PIL import Image
from torchvision.models import ResNet18_Weights

from functions.infer.model import ModelUnavailable, UndecodableImage, load_classifier
from tests.helpers import image_bytes, photo


@pytest.fixture(scope="module")
def classifier(tiny_weights: Path):  # type: ignore[no-untyped-def]
    return load_classifier("resnet18", str(tiny_weights), threads=1)


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
    img = Image.new("RGB", (400, 200), (255, 0, 0))
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    buffer = io.BytesIO()
    img.save(buffer, format="JPEG", exif=exif)
    upright = Image.new("RGB", (200, 400), (255, 0, 0))
    reference = ResNet18_Weights.IMAGENET1K_V1.transforms()(upright)
    assert torch.allclose(classifier.preprocess(buffer.getvalue(), 10**8), reference, atol=0.1)


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


def test_missing_weights_fail_clearly_unless_random(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", _offline)
    with pytest.raises(ModelUnavailable, match="INFER_WEIGHTS=random"):
        load_classifier("resnet18", "DEFAULT", threads=1)
    with pytest.raises(ModelUnavailable, match="no such file"):
        load_classifier("resnet18", str(tmp_path / "absent.pth"), threads=1)
    with pytest.raises(ModelUnavailable, match="not one of"):
        load_classifier("resnet18", "NOT_A_WEIGHT", threads=1)
    with pytest.raises(ModelUnavailable, match="INFER_MODEL"):
        load_classifier("vgg16", "random", threads=1)
    assert load_classifier("resnet18", "random", threads=1).name == "resnet18:random"


def _offline(*args: object, **kwargs: object) -> None:
    raise OSError("network is unreachable")
