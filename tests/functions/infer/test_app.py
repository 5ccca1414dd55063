"""The infer handler on real Lambda Kafka events, a real broker and a small real model."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from torchvision.models import ResNet18_Weights

from functions.common.blobs import blob_store_from_url
from functions.infer import app
from tests.helpers import apply_env, consume_all, load_event, photo

SESSION = "3f1c9b2e-7a4d-4c1e-9f0a-2b6d8e5c1a47"
IMAGENET = set(ResNet18_Weights.IMAGENET1K_V1.meta["categories"])


def _store_blobs(env: dict[str, Any]) -> None:
    blobs = blob_store_from_url(env["blob_url"])

    async def put() -> None:
        await blobs.put(f"{SESSION}/0.jpg", photo("chelsea.jpg"), "image/jpeg")
        await blobs.put(f"{SESSION}/1.png", photo("camera.png"), "image/png")
        await blobs.put(f"{SESSION}/2.jpg", photo("coffee.jpg")[:5000], "image/jpeg")  # truncated upload

    asyncio.run(put())


def _results(env: dict[str, Any], expected: int) -> dict[int, dict[str, Any]]:
    records = asyncio.run(consume_all(env["kafka_bootstrap_servers"], env["result_topic"], expected))
    by_seq: dict[int, dict[str, Any]] = {}
    for record in records:
        message = json.loads(record.value)
        assert record.key.decode() == f"{message['uuid']}:{message['seq']}"
        by_seq[message["seq"]] = message
    return by_seq


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_msk_batch_with_bad_records_answers_every_request(configured: dict[str, Any]) -> None:
    _store_blobs(configured)
    summary = app.handler(load_event("msk_infer"), None)

    assert summary == {"done": 2, "failed": 3, "retrying": 0, "dead_lettered": 1}
    results = _results(configured, expected=5)
    assert set(results) == {0, 1, 2, 3, 5}
    for seq, topk in ((0, 5), (1, 3)):
        done = results[seq]
        assert done["status"] == "done" and done["error"] is None
        assert len(done["labels"]) == topk == len(done["scores"])
        assert set(done["labels"]) <= IMAGENET
        assert done["scores"] == sorted(done["scores"], reverse=True)
        assert all(0.0 <= s <= 1.0 for s in done["scores"])
        assert done["model"] == "resnet18:file:resnet18-test.pth"
    assert results[2]["status"] == "failed" and "corrupt or truncated" in results[2]["error"]
    assert results[3]["status"] == "failed" and "not found" in results[3]["error"]
    assert results[5]["status"] == "failed" and "topk" in results[5]["error"]
    dead = asyncio.run(consume_all(configured["kafka_bootstrap_servers"], configured["dlq_topic"], 1))
    assert dead[0].value == b"this is not json"
    headers = dict(dead[0].headers)
    assert b"not JSON" in headers["error"] and headers["source"] == b"inference-request-1@5"


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_self_managed_event_honours_each_topk(configured: dict[str, Any]) -> None:
    _store_blobs(configured)
    assert app.handler(load_event("selfmanaged_infer"), None) == {
        "done": 2,
        "failed": 0,
        "retrying": 0,
        "dead_lettered": 0,
    }
    results = _results(configured, expected=2)
    assert len(results[10]["labels"]) == 1
    assert len(results[11]["labels"]) == 1000 and set(results[11]["labels"]) == IMAGENET
    assert abs(sum(results[11]["scores"]) - 1.0) < 1e-3  # all classes: softmax sums to one


def test_unknown_event_source_is_refused() -> None:
    with pytest.raises(ValueError, match="not a Lambda Kafka event"):
        app.handler({"eventSource": "aws:sqs", "Records": []}, None)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_model_that_cannot_load_answers_retrying_with_the_reason(
    configured: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """On Lambda there is no start to refuse: each request is answered ``retrying`` (the row stays queued, says
    why, and the sweeper's bounded attempts take it from there), and the next invocation tries the load again."""
    monkeypatch.setattr(app, "_classifier", None)
    apply_env(monkeypatch, infer_model="resnet19", infer_fallback="")
    _store_blobs(configured)

    summary = app.handler(load_event("msk_infer"), None)

    assert summary == {"done": 0, "failed": 1, "retrying": 4, "dead_lettered": 1}
    results = _results(configured, expected=5)
    retrying = [results[seq] for seq in (0, 1, 2, 3)]
    assert all(r["status"] == "retrying" for r in retrying)
    assert all(r["error"].startswith("model unavailable: INFER_MODEL='resnet19'") for r in retrying)
    assert results[5]["status"] == "failed"  # a request no model could ever answer stays a plain failure
    assert app._classifier is None
