"""Serving the gateway with uvicorn, in the runtime's process and optionally in more processes on one port.

``--http-processes N`` runs the gateway in N processes, like N concurrent instances behind an API gateway: one
Python process runs one request's code at a time, so on a multi-core box a single process caps the upload rate
(bench/http_load.py). Each binds the port with ``SO_REUSEPORT`` and the kernel spreads connections evenly
(one socket shared by all, as uvicorn's ``--workers`` does, measured 3:1 here: asyncio accepts every pending
connection at once in whichever process wakes first).

Request heads are bounded as API Gateway bounds them: an HTTP API refuses a request whose request line and header
values exceed 10,240 bytes ("Total combined size of request line and header values", not adjustable:
https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-quotas.html). Here such a request gets a 431
and its connection is closed, and a head whose raw bytes (names and separators too) pass twice that is cut off
before more of it is read: without it, one request with 200 MB of headers grew the process by 800 MB and blocked
its event loop (httptools joins a header's pieces by copying).
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
from collections.abc import Mapping, Sequence
from multiprocessing.synchronize import Event
from pathlib import Path

import uvicorn

from runtime.apigw.gateway import ApiGateway
from runtime.app import PROBE_ROUTES, loops
from runtime.lambdafn.invoker import Function
from runtime.lambdafn.placement import make_function
from runtime.logs import configure_logging
from runtime.sockets import HEADER_TIMEOUT_S, HeaderTimeoutProtocol, Server, listening_socket
from runtime.template import FunctionSpec

log = logging.getLogger(__name__)

API_GATEWAY_HEAD_BYTES = 10_240  # an HTTP API's quota on the request line and header values


class HeadLimitProtocol(HeaderTimeoutProtocol):
    """uvicorn's httptools protocol with the header deadline (``sockets``) and API Gateway's size limit on a head.

    The limit is checked as API Gateway states it (request line plus header values) once the headers are parsed;
    while they arrive, their raw bytes are counted before the parser sees them, and a head past twice the limit is
    refused without feeding it on. (A chunk that ends one request's body and starts the next request's head is fed
    uncounted: at most one read, 256 KB.)"""

    max_head_bytes = API_GATEWAY_HEAD_BYTES
    _head_bytes: int | None = 0  # raw bytes of the head being received; None while a body is
    _head_tail = b""  # the last 3 bytes received, in case the blank line ending the head is split across reads
    _line_and_values = 0
    _refused = False

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        if self._head_bytes is not None:
            window = self._head_tail + data
            end = window.find(b"\r\n\r\n")
            self._head_bytes += len(data) if end < 0 else end + 4 - len(self._head_tail)
            self._head_tail = window[-3:]
            if self._head_bytes > 2 * self.max_head_bytes:
                self._refuse(f"more than {2 * self.max_head_bytes} bytes of request line and headers")
                return
        super().data_received(data)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._line_and_values = 0

    def on_url(self, url: bytes) -> None:
        self._line_and_values += len(url)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._line_and_values += len(value)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        if self._refused:
            return
        line = len(self.parser.get_method()) + len(" ") + len(" HTTP/1.1")
        if line + self._line_and_values > self.max_head_bytes:
            self._refuse(f"{line + self._line_and_values} bytes of request line and header values")
            return
        self._head_bytes = None
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self._refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if self._refused:
            return
        super().on_message_complete()
        self._head_bytes, self._head_tail = 0, b""

    def _refuse(self, size: str) -> None:
        self._refused = True
        log.info("refusing a request from %s: %s, beyond API Gateway's %d", self.client, size, self.max_head_bytes)
        message = f"request too large: {size}, beyond API Gateway's limit of {self.max_head_bytes}"
        body = json.dumps({"error": message}).encode()
        head = f"content-type: application/json\r\ncontent-length: {len(body)}\r\nconnection: close\r\n\r\n"
        self.transport.write(b"HTTP/1.1 431 Request Header Fields Too Large\r\n" + head.encode() + body)
        self.transport.close()


def server_for(
    gateway: ApiGateway, header_timeout_s: float = HEADER_TIMEOUT_S, max_head_bytes: int = API_GATEWAY_HEAD_BYTES
) -> Server:
    """uvicorn serving ``gateway`` on the sockets given to ``serve`` (``listening_socket``); request headers must
    arrive within ``header_timeout_s`` and hold at most ``max_head_bytes`` of request line and header values."""
    protocol = type(
        "GatewayProtocol",
        (HeadLimitProtocol,),
        {"header_timeout_s": header_timeout_s, "max_head_bytes": max_head_bytes},
    )
    return Server(uvicorn.Config(gateway, lifespan="off", log_level="warning", http=protocol))


Environments = Sequence[tuple[FunctionSpec, Mapping[str, str]]]  # each function with its own environment


def http_functions(
    environments: Environments, instances: int, build_dir: Path | None
) -> tuple[ApiGateway, list[Function]]:
    """The gateway and the functions behind it: ``instances`` execution environments per function, and one more of
    its own for each probe route (``PROBE_ROUTES``), so a health check never waits behind the function's other
    requests for an environment: on Lambda, where each concurrent request gets an environment, it never does."""
    functions: list[Function] = []
    routes: dict[tuple[str, str], Function] = {}
    for spec, env in environments:
        functions.append(function := make_function(spec, env, instances, build_dir))
        routes.update({(r.method, r.path): function for r in spec.routes})
        probes = [r for r in spec.routes if (r.method, r.path) in PROBE_ROUTES]
        if probes:
            functions.append(prober := make_function(spec, env, 1, build_dir))
            routes.update({(r.method, r.path): prober for r in probes})
    return ApiGateway(routes), functions


async def _serve(
    environments: Environments, instances: int, build_dir: Path | None, host: str, port: int, ready: Event
) -> None:
    sock = listening_socket(host, port, shared=True)
    gateway, functions = http_functions(environments, instances, build_dir)
    await asyncio.gather(*(f.start() for f in functions))
    server = server_for(gateway)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: setattr(server, "should_exit", True))
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started and not serving.done():  # noqa: ASYNC110 - uvicorn offers only the flag
            await asyncio.sleep(0.01)
        ready.set()
        await serving
    finally:
        await asyncio.gather(*(f.stop() for f in functions))


def http_process_main(
    environments: Environments, instances: int, build_dir: Path | None, host: str, port: int, ready: Event
) -> None:
    """Entry point of a spawned extra HTTP process (the runtime's own process serves the same port);
    ``ready`` is set once it accepts connections."""
    configure_logging("http")
    loops.run(_serve(environments, instances, build_dir, host, port, ready))
