"""The classifier: a network loaded once per process (see ``catalog``), its labels and its preprocessing."""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from PIL import Image, ImageOps


class ModelUnavailable(RuntimeError):
    """The configured model cannot be loaded; the message names the setting and what is accepted."""


class UndecodableImage(ValueError):
    """The bytes are not an image this worker can classify (a permanent, per-record failure)."""


@dataclass(frozen=True)
class Classifier:
    name: str  # "<model>:<weights>", reported with every result (e.g. "efficientnet_lite0:packaged")
    net: Callable[[torch.Tensor], torch.Tensor]
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
