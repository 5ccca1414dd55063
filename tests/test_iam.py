"""IAM that matches the code: every AWS call a function's code makes (recorded against moto, which checks no
IAM itself) is granted by that function's role in the translated template, no S3 action is granted that the code
never makes, and what AWS does on the code's behalf (decrypting a secret) is granted too."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import boto3
import httpx
import pytest
from moto import mock_aws

from functions.common import loops
from runtime.esm.events import kafka_event
from runtime.template import KafkaSource
from tests.deploy.stack import DEPLOY, Stack, role_actions
from tests.helpers import apply_env, consume_all, photo

SQLITE = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)

BUCKET = "faasinfer-iam"
# Granted beyond the calls made, on purpose: without s3:ListBucket S3 answers a missing key with 403, not the
# 404 (NoSuchKey) that makes infer answer "image blob not found" instead of retrying.
EXTRA = {"InferSelfManagedFunction": {"s3:ListBucket"}, "UploadFunction": {"s3:ListBucket"}}
# botocore operation -> the IAM action that authorises it
ACTIONS = {"HeadBucket": "s3:ListBucket"}


class Calls:
    def __init__(self) -> None:
        self.actions: set[str] = set()

    def __call__(self, event_name: str, **_: Any) -> None:
        _hook, service, operation = event_name.split(".")
        prefix = {"secrets-manager": "secretsmanager"}.get(service, service)
        self.actions.add(ACTIONS.get(operation, f"{prefix}:{operation}"))


@pytest.fixture
def calls(configured: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Iterator[Calls]:
    for name, value in {
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "x",
    }.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        boto3.client("s3").create_bucket(Bucket=BUCKET)
        apply_env(
            monkeypatch,
            blob_url=f"s3://{BUCKET}/uploads",
            blob_expire_on_done="true",
            upload_staging_url=f"s3://{BUCKET}/incoming",
        )
        recorder = Calls()
        boto3.setup_default_session()
        boto3.DEFAULT_SESSION.events.register("before-call.*.*", recorder)  # type: ignore[union-attr]
        yield recorder


def _granted(function: str) -> set[str]:
    """Actions of the function's role (its managed policies, ours resolved, and inline policies) as deployed with
    the default KafkaMode (SelfManaged, SASL/SCRAM)."""
    return set(role_actions(Stack.deployed(DEPLOY), function))


def _check(function: str, made: set[str]) -> None:
    granted = _granted(function)
    assert made <= granted, f"{function} calls {sorted(made - granted)} without permission"
    assert {a for a in granted if a.startswith("s3:")} == {a for a in made if a.startswith("s3:")} | EXTRA.get(
        function, set()
    )


async def _upload_paths(configured: dict[str, Any]) -> str:
    from functions.upload.app import app

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        session = (await client.post("/register")).json()["uuid"]
        form = {"uuid": session, "seq": "0", "topk": "3"}
        accepted = await client.post("/image", data=form, files={"payload": ("a.jpg", photo("chelsea.jpg"))})
        conflict = await client.post("/image", data=form, files={"payload": ("b.jpg", photo("coffee.jpg"))})
        unknown = {**form, "uuid": "00000000-0000-4000-8000-000000000000"}
        missing = await client.post("/image", data=unknown, files={"payload": ("c.jpg", photo("coffee.jpg"))})
        health = await client.get("/health")
        assert [r.status_code for r in (accepted, conflict, missing, health)] == [202, 409, 404, 200]
        # the presigned path: the client's own POST to S3 is made here by a session the recorder does not see
        target = (await client.post("/upload-url", data={"uuid": session, "seq": "1"})).json()
        boto3.session.Session().client("s3").put_object(Bucket=BUCKET, Key=target["key"], Body=photo("coffee.jpg"))
        confirmed = await client.post("/image/confirm", data={**form, "seq": "1", "key": target["key"]})
        again = await client.post("/image/confirm", data={**form, "seq": "1", "key": target["key"]})
        assert (confirmed.status_code, again.status_code) == (202, 404)
    await loops.aclose()
    return str(session)


@SQLITE
def test_upload_role_covers_storing_and_deleting_on_404_and_409(configured: dict[str, Any], calls: Calls) -> None:
    asyncio.run(_upload_paths(configured))
    assert {"s3:PutObject", "s3:DeleteObject", "s3:GetObject"} <= calls.actions
    _check("UploadFunction", calls.actions)


@SQLITE
def test_infer_and_collect_roles_cover_reading_and_expiring_images(configured: dict[str, Any], calls: Calls) -> None:
    from functions.collect import app as collect
    from functions.infer import app as infer

    asyncio.run(_upload_paths(configured))
    requests = asyncio.run(consume_all(configured["kafka_bootstrap_servers"], configured["request_topic"], 2))
    request = next(r for r in requests if json.loads(r.value)["seq"] == 0)
    source = KafkaSource("Requests", "SelfManagedKafka", request.topic, 10, 0, "TRIM_HORIZON", "g")
    calls.actions.clear()
    assert infer.handler(kafka_event([request], source, "b:9092"), None)["done"] == 1
    _check("InferSelfManagedFunction", calls.actions)
    assert calls.actions == {"s3:GetObject"}

    [result] = asyncio.run(consume_all(configured["kafka_bootstrap_servers"], configured["result_topic"], 1))
    calls.actions.clear()
    summary = collect.handler(kafka_event([result], source, "b:9092"), None)
    assert summary["applied"] == 1 and json.loads(result.value)["status"] == "done"
    assert calls.actions == {"s3:DeleteObject"}
    _check("CollectSelfManagedFunction", calls.actions)


# The SCRAM secret's readers: the producers' code (upload, infer, sweeper) and the event sources (infer, collect),
# which read it with the function's execution role.
SCRAM_CLIENTS = {
    "MSK": ("UploadFunction", "InferMskFunction", "CollectMskFunction", "SweeperFunction"),
    "SelfManaged": ("UploadFunction", "InferSelfManagedFunction", "CollectSelfManagedFunction", "SweeperFunction"),
}


@pytest.mark.usefixtures("build_tools")
@pytest.mark.parametrize("mode", ["MSK", "SelfManaged"])
def test_scram_clients_may_decrypt_the_secret_under_its_customer_managed_key(
    mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MSK takes only SCRAM secrets encrypted with a customer managed KMS key, and reading such a secret needs
    kms:Decrypt on that key, which Secrets Manager uses on the reader's behalf
    (https://docs.aws.amazon.com/msk/latest/developerguide/msk-password.html)."""
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    stack = Stack.deployed({**DEPLOY, "KafkaMode": mode, "KafkaAuth": "SASL_SCRAM_512"})
    for function in SCRAM_CLIENTS[mode]:
        granted = role_actions(stack, function)
        assert DEPLOY["KafkaSecretArn"] in [s["Resource"] for s in granted["secretsmanager:GetSecretValue"]]
        [decrypt] = granted["kms:Decrypt"]
        assert decrypt["Resource"] == DEPLOY["KafkaSecretKmsKeyArn"], function
        assert decrypt["Condition"] == {"StringEquals": {"kms:ViaService": "secretsmanager.us-east-1.amazonaws.com"}}
    assert "kms:Decrypt" not in role_actions(stack, "QueryFunction")
    without_key = Stack.deployed({**DEPLOY, "KafkaSecretKmsKeyArn": ""})  # SelfManaged: the AWS managed key
    assert all("kms:Decrypt" not in role_actions(without_key, f) for f in SCRAM_CLIENTS["SelfManaged"])


