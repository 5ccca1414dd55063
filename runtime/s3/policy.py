"""S3's rules for a presigned POST, in front of moto: ``PostPolicyGate`` refuses what S3 refuses, with S3's status,
code and message: SigV2 (refused for buckets created after June 24, 2020), an unsigned form, a signature that does
not verify, an expired policy, a key or field the policy does not allow, a file outside its
``content-length-range``. S3's rules:
https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-authentication-HTTPPOST.html (fields, signing key) and
https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-HTTPPOSTConstructPolicy.html (expiration, conditions; every
field but x-amz-signature, file, policy and x-ignore-* must appear in a condition).
"""

from __future__ import annotations

import base64
import hmac
import io
import json
from datetime import UTC, datetime
from hashlib import sha256
from http import HTTPStatus
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs
from xml.sax.saxutils import escape

from urllib3.filepost import encode_multipart_formdata
from werkzeug.http import parse_options_header
from werkzeug.sansio.multipart import Data, Epilogue, Field, File, MultipartDecoder, NeedData
from werkzeug.wsgi import LimitedStream

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

BUCKET = "faasinfer-staging"
REGION = "us-east-1"
ACCESS_KEY = SECRET_KEY = "local"  # the only key pair the local S3 knows: the one staging.py signs with locally
_MAX_OBJECT = 5 * 1024**3  # S3's limit for one POST upload
_MAX_PRE_FILE = 20 * 1024  # S3 refuses more than this of fields before the file
_DRAIN = 64 * 1024 * 1024  # a refused body is read (and dropped) up to this much, so the client sees the answer
_NOT_IN_POLICY = frozenset({"policy", "x-amz-signature", "file"})
_ERRORS = {  # code: (status, S3's message when it has one fixed message)
    "AccessDenied": (403, "Access Denied"),
    "AuthorizationQueryParametersError": (400, ""),
    "EntityTooLarge": (400, "Your proposed upload exceeds the maximum allowed size"),
    "EntityTooSmall": (400, "Your proposed upload is smaller than the minimum allowed size"),
    "IncorrectNumberOfFilesInPostRequest": (400, "POST requires exactly one file upload per request."),
    "InvalidAccessKeyId": (403, "The AWS Access Key Id you provided does not exist in our records."),
    "InvalidArgument": (400, ""),
    "InvalidPolicyDocument": (400, ""),
    "InvalidRequest": (400, "The authorization mechanism you have provided is not supported. "
                       "Please use AWS4-HMAC-SHA256."),
    "MalformedPOSTRequest": (400, "The body of your POST request is not well-formed multipart/form-data."),
    "MaxPostPreDataLengthExceededError": (400, "Your POST request fields preceding the upload file were too large."),
    "MissingContentLength": (411, "You must provide the Content-Length HTTP header."),
    "SignatureDoesNotMatch": (403, "The request signature we calculated does not match the signature you provided. "
                              "Check your key and signing method."),
}  # fmt: skip


class S3Error(Exception):
    """One of S3's error answers: status, ``<Code>``, ``<Message>`` and detail elements."""

    def __init__(self, code: str, message: str = "", **details: object) -> None:
        self.status, default = _ERRORS[code]
        self.code, self.message, self.details = code, message or default, details
        super().__init__(f"{code}: {self.message}")


