"""Cold start of each handler: import time and first invocation, each in a fresh interpreter.

``python -m bench.cold_start [--repeat N]``. upload/query must stay light (no torch); infer's first
invocation includes loading the model (resnet18, random weights, by default).
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
from typing import Any

from bench.common import ROOT, save_json, table
from runtime.broker import EmbeddedBroker, ensure_topics

_PROBE = r"""
import json, sys, time
t0 = time.perf_counter()
import importlib
module = importlib.import_module(sys.argv[1])
t1 = time.perf_counter()
event = json.load(open(sys.argv[2]))
result = module.handler(event, None)
t2 = time.perf_counter()
print(json.dumps({{"import_s": t1 - t0, "first_s": t2 - t1, "torch": "torch" in sys.modules}}))
"""

_SEED = """
import asyncio
from functions.common.store import open_store, RequestRow
from functions.common.blobs import blob_store_from_url
from functions.common.resources import database_url
from functions.common.settings import get_settings
async def seed():
    s = open_store(database_url()); await s.init_schema()
    await s.create_session("3f1c9b2e-7a4d-4c1e-9f0a-2b6d8e5c1a47")
    for seq in range(12):
        await s.add_request(RequestRow("3f1c9b2e-7a4d-4c1e-9f0a-2b6d8e5c1a47", seq, 1, "x", "0" * 64, "image/jpeg"))
    await s.close()
    b = blob_store_from_url(get_settings().blob_url)
    for name, photo in (("0.jpg", "chelsea.jpg"), ("1.png", "camera.png")):
        data = open("{photos}/" + photo, "rb").read()
        await b.put("3f1c9b2e-7a4d-4c1e-9f0a-2b6d8e5c1a47/" + name, data, "image/jpeg")
asyncio.run(seed())
"""

HANDLERS = {
    "upload": ("functions.upload.app", "apigw_v2_upload_register"),
    "query": ("functions.query.app", "apigw_v2_query_result"),
    "collect": ("functions.collect.app", "selfmanaged_collect"),
    "infer": ("functions.infer.app", "selfmanaged_infer"),
}


def probe(name: str, env: dict[str, str]) -> dict[str, Any]:
    module, event = HANDLERS[name]
    seed = _SEED.replace("{photos}", str(ROOT / "demo" / "photos"))
    subprocess.run([sys.executable, "-c", seed], env=env, check=True, cwd=env["WORKDIR"])
    code = _PROBE.replace("{{", "{").replace("}}", "}")
    out = subprocess.run(
        [sys.executable, "-c", code, module, str(ROOT / "tests" / "events" / f"{event}.json")],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd=env["WORKDIR"],
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def run(repeat: int, model: str) -> dict[str, dict[str, float]]:
    results: dict[str, dict[str, float]] = {}
    with EmbeddedBroker() as bootstrap:
        asyncio.run(ensure_topics(bootstrap, {"inference-request": 1, "inference-result": 1, "inference-dlq": 1}))
        for name in HANDLERS:
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
                        "INFER_WEIGHTS": "random",
                        "LOG_LEVEL": "WARNING",
                    }
                    samples.append(probe(name, env))
            results[name] = {
                "import_s": statistics.median(s["import_s"] for s in samples),
                "first_s": statistics.median(s["first_s"] for s in samples),
                "torch": float(any(s["torch"] for s in samples)),
            }
    return results


def report(results: dict[str, dict[str, float]], repeat: int) -> str:
    rows = [
        (name, f"{r['import_s'] * 1000:.0f} ms", f"{r['first_s'] * 1000:.0f} ms", "yes" if r["torch"] else "no")
        for name, r in results.items()
    ]
    return table(
        f"Cold start (median of {repeat} fresh interpreters)",
        ["handler", "import", "first invocation", "torch loaded"],
        rows,
    )


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--model", default="resnet18")
    args = parser.parse_args(argv)
    results = run(args.repeat, args.model)
    print(report(results, args.repeat))
    save_json("cold_start", results)
    return results


if __name__ == "__main__":
    main()
