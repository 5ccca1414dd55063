"""The infer function's classifier, as its settings configure it: on the default engine (ONNX Runtime) loaded from
the engine cache without importing torch; made there first (``engines.build``) only where torch is installed.

A deployed zip artifact carries its engine (``INFER_ENGINE_CACHE=/var/task/engines``, made by ``sam build``) and no
torch, or reads it from S3 at init (``INFER_ENGINE_URL``: ``engine_remote``): a missing engine is a start that fails
with one message naming where it was looked for and the command that makes it.
"""

from __future__ import annotations

import importlib.util
import logging

from . import engine_file, engine_remote, heap
from .config import ModelSpec, check
from .model import Classifier, ModelUnavailable

log = logging.getLogger(__name__)


def load_classifier(spec: ModelSpec) -> Classifier:
    """The configured classifier, checked end to end (one forward pass) before it is used."""
    check(spec.engine.backend, spec.engine.precision)
    classifier = engine_file.load_cached(spec) if spec.engine.backend == "onnxruntime" else None
    if classifier is None and spec.engine.backend == "onnxruntime" and spec.engine.remote:
        classifier = engine_file.load(engine_remote.fetch(spec, spec.engine.remote))
    if classifier is None:
        classifier = _built(spec)
    heap.release_freed()  # what loading freed: otherwise resident for the environment's whole life
    log.info(
        "model %s loaded on %s (%d classes, %d threads)",
        classifier.name, classifier.engine, len(classifier.labels), spec.threads,
    )  # fmt: skip
    return classifier


def _built(spec: ModelSpec) -> Classifier:
    if importlib.util.find_spec("torch") is None and spec.engine.backend == "torch":
        raise ModelUnavailable(
            "INFER_BACKEND=torch needs torch: install faasinfer[torch], or run local/Dockerfile.infer"
        )
    if importlib.util.find_spec("torch") is None:
        raise ModelUnavailable(
            f"no engine for INFER_MODEL={spec.model} INFER_WEIGHTS={spec.weights} INFER_PRECISION="
            f"{spec.engine.precision} in {engine_file.folder(spec)}, and this install has no torch to make one: "
            f"make it where faasinfer[torch] is installed with `python -m functions.infer.prepare --out "
            f"{spec.engine.cache_dir}` (the same INFER_* settings)"
        )
    from .engines import build  # torch: only here, and for INFER_BACKEND=torch

    return build(spec)
