"""An engine read from S3 at init (``INFER_ENGINE_URL``) against one baked into the artifact: what a function's
init pays for each, in a fresh interpreter per start.

``python -m bench.engine_fetch [--model resnet50] [--repeat 3]``. The engine is made once with random weights
(``INFER_WEIGHTS=random``: the size and the load time are the model's, the answers are not) and uploaded to a local
S3 (moto's server on loopback); each start then runs ``load_classifier`` with an empty cache, as a new Lambda
execution environment does. Loopback is not S3: an in-region GET of one object is typically tens of MB/s per
stream, more with ranged parallel parts (which ``download_file`` makes); the bench says what the local part costs
(transfer through boto3, the sha256 check, the ONNX Runtime session) and the size that would cross the network.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.common import ROOT, save_json, table
from runtime.kafka.broker import free_port

URL = "s3://faasinfer-bench/engines"
_START = r"""
import json, sys, time
t0 = time.perf_counter()
from pathlib import Path
from functions.infer.config import EngineSpec, ModelSpec
from functions.infer.loading import load_classifier
t1 = time.perf_counter()
engine = EngineSpec(cache_dir=Path(sys.argv[2]), remote=sys.argv[3])
spec = ModelSpec(sys.argv[1], "random", fallback=None, engine=engine)
classifier = load_classifier(spec)
t2 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "ready_s": t2 - t1, "engine": classifier.engine}))
"""


def _made(model: str, cache: Path) -> Path:
    """The engine folder of ``model`` with random weights, made (with torch) into ``cache``."""
    env = {**os.environ, "INFER_MODEL": model, "INFER_WEIGHTS": "random", "INFER_FALLBACK": "", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "functions.infer.prepare", "--out", str(cache)],
        env=env, capture_output=True, text=True, check=True, cwd=ROOT,
    )  # fmt: skip
    return Path(done.stdout.strip().splitlines()[-1])


def _start(model: str, cache: Path, remote: str, env: dict[str, str]) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", _START, model, str(cache), remote], env=env, capture_output=True, text=True,
        check=True, cwd=ROOT,
    )  # fmt: skip
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def run(model: str, repeat: int) -> dict[str, Any]:
    import boto3
    from moto.server import ThreadedMotoServer

    from functions.infer import engine_remote

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's server: one line per request otherwise
    work = Path(tempfile.mkdtemp(prefix="engine-fetch-"))
    folder = _made(model, work / "baked")
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    credentials = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1"}
    endpoint = f"http://127.0.0.1:{port}"
    try:
        client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id="bench",
            aws_secret_access_key="bench",
            region_name="us-east-1",
        )
        client.create_bucket(Bucket="faasinfer-bench")
        engine_remote.upload(folder, URL, client)
        env = {**os.environ, **credentials, "AWS_ENDPOINT_URL_S3": endpoint, "PYTHONPATH": str(ROOT)}
        fetched, baked = [], []
        for i in range(repeat):
            tmp = work / f"tmp-{i}"
            tmp.mkdir()
            fetched.append(_start(model, work / f"empty-{i}", URL, {**env, "TMPDIR": str(tmp)}))
            baked.append(_start(model, work / "baked", "", env))
    finally:
        server.stop()
    size = (folder / "engine.onnx").stat().st_size
    return {
        "model": model, "engine_mb": round(size / 1e6, 1), "repeat": repeat, "s3": "moto server on loopback",
        "fetched_ready_s": round(statistics.median(r["ready_s"] for r in fetched), 3),
        "baked_ready_s": round(statistics.median(r["ready_s"] for r in baked), 3),
        "import_s": round(statistics.median(r["import_s"] for r in fetched + baked), 3),
        "engine": fetched[0]["engine"],
    }  # fmt: skip


def report(result: dict[str, Any]) -> str:
    rows = [
        ["baked into the artifact", f"{result['baked_ready_s']:.2f}"],
        ["read from S3 at init (loopback)", f"{result['fetched_ready_s']:.2f}"],
    ]
    title = f"{result['model']} engine {result['engine_mb']} MB: model ready, median of {result['repeat']} starts"
    return table(title, ["engine", "model ready (s)"], rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.engine_fetch", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    result = run(args.model, args.repeat)
    print(report(result))
    save_json("engine_fetch", result)


if __name__ == "__main__":
    main()
