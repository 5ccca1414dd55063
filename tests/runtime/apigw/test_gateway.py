"""The local API Gateway: requests become payload-format-2.0 events, and AWS's limits answer as AWS would."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import AsyncIterator

import httpx
import pytest
from aws_lambda_powertools.utilities.parser.models import APIGatewayProxyEventV2Model

from runtime.apigw.gateway import API_GATEWAY_MAX_BODY, LAMBDA_MAX_PAYLOAD, ApiGateway
from runtime.apigw.server import http_functions
from runtime.lambdafn.invoker import LocalFunction
from runtime.template import FunctionSpec, HttpRoute
from tests.runtime import recording


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    recording.reset()
    spec = FunctionSpec(
        "EchoFunction",
        "tests.runtime.recording.http_echo",
        timeout_s=1,
        routes=(HttpRoute("POST", "/echo"), HttpRoute("GET", "/echo")),
    )
    function = LocalFunction(spec, {}, instances=2)
    gateway = ApiGateway({(r.method, r.path): function for r in spec.routes})
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=gateway), base_url="http://api.local") as http:
        yield http
    await function.stop()


async def test_request_becomes_an_http_api_v2_event(client: httpx.AsyncClient) -> None:
    payload = bytes(range(256)) * 8
    response = await client.post(
        "/echo?a=1&a=2&b=x", content=payload, headers={"content-type": "image/png", "cookie": "s=1; t=2"}
    )
    assert response.status_code == 200 and response.text == "xx"
    event = APIGatewayProxyEventV2Model.model_validate(recording.EVENTS[-1])  # the shape powertools parses
    assert event.routeKey == "POST /echo" and event.rawPath == "/echo" and event.rawQueryString == "a=1&a=2&b=x"
    assert event.queryStringParameters == {"a": "1,2", "b": "x"} and event.cookies == ["s=1", "t=2"]
    assert event.isBase64Encoded and base64.b64decode(recording.EVENTS[-1]["body"]) == payload
    assert event.requestContext.http.method == "POST" and event.requestContext.stage == "$default"


async def test_a_text_body_is_passed_as_text(client: httpx.AsyncClient) -> None:
    await client.post("/echo", json={"k": "v"})
    assert recording.EVENTS[-1]["isBase64Encoded"] is False and recording.EVENTS[-1]["body"] == '{"k":"v"}'


async def test_a_binary_body_over_lambdas_payload_limit_is_a_json_413(client: httpx.AsyncClient) -> None:
    fits = await client.post("/echo", content=b"\0" * (4 * 1024 * 1024), headers={"content-type": "image/jpeg"})
    assert fits.status_code == 200
    too_big = await client.post("/echo", content=b"\0" * (5 * 1024 * 1024), headers={"content-type": "image/jpeg"})
    assert too_big.status_code == 413
    assert f"over Lambda's {LAMBDA_MAX_PAYLOAD} byte invocation limit" in too_big.json()["error"]
    assert "base64" in too_big.json()["error"]
    huge = await client.post(
        "/echo", content=b"\0" * (API_GATEWAY_MAX_BODY + 1), headers={"content-type": "image/jpeg"}
    )
    assert huge.status_code == 413 and "API Gateway's 10485760 byte limit" in huge.json()["error"]


async def test_a_response_over_the_payload_limit_is_a_json_500(client: httpx.AsyncClient) -> None:
    response = await client.get("/echo", params={"size": LAMBDA_MAX_PAYLOAD + 1})
    assert response.status_code == 500 and "response is" in response.json()["error"]


async def test_a_function_past_its_timeout_is_a_json_504(client: httpx.AsyncClient) -> None:
    response = await client.get("/echo", params={"sleep": 1.5})
    assert response.status_code == 504 and "Task timed out after 1.00 seconds" in response.json()["error"]


async def test_unknown_routes_and_methods(client: httpx.AsyncClient) -> None:
    assert (await client.get("/nope")).json() == {"error": "not found"}
    response = await client.put("/echo")
    assert response.status_code == 405 and response.json() == {"error": "method not allowed; use GET, POST"}


async def test_a_body_that_does_not_arrive_in_time_is_a_json_408() -> None:
    spec = FunctionSpec(
        "EchoFunction", "tests.runtime.recording.http_echo", timeout_s=1, routes=(HttpRoute("POST", "/echo"),)
    )
    function = LocalFunction(spec, {}, instances=1)
    gateway = ApiGateway({("POST", "/echo"): function}, body_timeout_s=0.3)
    scope = {"type": "http", "method": "POST", "path": "/echo", "headers": [], "query_string": b"",
             "raw_path": b"/echo", "http_version": "1.1", "scheme": "http", "server": ("api.local", 80),
             "client": ("127.0.0.1", 5000)}  # fmt: skip
    first = True

    async def receive() -> dict[str, object]:  # one chunk, then a client that stalls
        nonlocal first
        if first:
            first = False
            return {"type": "http.request", "body": b"a few bytes", "more_body": True}
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    sent: list[dict[str, object]] = []

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    await asyncio.wait_for(gateway(scope, receive, send), 5)  # type: ignore[arg-type]
    await function.stop()
    assert sent[0]["status"] == 408
    assert json.loads(sent[1]["body"]) == {"error": "request body not received within 0.3 s"}  # type: ignore[arg-type]


async def test_a_client_that_hangs_up_mid_body_is_one_quiet_line_not_an_error(caplog: pytest.LogCaptureFixture) -> None:
    spec = FunctionSpec(
        "EchoFunction", "tests.runtime.recording.http_echo", timeout_s=1, routes=(HttpRoute("POST", "/echo"),)
    )
    function = LocalFunction(spec, {}, instances=1)
    gateway = ApiGateway({("POST", "/echo"): function})
    scope = {"type": "http", "method": "POST", "path": "/echo", "headers": [], "query_string": b"",
             "raw_path": b"/echo", "http_version": "1.1", "scheme": "http", "server": ("api.local", 80),
             "client": ("127.0.0.1", 5000)}  # fmt: skip
    messages = iter([{"type": "http.request", "body": b"part of it", "more_body": True}, {"type": "http.disconnect"}])

    async def receive() -> dict[str, object]:
        return next(messages)

    sent: list[dict[str, object]] = []

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    with caplog.at_level(logging.INFO, logger="runtime.apigw.gateway"):
        await asyncio.wait_for(gateway(scope, receive, send), 5)  # type: ignore[arg-type]
    await function.stop()
    assert sent == [] and function.invocations == 0  # nobody to answer, nothing invoked
    assert [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "runtime.apigw.gateway"] == [
        ("INFO", "POST /echo -> 499: the client closed the connection before its request was read")
    ]


async def test_requests_that_wait_for_an_environment_are_not_timed_out_by_the_wait(client: httpx.AsyncClient) -> None:
    # two environments, a 1 s Timeout: the last two requests wait 0.7 s for an environment, then run 0.7 s
    responses = await asyncio.gather(*(client.get("/echo", params={"sleep": 0.7}) for _ in range(4)))
    assert [r.status_code for r in responses] == [200] * 4


async def test_a_request_that_finds_no_free_environment_in_time_is_a_json_429_and_never_runs() -> None:
    recording.reset()
    spec = FunctionSpec(
        "EchoFunction", "tests.runtime.recording.http_echo", timeout_s=5, routes=(HttpRoute("GET", "/echo"),)
    )
    function = LocalFunction(spec, {})
    gateway = ApiGateway({("GET", "/echo"): function}, environment_wait_s=0.2)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=gateway), base_url="http://api.local") as http:
        busy = asyncio.ensure_future(http.get("/echo", params={"sleep": 0.8}))
        await asyncio.sleep(0.1)
        throttled = await http.get("/echo", params={"mark": "throttled"})
        assert (await busy).status_code == 200
    await function.stop()
    assert throttled.status_code == 429
    assert throttled.json()["error"].startswith("throttled: EchoFunction: no execution environment was free")
    assert [(e.get("queryStringParameters") or {}).get("mark") for e in recording.EVENTS] == [None]


async def test_the_health_probe_has_an_environment_of_its_own_and_never_waits_behind_other_routes() -> None:
    recording.reset()
    spec = FunctionSpec(
        "Upload",
        "tests.runtime.recording.http_echo",
        timeout_s=5,
        routes=(HttpRoute("POST", "/image"), HttpRoute("GET", "/health")),
    )
    gateway, functions = http_functions([(spec, {})], 1, None)
    await asyncio.gather(*(f.start() for f in functions))
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=gateway), base_url="http://api.local") as http:
            upload = asyncio.ensure_future(http.post("/image", params={"sleep": 1.5}))
            await asyncio.sleep(0.2)  # the upload holds the function's only environment
            health = await http.get("/health")
            assert health.status_code == 200 and not upload.done()
            assert (await upload).status_code == 200
    finally:
        await asyncio.gather(*(f.stop() for f in functions))
    assert len(functions) == 2 and gateway.routes[("GET", "/health")] is not gateway.routes[("POST", "/image")]
