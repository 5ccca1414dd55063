"""The torch-free path (Pillow + numpy preprocessing, the ONNX engine) gives the eager PyTorch path's answers: the
same top-5 and scores within 1e-4, for the packaged EfficientNet-Lite0 and a torchvision ResNet, on real photos of
several sizes, formats and EXIF orientations. The eager path is what torchvision's users write: open, turn upright,
``weights.transforms()``, the module, softmax."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision import transforms
from torchvision.models import ResNet18_Weights

from functions.common.image_limits import ImageLimits
from functions.infer.catalog import TorchNet
from functions.infer.config import EngineSpec, ModelSpec
from functions.infer.loading import load_classifier
from functions.infer.model import Classifier
from tests.functions.infer.test_preprocess import PHOTOS, _reference_rgb

LITE_TRANSFORMS = transforms.Compose([
    transforms.Resize(256, interpolation=transforms.InterpolationMode.BILINEAR, antialias=True),
    transforms.CenterCrop(224),
    transforms.ToTensor(),
    transforms.Normalize((127 / 255,) * 3, (128 / 255,) * 3),
])  # fmt: skip


def _eager_top5(eager: Classifier, reference: transforms.Compose, data: bytes) -> tuple[list[str], list[float]]:
    assert isinstance(eager.net, TorchNet)
    with torch.inference_mode():
        logits = eager.net.module(reference(_reference_rgb(data)).unsqueeze(0))
        scores, indices = torch.softmax(logits, dim=1).topk(5, dim=1)
    return [eager.labels[i] for i in indices[0].tolist()], scores[0].tolist()


@pytest.fixture(scope="module")
def engines(tiny_weights: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Classifier, ...]]:
    cache = tmp_path_factory.mktemp("parity-engines")
    ort = EngineSpec("onnxruntime", "fp32", cache)
    out = {}
    for name, spec in (
        ("lite0", ModelSpec("efficientnet_lite0")),
        ("resnet18", ModelSpec("resnet18", str(tiny_weights))),
    ):
        eager = load_classifier(spec)
        onnx = load_classifier(ModelSpec(spec.model, spec.weights, engine=ort))
        assert (eager.engine, onnx.engine) == ("torch/fp32", "onnxruntime/fp32")
        out[name] = (eager, onnx)
    return out


@pytest.mark.usefixtures("engine_build")
@pytest.mark.parametrize(("name", "data"), PHOTOS, ids=[n for n, _ in PHOTOS])
@pytest.mark.parametrize(
    ("model", "reference"), [("lite0", LITE_TRANSFORMS), ("resnet18", ResNet18_Weights.IMAGENET1K_V1.transforms())]
)
def test_the_onnx_path_answers_as_eager_torch(
    engines: dict[str, tuple[Classifier, ...]], model: str, reference: transforms.Compose, name: str, data: bytes
) -> None:
    eager, onnx = engines[model]
    labels, scores = _eager_top5(eager, reference, data)
    [(ours, our_scores)] = onnx.predict(onnx.preprocess(data, ImageLimits())[np.newaxis], [5])
    assert ours == labels
    assert our_scores == pytest.approx(scores, abs=1e-4)


@pytest.mark.usefixtures("engine_build")
def test_the_packaged_model_is_confident_on_the_clear_photos(engines: dict[str, tuple[Classifier, ...]]) -> None:
    """Parity with a broken network would prove nothing: Lite0's answers are real ones."""
    _, onnx = engines["lite0"]
    answers = {n: onnx.predict(onnx.preprocess(d, ImageLimits())[np.newaxis], [1])[0] for n, d in PHOTOS[:2]}
    assert answers["camera.png as shipped"][0] == ["tripod"]
    assert answers["chelsea.jpg as shipped"][0][0] in {"Egyptian cat", "tabby", "tiger cat"}
