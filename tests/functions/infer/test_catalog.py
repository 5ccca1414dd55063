"""INFER_MODEL: the packaged EfficientNet-Lite0, torchvision's models, own files; clear errors for the rest."""

from __future__ import annotations

import io
import json
import logging
import warnings
from pathlib import Path

import pytest
import torch
import torchvision
from PIL import Image

from functions.common.image_limits import ImageLimits
from functions.infer import catalog
from functions.infer.catalog import WeightsUnavailable
from functions.infer.config import ModelSpec
from functions.infer.labels import IMAGENET_CATEGORIES
from functions.infer.loading import load_classifier
from functions.infer.model import Classifier, ModelUnavailable
from tests.helpers import image_bytes, photo

CATS = {"Egyptian cat", "tabby", "tiger cat"}

LIMITS = ImageLimits()


def _top1(classifier: Classifier, data: bytes) -> tuple[str, float]:
    ((labels, scores),) = classifier.predict(classifier.preprocess(data, LIMITS)[None], [1])
    return labels[0], scores[0]


@pytest.fixture(scope="module")
def lite0() -> Classifier:
    return load_classifier(ModelSpec("efficientnet_lite0"))


@pytest.mark.parametrize(
    ("name", "expected"),
    [("chelsea.jpg", CATS), ("coffee.jpg", {"espresso"}), ("rocket.jpg", {"missile", "projectile"})],
)
def test_packaged_efficientnet_lite0_gives_real_labels_offline(
    lite0: Classifier, name: str, expected: set[str]
) -> None:
    label, score = _top1(lite0, photo(name))
    assert label in expected, (name, label, score)
    assert score > 0.3
    assert lite0.name == "efficientnet_lite0:packaged"
    assert tuple(lite0.labels) == IMAGENET_CATEGORIES


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """An empty torch hub cache and no network: torchvision's own loader must fail."""

    def unreachable(url: str, *args: object, **kwargs: object) -> None:
        raise OSError(f"network is unreachable: {url}")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", unreachable)


def test_unavailable_torchvision_weights_fall_back_to_the_packaged_model_in_one_line(
    offline: None, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        classifier = load_classifier(ModelSpec("resnet18"))
    assert classifier.name == "efficientnet_lite0:packaged"
    assert _top1(classifier, photo("coffee.jpg"))[0] == "espresso"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "resnet18 weights IMAGENET1K_V1" in warnings[0]
    assert "INFER_FALLBACK" in warnings[0] and "\n" not in warnings[0]


def test_without_a_fallback_unavailable_weights_fail_saying_what_to_do(offline: None, tmp_path: Path) -> None:
    with pytest.raises(WeightsUnavailable) as caught:
        load_classifier(ModelSpec("resnet18", fallback=None))
    message = str(caught.value)
    assert str(tmp_path / "torch-home" / "hub" / "checkpoints" / "resnet18-f37072fd.pth") in message
    assert "network is unreachable" in message and "INFER_MODEL=efficientnet_lite0" in message


def test_unknown_model_fails_listing_what_is_accepted() -> None:
    with pytest.raises(ModelUnavailable) as caught:
        load_classifier(ModelSpec("resnet19"))
    message = str(caught.value)
    assert "INFER_MODEL='resnet19'" in message
    for accepted in ("efficientnet_lite0", "resnet50", "mobilenet_v3_large", "convnext_tiny", "vit_b_16", ".pt2"):
        assert accepted in message


@pytest.mark.parametrize("arch", ["mobilenet_v3_small", "squeezenet1_1", "regnet_x_400mf", "shufflenet_v2_x0_5"])
def test_torchvision_models_load_with_their_own_transforms_and_categories(arch: str) -> None:
    classifier = load_classifier(ModelSpec(arch, "random"))
    reference = torchvision.models.get_model_weights(arch)["IMAGENET1K_V1"]
    assert classifier.name == f"{arch}:random"
    assert list(classifier.labels) == reference.meta["categories"]
    data = photo("chelsea.jpg")
    expected = reference.transforms()(Image.open(io.BytesIO(data)).convert("RGB"))
    assert (torch.from_numpy(classifier.preprocess(data, LIMITS)) - expected).abs().max().item() <= 1e-6
    ((labels, scores),) = classifier.predict(expected.unsqueeze(0).numpy(), [5])
    assert len(labels) == 5 and scores == sorted(scores, reverse=True)


def test_unknown_weight_name_lists_the_model_s_weights() -> None:
    with pytest.raises(ModelUnavailable, match=r"INFER_WEIGHTS='V9' is not a weight of resnet50: one of DEFAULT, "):
        load_classifier(ModelSpec("resnet50", "V9"))


def test_state_dict_of_another_architecture_fails_naming_both_settings(tiny_weights: Path) -> None:
    with pytest.raises(ModelUnavailable, match=rf"INFER_WEIGHTS={tiny_weights} does not fit INFER_MODEL=resnet34"):
        load_classifier(ModelSpec("resnet34", str(tiny_weights)))
    with pytest.raises(ModelUnavailable, match=r"does not fit INFER_MODEL=efficientnet_lite0"):
        load_classifier(ModelSpec("efficientnet_lite0", str(tiny_weights)))


def test_missing_or_foreign_weight_files_fail_clearly(tmp_path: Path) -> None:
    with pytest.raises(ModelUnavailable, match="no such file"):
        load_classifier(ModelSpec("resnet18", str(tmp_path / "absent.pth")))
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelUnavailable, match="not a PyTorch state dict"):
        load_classifier(ModelSpec("resnet18", str(garbage)))