class PostPolicyGate:
    """WSGI middleware: checks a POST form's SigV4 signature and policy as S3 does, before moto stores it."""

    def __init__(self, app: WSGIApplication, credentials: Mapping[str, str], region: str) -> None:
        self.app, self.credentials, self.region = app, credentials, region

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        try:
            if environ["REQUEST_METHOD"] == "POST" and environ.get("CONTENT_TYPE", "").startswith("multipart/"):
                try:
                    form = self._read(environ)
                except ValueError:  # werkzeug's multipart parser, a Content-Length that is no number
                    raise S3Error("MalformedPOSTRequest") from None
                return self.app(_forwarded(environ, *form), start_response)
            if _signed_v2(environ):
                raise S3Error("InvalidRequest")
        except S3Error as error:
            _drain(environ["wsgi.input"])
            return _answer(error, environ, start_response)
        return self.app(environ, start_response)

    def _read(self, environ: WSGIEnvironment) -> tuple[dict[str, str], str, bytes]:
        """The form as S3 reads it: the fields before the file (names lowercased), the file's name and bytes. The
        policy is checked when the file starts, the file's size as it arrives (refused as soon as it is too big)."""
        if not (length := environ.get("CONTENT_LENGTH")):
            raise S3Error("MissingContentLength")
        environ["wsgi.input"] = stream = LimitedStream(environ["wsgi.input"], int(length))
        boundary = parse_options_header(environ.get("CONTENT_TYPE", ""))[1].get("boundary", "")
        decoder, bucket = MultipartDecoder(boundary.encode()), environ.get("PATH_INFO", "/").strip("/").split("/")[0]
        fields: dict[str, str] = {}
        name, value, filename, size_range, pre_file, done = "", bytearray(), "", (0, _MAX_OBJECT), 0, False
        while not done and (chunk := stream.read(64 * 1024)):
            decoder.receive_data(chunk)
            while not done and not isinstance(event := decoder.next_event(), (NeedData, Epilogue)):
                if isinstance(event, (Field, File)):
                    name, value = event.name.lower(), bytearray()
                    if isinstance(event, File) or name == "file":  # S3 reads no field after the file
                        name, filename = "file", getattr(event, "filename", "")
                        size_range = self.authorize(bucket, fields, filename)
                elif isinstance(event, Data):
                    value += event.data
                    if name == "file" and len(value) > size_range[1]:
                        raise S3Error("EntityTooLarge", ProposedSize=len(value), MaxSizeAllowed=size_range[1])
                    if name != "file" and (pre_file := pre_file + len(event.data)) > _MAX_PRE_FILE:
                        raise S3Error("MaxPostPreDataLengthExceededError")
                    if not event.more_data and not (done := name == "file"):
                        fields.setdefault(name, value.decode("utf-8", "replace"))
        if not done:
            raise S3Error("IncorrectNumberOfFilesInPostRequest")
        if len(value) < size_range[0]:
            raise S3Error("EntityTooSmall", ProposedSize=len(value), MinSizeAllowed=size_range[0])
        return fields, filename, bytes(value)

    def authorize(self, bucket: str, fields: Mapping[str, str], filename: str) -> tuple[int, int]:
        """S3's checks of the fields before the file; the file sizes the policy allows."""
        if ("awsaccesskeyid" in fields or "signature" in fields) and "x-amz-algorithm" not in fields:
            raise S3Error("InvalidRequest")  # SigV2
        if not {"policy", "x-amz-signature", "x-amz-credential"} & fields.keys():
            raise S3Error("AccessDenied")  # an anonymous upload to a bucket nobody may write to
        for name in ("key", "policy", "x-amz-algorithm", "x-amz-credential", "x-amz-date", "x-amz-signature"):
            if name not in fields:
                hint = "If it is specified, please check the order of the fields."
                raise S3Error("InvalidArgument", f"Bucket POST must contain a field named '{name}'.  {hint}")
        if fields["x-amz-algorithm"] != "AWS4-HMAC-SHA256":
            raise S3Error("InvalidArgument", f"Unsupported algorithm: {fields['x-amz-algorithm']}")
        self._verify(fields["x-amz-credential"], fields["policy"], fields["x-amz-signature"])
        expires, conditions = _decoded(fields["policy"])
        if datetime.now(UTC) >= expires:
            raise S3Error("AccessDenied", "Invalid according to Policy: Policy expired.")
        key = fields["key"].replace("${filename}", filename)
        return _check_conditions(conditions, {**fields, "key": key, "bucket": bucket})

    def _verify(self, credential: str, policy: str, signature: str) -> None:
        """The SigV4 signature of the policy, by the signing key of the credential's scope."""
        parts = credential.split("/")
        if len(parts) != 5 or parts[3:] != ["s3", "aws4_request"]:
            message = f"Error parsing the X-Amz-Credential parameter; the credential '{credential}' is malformed"
            raise S3Error("AuthorizationQueryParametersError", message)
        access_key, date, region = parts[:3]
        if (secret := self.credentials.get(access_key)) is None:
            raise S3Error("InvalidAccessKeyId", AWSAccessKeyId=access_key)
        if region != self.region:
            wrong = f"the region '{region}' is wrong; expecting '{self.region}'"
            message = f"Error parsing the X-Amz-Credential parameter; {wrong}"
            raise S3Error("AuthorizationQueryParametersError", message, Region=self.region)
        key = f"AWS4{secret}".encode()
        for scope in (date, region, "s3", "aws4_request"):
            key = hmac.new(key, scope.encode(), sha256).digest()
        if not hmac.compare_digest(hmac.new(key, policy.encode(), sha256).hexdigest().encode(), signature.encode()):
            raise S3Error("SignatureDoesNotMatch")


