"""The accuracy gate: every backend x precision against eager fp32, on real photos, with its speed beside it.

``python -m bench.accuracy [--images N] [--seconds S] [--threads T] [--json PATH]``. For each model with real
weights here (the packaged EfficientNet-Lite0; a torchvision model when its weights are in the torch hub cache),
the evaluation set is the shipped CC0 / public-domain photos with fixed augmentations (``N`` >= 400 variants,
another seed than int8's calibration). Per combination: top-1 agreement (the same best label as eager fp32),
top-5 overlap (shared labels among the five best, averaged) and forward throughput (batch 8, ``T`` threads, one
process, for at least ``S`` seconds after a warm-up). A combination is eligible as a default with top-1 agreement
>= 99%; the default is the fastest eligible one (``INFER_BACKEND`` / ``INFER_PRECISION`` in settings must say so:
a test reads this file).
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench.common import save_json, table

GATE = 0.99
EVAL_SEED = 1
BATCH = 8
# Torchvision models measured when their weights are already in the torch hub cache (nothing is downloaded).
CACHED_CANDIDATES = ("resnet18", "resnet50", "mobilenet_v3_large")


def models_here() -> list[tuple[str, str]]:
    import torch
    import torchvision

    found = [("efficientnet_lite0", "DEFAULT")]
    for arch in CACHED_CANDIDATES:
        weights = torchvision.models.get_model_weights(arch).DEFAULT
        if (Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name).is_file():
            found.append((arch, "DEFAULT"))
    return found


def _logits(classifier: Any, batch: Any) -> Any:
    import numpy as np

    return np.concatenate([classifier.net(batch[i : i + BATCH]) for i in range(0, len(batch), BATCH)])


def _top5(logits: Any) -> Any:
    import numpy as np

    return np.argsort(-logits, axis=1, kind="stable")[:, :5]


def _speed(classifier: Any, batch: Any, seconds: float) -> float:
    """Images per second through ``Classifier.predict`` (the service's own call: layout, softmax, top-5)."""
    chunk, topks = batch[:BATCH], [5] * BATCH
    for _ in range(3):
        classifier.predict(chunk, topks)
    done, started = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds or done < 10 * BATCH:
        classifier.predict(chunk, topks)
        done += BATCH
    return done / elapsed


def measure_model(model: str, weights: str, images: int, seconds: float, threads: int, cache: Path) -> dict[str, Any]:
    import numpy as np

    from functions.common.image_limits import ImageLimits
    from functions.common.settings import Settings
    from functions.infer.calibration import DEMO_PHOTOS, augmented
    from functions.infer.config import SUPPORTED, ModelSpec, engine_spec
    from functions.infer.loading import load_classifier

    photos = augmented(DEMO_PHOTOS, images, seed=EVAL_SEED)
    configured = replace(engine_spec(Settings()), cache_dir=cache)  # the service's calibration, a fresh cache
    reference = load_classifier(ModelSpec(model, weights, fallback=None, threads=threads))
    batch = np.stack([reference.preprocess(data, ImageLimits()) for data in photos])
    expected = _logits(reference, batch)
    top1, top5 = expected.argmax(1), _top5(expected)
    rows = []
    for backend, precision in sorted(SUPPORTED, key=lambda c: (c[0] != "torch", c[1] != "fp32", c)):
        engine = replace(configured, backend=backend, precision=precision)
        classifier = load_classifier(ModelSpec(model, weights, fallback=None, threads=threads, engine=engine))
        if classifier.engine != f"{backend}/{precision}":
            rows.append({"backend": backend, "precision": precision, "built": False})
            continue
        got = _logits(classifier, batch)
        overlap = [len(set(a.tolist()) & set(b.tolist())) / 5 for a, b in zip(_top5(got), top5, strict=True)]
        agreement = float((got.argmax(1) == top1).mean())
        rows.append({
            "backend": backend, "precision": precision, "built": True,
            "top1_agreement": round(agreement, 4), "top5_overlap": round(sum(overlap) / len(overlap), 4),
            "forward_img_per_s": round(_speed(classifier, batch, seconds), 1), "eligible": agreement >= GATE,
        })  # fmt: skip
    return {"model": f"{model}:{weights}", "eval_images": images, "reference_classes": len(set(top1.tolist())),
            "combinations": rows}  # fmt: skip


def default_of(models: list[dict[str, Any]]) -> dict[str, Any]:
    """The fastest combination eligible on every model measured (speed: the first model's)."""
    eligible = [
        (row["backend"], row["precision"])
        for row in models[0]["combinations"]
        if all(any(r.get("eligible") and (r["backend"], r["precision"]) == (row["backend"], row["precision"])
                   for r in m["combinations"]) for m in models)
    ]  # fmt: skip
    speed = {(r["backend"], r["precision"]): r.get("forward_img_per_s", 0) for r in models[0]["combinations"]}
    backend, precision = max(eligible, key=lambda c: speed[c])
    return {"backend": backend, "precision": precision}


def run(images: int, seconds: float, threads: int) -> dict[str, Any]:
    import onnxruntime
    import torch

    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as tmp:
        models = [measure_model(m, w, images, seconds, threads, Path(tmp)) for m, w in models_here()]
    return {
        "versions": {"torch": torch.__version__, "onnxruntime": onnxruntime.__version__},
        "gate_top1_agreement": GATE, "threads": threads, "batch": BATCH,
        "models": models, "default": default_of(models),
    }  # fmt: skip


def report(out: dict[str, Any]) -> str:
    parts = []
    for m in out["models"]:
        rows = [
            (f"{r['backend']}/{r['precision']}", f"{r['top1_agreement']:.2%}", f"{r['top5_overlap']:.2%}",
             f"{r['forward_img_per_s']:.1f}", "yes" if r["eligible"] else "no")
            if r["built"] else (f"{r['backend']}/{r['precision']}", "not built", "", "", "no")
            for r in m["combinations"]
        ]  # fmt: skip
        title = f"{m['model']}: {m['eval_images']} augmented photos, vs eager fp32 (gate: top-1 >= {GATE:.0%})"
        parts.append(table(title, ["engine", "top-1 agreement", "top-5 overlap", "img/s", "eligible"], rows))
    default = out["default"]
    parts.append(f"\ndefault: INFER_BACKEND={default['backend']} INFER_PRECISION={default['precision']}")
    return "\n".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--seconds", type=float, default=10.0, help="steady forward passes per combination")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, help="where to write the result (default: bench/results/accuracy.json)")
    args = parser.parse_args()
    out = run(args.images, args.seconds, args.threads)
    print(report(out))
    save_json("accuracy", out, args.json)


if __name__ == "__main__":
    main()
