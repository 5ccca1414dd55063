"""Class names: ImageNet's (torchvision's order), or a user's JSON file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torchvision.models import ResNet18_Weights

from .model import ModelUnavailable

# The 1,000 ImageNet-1k classes in index order, as every torchvision classifier (and EfficientNet-Lite) uses them.
IMAGENET_CATEGORIES: tuple[str, ...] = tuple(ResNet18_Weights.IMAGENET1K_V1.meta["categories"])


def read_labels(path: str) -> list[str]:
    """A JSON list of names, or an object of index → name / [id, name] (TorchServe's ``index_to_name.json``)."""
    try:
        raw: Any = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelUnavailable(f"INFER_LABELS={path}: cannot read a JSON labels file ({exc})") from exc
    if isinstance(raw, dict):
        try:
            by_index = {int(key): value for key, value in raw.items()}
        except ValueError as exc:
            raise ModelUnavailable(f"INFER_LABELS={path}: keys must be class indices ({exc})") from exc
        if sorted(by_index) != list(range(len(by_index))):
            raise ModelUnavailable(f"INFER_LABELS={path}: indices must run from 0 to {len(by_index) - 1}, each once")
        raw = [by_index[i] for i in range(len(by_index))]
    if not isinstance(raw, list) or not raw:
        raise ModelUnavailable(f"INFER_LABELS={path}: expected a non-empty list or an index → name object")
    names = [item[-1] if isinstance(item, list) and item else item for item in raw]
    if not all(isinstance(name, str) and name for name in names):
        raise ModelUnavailable(f"INFER_LABELS={path}: every label must be a non-empty string")
    return names
