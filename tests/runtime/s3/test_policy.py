"""The local S3 refuses what S3 refuses: each form below is posted to the real server the runtime starts, and gets
S3's status, code and message, with nothing stored."""

from __future__ import annotations

import contextlib
import os
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from runtime.s3.local import ACCESS_KEY, BUCKET, REGION, SECRET_KEY, LocalS3

OLD_REGIONS = ("us-east-1", "us-west-1", "us-west-2", "eu-west-1", "ap-northeast-1", "ap-southeast-1",
               "ap-southeast-2", "sa-east-1")  # fmt: skip
MAX = 1000  # the policy's content-length-range maximum in these tests


@pytest.fixture(scope="module")
def local_s3() -> Iterator[LocalS3]:
    server = LocalS3()
    server.start()
    yield server
    server.stop()


def _client(server: LocalS3, **options: Any) -> Any:
    settings: dict[str, Any] = {
        "aws_access_key_id": ACCESS_KEY,
        "aws_secret_access_key": SECRET_KEY,
        "region_name": REGION,
        "config": Config(signature_version="s3v4", s3={"addressing_style": "path"}),
    }
    return boto3.client("s3", endpoint_url=server.endpoint_url, **(settings | options))


def _presign(server: LocalS3, key: str, expires_s: int = 60, **signer: Any) -> dict[str, Any]:
    conditions = [["content-length-range", 1, MAX]]
    post: dict[str, Any] = _client(server, **signer).generate_presigned_post(
        BUCKET, key, Conditions=conditions, ExpiresIn=expires_s
    )
    return post


def _post(server: LocalS3, fields: dict[str, str], data: bytes) -> httpx.Response:
    return httpx.post(f"{server.endpoint_url}/{BUCKET}", data=fields, files={"file": ("a.jpg", data)}, timeout=30)


def _refused(response: httpx.Response, status: int, code: str, message: str) -> None:
    error = ET.fromstring(response.content)
    assert (response.status_code, error.findtext("Code")) == (status, code), response.text
    assert message in (error.findtext("Message") or ""), response.text


def _stored(server: LocalS3) -> list[str]:
    return [o["Key"] for o in _client(server).list_objects_v2(Bucket=BUCKET).get("Contents", [])]


def test_a_form_within_its_policy_is_stored_as_sent(local_s3: LocalS3) -> None:
    post = _presign(local_s3, "incoming/kept")
    assert _post(local_s3, post["fields"], b"x" * MAX).status_code == 204
    assert _client(local_s3).get_object(Bucket=BUCKET, Key="incoming/kept")["Body"].read() == b"x" * MAX


@pytest.mark.parametrize("region", OLD_REGIONS)
def test_a_sigv2_form_is_refused_in_each_old_region(local_s3: LocalS3, region: str) -> None:
    # What botocore presigns in these regions without signature_version (staging.py before the fix).
    key = f"incoming/v2-{region}"
    signer = boto3.client("s3", region_name=region, aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY)
    fields = signer.generate_presigned_post(BUCKET, key, Conditions=[["content-length-range", 1, MAX]])["fields"]
    assert {"AWSAccessKeyId", "signature"} <= fields.keys()
    _refused(_post(local_s3, fields, b"x"), 400, "InvalidRequest", "Please use AWS4-HMAC-SHA256.")
    assert key not in _stored(local_s3)


def test_a_sigv2_api_call_is_refused(local_s3: LocalS3) -> None:
    v2 = _client(local_s3, config=Config(signature_version="s3"))  # SigV2 in the Authorization header
    with pytest.raises(ClientError, match="InvalidRequest"):
        v2.put_object(Bucket=BUCKET, Key="incoming/v2-api", Body=b"x")
    assert "incoming/v2-api" not in _stored(local_s3)


def test_an_unsigned_form_is_access_denied(local_s3: LocalS3) -> None:
    _refused(_post(local_s3, {"key": "incoming/anonymous"}, b"x"), 403, "AccessDenied", "Access Denied")
    assert "incoming/anonymous" not in _stored(local_s3)


@pytest.mark.parametrize(
    ("signer", "status", "code", "message"),
    [
        ({"aws_secret_access_key": "not-the-secret"}, 403, "SignatureDoesNotMatch", "does not match the signature"),
        ({"aws_access_key_id": "AKIAUNKNOWN"}, 403, "InvalidAccessKeyId", "does not exist in our records"),
        ({"region_name": "eu-west-1"}, 400, "AuthorizationQueryParametersError", "the region 'eu-west-1' is wrong"),
    ],
    ids=["another-secret", "unknown-key", "another-region"],
)
def test_a_form_signed_by_other_credentials_is_refused(
    local_s3: LocalS3, signer: dict[str, Any], status: int, code: str, message: str
) -> None:
    post = _presign(local_s3, "incoming/forged", **signer)
    _refused(_post(local_s3, post["fields"], b"x"), status, code, message)
    assert "incoming/forged" not in _stored(local_s3)


