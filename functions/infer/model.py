"""The classifier: a network loaded once per process (see ``catalog``), its labels and its preprocessing."""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from PIL import ExifTags, Image

from functions.common.image_limits import ImageLimits

# EXIF orientation -> the transpose that shows the image upright (as ``ImageOps.exif_transpose`` does).
_UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


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

    short_side: int = 256  # what ``transform`` resizes the short side to (its input needs no more detail)
    engine: str = "torch/fp32"  # backend/precision the network runs on (``engines``)
    # The input layout the network runs fastest on: channels-last for PyTorch's oneDNN convolutions (~10%), plain
    # NCHW for an ONNX Runtime session, which would otherwise copy it back (13% of its throughput, bench/accuracy).
    channels_last: bool = True

    def preprocess(self, data: bytes, limits: ImageLimits) -> torch.Tensor:
        """Decode with Pillow, no larger than twice the transform's short side (a JPEG decodes at 1/2..1/8 scale
        by DCT scaling, other formats are box-reduced after decoding), orient by EXIF, any mode to RGB, then the
        transform. The limits are checked from the header first, so no image costs more than they allow."""
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(io.BytesIO(data)) as img:
                    if (violation := limits.violation(*img.size)) is not None:
                        raise UndecodableImage(violation.message)
                    orientation = img.getexif().get(ExifTags.Base.Orientation, 1)
                    img.draft(None, (2 * self.short_side, 2 * self.short_side))
                    small = _reduced(img, 2 * self.short_side)
                    if orientation in _UPRIGHT:
                        small = small.transpose(_UPRIGHT[orientation])
                    rgb = small.convert("RGB")
        except UndecodableImage:
            raise
        except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombWarning) as exc:
            raise UndecodableImage(f"cannot decode image: {exc}") from exc
        return self.transform(rgb)

    def predict(self, batch: torch.Tensor, topks: Sequence[int]) -> list[tuple[list[str], list[float]]]:
        """One forward pass; per row the ``topk`` labels with softmax probabilities, best first."""
        with torch.inference_mode():
            layout = torch.channels_last if self.channels_last else torch.contiguous_format
            logits = self.net(batch.contiguous(memory_format=layout))
            probabilities = torch.softmax(logits, dim=1)
            scores, indices = probabilities.topk(min(max(topks), len(self.labels)), dim=1)
        out = []
        for row, k in enumerate(topks):
            out.append(([self.labels[i] for i in indices[row, :k].tolist()], scores[row, :k].tolist()))
        return out


def _reduced(img: Image.Image, short_side: int) -> Image.Image:
    """``img`` decoded, box-reduced by the largest integer factor that keeps its short side >= ``short_side``."""
    img.load()
    factor = min(img.size) // short_side
    return img.reduce(factor) if factor >= 2 else img
