"""Batched inference gives every request its own image's answer: distinct images in a shuffled order, a batch
larger than ``INFER_MAX_BATCH``, a failed record among them, mixed top-k, compared with one forward pass per image
through the same network (no batching) and with the answer the network is built to give. Torch-free, as the infer
function is."""

from __future__ import annotations

import asyncio
import io
import math
import random
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import boto3
import numpy as np
import pytest
from PIL import Image

from functions.common.blobs import blob_store_from_url
from functions.common.contracts import InferenceRequest
from functions.common.image_limits import ImageLimits
from functions.infer import service
from functions.infer.model import Classifier
from functions.infer.preprocess import Preprocessing

SESSION = "0b6c3c4e-2f3a-4d0e-8b1a-7c5d9e2f4a61"
CLASSES = 8
# Logits = this matrix times the image's mean colour: each solid colour has its own known ranking.
MIX = np.array([[3.0, 0, 0], [0, 3, 0], [0, 0, 3], [2, 2, 0], [0, 2, 2], [2, 0, 2], [-2, -2, -2], [1, -1, 1]],
               dtype=np.float32)  # fmt: skip


def colour_scorer(batch: np.ndarray) -> np.ndarray:
    return np.asarray(batch.mean(axis=(2, 3)) @ MIX.T, dtype=np.float32)


def _classifier() -> Classifier:
    labels = [f"class{i}" for i in range(CLASSES)]
    return Classifier("colours:test", colour_scorer, labels, Preprocessing())


def _png(colour: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64 + colour[0] % 50, 48 + colour[1] % 40), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def _reference(classifier: Classifier, data: bytes, topk: int) -> tuple[list[str], list[float]]:
    """One image alone through the network, ranked in plain Python."""
    array = classifier.preprocessing(Image.open(io.BytesIO(data)).convert("RGB"))[np.newaxis]
    logits = [float(v) for v in classifier.net(array)[0]]
    total = sum(math.exp(v - max(logits)) for v in logits)
    probabilities = [math.exp(v - max(logits)) / total for v in logits]
    ranked = sorted(range(CLASSES), key=lambda i: -probabilities[i])[:topk]
    return [classifier.labels[i] for i in ranked], [probabilities[i] for i in ranked]


def test_each_request_gets_its_own_images_top_k_across_split_batches(tmp_path: Path) -> None:
    rng = random.Random(7)
    colours = [(rng.randrange(256), rng.randrange(256), rng.randrange(256)) for _ in range(13)]
    blobs = blob_store_from_url(f"file://{tmp_path}")
    requests, images = [], {}
    for seq, colour in enumerate(colours):
        images[seq] = _png(colour)
        asyncio.run(blobs.put(f"{SESSION}/{seq}.png", images[seq], "image/png"))
        requests.append(InferenceRequest(uuid=SESSION, seq=seq, topk=1 + seq % CLASSES, blob=f"{SESSION}/{seq}.png"))
    requests.append(InferenceRequest(uuid=SESSION, seq=99, topk=2, blob=f"{SESSION}/missing.png"))
    rng.shuffle(requests)
    classifier = _classifier()

    with ThreadPoolExecutor(2) as pool:
        results = asyncio.run(service.process(requests, blobs, classifier, pool, 4, ImageLimits()))

    assert [(r.uuid, r.seq) for r in results] == [(r.uuid, r.seq) for r in requests]  # one each, in input order
    for request, result in zip(requests, results, strict=True):
        if request.seq == 99:
            assert result.status == "failed" and "not found" in (result.error or "")
            continue
        labels, scores = _reference(classifier, images[request.seq], request.topk)
        assert result.status == "done" and result.labels == labels, (request.seq, result.labels, labels)
        assert result.scores == pytest.approx(scores, abs=1e-5)
    distinct = {r.labels[0] for r in results if r.status == "done"}
    assert len(distinct) >= 3  # the colours really lead to different answers: a mix-up would show


def test_primary_colours_get_the_class_the_network_is_built_for(tmp_path: Path) -> None:
    blobs = blob_store_from_url(f"file://{tmp_path}")
    expected = {0: ((255, 0, 0), "class0"), 1: ((0, 255, 0), "class1"), 2: ((0, 0, 255), "class2")}
    requests = []
    for seq, (colour, _) in expected.items():
        asyncio.run(blobs.put(f"{SESSION}/{seq}.png", _png(colour), "image/png"))
        requests.append(InferenceRequest(uuid=SESSION, seq=seq, topk=1, blob=f"{SESSION}/{seq}.png"))
    with ThreadPoolExecutor(1) as pool:
        results = asyncio.run(service.process(requests[::-1], blobs, _classifier(), pool, 2, ImageLimits()))
    assert {r.seq: r.labels[0] for r in results} == {seq: label for seq, (_, label) in expected.items()}


UNUSABLE_KEYS = ["", "../../etc/passwd", "/etc/passwd", "a\x00b.png", "a/./b.png", "k" * 1025, SESSION, "a\\b.png"]


@pytest.mark.parametrize("store_kind", ["local", "s3"])
def test_a_record_with_an_unusable_blob_key_fails_alone_and_its_batch_is_classified(
    tmp_path: Path, store_kind: str, request: pytest.FixtureRequest
) -> None:
    if store_kind == "local":
        blobs = blob_store_from_url(f"file://{tmp_path}")
        asyncio.run(blobs.put(f"{SESSION}/x.png", b"", "image/png"))  # makes SESSION a folder: a key naming it
    else:
        blobs = request.getfixturevalue("s3_blobs")
    asyncio.run(blobs.put(f"{SESSION}/0.png", _png((250, 10, 10)), "image/png"))
    requests = [InferenceRequest(uuid=SESSION, seq=0, topk=1, blob=f"{SESSION}/0.png")]
    requests += [InferenceRequest(uuid=SESSION, seq=i, topk=1, blob=key) for i, key in enumerate(UNUSABLE_KEYS, 1)]
    with ThreadPoolExecutor(2) as pool:
        results = asyncio.run(service.process(requests, blobs, _classifier(), pool, 4, ImageLimits()))
    assert [r.status for r in results] == ["done"] + ["failed"] * len(UNUSABLE_KEYS)
    assert all(len(r.error or "") < 400 for r in results)


@pytest.fixture
def s3_blobs(mocked_aws: None) -> object:
    boto3.client("s3").create_bucket(Bucket="faasinfer-test")
    return blob_store_from_url("s3://faasinfer-test/uploads")
