"""The HTTP API in front of the HTTP functions, as API Gateway (HTTP API, payload format 2.0) runs it.

Each request becomes the event API Gateway sends (binary bodies base64), the function is invoked as Lambda invokes
it (through its handler: Mangum, then the Starlette app), and its response is turned back into HTTP. What AWS
rejects is rejected here, with a JSON error that says why: a body over API Gateway's 10 MB or an event over
Lambda's 6 MB invocation payload (413; a ~4.5 MB image is the largest that fits inline), a response over 6 MB or a
failed invocation (500, as API Gateway answers them), an invocation past its ``Timeout`` (504), one that found no
free execution environment within ``ENVIRONMENT_WAIT_S`` (429, Lambda's throttle).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from starlette.types import Receive, Scope, Send

from runtime.esm.events import LAMBDA_MAX_PAYLOAD
from runtime.lambdafn.invoker import Function, FunctionThrottled, FunctionTimedOut

log = logging.getLogger(__name__)

API_GATEWAY_MAX_BODY = 10 * 1024 * 1024  # HTTP API request payload quota
# Lambda starts another environment for a request that finds them all busy; the local stand-in has a fixed number,
# so a request waits for one, at most this long (API Gateway's 30 s integration timeout), then gets Lambda's 429.
ENVIRONMENT_WAIT_S = 30.0
BODY_TIMEOUT_S = 30.0  # a request's whole body (API Gateway's integration timeout is 30 s too): slow clients end
_TEXT_TYPES = ("text/", "application/json", "application/x-www-form-urlencoded", "application/xml")


class RequestRejected(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def _headers(scope: Scope) -> dict[str, str]:
    """Lower-case names; repeated headers joined with commas, as API Gateway does (cookies go apart)."""
    joined: dict[str, str] = {}
    for raw_name, raw_value in scope["headers"]:
        name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
        joined[name] = f"{joined[name]},{value}" if name in joined else value
    return joined


def http_api_event(scope: Scope, body: bytes, route_key: str) -> dict[str, Any]:
    """The payload format 2.0 event for one request (docs.aws.amazon.com: http-api-develop-integrations-lambda)."""
    headers = _headers(scope)
    cookies = headers.pop("cookie", "")
    query = scope.get("query_string", b"").decode("latin-1")
    parameters: dict[str, str] = {}
    for pair in filter(None, query.split("&")):
        key, _, value = pair.partition("=")
        parameters[key] = f"{parameters[key]},{value}" if key in parameters else value
    binary = bool(body) and not headers.get("content-type", "").startswith(_TEXT_TYPES)
    now = time.time()
    client = scope.get("client") or ("127.0.0.1", 0)
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": scope["path"],
        "rawQueryString": query,
        "headers": headers,
        "requestContext": {
            "accountId": "000000000000",
            "apiId": "local",
            "domainName": headers.get("host", "localhost"),
            "domainPrefix": headers.get("host", "localhost").split(".")[0],
            "http": {
                "method": scope["method"],
                "path": scope["path"],
                "protocol": f"HTTP/{scope.get('http_version', '1.1')}",
                "sourceIp": client[0],
                "userAgent": headers.get("user-agent", ""),
            },
            "requestId": uuid.uuid4().hex[:16],
            "routeKey": route_key,
            "stage": "$default",
            "time": datetime.fromtimestamp(now, UTC).strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "timeEpoch": int(now * 1000),
        },
        "isBase64Encoded": binary,
    }
    if cookies:
        event["cookies"] = [c.strip() for c in cookies.split(";") if c.strip()]
    if parameters:
        event["queryStringParameters"] = parameters
    if body:
        event["body"] = base64.b64encode(body).decode("ascii") if binary else body.decode("utf-8", "replace")
    return event


async def _read_body(scope: Scope, receive: Receive) -> bytes:
    declared = dict(scope["headers"]).get(b"content-length", b"")
    if declared.isdigit() and int(declared) > API_GATEWAY_MAX_BODY:
        raise RequestRejected(413, f"request body exceeds API Gateway's {API_GATEWAY_MAX_BODY} byte limit")
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise RequestRejected(499, "client closed the request")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > API_GATEWAY_MAX_BODY:
            raise RequestRejected(413, f"request body exceeds API Gateway's {API_GATEWAY_MAX_BODY} byte limit")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


# This API's way around the limit, named in the 413 (functions/upload/staging.py).
LARGE_REQUEST_HINT = "; upload a large image with POST /upload-url (a presigned S3 upload), then POST /image/confirm"

# Everything of an event or response but its body (headers, request context) stays far below this; a body this much
# under the limit cannot push the payload over it, so only larger ones are serialised to be measured exactly.
_ENVELOPE_BOUND = 256 * 1024


def _check_payload(kind: str, payload: Mapping[str, Any], status: int) -> None:
    body = payload.get("body")
    if len(body or "") + _ENVELOPE_BOUND < LAMBDA_MAX_PAYLOAD and len(str(payload.get("headers"))) < _ENVELOPE_BOUND:
        return
    size = len(json.dumps(payload, separators=(",", ":")))
    if size > LAMBDA_MAX_PAYLOAD:
        raise RequestRejected(
            status,
            f"{kind} is {size} bytes as a Lambda payload, over Lambda's {LAMBDA_MAX_PAYLOAD} byte invocation limit"
            + (f" (a binary body grows by a third in base64){LARGE_REQUEST_HINT}" if kind == "request" else ""),
        )


class ApiGateway:
    """ASGI app: ``(method, path)`` → the function the template routes it to; 404/405 as JSON otherwise."""

    def __init__(
        self,
        routes: Mapping[tuple[str, str], Function],
        body_timeout_s: float = BODY_TIMEOUT_S,
        environment_wait_s: float = ENVIRONMENT_WAIT_S,
    ) -> None:
        self.routes = dict(routes)
        self.body_timeout_s, self.environment_wait_s = body_timeout_s, environment_wait_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        method, path = scope["method"], scope["path"]
        function = self.routes.get((method, path)) or self.routes.get(("ANY", path))
        try:
            if function is None:
                allowed = sorted(m for m, p in self.routes if p == path)
                if allowed:
                    raise RequestRejected(405, f"method not allowed; use {', '.join(allowed)}")
                raise RequestRejected(404, "not found")
            try:
                async with asyncio.timeout(self.body_timeout_s):
                    request_body = await _read_body(scope, receive)
            except TimeoutError:
                raise RequestRejected(408, f"request body not received within {self.body_timeout_s:g} s") from None
            event = http_api_event(scope, request_body, f"{method} {path}")
            _check_payload("request", event, 413)
            response = await self._invoke(function, event)
            _check_payload("response", response, 500)
        except RequestRejected as rejected:
            if rejected.status == 499:  # nobody to answer: one quiet line, as nginx logs a 499
                log.info("%s %s -> 499: the client closed the connection before its request was read", method, path)
            else:
                await _send(send, rejected.status, {"content-type": "application/json"}, [], _error(rejected.message))
            return
        headers = {str(k).lower(): str(v) for k, v in (response.get("headers") or {}).items()}
        for name, values in (response.get("multiValueHeaders") or {}).items():
            headers[str(name).lower()] = ",".join(str(v) for v in values)
        body = response.get("body") or ""
        raw = base64.b64decode(body) if response.get("isBase64Encoded") else str(body).encode()
        status = int(response.get("statusCode", 200))
        await _send(send, status, headers, response.get("cookies") or [], raw)

    async def _invoke(self, function: Function, event: dict[str, Any]) -> dict[str, Any]:
        try:
            response = await function.invoke(event, throttle_after_s=self.environment_wait_s)
        except FunctionThrottled as exc:
            raise RequestRejected(429, f"throttled: {exc}") from None
        except FunctionTimedOut as exc:
            raise RequestRejected(504, f"{function.spec.name} timed out: {exc}") from None
        except Exception as exc:
            log.exception("%s failed", function.spec.name)  # API Gateway answers a failed invocation with a 500
            raise RequestRejected(500, f"{function.spec.name} failed: {type(exc).__name__}") from exc
        if not isinstance(response, dict) or "statusCode" not in response:
            raise RequestRejected(500, f"{function.spec.name} returned no API Gateway response")
        return response


def _error(message: str) -> bytes:
    return json.dumps({"error": message}).encode()


async def _send(send: Send, status: int, headers: Mapping[str, str], cookies: list[str], body: bytes) -> None:
    raw = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items() if k != "content-length"]
    raw += [(b"set-cookie", c.encode("latin-1")) for c in cookies]
    raw.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})
