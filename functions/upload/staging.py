"""Presigned uploads: images larger than a Lambda request go straight to S3, then are confirmed.

API Gateway hands a Lambda function at most 6 MB, ~4.5 MB of image once base64-encoded in a multipart body, so a
10 MB image cannot come through ``POST /image``. ``POST /upload-url`` answers a presigned S3 POST (a key under
``UPLOAD_STAGING_URL`` naming the session and seq plus a random part, a ``content-length-range`` up to
``MAX_UPLOAD_BYTES``, valid ``PRESIGN_EXPIRES_S``); the client posts the file to S3 itself and then calls
``POST /image/confirm``, which takes the staged object (read, then deleted) through the same checks, storage and
publishing as ``POST /image``. Nothing is recorded before the confirmation, so an upload that never arrives
leaves no request behind; staged objects nobody confirms expire by the bucket's lifecycle rule (template).
"""

from __future__ import annotations

import asyncio
import re
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from functions.common.errors import NotFound, PayloadTooLarge

if TYPE_CHECKING:
    from botocore.config import Config
    from mypy_boto3_s3 import S3Client

_TOKEN = re.compile(r"[A-Za-z0-9_-]{16,64}")  # what ``secrets.token_urlsafe(16)`` makes


def _config(local: bool) -> Config:
    """SigV4 and the bucket's regional endpoint, in every region.

    Without ``signature_version`` botocore presigns POST forms with SigV2 wherever the region still lists it
    (us-east-1, us-west-1, us-west-2, eu-west-1, ap-northeast-1, ap-southeast-1, ap-southeast-2, sa-east-1) and
    points them at the global ``s3.amazonaws.com``. S3 refuses SigV2 for buckets created after June 24, 2020 (the
    stack creates its own), with ``400 InvalidRequest: The authorization mechanism you have provided is not
    supported. Please use AWS4-HMAC-SHA256.``:
    https://docs.aws.amazon.com/AmazonS3/latest/API/Appendix-Sigv2.html ("Signature Version 2 is being turned off
    (deprecated)"), https://docs.aws.amazon.com/AmazonS3/latest/API/specify-signature-version.html, and AWS's
    announcement "any new buckets created after June 24, 2020 will not support SigV2 signed requests":
    https://www.repost.aws/questions/QU5OKPZ-HnS1SHXX6dUbGi2w/announcement-updated-with-revised-plan-6-14-2019-aws-signature-version-4-to-replace-aws-signature-version-2-for-signing-s3-api-requests
    A SigV4 form carries ``x-amz-algorithm``,
    ``x-amz-credential`` (scoped to the region), ``x-amz-date`` and ``x-amz-signature`` (the policy's HMAC):
    https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-authentication-HTTPPOST.html. It goes to
    ``https://<bucket>.s3.<region>.amazonaws.com/``: virtual-hosted, and regional in us-east-1 too (the global
    endpoint redirects a young bucket of another region, and a browser does not re-post a form). A local endpoint
    (the runtime's moto) takes path style.
    """
    from botocore.config import Config

    # A request waits on it: fail within seconds (a 503 the client retries), not after botocore's 5 attempts.
    config = Config(signature_version="s3v4", connect_timeout=3, read_timeout=20, retries={"max_attempts": 2})
    if local:
        return config.merge(Config(s3={"addressing_style": "path"}))
    return config.merge(Config(s3={"addressing_style": "virtual", "us_east_1_regional_endpoint": "regional"}))


@dataclass(frozen=True)
class Staging:
    bucket: str
    prefix: str
    client: S3Client

    @classmethod
    def from_url(cls, url: str, endpoint_url: str = "", region: str = "") -> Staging:
        """``s3://bucket/prefix``; ``endpoint_url``: an S3-compatible endpoint (locally moto, with its dummy keys);
        ``region``: the bucket's (empty: boto3's own lookup, ``AWS_DEFAULT_REGION`` on Lambda)."""
        import boto3

        parsed = urlparse(url)
        if parsed.scheme != "s3" or not parsed.netloc:
            raise ValueError(f"UPLOAD_STAGING_URL must be s3://bucket/prefix, not {url!r}")
        options: dict[str, Any] = {"config": _config(local=bool(endpoint_url))}
        if endpoint_url:
            options |= {"endpoint_url": endpoint_url, "aws_access_key_id": "local", "aws_secret_access_key": "local",
                        "region_name": region or "us-east-1"}  # fmt: skip
        elif region:
            options["region_name"] = region
        return cls(parsed.netloc, parsed.path.strip("/"), boto3.client("s3", **options))

    def key_prefix(self, uuid: str, seq: int) -> str:
        return f"{self.prefix}/{uuid}/{seq}-" if self.prefix else f"{uuid}/{seq}-"

    def presign(self, uuid: str, seq: int, max_bytes: int, expires_s: int) -> dict[str, Any]:
        """A presigned POST for one new key of this (session, seq); no network call."""
        key = self.key_prefix(uuid, seq) + secrets.token_urlsafe(16)
        post = self.client.generate_presigned_post(
            self.bucket, key, Conditions=[["content-length-range", 1, max_bytes]], ExpiresIn=expires_s
        )
        return {"url": post["url"], "fields": post["fields"], "key": key}

    async def take(self, uuid: str, seq: int, key: str, max_bytes: int) -> bytes:
        """The staged image of ``key`` (which must be one presigned for this session and seq), then deleted."""
        prefix = self.key_prefix(uuid, seq)
        if not key.startswith(prefix) or not _TOKEN.fullmatch(key[len(prefix) :]):
            # Well-formed input naming something that does not exist here: not found, like an expired upload.
            raise NotFound(f"field 'key' is not an upload key of session {uuid} seq {seq}")
        return await asyncio.to_thread(self._take, key, max_bytes)

    def _take(self, key: str, max_bytes: int) -> bytes:
        try:
            obj = self.client.get_object(Bucket=self.bucket, Key=key)
        except self.client.exceptions.NoSuchKey:
            raise NotFound(f"nothing was uploaded to {key} (expired, already confirmed, or never sent)") from None
        try:
            if obj["ContentLength"] > max_bytes:
                raise PayloadTooLarge(f"the uploaded image exceeds {max_bytes} bytes")
            return obj["Body"].read(max_bytes + 1)
        finally:
            obj["Body"].close()
            self.client.delete_object(Bucket=self.bucket, Key=key)
