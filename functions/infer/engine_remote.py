"""Engines kept in S3 (``INFER_ENGINE_URL=s3://bucket/prefix``), for a model whose engine does not fit the zip
artifact (250 MB unzipped: resnet50 fp32 is ~100 MB of engine beside ~200 MB of code and libraries).

The layout is the cache's: ``<prefix>/<key>/engine.onnx`` and ``manifest.json`` (``config.engine_key``). ``upload``
puts an engine made by ``prepare`` there (``--upload``); ``fetch`` copies it into the temp cache at a function's
init (Lambda's /tmp: 512 MB by default), where ``engine_file.load`` checks it as any other (its sha256, its
labels, one forward pass). Torch-free; boto3 is imported when an engine is fetched or uploaded.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from . import engine_file
from .config import ModelSpec
from .model import ModelUnavailable

log = logging.getLogger(__name__)

NAMES = (engine_file.ONNX_NAME, engine_file.MANIFEST_NAME)  # the manifest last: a folder is whole once it is there


def location(url: str) -> tuple[str, str]:
    """``s3://bucket/prefix`` → bucket, prefix (without slashes at its ends)."""
    parsed = urlparse(url)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise ModelUnavailable(f"INFER_ENGINE_URL must be s3://bucket/prefix, not {url!r}")
    return parsed.netloc, parsed.path.strip("/")


def _object(prefix: str, key: str, name: str) -> str:
    return "/".join(part for part in (prefix, key, name) if part)


def fetch(spec: ModelSpec, url: str, client: Any = None) -> ModelSpec:
    """The engine of ``spec`` copied from ``url`` into the temp cache; returns the spec whose cache holds it."""
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, prefix = location(url)
    target = engine_file.in_temp_cache(spec)
    where = engine_file.folder(target)
    where.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=where.parent, prefix=f".{where.name}."))
    started = time.monotonic()
    try:
        client = client or _client()
        for name in NAMES:
            source = _object(prefix, where.name, name)
            try:
                client.download_file(bucket, source, str(staging / name))
            except ClientError as exc:
                raise _unavailable(url, f"s3://{bucket}/{source}", exc) from None
            except BotoCoreError as exc:
                raise ModelUnavailable(f"engine s3://{bucket}/{source} cannot be read: {exc}") from None
        size = (staging / engine_file.ONNX_NAME).stat().st_size
        engine_file.put(staging, where, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("engine %s fetched from %s: %.1f MB in %.2f s", where.name, url, size / 1e6, time.monotonic() - started)
    return target


def _unavailable(url: str, source: str, exc: Any) -> ModelUnavailable:
    code = str(exc.response.get("Error", {}).get("Code", "error"))
    if code in ("404", "NoSuchKey", "NotFound"):
        return ModelUnavailable(
            f"no engine at {source}: make it and put it there with `python -m functions.infer.prepare --upload "
            f"{url}` (the same INFER_* settings)"
        )
    return ModelUnavailable(f"engine {source} cannot be read: {code} (the function's role needs s3:GetObject there)")


def upload(folder: Path, url: str, client: Any = None) -> str:
    """The engine folder ``folder`` (made by ``prepare``) put under ``url``; returns where it went."""
    bucket, prefix = location(url)
    client = client or _client()
    for name in NAMES:
        client.upload_file(str(folder / name), bucket, _object(prefix, folder.name, name))
    return f"s3://{bucket}/{_object(prefix, folder.name, '')}/"


def _client() -> Any:
    import boto3

    return boto3.client("s3")
