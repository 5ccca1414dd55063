"""Where the network runs: eager PyTorch (fp32 or bf16 autocast) or ONNX Runtime (fp32 or int8), by
``INFER_BACKEND`` and ``INFER_PRECISION``.

An ONNX model is exported once per model, weights, precision and library versions into ``INFER_ENGINE_CACHE``
(``torch.onnx.export``, the torch.export-based exporter, batch dimension dynamic; int8: ONNX Runtime's static
QDQ quantization, per channel, calibrated on real photos) and loaded from there by every later start. Which
combination may be a default is decided by measured top-1 agreement with eager fp32 (``bench/accuracy.py``, the
README's table). A combination that cannot be built for this model (an export that fails, a quantization that
breaks) falls back to the next one in ``FALLBACK`` with a warning that says why.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from functions.common.image_limits import ImageLimits
from functions.common.settings import DEFAULT_HOME

from .model import Classifier, ModelUnavailable

log = logging.getLogger(__name__)

BACKENDS = ("torch", "onnxruntime")
PRECISIONS = ("fp32", "bf16", "int8")
# What each backend runs, and what to try next when a combination cannot be built for a model.
SUPPORTED = (("onnxruntime", "int8"), ("onnxruntime", "fp32"), ("torch", "bf16"), ("torch", "fp32"))
FALLBACK = {
    ("onnxruntime", "int8"): ("onnxruntime", "fp32"),
    ("onnxruntime", "fp32"): ("torch", "fp32"),
    ("torch", "bf16"): ("torch", "fp32"),
}
MAX_BATCH = 1024  # the exported model's batch dimension admits 1..MAX_BATCH
CALIBRATION_IMAGES = 100


@dataclass(frozen=True)
class EngineSpec:
    backend: str = "onnxruntime"
    precision: str = "fp32"
    cache_dir: Path = DEFAULT_HOME / "engines"
    calibration: Callable[[], Sequence[bytes]] | None = None  # int8: the photos to calibrate on
    threads: int = 1


AS_LOADED = EngineSpec("torch", "fp32")  # the network as loaded: eager fp32, nothing exported


def check(backend: str, precision: str) -> None:
    """Fails, naming what is valid, for an unknown backend, precision or combination."""
    if backend not in BACKENDS:
        raise ModelUnavailable(f"INFER_BACKEND={backend!r} is not a backend: one of {', '.join(BACKENDS)}")
    if precision not in PRECISIONS:
        raise ModelUnavailable(f"INFER_PRECISION={precision!r} is not a precision: one of {', '.join(PRECISIONS)}")
    if (backend, precision) not in SUPPORTED:
        valid = ", ".join(f"{b}/{p}" for b, p in SUPPORTED)
        raise ModelUnavailable(f"INFER_BACKEND={backend} does not run INFER_PRECISION={precision}: one of {valid}")


def on_engine(classifier: Classifier, spec: EngineSpec) -> Classifier:
    """``classifier`` with its network on the configured engine, or on the first fallback that can be built."""
    check(spec.backend, spec.precision)
    wanted: tuple[str, str] | None = (spec.backend, spec.precision)
    while wanted is not None:
        backend, precision = wanted
        try:
            net = _build(classifier, backend, precision, spec)
        except Exception as exc:
            wanted = FALLBACK.get(wanted)
            if wanted is None:
                raise
            log.warning(
                "%s on %s/%s cannot be built (%s); using %s/%s instead",
                classifier.name, backend, precision, _short(exc), *wanted,
            )  # fmt: skip
            continue
        return replace(classifier, net=net, engine=f"{backend}/{precision}", channels_last=backend == "torch")
    raise AssertionError("unreachable")


def _short(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"


def _build(classifier: Classifier, backend: str, precision: str, spec: EngineSpec) -> Callable[[torch.Tensor], Any]:
    if backend == "torch":
        return classifier.net if precision == "fp32" else _Bf16(classifier.net)
    module = _module(classifier)
    weights = _weights_digest(module)
    fp32 = _cached(classifier.name, "fp32", weights, spec.cache_dir, lambda path: _export(classifier, module, path))
    if precision == "fp32":
        return _OrtNet(fp32, spec.threads)
    photos = _calibration(spec)  # made once: the file's key and the quantization both need them
    key = weights + "".join(hashlib.sha256(data).hexdigest() for data in photos)
    int8 = _cached(classifier.name, "int8", key, spec.cache_dir, lambda path: _quantize(fp32, path, classifier, photos))
    return _OrtNet(int8, spec.threads)


class _Bf16:
    """Eager PyTorch under bf16 autocast (oneDNN's bf16 kernels on CPUs with AVX512-BF16 or AMX); fp32 out."""

    def __init__(self, net: Callable[[torch.Tensor], torch.Tensor]) -> None:
        self.net = net

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return self.net(batch).float()


class _OrtNet:
    """An ONNX Runtime session called like the network: a float32 NCHW batch in, logits out (as a tensor)."""

    def __init__(self, path: Path, threads: int) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # Idle intra-op threads must not spin: the decode threads and the other workers share these cores.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        array = batch.detach().contiguous().numpy()  # NCHW, whatever layout the caller's tensor had
        return torch.from_numpy(self.session.run(None, {self.input: array})[0])


def _cached(name: str, precision: str, depends_on: str, cache_dir: Path, make: Callable[[Path], None]) -> Path:
    """The engine file of model ``name`` at ``precision``, keyed by what it ``depends_on`` and the libraries: built
    once (atomically: workers start together). A cache folder that cannot be written (a read-only image) is read,
    and files are built in the temp folder."""
    import onnxruntime

    versions = f"{torch.__version__} {onnxruntime.__version__} {precision} {depends_on}"
    name = f"{_slug(name)}-{precision}-{hashlib.sha256(versions.encode()).hexdigest()[:16]}.onnx"
    folders = (cache_dir, Path(tempfile.gettempdir()) / "faasinfer-engines")
    for folder in folders:
        if (folder / name).is_file():
            log.debug("engine %s from the cache", folder / name)
            return folder / name
    for folder in folders:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=folder, suffix=".onnx.tmp")
        except OSError as exc:
            log.warning("engine cache %s cannot be written (%s)", folder, exc)
            continue
        os.close(fd)
        try:
            make(Path(tmp))
            os.chmod(tmp, 0o644)  # mkstemp makes it private; an image built as root is run by another user
            os.replace(tmp, folder / name)
        finally:
            Path(tmp).unlink(missing_ok=True)
        log.info("engine %s built", folder / name)
        return folder / name
    raise ModelUnavailable(f"no engine cache folder can be written: {', '.join(map(str, folders))}")


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:80]


