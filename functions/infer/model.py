"""The classifier the infer function runs: a network (numpy in, numpy out), its labels and its preprocessing.

Nothing here imports torch: on the default engine the network is an ONNX Runtime session (``engine_file``); only
``INFER_BACKEND=torch`` puts an eager PyTorch module behind the same call (``catalog.TorchNet``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from functions.common.image_limits import ImageLimits

from .preprocess import Preprocessing, UndecodableImage, decode

__all__ = ["Classifier", "ModelUnavailable", "UndecodableImage"]


class ModelUnavailable(RuntimeError):
    """The configured model cannot be loaded; the message names the setting and what is accepted."""


@dataclass(frozen=True)
class Classifier:
    name: str  # "<model>:<weights>", reported with every result (e.g. "efficientnet_lite0:packaged")
    net: Callable[[np.ndarray], np.ndarray]  # a float32 NCHW batch in, logits out
    labels: Sequence[str]
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    engine: str = "onnxruntime/fp32"  # backend/precision the network runs on

    def preprocess(self, data: bytes, limits: ImageLimits) -> np.ndarray:
        """Decode (``preprocess.decode``), then the model's own resize, crop and normalisation: float32 CHW. An image
        whose decoding took more CPU than ``limits.decode_budget_s`` is refused after the fact (a ``failed`` result,
        never a retry that would pay it again): the structure limits keep that rare (100 scans of 40 MP: ~2.5 s)."""
        started = time.thread_time()
        array = self.preprocessing(decode(data, limits, self.preprocessing.resize))
        if (spent := time.thread_time() - started) > limits.decode_budget_s:
            raise UndecodableImage(
                f"decoding took {spent:.1f} s of CPU, beyond the budget of {limits.decode_budget_s:g} s per image "
                "(INFER_DECODE_BUDGET_S)"
            )
        return array

    def predict(self, batch: np.ndarray, topks: Sequence[int]) -> list[tuple[list[str], list[float]]]:
        """One forward pass; per row the ``topk`` labels with softmax probabilities, best first."""
        logits = np.asarray(self.net(np.ascontiguousarray(batch, dtype=np.float32)), dtype=np.float32)
        shifted = logits - logits.max(axis=1, keepdims=True)
        exp = np.exp(shifted)
        probabilities = exp / exp.sum(axis=1, keepdims=True)
        k = min(max(topks), len(self.labels))
        ranked = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]
        out = []
        for row, topk in enumerate(topks):
            indices = ranked[row, :topk]
            out.append(([self.labels[i] for i in indices], probabilities[row, indices].tolist()))
        return out
