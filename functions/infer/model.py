"""The classifier: a torchvision ResNet loaded once per process, and torchvision's own preprocessing."""

from __future__ import annotations

import hashlib
import io
import logging
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torchvision
from PIL import Image, ImageOps

log = logging.getLogger(__name__)

ARCHITECTURES = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")


class ModelUnavailable(RuntimeError):
    """The configured weights cannot be had; the message says what to set instead."""


class UndecodableImage(ValueError):
    """The bytes are not an image this worker can classify (a permanent, per-record failure)."""


@dataclass(frozen=True)
class Classifier:
    name: str
    net: torch.nn.Module
    labels: Sequence[str]
    transform: Callable[[Image.Image], torch.Tensor]

    def preprocess(self, data: bytes, max_pixels: int) -> torch.Tensor:
        """Decode with Pillow (EXIF orientation applied, any mode to RGB), then the weights' own transform."""
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(io.BytesIO(data)) as img:
                    if img.width * img.height > max_pixels:
                        raise UndecodableImage(f"image has {img.width * img.height} pixels, limit is {max_pixels}")
                    rgb = ImageOps.exif_transpose(img).convert("RGB")
        except UndecodableImage:
            raise
        except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombWarning) as exc:
            raise UndecodableImage(f"cannot decode image: {exc}") from exc
        return self.transform(rgb)

    def predict(self, batch: torch.Tensor, topks: Sequence[int]) -> list[tuple[list[str], list[float]]]:
        """One forward pass; per row the ``topk`` labels with softmax probabilities, best first."""
        with torch.inference_mode():
            logits = self.net(batch.contiguous(memory_format=torch.channels_last))
            probabilities = torch.softmax(logits, dim=1)
            scores, indices = probabilities.topk(min(max(topks), len(self.labels)), dim=1)
        out = []
        for row, k in enumerate(topks):
            out.append(([self.labels[i] for i in indices[row, :k].tolist()], scores[row, :k].tolist()))
        return out


def load_classifier(arch: str, weights: str, threads: int) -> Classifier:
    """``weights``: ``random``, a state-dict path, or a torchvision weight name (``DEFAULT``, ``IMAGENET1K_V2``)."""
    if arch not in ARCHITECTURES:
        raise ModelUnavailable(f"INFER_MODEL={arch!r} is not one of {', '.join(ARCHITECTURES)}")
    torch.set_num_threads(threads)
    enum = torchvision.models.get_model_weights(arch)
    reference = enum["IMAGENET1K_V1"]  # labels and preprocessing for weights that come without metadata
    state: dict[str, torch.Tensor] | None
    if weights == "random":
        chosen, state, tag = reference, None, "random"
        log.warning("INFER_WEIGHTS=random: %s has random weights, its predictions are meaningless", arch)
    elif Path(weights).suffix in (".pt", ".pth") or Path(weights).is_file():
        chosen, state, tag = reference, _load_file(Path(weights)), f"file:{Path(weights).name}"
    else:
        try:
            chosen = enum[weights]
        except KeyError as exc:
            names = ", ".join(["DEFAULT", *enum.__members__])
            raise ModelUnavailable(f"INFER_WEIGHTS={weights!r}: not a file and not one of {names}") from exc
        state, tag = _load_torchvision(chosen), str(chosen).rsplit(".", 1)[-1]
    labels = list(chosen.meta["categories"])
    if state is None:
        torch.manual_seed(0)  # every worker process gets the same random network
    net = torchvision.models.get_model(arch, weights=None, num_classes=len(labels))
    if state is not None:
        net.load_state_dict(state)
    net.eval()
    net = net.to(memory_format=torch.channels_last)  # ~10% faster convolutions with oneDNN on CPU (bench/)
    log.info("model %s:%s loaded (%d classes, %d threads)", arch, tag, len(labels), threads)
    return Classifier(name=f"{arch}:{tag}", net=net, labels=labels, transform=chosen.transforms())


def _load_file(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise ModelUnavailable(f"INFER_WEIGHTS={path}: no such file")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise ModelUnavailable(f"INFER_WEIGHTS={path}: not a state dict")
    log.info("weights %s (sha256 %s)", path, hashlib.sha256(path.read_bytes()).hexdigest()[:12])
    return state


def _load_torchvision(weights: torchvision.models.WeightsEnum) -> dict[str, torch.Tensor]:
    """torchvision's own loader: the torch hub cache (``TORCH_HOME``) first, then a download."""
    cache = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
    try:
        return weights.get_state_dict(progress=False, check_hash=True)  # type: ignore[no-any-return]
    except Exception as exc:
        raise ModelUnavailable(
            f"cannot load {weights}: not in the torchvision cache ({cache}) and the download failed ({exc!r}). "
            "Put the file there, set INFER_WEIGHTS=/path/to/state_dict.pth, or INFER_WEIGHTS=random for a "
            "randomly initialised network (meaningless predictions)."
        ) from exc
