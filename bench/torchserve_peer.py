"""Peer: TorchServe serving the same model on the same photos, batching on, driven by a concurrent client.

``python -m bench.torchserve_peer [--images N] [--workers W] [--batch B] [--engine eager|onnx]`` (needs the
``bench`` extra: torchserve, torch-model-archiver, pyyaml, captum, and Java 17). Not part of CI. resnet18 with the
same random weights as ours (seed 0), TorchServe's stock ``image_classifier`` handler (resize 256, crop 224,
normalise), W workers x 1 thread, server-side batching up to B with a 50 ms delay. ``eager``: the model in torch,
as TorchServe serves it by default. ``onnx``: the very engine file our infer function runs (exported by
``functions.infer``), loaded by TorchServe's base handler into ONNX Runtime; the stock handler's preprocessing,
labels and top-k, only the forward pass run by the session (``ONNX_HANDLER``): engine for engine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench import client
from bench.common import photos, save_json, table
from runtime.kafka.broker import free_port
from tools.launcher import wait_until_ok

MODEL_FILE = """
from torchvision.models.resnet import BasicBlock, ResNet


class ResNet18(ResNet):
    def __init__(self):
        super().__init__(BasicBlock, [2, 2, 2, 2])
"""


# TorchServe 0.12's base handler opens a ``.onnx`` serialized file as an ONNX Runtime session (with every core)
# but its ``inference`` calls the model as a torch module: this handler runs the session instead, one thread.
ONNX_HANDLER = """
import onnxruntime as ort
import torch
from ts.torch_handler.image_classifier import ImageClassifier


class OnnxImageClassifier(ImageClassifier):
    def initialize(self, context):
        super().initialize(context)
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        self.model = ort.InferenceSession(self.model_pt_path, options, providers=["CPUExecutionProvider"])
        self.input_name = self.model.get_inputs()[0].name

    def inference(self, data, *args, **kwargs):
        return torch.from_numpy(self.model.run(None, {self.input_name: data.numpy()})[0])
"""


def _onnx_engine(workdir: Path) -> Path:
    """The engine file our infer function runs for resnet18 with INFER_WEIGHTS=random (seed 0)."""
    from functions.infer.config import EngineSpec, ModelSpec
    from functions.infer.loading import load_classifier

    cache = workdir / "engines"
    load_classifier(ModelSpec("resnet18", "random", engine=EngineSpec("onnxruntime", "fp32", cache)))
    [engine] = cache.glob("resnet18-fp32-*/engine.onnx")
    return engine


def _archive(workdir: Path, engine: str) -> Path:
    import torch
    import torchvision

    categories = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.meta["categories"]
    (workdir / "index_to_name.json").write_text(json.dumps({str(i): c for i, c in enumerate(categories)}))
    if engine == "onnx":
        shutil.copy(_onnx_engine(workdir), workdir / "resnet18.onnx")
        (workdir / "onnx_handler.py").write_text(ONNX_HANDLER)
        model = ["--serialized-file", str(workdir / "resnet18.onnx"), "--handler", str(workdir / "onnx_handler.py")]
    else:
        torch.manual_seed(0)  # the same random network our runtime builds for INFER_WEIGHTS=random
        torch.save(torchvision.models.resnet18(weights=None).state_dict(), workdir / "resnet18.pth")
        (workdir / "model.py").write_text(MODEL_FILE)
        model = ["--model-file", str(workdir / "model.py"), "--serialized-file", str(workdir / "resnet18.pth"),
                 "--handler", "image_classifier"]  # fmt: skip
    store = workdir / "store"
    store.mkdir()
    subprocess.run(
        ["torch-model-archiver", "--model-name", "resnet18", "--version", "1.0", *model,
         "--extra-files", str(workdir / "index_to_name.json"), "--export-path", str(store)],
        check=True,
    )  # fmt: skip
    return store


async def _drive(url: str, images: list[bytes], concurrency: int) -> float:
    gate = asyncio.Semaphore(concurrency)
    async with client.session(None, concurrency) as http:

        async def one(data: bytes) -> None:
            async with gate, http.post(url, data=data) as response:
                response.raise_for_status()
                await response.read()

        started = time.perf_counter()
        await asyncio.gather(*(one(d) for d in images))
        return time.perf_counter() - started


def run(n_images: int, workers: int, batch: int, concurrency: int, engine: str = "eager") -> dict[str, Any]:
    if shutil.which("torchserve") is None or shutil.which("java") is None:
        raise RuntimeError("torchserve (pip install '.[bench]') and Java 17 are needed")
    images = photos(n_images)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        store = _archive(workdir, engine)
        inference, management, metrics = free_port(), free_port(), free_port()
        (workdir / "config.properties").write_text(
            "\n".join(
                [
                    f"inference_address=http://127.0.0.1:{inference}",
                    f"management_address=http://127.0.0.1:{management}",
                    f"metrics_address=http://127.0.0.1:{metrics}",
                    f"model_store={store}",
                    "disable_token_authorization=true",
                    "enable_model_api=true",
                    "install_py_dep_per_model=false",
                    "default_workers_per_model=1",
                ]
            )
        )
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        subprocess.run(
            ["torchserve", "--start", "--ncs", "--ts-config", str(workdir / "config.properties")],
            cwd=workdir,
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        try:
            wait_until_ok(f"http://127.0.0.1:{inference}/ping", 120)
            register = httpx.post(
                f"http://127.0.0.1:{management}/models",
                params={
                    "url": "resnet18.mar",
                    "batch_size": batch,
                    "max_batch_delay": 50,
                    "initial_workers": workers,
                    "synchronous": "true",
                },
                timeout=300,
            )
            register.raise_for_status()
            url = f"http://127.0.0.1:{inference}/predictions/resnet18"
            asyncio.run(_drive(url, images[:16], concurrency))  # warm-up
            wall = asyncio.run(_drive(url, images, concurrency))
        finally:
            subprocess.run(["torchserve", "--stop"], cwd=workdir, env=env, check=False, stdout=subprocess.DEVNULL)
    return {"images": n_images, "img_per_s": n_images / wall, "workers": workers, "batch": batch, "engine": engine}


def report(r: dict[str, Any]) -> str:
    engine = "ONNX Runtime, our engine file" if r.get("engine") == "onnx" else "torch, eager"
    rows = [
        (f"TorchServe 0.12, image_classifier ({engine})", f"{r['workers']} x 1", r["batch"], f"{r['img_per_s']:.1f}")
    ]
    return table(f"Peer on the same {r['images']} photos", ["server", "workers x threads", "batch", "img/s"], rows)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=320)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--engine", choices=("eager", "onnx"), default="eager")
    args = parser.parse_args(argv)
    result = run(args.images, args.workers, args.batch, args.concurrency, args.engine)
    print(report(result))
    save_json("torchserve_peer" if args.engine == "eager" else "torchserve_peer_onnx", result)
    return result


if __name__ == "__main__":
    main()
