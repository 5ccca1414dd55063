"""Decode + preprocess, the part of inference that the engine does not speed up: images per second, one thread.

``python -m bench.decode [--images N] [--rounds R] [--json PATH]``. The bench photos (mixed sizes, JPEG) through
the service's own path (``Classifier.preprocess``: the header checked, JPEG draft mode, i.e. DCT scaling, when a
photo is at least twice the resize target, a box reduction otherwise, EXIF orientation, the model's transform)
against a full decode followed by the same transform. The median of ``R`` rounds over the same photos, measured
alternately in one run; the ratio is what draft mode buys on these photos.
"""

from __future__ import annotations

import argparse
import io
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import photos, save_json, table


def _full_decode(classifier: Any, data: bytes) -> Any:
    from PIL import Image, ImageOps

    with Image.open(io.BytesIO(data)) as img:
        return classifier.preprocessing(ImageOps.exif_transpose(img).convert("RGB"))


def run(n: int, rounds: int) -> dict[str, Any]:
    from PIL import Image

    from functions.common.image_limits import ImageLimits
    from functions.infer.config import EngineSpec, ModelSpec
    from functions.infer.loading import load_classifier

    classifier = load_classifier(ModelSpec("efficientnet_lite0", engine=EngineSpec(threads=1)))
    images, limits = photos(n), ImageLimits()
    target = 2 * classifier.preprocessing.resize
    drafted = sum(min(Image.open(io.BytesIO(d)).size) >= target for d in images)

    def service(data: bytes) -> Any:
        return classifier.preprocess(data, limits)

    def full(data: bytes) -> Any:
        return _full_decode(classifier, data)

    paths: dict[str, Callable[[bytes], Any]] = {"service (draft)": service, "full decode": full}
    for path in paths.values():  # warm-up
        path(images[0])
    rates: dict[str, list[float]] = {name: [] for name in paths}
    for _ in range(rounds):
        for name, path in paths.items():
            started = time.perf_counter()
            for data in images:
                path(data)
            rates[name].append(len(images) / (time.perf_counter() - started))
    medians = {name: statistics.median(r) for name, r in rates.items()}
    return {
        "images": n, "rounds": rounds, "photos_at_least_2x_target": drafted, "target_short_side": target,
        "img_per_s": {name: round(v, 1) for name, v in medians.items()},
        "rounds_img_per_s": {name: [round(x, 1) for x in r] for name, r in rates.items()},
        "ratio_draft_over_full": round(medians["service (draft)"] / medians["full decode"], 2),
    }  # fmt: skip


def report(out: dict[str, Any]) -> str:
    rows = [(name, f"{v:.1f}") for name, v in out["img_per_s"].items()]
    title = (f"Decode + preprocess, 1 thread, {out['images']} photos ({out['photos_at_least_2x_target']} at least "
             f"{out['target_short_side']} px on the short side)")  # fmt: skip
    return table(title, ["path", "img/s"], rows) + f"\nratio draft / full: {out['ratio_draft_over_full']:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path, help="where to write the result (default: bench/results/decode.json)")
    args = parser.parse_args()
    out = run(args.images, args.rounds)
    print(report(out))
    save_json("decode", out, args.json)


if __name__ == "__main__":
    main()