def test_a_policy_changed_after_signing_is_refused(local_s3: LocalS3) -> None:
    signed, wider = _presign(local_s3, "incoming/tampered"), _presign(local_s3, "incoming/tampered", expires_s=3600)
    fields = {**signed["fields"], "policy": wider["fields"]["policy"]}  # a later expiry under the old signature
    _refused(_post(local_s3, fields, b"x"), 403, "SignatureDoesNotMatch", "does not match the signature")
    assert "incoming/tampered" not in _stored(local_s3)


def test_an_expired_policy_is_refused(local_s3: LocalS3) -> None:
    post = _presign(local_s3, "incoming/late", expires_s=-1)
    _refused(_post(local_s3, post["fields"], b"x"), 403, "AccessDenied", "Invalid according to Policy: Policy expired.")
    assert "incoming/late" not in _stored(local_s3)


def test_a_key_the_policy_does_not_name_is_refused(local_s3: LocalS3) -> None:
    post = _presign(local_s3, "incoming/mine")
    fields = {**post["fields"], "key": "incoming/someone-else"}
    expected = 'Policy Condition failed: ["eq", "$key", "incoming/mine"]'
    _refused(_post(local_s3, fields, b"x"), 403, "AccessDenied", expected)
    assert not {"incoming/mine", "incoming/someone-else"} & set(_stored(local_s3))


def test_a_field_the_policy_does_not_name_is_refused(local_s3: LocalS3) -> None:
    post = _presign(local_s3, "incoming/extra")
    fields = {**post["fields"], "Content-Type": "image/jpeg"}
    _refused(_post(local_s3, fields, b"x"), 403, "AccessDenied", "Extra input fields: content-type")
    assert "incoming/extra" not in _stored(local_s3)


@pytest.mark.parametrize(
    ("size", "code", "detail"),
    [
        (MAX + 1, "EntityTooLarge", "MaxSizeAllowed"),
        (12 * 1024 * 1024, "EntityTooLarge", "MaxSizeAllowed"),
        (0, "EntityTooSmall", "MinSizeAllowed"),
    ],
    ids=["one-byte-over", "12-MB", "empty"],
)
def test_a_file_outside_the_content_length_range_is_refused(
    local_s3: LocalS3, size: int, code: str, detail: str
) -> None:
    post = _presign(local_s3, f"incoming/size-{size}")
    response = _post(local_s3, post["fields"], b"x" * size)
    _refused(response, 400, code, "Your proposed upload")
    limit = ET.fromstring(response.content).findtext(detail)
    assert limit == str(1 if code == "EntityTooSmall" else MAX)
    assert f"incoming/size-{size}" not in _stored(local_s3)


def test_a_field_after_the_file_is_ignored_as_s3_does(local_s3: LocalS3) -> None:
    post = _presign(local_s3, "incoming/first")
    boundary = "b0undary"
    fields = [*post["fields"].items(), ("file", "bytes"), ("key", "incoming/after")]  # S3 reads up to the file
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{n}"\r\n\r\n{v}\r\n' for n, v in fields]
    parts.append(f"--{boundary}--\r\n")
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    sent = httpx.post(f"{local_s3.endpoint_url}/{BUCKET}", content="".join(parts).encode(), headers=headers)
    assert sent.status_code == 204 and "incoming/after" not in _stored(local_s3)
    assert _client(local_s3).get_object(Bucket=BUCKET, Key="incoming/first")["Body"].read() == b"bytes"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_objects_are_kept_on_disk_by_the_child_not_in_the_runtime(local_s3: LocalS3) -> None:
    assert local_s3.process is not None and local_s3.process.pid != os.getpid()
    before = _files_held(local_s3)
    for i in range(3):
        post = _presign(local_s3, f"incoming/disk-{i}")
        assert _post(local_s3, post["fields"], os.urandom(MAX)).status_code == 204
    assert len(_files_held(local_s3)) == len(before) + 3  # one temporary file each, in the child's folder


def _files_held(server: LocalS3) -> list[str]:
    assert server.process is not None
    targets = []
    for fd in Path(f"/proc/{server.process.pid}/fd").iterdir():
        with contextlib.suppress(FileNotFoundError):  # a descriptor closed while we look
            targets.append(os.readlink(fd))
    return [target for target in targets if target.startswith(server.folder)]
