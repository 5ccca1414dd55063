"""Cold start of each handler: import time and first invocation, each in a fresh interpreter.

``python -m bench.cold_start [--repeat N] [--build-dir DIR]``. upload/query must stay light (no torch); infer's
first invocation loads the model's engine (the packaged EfficientNet-Lite0 by default, made beforehand as the build
makes it) and classifies a batch of 8 real photos. ``--build-dir``: each function from its `sam build` artifact on
CPython 3.12, as Lambda runs it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.common import ROOT, save_json, table
from runtime.kafka.broker import EmbeddedBroker, ensure_topics
from runtime.lambdafn.artifact import lambda_python

_PROBE = r"""
import base64, json, statistics, sys, time
t0 = time.perf_counter()
import importlib
module = importlib.import_module(sys.argv[1])
t1 = time.perf_counter()
event = json.load(open(sys.argv[2]))
result = module.handler(event, None)
t2 = time.perf_counter()
# This process image's own peak (VmHWM): ru_maxrss would carry the peak of the process it was forked from
status = open("/proc/self/status").read().split("VmHWM:")[1]
rss_mb = int(status.split()[0]) / 1024
def again(i):
    if event.get("rawPath") != "/image":
        return event
    seq = b'name="seq"\r\n\r\n'
    body = base64.b64decode(event["body"]).replace(seq + b"7\r\n", seq + b"%d\r\n" % (100 + i))
    return {{**event, "body": base64.b64encode(body).decode()}}
warm = []
for i in range(int(sys.argv[3])):
    varied = again(i)
    started = time.perf_counter()
    module.handler(varied, None)
    warm.append(time.perf_counter() - started)
print(json.dumps({{"import_s": t1 - t0, "first_s": t2 - t1, "torch": "torch" in sys.modules, "result": result,
                  "peak_rss_mb": rss_mb, "warm_s": statistics.median(warm) if warm else None}}))
"""

_SEED = """
import asyncio
from functions.common.store import open_store, RequestRow
from functions.common.blobs import blob_store_from_url
from functions.common.store.secrets import database_url
from functions.common.settings import get_settings
async def seed():
    s = open_store(database_url()); await s.init_schema()
    await s.create_session("3f1c9b2e-7a4d-4c1e-9f0a-2b6d8e5c1a47")
    for seq in range(12):
        await s.add_request(RequestRow("3f1c9b2e-7a4d-4c1e-9f0a-2b6d8e5c1a47", seq, 1, "x", "0" * 64, "image/jpeg"))
    await s.close()
    b = blob_store_from_url(get_settings().blob_url)
    photos = ["chelsea.jpg", "camera.png", "coffee.jpg", "rocket.jpg", "astronaut.jpg"]
    named = [("0.jpg", "chelsea.jpg"), ("1.png", "camera.png")] + [(f"p{i}", photos[i % 5]) for i in range(8)]
    for name, photo in named:
        data = open("{photos}/" + photo, "rb").read()
        await b.put("3f1c9b2e-7a4d-4c1e-9f0a-2b6d8e5c1a47/" + name, data, "image/jpeg")
asyncio.run(seed())
"""

HANDLERS = {
    "upload": ("functions.upload.app", "apigw_v2_upload_image"),
    "query": ("functions.query.app", "apigw_v2_query_result"),
    "collect": ("functions.collect.app", "selfmanaged_collect"),
    "infer": ("functions.infer.app", "selfmanaged_infer"),
}


# ``--build-dir``: each handler from its `sam build` artifact on Lambda's python (3.12), the artifact alone on the path.
ARTIFACTS = {"upload": "UploadFunction", "query": "QueryFunction", "collect": "CollectSelfManagedFunction",
             "infer": "InferSelfManagedFunction"}  # fmt: skip


def _eight_photos(into: Path) -> Path:
    """infer's first batch: a self-managed Kafka event of 8 requests for real photos (the seeded p0..p7)."""
    import base64

    event = json.loads((ROOT / "tests" / "events" / "selfmanaged_infer.json").read_text())
    [(partition, [template, *_])] = event["records"].items()
    session, records = "3f1c9b2e-7a4d-4c1e-9f0a-2b6d8e5c1a47", []
    for seq in range(8):
        value = {"uuid": session, "seq": seq, "topk": 5, "blob": f"{session}/p{seq}", "content_type": "image/jpeg",
                 "submitted_at": "2026-12-05T12:00:00Z"}  # fmt: skip
        records.append({**template, "offset": seq, "key": base64.b64encode(f"{session}:{seq}".encode()).decode(),
                        "value": base64.b64encode(json.dumps(value).encode()).decode()})  # fmt: skip
    event["records"] = {partition: records}
    path = into / "eight_photos.json"
    path.write_text(json.dumps(event))
    return path


