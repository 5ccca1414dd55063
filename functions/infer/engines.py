"""How an engine is made (torch side, build time; at run time only for ``INFER_BACKEND=torch``): eager PyTorch
(fp32, or bf16 autocast), or an ONNX file for ONNX Runtime (fp32, or int8) saved into the engine cache
(``engine_file``) for every later start, and for the zip artifact (``prepare --out``).

The ONNX file is exported with ``torch.onnx.export`` (the torch.export-based exporter, batch dimension dynamic); int8
is ONNX Runtime's static QDQ quantization, per channel, calibrated on real photos. Which combination may be a default
is decided by measured top-1 agreement with eager fp32 (``bench/accuracy.py``, docs/models.md). A combination that
cannot be built for this model (a quantization that breaks) falls back to the next one in ``config.FALLBACK`` with a
warning that says why; the engine's manifest then names what it really runs, which ``prepare`` refuses to ship.
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from functions.common.image_limits import ImageLimits

from . import engine_file
from .catalog import TorchNet, load_torch
from .config import FALLBACK, ModelSpec
from .model import Classifier, ModelUnavailable

log = logging.getLogger(__name__)

MAX_BATCH = 1024  # the exported model's batch dimension admits 1..MAX_BATCH


def build(spec: ModelSpec) -> Classifier:
    """The classifier of ``spec`` on its engine: eager for torch; for ONNX Runtime the cached engine of the model
    actually loaded (the fallback's, when the configured weights cannot be had), made first when there is none."""
    loaded, loaded_spec = load_torch(spec)
    if loaded_spec.engine.backend == "torch":
        if loaded_spec.engine.precision == "bf16":
            assert isinstance(loaded.net, TorchNet)
            loaded = replace(loaded, net=TorchNet(loaded.net.module, bf16=True), engine="torch/bf16")
            engine_file.check_fits(loaded, loaded_spec)
        return loaded
    if loaded_spec != spec and (cached := engine_file.load_cached(loaded_spec)) is not None:
        return cached  # the fallback model's engine, made before (the caller looked for the configured one)
    spec = loaded_spec
    with tempfile.TemporaryDirectory(prefix="faasinfer-export-") as scratch:
        onnx, engine = _onnx(loaded, spec, Path(scratch))
        try:
            engine_file.save(spec, onnx, loaded.name, engine, loaded.labels, loaded.preprocessing)
        except OSError as exc:  # a read-only cache (an image's): the temp folder serves this process
            log.warning("engine cache %s cannot be written (%s); using the temp folder", spec.engine.cache_dir, exc)
            spec = engine_file.in_temp_cache(spec)
            engine_file.save(spec, onnx, loaded.name, engine, loaded.labels, loaded.preprocessing)
    return engine_file.load(spec)


def _onnx(loaded: Classifier, spec: ModelSpec, scratch: Path) -> tuple[Path, str]:
    """The ONNX file for the wanted precision, or for the first fallback that can be made, and what it runs."""
    wanted: tuple[str, str] | None = ("onnxruntime", spec.engine.precision)
    fp32 = scratch / "fp32.onnx"
    try:
        _export(loaded, fp32)
    except Exception as exc:
        raise ModelUnavailable(
            f"{loaded.name} cannot be exported to ONNX ({_short(exc)}); INFER_BACKEND=torch runs it eagerly"
        ) from exc
    while wanted is not None:
        backend, precision = wanted
        if precision == "fp32":
            return fp32, f"{backend}/{precision}"
        try:
            int8 = scratch / "int8.onnx"
            _quantize(fp32, int8, loaded, _calibration(spec))
            return int8, f"{backend}/{precision}"
        except Exception as exc:
            wanted = FALLBACK.get(wanted)
            if wanted is None:
                raise
            log.warning("%s on %s/%s cannot be built (%s); using %s/%s instead", loaded.name, backend, precision,
                        _short(exc), *wanted)  # fmt: skip
    raise AssertionError("unreachable")


def _short(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"


def _export(loaded: Classifier, path: Path) -> None:
    if not isinstance(loaded.net, TorchNet):
        raise ModelUnavailable(f"{loaded.name}: not a torch module, nothing to export")
    grey = Image.new("RGB", (320, 240), (128, 128, 128))
    sample = torch.from_numpy(np.stack([loaded.preprocessing(grey)] * 2))
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    # The exporter narrates its steps on stdout/stderr: kept off the console (failures raise with the reason).
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        program = torch.onnx.export(
            loaded.net.module, (sample,), None, input_names=["input"], output_names=["logits"],
            dynamo=True, dynamic_shapes=({0: batch},), verbose=False,
        )  # fmt: skip
        if program is None:
            raise ModelUnavailable("torch.onnx.export returned no program")
        program.save(str(path))


def _quantize(fp32: Path, path: Path, classifier: Classifier, photos: Sequence[bytes]) -> None:
    """Static QDQ int8 (per-channel weights, MinMax activation ranges) calibrated on ``photos``."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    arrays = [classifier.preprocess(data, ImageLimits())[np.newaxis] for data in photos]

    class Photos(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            self.batches = iter(arrays)

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
        logging.getLogger().removeFilter(_quiet_quantizer)


def _quiet_quantizer(record: logging.LogRecord) -> bool:
    return "onnxruntime" not in record.pathname or record.levelno >= logging.WARNING


def _calibration(spec: ModelSpec) -> Sequence[bytes]:
    photos = spec.engine.calibration()
    if not photos:
        raise ModelUnavailable("INFER_PRECISION=int8: the calibration folder holds no photos")
    return photos
