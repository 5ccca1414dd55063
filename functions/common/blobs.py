"""Blob store for uploaded image bytes (claim check): a local folder or S3."""

from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Protocol
from urllib.parse import urlparse

from functions.common.loops import PerLoop
from functions.common.settings import get_settings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


class BlobNotFound(Exception):
    """The referenced blob does not exist (expired or never written): a permanent failure for that record."""


class UnusableBlobKey(BlobNotFound, ValueError):
    """A key no blob can have (empty, over S3's 1,024 bytes, a control character, a path out of the store or to a
    folder): like a missing blob, a failure of the record that names it, never of its batch."""


MAX_KEY_BYTES = 1024  # S3's limit on an object key (UTF-8)


def check_key(key: str) -> str:
    encoded = key.encode("utf-8", "surrogatepass")
    if not key or len(encoded) > MAX_KEY_BYTES or any(ord(c) < 32 or ord(c) == 127 for c in key):
        raise UnusableBlobKey(f"blob key is empty, longer than {MAX_KEY_BYTES} bytes or holds a control character")
    return key


class BlobStore(Protocol):
    async def put(self, key: str, data: bytes, content_type: str) -> None: ...
    async def get(self, key: str) -> bytes: ...
    async def delete(self, key: str) -> None: ...
    async def ping(self) -> None: ...


# Local file I/O this small takes less time than a hop to a worker thread and back; larger blobs go to a thread so
# an event loop serving other requests is not held up.
INLINE_IO_BYTES = 1024 * 1024


class LocalBlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def _path(self, key: str) -> Path:
        """The blob's file; a key that is absolute or climbs out (``..``) is refused (checked on the key's parts:
        resolving the path on every call cost more than the write itself)."""
        parts = PurePosixPath(check_key(key)).parts
        if not parts or key.startswith("/") or "\\" in key or any(p in ("..", ".") for p in parts):
            raise UnusableBlobKey("blob key escapes the store (an absolute path, a . or .. part, a backslash)")
        return self.root.joinpath(*parts)

    def _write(self, key: str, data: bytes) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)  # readers never see a half-written blob

    def _read(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
            raise BlobNotFound(key) from exc

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        if len(data) <= INLINE_IO_BYTES:
            self._write(key, data)
        else:
            await asyncio.to_thread(self._write, key, data)

    async def get(self, key: str) -> bytes:
        return await asyncio.to_thread(self._read, key)

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self._path(key).unlink, missing_ok=True)

    async def ping(self) -> None:
        await asyncio.to_thread(self.root.mkdir, parents=True, exist_ok=True)


class S3BlobStore:
    def __init__(self, bucket: str, prefix: str, client: S3Client | None = None) -> None:
        import boto3

        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.client: S3Client = client or boto3.client("s3")

    def _key(self, key: str) -> str:
        full = f"{self.prefix}/{check_key(key)}" if self.prefix else key
        return check_key(full)

    def _read(self, key: str) -> bytes:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()
        except self.client.exceptions.NoSuchKey as exc:
            raise BlobNotFound(key) from exc

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        await asyncio.to_thread(
            self.client.put_object, Bucket=self.bucket, Key=self._key(key), Body=data, ContentType=content_type
        )

    async def get(self, key: str) -> bytes:
        return await asyncio.to_thread(self._read, key)

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self.client.delete_object, Bucket=self.bucket, Key=self._key(key))

    async def ping(self) -> None:
        await asyncio.to_thread(self.client.head_bucket, Bucket=self.bucket)


def blob_store_from_url(url: str) -> BlobStore:
    """``file:///abs/dir``, ``file://rel/dir`` or a bare path → local folder; ``s3://bucket/prefix`` → S3."""
    parsed = urlparse(url)
    if parsed.scheme == "s3":
        return S3BlobStore(parsed.netloc, parsed.path)
    if parsed.scheme == "file":
        return LocalBlobStore(Path(parsed.netloc + parsed.path))
    if parsed.scheme == "":
        return LocalBlobStore(Path(url))
    raise ValueError(f"unsupported BLOB_URL scheme: {parsed.scheme!r}")


def dependency_errors() -> tuple[type[BaseException], ...]:
    """What the blob store raises when S3 cannot be reached (endpoint, timeouts, credentials)."""
    from botocore.exceptions import BotoCoreError

    return (BotoCoreError,)


per_loop: PerLoop[BlobStore] = PerLoop(lambda: blob_store_from_url(get_settings().blob_url))