def test_random_weights_only_when_asked(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        classifier = load_classifier(ModelSpec("resnet18", "random"))
    assert classifier.name == "resnet18:random"
    assert any("meaningless" in r.getMessage() for r in caplog.records)


# A model of one's own --------------------------------------------------------------------------------------------


class DominantColour(torch.nn.Module):
    """Class i = colour channel i with the largest mean: a network whose right answer is known."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(3, 3)
        with torch.no_grad():
            self.fc.weight.copy_(torch.eye(3) * 10)
            self.fc.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.mean(dim=(2, 3)))


def _save_torchscript(path: Path) -> None:
    """The file a TorchServe user has (``torch.jit`` is deprecated, so creating one warns)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(torch.jit.trace(DominantColour().eval(), torch.zeros(1, 3, 224, 224)), path)


def _torchserve_labels(tmp_path: Path, names: list[str]) -> Path:
    path = tmp_path / "index_to_name.json"
    path.write_text(json.dumps({str(i): [f"c{i}", name] for i, name in enumerate(names)}))
    return path


def _solid(colour: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (300, 260), colour).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("kind", ["torchscript", "export"])
def test_own_model_file_with_torchserve_labels_classifies_right(tmp_path: Path, kind: str) -> None:
    example = torch.zeros(1, 3, 224, 224)
    if kind == "torchscript":
        path = tmp_path / "colours.pt"
        _save_torchscript(path)
    else:
        path = tmp_path / "colours.pt2"
        torch.export.save(torch.export.export(DominantColour().eval(), (example,)), path)
    labels = _torchserve_labels(tmp_path, ["red", "green", "blue"])
    classifier = load_classifier(ModelSpec(str(path), labels=str(labels)))
    assert classifier.name == f"colours:file:{path.name}"
    for colour, expected in (((250, 10, 10), "red"), ((10, 250, 10), "green"), ((10, 10, 250), "blue")):
        assert _top1(classifier, _solid(colour))[0] == expected


def test_own_model_needs_labels_of_the_right_length(tmp_path: Path) -> None:
    path = tmp_path / "colours.pt"
    _save_torchscript(path)
    with pytest.raises(ModelUnavailable, match="set INFER_LABELS"):
        load_classifier(ModelSpec(str(path)))
    labels = tmp_path / "two.json"
    labels.write_text(json.dumps(["red", "green"]))
    with pytest.raises(ModelUnavailable, match=rf"outputs \(3,\) scores per image but INFER_LABELS={labels} has 2"):
        load_classifier(ModelSpec(str(path), labels=str(labels)))


def test_unusable_model_files_fail_clearly(tmp_path: Path) -> None:
    labels = _torchserve_labels(tmp_path, ["a", "b"])
    with pytest.raises(ModelUnavailable, match="no such file"):
        load_classifier(ModelSpec(str(tmp_path / "absent.pt"), labels=str(labels)))
    junk = tmp_path / "junk.pt2"
    junk.write_bytes(b"junk")
    with pytest.raises(ModelUnavailable, match=r"not a TorchScript or torch\.export"):
        load_classifier(ModelSpec(str(junk), labels=str(labels)))


def test_state_dict_with_own_labels(tmp_path: Path) -> None:
    torch.manual_seed(3)
    weights = tmp_path / "three-classes.pth"
    torch.save(torchvision.models.resnet18(weights=None, num_classes=3).state_dict(), weights)
    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps(["ant", "bee", "cicada"]))
    classifier = load_classifier(ModelSpec("resnet18", str(weights), labels=str(labels)))
    assert list(classifier.labels) == ["ant", "bee", "cicada"]
    ((ranked, _),) = classifier.predict(classifier.preprocess(image_bytes("PNG", (256, 256)), LIMITS)[None], [3])
    assert sorted(ranked) == ["ant", "bee", "cicada"]


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("not json", "cannot read a JSON labels file"),
        ('{"0": "a", "2": "b"}', "indices must run from 0 to 1"),
        ('{"zero": "a"}', "keys must be class indices"),
        ("[]", "expected a non-empty list"),
        ('["a", 3]', "every label must be a non-empty string"),
    ],
)
def test_bad_labels_files_fail_naming_the_setting(tmp_path: Path, text: str, error: str) -> None:
    path = tmp_path / "labels.json"
    path.write_text(text)
    with pytest.raises(ModelUnavailable, match=f"INFER_LABELS={path}: {error}"):
        catalog.read_labels(str(path))