def probe(name: str, env: dict[str, str], artifact: Path | None = None, warm: int = 0) -> dict[str, Any]:
    module, event = HANDLERS[name]
    seed = _SEED.replace("{photos}", str(ROOT / "demo" / "photos"))
    subprocess.run([sys.executable, "-c", seed], env=env, check=True, cwd=env["WORKDIR"])
    code = _PROBE.replace("{{", "{").replace("}}", "}")
    python, run_env = sys.executable, env
    if artifact is not None:
        python, run_env = lambda_python(), {**env, "PYTHONPATH": str(artifact)}
        if name == "infer":
            run_env["INFER_ENGINE_CACHE"] = str(artifact / "engines")
    event_file = ROOT / "tests" / "events" / f"{event}.json"
    if name == "infer":
        event_file = _eight_photos(Path(env["WORKDIR"]))
    out = subprocess.run(
        [python, "-c", code, module, str(event_file), str(warm)],
        env=run_env,
        capture_output=True,
        text=True,
        check=True,
        cwd=env["WORKDIR"],
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def run(repeat: int, model: str, build_dir: Path | None = None, warm: int = 0) -> dict[str, dict[str, float]]:
    """Each handler's cold start in a fresh interpreter; infer's engine made first (as ``sam build`` bakes it into
    the artifact), so its cold start is what a deployed function pays: no export, and no torch."""
    results: dict[str, dict[str, float]] = {}
    engines = tempfile.mkdtemp(prefix="faasinfer-cold-engines-")
    weights = "DEFAULT" if model == "efficientnet_lite0" else "random"
    prepare = {**os.environ, "PYTHONPATH": str(ROOT), "INFER_MODEL": model, "INFER_WEIGHTS": weights,
               "INFER_ENGINE_CACHE": engines}  # fmt: skip
    subprocess.run([sys.executable, "-m", "functions.infer.prepare"], env=prepare, check=True, cwd=ROOT,
                   capture_output=True)  # fmt: skip
    with EmbeddedBroker() as bootstrap:
        asyncio.run(ensure_topics(bootstrap, {"inference-request": 1, "inference-result": 1, "inference-dlq": 1}))
        for name in HANDLERS:
            artifact = build_dir / ARTIFACTS[name] if build_dir else None
            if artifact is not None and not artifact.is_dir():
                continue
            samples = []
            for _ in range(repeat):
                with tempfile.TemporaryDirectory() as tmp:
                    env = {
                        **os.environ,
                        "PYTHONPATH": str(ROOT),
                        "WORKDIR": tmp,
                        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
                        "DATABASE_URL": f"sqlite:///{tmp}/db.sqlite",
                        "BLOB_URL": f"file://{tmp}/blobs",
                        "INFER_MODEL": model,
                        "INFER_WEIGHTS": weights,
                        "INFER_ENGINE_CACHE": engines,
                        "LOG_LEVEL": "WARNING",
                    }
                    sample = probe(name, env, artifact, warm)
                    if name == "infer" and sample["result"].get("done") != 8:  # a fast failure is no cold start
                        raise RuntimeError(f"infer's first batch was not classified: {sample['result']}")
                    samples.append(sample)
            results[name] = {
                "import_s": statistics.median(s["import_s"] for s in samples),
                "first_s": statistics.median(s["first_s"] for s in samples),
                "torch": float(any(s["torch"] for s in samples)),
                "peak_rss_mb": round(max(s["peak_rss_mb"] for s in samples), 1),
                **({"warm_s": statistics.median(s["warm_s"] for s in samples)} if warm else {}),
            }
    return results


def report(results: dict[str, dict[str, float]], repeat: int) -> str:
    rows = [
        (
            name,
            f"{r['import_s'] * 1000:.0f} ms",
            f"{r['first_s'] * 1000:.0f} ms",
            f"{(r['import_s'] + r['first_s']) * 1000:.0f} ms",
            f"{r['peak_rss_mb']:.0f} MB",
            "yes" if r["torch"] else "no",
        )
        for name, r in results.items()
    ]
    return table(
        f"Cold start (median of {repeat} fresh interpreters)",
        ["handler", "import", "first invocation", "total", "peak RSS", "torch loaded"],
        rows,
    )


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--model", default="efficientnet_lite0")
    parser.add_argument("--build-dir", type=Path, help="a `sam build` folder: run its artifacts on Lambda's python")
    args = parser.parse_args(argv)
    results = run(args.repeat, args.model, args.build_dir)
    print(report(results, args.repeat))
    save_json("cold_start_artifacts" if args.build_dir else "cold_start", results)
    return results


if __name__ == "__main__":
    main()
