"""Blob stores: the local folder and S3 (under moto)."""

from __future__ import annotations

from pathlib import Path

import boto3
import pytest

from functions.common.blobs import BlobNotFound, BlobStore, LocalBlobStore, S3BlobStore, blob_store_from_url


@pytest.fixture
def s3_store(mocked_aws: None) -> S3BlobStore:
    boto3.client("s3").create_bucket(Bucket="faasinfer-test")
    store = blob_store_from_url("s3://faasinfer-test/uploads")
    assert isinstance(store, S3BlobStore)
    return store


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    if request.param == "local":
        return blob_store_from_url(f"file://{tmp_path}/blobs")
    s3: S3BlobStore = request.getfixturevalue("s3_store")
    return s3


async def test_round_trip_and_delete(store: BlobStore) -> None:
    await store.ping()
    await store.put("session/1-abc.jpg", b"\xff\xd8 bytes", "image/jpeg")
    assert await store.get("session/1-abc.jpg") == b"\xff\xd8 bytes"
    await store.delete("session/1-abc.jpg")
    with pytest.raises(BlobNotFound):
        await store.get("session/1-abc.jpg")


async def test_missing_blob_is_a_distinct_error(store: BlobStore) -> None:
    with pytest.raises(BlobNotFound):
        await store.get("never/written")


async def test_s3_keys_live_under_the_prefix(s3_store: S3BlobStore) -> None:
    await s3_store.put("a/b.png", b"x", "image/png")
    head = s3_store.client.head_object(Bucket="faasinfer-test", Key="uploads/a/b.png")
    assert head["ContentType"] == "image/png"


def test_local_store_refuses_keys_escaping_its_root(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="escapes"):
        LocalBlobStore(tmp_path)._path("../../etc/passwd")


def test_unknown_scheme_is_refused() -> None:
    with pytest.raises(ValueError, match="scheme"):
        blob_store_from_url("ftp://host/x")