def _decoded(encoded: str) -> tuple[datetime, list[Any]]:
    """The policy's expiration and conditions."""
    try:
        policy = json.loads(base64.b64decode(encoded, validate=True))
    except ValueError:
        raise S3Error("InvalidPolicyDocument", "Invalid Policy: Invalid JSON.") from None
    if not isinstance(policy, dict) or not isinstance(policy.get("expiration"), str):
        raise S3Error("InvalidPolicyDocument", "Invalid Policy: Missing expiration.")
    if not isinstance(conditions := policy.get("conditions"), list):
        raise S3Error("InvalidPolicyDocument", "Invalid Policy: Missing conditions.")
    try:
        expires = datetime.fromisoformat(policy["expiration"])
    except ValueError:
        raise S3Error("InvalidPolicyDocument", "Invalid Policy: Invalid 'expiration' value.") from None
    return (expires if expires.tzinfo else expires.replace(tzinfo=UTC)), conditions


def _check_conditions(conditions: list[Any], fields: Mapping[str, str]) -> tuple[int, int]:
    """Every condition holds and every field is named by one; the ``content-length-range``."""
    named, size_range = {"bucket"}, (0, _MAX_OBJECT)
    for condition in conditions:
        invalid = S3Error("InvalidPolicyDocument", f"Invalid Policy: Invalid Condition: {json.dumps(condition)}")
        if isinstance(condition, dict) and len(condition) == 1:
            [(name, expected)], operator = condition.items(), "eq"
        elif isinstance(condition, list) and len(condition) == 3 and isinstance(condition[0], str):
            operator, name, expected = condition[0].lower(), str(condition[1]), condition[2]
            if operator == "content-length-range":
                try:
                    size_range = (int(name), int(expected))
                except (TypeError, ValueError):
                    raise invalid from None
                continue
            if operator not in ("eq", "starts-with") or not name.startswith("$"):
                raise invalid
            name = name[1:]
        else:
            raise invalid
        named.add(name := str(name).lower())
        actual = fields.get(name)
        if actual is None or not (actual == expected if operator == "eq" else actual.startswith(str(expected))):
            failed = json.dumps([operator, f"${name}", expected])
            raise S3Error("AccessDenied", f"Invalid according to Policy: Policy Condition failed: {failed}")
    if extra := sorted(n for n in fields if n not in named | _NOT_IN_POLICY and not n.startswith("x-ignore-")):
        raise S3Error("AccessDenied", f"Invalid according to Policy: Extra input fields: {', '.join(extra)}")
    return size_range


def _forwarded(environ: WSGIEnvironment, fields: dict[str, str], filename: str, data: bytes) -> WSGIEnvironment:
    """The environ moto gets: the checked fields, then the file; fields after the file are dropped, as S3 does."""
    body, content_type = encode_multipart_formdata([*fields.items(), ("file", (filename, data))])
    return {**environ, "wsgi.input": io.BytesIO(body), "CONTENT_LENGTH": str(len(body)), "CONTENT_TYPE": content_type}


def _drain(stream: object) -> None:
    """Read what a refused client still sends (up to a bound), so it reads the answer instead of a reset."""
    drained = 0
    while isinstance(stream, LimitedStream) and drained < _DRAIN and (chunk := stream.read(64 * 1024)):
        drained += len(chunk)


def _signed_v2(environ: WSGIEnvironment) -> bool:
    """An API call signed with SigV2: in the ``Authorization`` header or a presigned URL's query."""
    v2_header = str(environ.get("HTTP_AUTHORIZATION", "")).startswith("AWS ")
    return v2_header or "AWSAccessKeyId" in parse_qs(environ.get("QUERY_STRING", ""))


def _answer(error: S3Error, environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]:
    extra = "".join(f"<{name}>{escape(str(value))}</{name}>" for name, value in error.details.items())
    body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{error.code}</Code><Message>{escape(error.message)}'
            f"</Message>{extra}<RequestId>local</RequestId></Error>").encode()  # fmt: skip
    headers = [("Content-Type", "application/xml"), ("Content-Length", str(len(body)))]
    if environ.get("HTTP_ORIGIN"):  # the stack's bucket allows every origin (template CORS): the page reads the error
        headers.append(("Access-Control-Allow-Origin", "*"))
    start_response(f"{error.status} {HTTPStatus(error.status).phrase}", headers)
    return [body]