@pytest.mark.usefixtures("build_tools")
def test_infer_may_read_its_engine_from_the_engine_location_and_nothing_else_of_that_bucket(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    """``InferEngineLocation=s3://bucket/prefix``: the zip infer functions read their engine there at init
    (functions/infer/engine_remote.py); the calls ``fetch`` makes are granted, under that prefix only."""
    from dataclasses import replace

    from functions.infer import engine_file, engine_remote
    from functions.infer.config import EngineSpec, ModelSpec

    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    location = "s3://model-store/faasinfer/engines"
    stack = Stack.deployed({**DEPLOY, "InferEngineLocation": location})
    granted = role_actions(stack, "InferSelfManagedFunction")
    assert [s["Resource"] for s in granted["s3:GetObject"] if "model-store" in str(s["Resource"])] == [
        "arn:aws:s3:::model-store/faasinfer/engines/*"
    ]
    assert "arn:aws:s3:::model-store" in [s["Resource"] for s in granted["s3:ListBucket"]]
    [infer] = [r for n, r in stack.resources().items() if n == "InferSelfManagedFunction"]
    assert infer["Properties"]["Environment"]["Variables"]["INFER_ENGINE_URL"] == location
    assert "model-store" not in json.dumps(role_actions(stack, "UploadFunction"))
    default = Stack.deployed(DEPLOY)
    assert "InferEnginePolicy" not in default.resources()
    assert "model-store" not in json.dumps(role_actions(default, "InferSelfManagedFunction"))

    for name, value in {"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x"}.items():
        monkeypatch.setenv(name, value)
    spec = ModelSpec("resnet50", engine=EngineSpec(cache_dir=tmp_path / "cache", remote=location))
    folder = engine_file.folder(spec)
    folder.mkdir(parents=True)
    (folder / "engine.onnx").write_bytes(b"onnx")
    (folder / "manifest.json").write_text("{}")
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    with mock_aws():
        client = boto3.client("s3")
        client.create_bucket(Bucket="model-store")
        engine_remote.upload(folder, location, client)
        recorder = Calls()
        client.meta.events.register("before-call.*.*", recorder)
        engine_remote.fetch(
            replace(spec, engine=replace(spec.engine, cache_dir=tmp_path / "artifact")), location, client
        )
    made = {ACTIONS_FOR_GET.get(a, a) for a in recorder.actions}
    assert made == {"s3:GetObject"} and made <= set(granted)


ACTIONS_FOR_GET = {"s3:HeadObject": "s3:GetObject"}  # HeadObject is authorised by s3:GetObject
