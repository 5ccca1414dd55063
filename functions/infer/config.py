"""The infer function's model and engine, as its settings configure them: read by the handler, by the build step
(``prepare``) and by the benches alike. Imports neither torch nor the Kafka client, and checks no Kafka setting.

An engine is named by what decides its contents (``engine_key``): the model, its weights, its labels and the
precision (and for int8 the calibration photos); a fallback model's engine is kept under the fallback's own name.
The files that name points at on this machine are fingerprinted (``sources``), so an engine built from a weights
file that has changed since is built again.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from functions.common.settings import DEFAULT_HOME, Settings

from .calibration import CALIBRATION_SEED, DEMO_PHOTOS
from .model import ModelUnavailable

PACKAGED = "efficientnet_lite0"
BACKENDS = ("torch", "onnxruntime")
PRECISIONS = ("fp32", "bf16", "int8")
# What each backend runs, and what to try next when a combination cannot be built for a model (an ONNX export that
# fails is not replaced by PyTorch: that is INFER_BACKEND=torch, chosen, not fallen into).
SUPPORTED = (("onnxruntime", "int8"), ("onnxruntime", "fp32"), ("torch", "bf16"), ("torch", "fp32"))
FALLBACK = {("onnxruntime", "int8"): ("onnxruntime", "fp32"), ("torch", "bf16"): ("torch", "fp32")}
CALIBRATION_IMAGES = 100


@dataclass(frozen=True)
class EngineSpec:
    backend: str = "onnxruntime"
    precision: str = "fp32"
    cache_dir: Path = DEFAULT_HOME / "engines"
    calibration_dir: Path = DEMO_PHOTOS  # int8: the photos to calibrate on
    threads: int = 1
    remote: str = ""  # s3://bucket/prefix: where the engine is read from when the cache has none (engine_remote)

    def calibration(self) -> Sequence[bytes]:
        from .calibration import augmented

        return augmented(self.calibration_dir, CALIBRATION_IMAGES, seed=CALIBRATION_SEED)


AS_LOADED = EngineSpec("torch", "fp32")  # the network as loaded: eager fp32, nothing exported


@dataclass(frozen=True)
class ModelSpec:
    model: str
    weights: str = "DEFAULT"
    labels: str | None = None  # JSON file: a list, or TorchServe's index_to_name.json
    fallback: str | None = PACKAGED  # loaded when torchvision's weights cannot be had; None: fail instead
    threads: int = 1
    engine: EngineSpec = field(default_factory=lambda: AS_LOADED)


def check(backend: str, precision: str) -> None:
    """Fails, naming what is valid, for an unknown backend, precision or combination."""
    if backend not in BACKENDS:
        raise ModelUnavailable(f"INFER_BACKEND={backend!r} is not a backend: one of {', '.join(BACKENDS)}")
    if precision not in PRECISIONS:
        raise ModelUnavailable(f"INFER_PRECISION={precision!r} is not a precision: one of {', '.join(PRECISIONS)}")
    if (backend, precision) not in SUPPORTED:
        valid = ", ".join(f"{b}/{p}" for b, p in SUPPORTED)
        raise ModelUnavailable(f"INFER_BACKEND={backend} does not run INFER_PRECISION={precision}: one of {valid}")


def model_spec(settings: Settings) -> ModelSpec:
    """The model, its weights and the engine it runs on, as the settings configure them."""
    return ModelSpec(
        model=settings.infer_model,
        weights=settings.infer_weights,
        labels=settings.infer_labels or None,
        fallback=settings.infer_fallback or None,
        threads=settings.infer_threads,
        engine=engine_spec(settings),
    )


def engine_spec(settings: Settings) -> EngineSpec:
    return EngineSpec(
        backend=settings.infer_backend,
        precision=settings.infer_precision,
        cache_dir=Path(settings.infer_engine_cache) if settings.infer_engine_cache else EngineSpec.cache_dir,
        calibration_dir=Path(settings.infer_calibration_dir) if settings.infer_calibration_dir else DEMO_PHOTOS,
        threads=settings.infer_threads,
        remote=settings.infer_engine_url,
    )


def engine_key(spec: ModelSpec, precision: str) -> str:
    """The engine's name: a readable model part and a digest of everything that decides the engine's contents."""
    named = {"model": spec.model, "weights": spec.weights, "labels": spec.labels}
    if precision == "int8":
        named["calibration"] = str(spec.engine.calibration_dir)
    digest = hashlib.sha256(json.dumps({**named, "precision": precision}, sort_keys=True).encode()).hexdigest()
    return f"{_slug(Path(spec.model).name)}-{precision}-{digest[:16]}"


def sources(spec: ModelSpec) -> Mapping[str, list[int]]:
    """The files the spec names that exist here, with their size and modification time."""
    found: dict[str, list[int]] = {}
    for name in (spec.model, spec.weights, spec.labels):
        if name and ("/" in name or "." in name) and Path(name).is_file():
            stat = Path(name).stat()
            found[str(Path(name).resolve())] = [stat.st_size, stat.st_mtime_ns]
    return found


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:60]
