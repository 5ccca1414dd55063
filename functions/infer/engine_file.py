"""An ONNX engine on disk and how the function runs it: torch-free (ONNX Runtime, numpy, the standard library).

An engine is a folder ``<cache>/<key>/`` (``config.engine_key``) holding ``engine.onnx`` and ``manifest.json``: the
model's name, the engine it runs (``onnxruntime/fp32``...), its labels and its preprocessing, the sha256 of the ONNX
file and the fingerprints of the files it was made from. ``load`` trusts nothing it has not checked: the manifest
must name this key, the file must have its recorded digest (a truncated copy is refused, naming its path), a source
file here that changed since is an engine to build again, and one grey image must give one score per label.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .config import ModelSpec, engine_key, sources
from .model import Classifier, ModelUnavailable
from .preprocess import Preprocessing

log = logging.getLogger(__name__)

FORMAT = 1
ONNX_NAME, MANIFEST_NAME = "engine.onnx", "manifest.json"


class EngineMissing(ModelUnavailable):
    """No usable engine for this spec in the cache (absent, or made from files that have changed): build one."""


class OrtNet:
    """An ONNX Runtime session called like the network: a float32 NCHW batch in, logits out."""

    def __init__(self, path: Path, threads: int) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # Idle intra-op threads must not spin: the decode threads and the other workers share these cores.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return np.asarray(self.session.run(None, {self.input: np.ascontiguousarray(batch, dtype=np.float32)})[0])


def folder(spec: ModelSpec) -> Path:
    return spec.engine.cache_dir / engine_key(spec, spec.engine.precision)


def in_temp_cache(spec: ModelSpec) -> ModelSpec:
    """``spec`` with the temp folder as its cache: where engines go when the configured cache cannot be written."""
    return replace(spec, engine=replace(spec.engine, cache_dir=Path(tempfile.gettempdir()) / "faasinfer-engines"))


def load_cached(spec: ModelSpec) -> Classifier | None:
    """The engine of ``spec`` from its cache folder or the temp folder, checked; ``None`` when neither has one."""
    for candidate in (spec, in_temp_cache(spec)):
        try:
            return load(candidate)
        except EngineMissing as missing:
            log.debug("%s", missing)
    return None


def load(spec: ModelSpec) -> Classifier:
    """The engine of ``spec`` from its cache folder, checked; ``EngineMissing`` when there is none to use."""
    where = folder(spec)
    manifest = _manifest(where)
    onnx = where / ONNX_NAME
    here = {name: list(value) for name, value in sources(spec).items()}
    if here and manifest["sources"] != here:  # files that are not here (a deployed function) cannot have changed
        raise EngineMissing(f"engine {where} was made from files that have changed since")
    digest = _sha256(onnx)
    if digest != manifest["sha256"]:
        raise ModelUnavailable(
            f"engine {onnx} is damaged: {onnx.stat().st_size} bytes with sha256 {digest[:12]}, the manifest says "
            f"{manifest['bytes']} bytes with {str(manifest['sha256'])[:12]}; delete {where} to build it again"
        )
    try:
        net = OrtNet(onnx, spec.engine.threads)
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidProtobuf types
        raise ModelUnavailable(f"engine {onnx} cannot be loaded by ONNX Runtime ({exc})") from exc
    classifier = Classifier(
        name=str(manifest["name"]),
        net=net,
        labels=tuple(manifest["labels"]),
        preprocessing=Preprocessing.from_json(manifest["preprocessing"]),
        engine=str(manifest["engine"]),
    )
    check_fits(classifier, spec)
    return classifier


def _manifest(where: Path) -> dict[str, Any]:
    path = where / MANIFEST_NAME
    if not path.is_file() or not (where / ONNX_NAME).is_file():
        raise EngineMissing(f"no engine in {where}")
    try:
        manifest: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelUnavailable(f"engine manifest {path} cannot be read ({exc}); delete {where} to build it") from exc
    if manifest.get("format") != FORMAT or manifest.get("key") != where.name:
        raise EngineMissing(f"engine {where} is of another format or model ({manifest.get('key')!r})")
    return manifest


def check_fits(classifier: Classifier, spec: ModelSpec) -> None:
    """One forward pass of a grey image: the preprocessing suits the network and the labels its outputs."""
    sample = classifier.preprocessing(Image.new("RGB", (320, 240), (128, 128, 128)))[np.newaxis]
    try:
        outputs = np.asarray(classifier.net(sample))
    except Exception as exc:
        raise ModelUnavailable(f"INFER_MODEL={spec.model}: the network rejects preprocessed images ({exc})") from exc
    if outputs.ndim != 2 or outputs.shape[1] != len(classifier.labels):
        source = f"INFER_LABELS={spec.labels}" if spec.labels else "its labels"
        raise ModelUnavailable(
            f"INFER_MODEL={spec.model} outputs {tuple(outputs.shape[1:])} scores per image but {source} "
            f"has {len(classifier.labels)} names"
        )


def save(spec: ModelSpec, onnx: Path, name: str, engine: str, labels: Sequence[str], prep: Preprocessing) -> Path:
    """``onnx`` moved into the cache folder of ``spec`` with its manifest, atomically (workers start together: the
    first folder renamed into place wins, the others are dropped)."""
    where = folder(spec)
    where.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=where.parent, prefix=f".{where.name}."))
    try:
        shutil.move(str(onnx), staging / ONNX_NAME)
        manifest = {
            "format": FORMAT, "key": where.name, "name": name, "engine": engine,
            "sha256": _sha256(staging / ONNX_NAME), "bytes": (staging / ONNX_NAME).stat().st_size,
            "labels": list(labels), "preprocessing": prep.as_json(), "sources": dict(sources(spec)),
        }  # fmt: skip
        (staging / MANIFEST_NAME).write_text(json.dumps(manifest, indent=1), encoding="utf-8")
        for path in (staging, staging / ONNX_NAME, staging / MANIFEST_NAME):
            os.chmod(path, 0o755 if path.is_dir() else 0o644)  # built as root, run by another user
        put(staging, where, spec)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("engine %s built", where)
    return where


def put(staging: Path, where: Path, spec: ModelSpec) -> None:
    """``staging`` renamed to ``where``. A folder already there is kept when another process made it for the same
    sources meanwhile (it may be loading it), and otherwise moved aside first (made from files since changed)."""
    try:
        staging.rename(where)
        return
    except OSError:
        pass
    try:
        current = _manifest(where).get("sources")
    except ModelUnavailable:
        current = None
    if current == {name: list(value) for name, value in sources(spec).items()}:
        log.debug("engine %s was built by another process meanwhile", where)
        return
    stale = where.with_name(f".{where.name}.stale-{os.getpid()}")
    where.rename(stale)
    staging.rename(where)
    shutil.rmtree(stale, ignore_errors=True)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
