"""``python -m functions.infer.prepare [--out DIR] [--upload s3://bucket/prefix]``: make the configured model's engine
(INFER_* settings) into the engine cache, or into ``DIR`` (``sam build`` bakes it into infer's zip artifact this way:
functions/Makefile); ``--upload`` also puts it where ``INFER_ENGINE_URL`` reads it from (an engine too large for the
artifact).

Prints the engine's folder on stdout; "building the ONNX engine (once)" on stderr when it is made, nothing when it
was made before. Fails (exit 1, one line saying why) when the model cannot be loaded or the configured engine cannot
be made for it: an artifact must not ship a silent fallback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import replace
from pathlib import Path

from functions.common.settings import get_settings

from . import engine_file, engine_remote
from .config import ModelSpec, model_spec
from .loading import load_classifier
from .model import ModelUnavailable

log = logging.getLogger("functions.infer.prepare")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m functions.infer.prepare", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, help="the engine cache to make it in (default: INFER_ENGINE_CACHE)")
    parser.add_argument("--upload", metavar="S3_URL", help="then put it under s3://bucket/prefix (INFER_ENGINE_URL)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    spec = model_spec(get_settings())
    spec = replace(spec, engine=replace(spec.engine, remote=""))  # made here, never fetched
    if args.out is not None:
        spec = replace(spec, engine=replace(spec.engine, cache_dir=args.out.resolve()))
    wanted = f"{spec.engine.backend}/{spec.engine.precision}"
    if spec.engine.backend == "onnxruntime" and not _cached(spec):
        print("building the ONNX engine (once)", file=sys.stderr, flush=True)
    try:
        classifier = load_classifier(spec)
    except ModelUnavailable as exc:
        print(exc, file=sys.stderr)
        return 1
    if classifier.engine != wanted or not classifier.name.startswith(f"{Path(spec.model).stem}:"):
        print(f"{classifier.name} runs on {classifier.engine}, not {spec.model} on the configured "
              f"{wanted} (see the warning above)", file=sys.stderr)  # fmt: skip
        return 1
    if spec.engine.backend != "onnxruntime":
        print(classifier.name)
        return 0
    print(engine_file.folder(spec))
    if args.upload:
        try:
            print(engine_remote.upload(engine_file.folder(spec), args.upload))
        except Exception as exc:  # boto3's own errors: one line, as every other failure here
            print(f"cannot upload the engine to {args.upload}: {exc}", file=sys.stderr)
            return 1
    return 0


def _cached(spec: ModelSpec) -> bool:
    return (engine_file.folder(spec) / engine_file.MANIFEST_NAME).is_file()


if __name__ == "__main__":
    sys.exit(main())