def _module(classifier: Classifier) -> torch.nn.Module:
    if not isinstance(classifier.net, torch.nn.Module):
        raise ModelUnavailable(f"{classifier.name}: not a torch module, nothing to export")
    return classifier.net


def _weights_digest(module: torch.nn.Module) -> str:
    """The weights themselves, not their file's name: two state dicts of one name get two engines."""
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _export(classifier: Classifier, module: torch.nn.Module, path: Path) -> None:
    sample = classifier.transform(_grey()).unsqueeze(0).repeat(2, 1, 1, 1)
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    # The exporter narrates its steps on stdout/stderr: kept off the console (failures raise with the reason).
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        program = torch.onnx.export(
            module, (sample,), None, input_names=["input"], output_names=["logits"],
            dynamo=True, dynamic_shapes=({0: batch},), verbose=False,
        )  # fmt: skip
        if program is None:
            raise ModelUnavailable("torch.onnx.export returned no program")
        program.save(str(path))


def _quantize(fp32: Path, path: Path, classifier: Classifier, photos: Sequence[bytes]) -> None:
    """Static QDQ int8 (per-channel weights, MinMax activation ranges) calibrated on ``photos``."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    tensors = [classifier.preprocess(data, ImageLimits()).unsqueeze(0).numpy() for data in photos]

    class Photos(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            self.batches = iter(tensors)

        def get_next(self) -> dict[str, Any] | None:
            batch = next(self.batches, None)
            return None if batch is None else {"input": batch}

    prepared = path.with_suffix(".pre.onnx")
    logging.getLogger().addFilter(_quiet_quantizer)  # it logs every rescaled weight on the root logger, at INFO
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            quant_pre_process(str(fp32), str(prepared))
            quantize_static(
                str(prepared), str(path), Photos(), quant_format=QuantFormat.QDQ, per_channel=True,
                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            )  # fmt: skip
    finally:
        prepared.unlink(missing_ok=True)


def _quiet_quantizer(record: logging.LogRecord) -> bool:
    return "onnxruntime" not in record.pathname or record.levelno >= logging.WARNING


def _calibration(spec: EngineSpec) -> Sequence[bytes]:
    if spec.calibration is None:
        raise ModelUnavailable("INFER_PRECISION=int8 needs calibration photos (INFER_CALIBRATION_DIR)")
    photos = spec.calibration()
    if not photos:
        raise ModelUnavailable("INFER_PRECISION=int8: the calibration folder holds no photos")
    return photos


def _grey() -> Any:
    from PIL import Image

    return Image.new("RGB", (320, 240), (128, 128, 128))
