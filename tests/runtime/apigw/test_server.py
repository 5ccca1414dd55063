"""``--http-processes``: several processes serve the one port, connections spread over them, clean exit; request
heads are bounded in time and, as API Gateway bounds them, in size."""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import socket
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx

from runtime.apigw.gateway import ApiGateway
from runtime.apigw.server import API_GATEWAY_HEAD_BYTES, server_for
from runtime.lambdafn.invoker import LocalFunction
from runtime.sockets import Server, listening_socket
from runtime.template import FunctionSpec, HttpRoute
from tests.helpers import Launch, child_processes, image_bytes

LISTEN, ESTABLISHED = "0A", "01"


def _sockets_by_process(pids: list[int], port: int) -> dict[int, dict[str, int]]:
    """For each pid: how many of its TCP sockets on local ``port`` are listening / established."""
    states: dict[str, str] = {}
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].split(":")[1], 16) == port:
            states[fields[9]] = fields[3]  # inode -> state
    counts: dict[int, dict[str, int]] = {}
    for pid in pids:
        mine = {LISTEN: 0, ESTABLISHED: 0}
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            target = os.readlink(fd)
            inode = target[len("socket:[") : -1] if target.startswith("socket:[") else None
            if inode in states and states[inode] in mine:
                mine[states[inode]] += 1
        counts[pid] = mine
    return counts


async def _upload_many(
    base: str, n: int, connections: int, look: Callable[[], dict[int, dict[str, int]]]
) -> tuple[list[int], dict[int, dict[str, int]]]:
    """``n`` uploads over ``connections`` kept-alive connections; ``look()`` runs before they are closed."""
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits) as client:
        session = (await client.post("/register")).json()["uuid"]
        data = image_bytes("JPEG")
        gate = asyncio.Semaphore(connections)

        async def one(seq: int) -> int:
            async with gate:
                form = {"uuid": session, "seq": str(seq), "topk": "1"}
                response = await client.post("/image", data=form, files={"payload": ("a.jpg", data, "image/jpeg")})
                return response.status_code

        statuses = list(await asyncio.gather(*(one(seq) for seq in range(n))))
        return statuses, look()


def test_two_http_processes_share_the_port_and_both_serve(tmp_path: Path, local_stack: Launch) -> None:
    args = ["--functions", "UploadFunction,QueryFunction", "--http-processes", "2"]
    with local_stack(tmp_path, args, {"LOG_LEVEL": "WARNING"}) as runtime:
        port = int(runtime.base_url.rsplit(":", 1)[1])
        extra = [pid for pid, cmd in child_processes(runtime.process.pid).items() if "spawn_main" in cmd]
        assert len(extra) == 1  # the runtime's own process serves too
        servers = [runtime.process.pid, *extra]
        assert {pid: c[LISTEN] for pid, c in _sockets_by_process(servers, port).items()} == dict.fromkeys(servers, 1)

        statuses, spread = asyncio.run(
            _upload_many(runtime.base_url, 96, 16, lambda: _sockets_by_process(servers, port))
        )
        assert statuses == [202] * 96
        assert all(c[ESTABLISHED] >= 1 for c in spread.values()), spread  # the kernel gave both processes clients
        # Both processes served uploads; /metrics adds them up, whichever process answers it.
        scrapes = [httpx.get(f"{runtime.base_url}/metrics", timeout=10).text for _ in range(8)]
    line = 'faasinfer_http_requests_total{function="upload",method="POST",route="/image",status="202"} 96.0'
    assert all(line in text for text in scrapes), scrapes[0]
    assert not Path(f"/proc/{extra[0]}").exists()  # stopped with the runtime


async def _until(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    """Wait for a flag set on this loop (a callback's, or uvicorn's ``started``); fail after ``timeout_s``."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_connections_on_our_listening_socket_have_nagle_off_on_asyncios_loop() -> None:
    """asyncio turns TCP_NODELAY on only for sockets created with IPPROTO_TCP; without it a small response
    can sit ~40 ms behind a delayed ACK (the fallback loop where uvloop is not installed)."""
    assert type(asyncio.get_running_loop()).__module__.startswith("asyncio")
    nodelay: list[int] = []

    async def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nodelay.append(writer.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        writer.close()

    server = await asyncio.start_server(accepted, sock=listening_socket("127.0.0.1", 0, shared=True))
    port = server.sockets[0].getsockname()[1]
    async with server:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        await _until(lambda: bool(nodelay))
        writer.close()
    assert nodelay == [1]


async def test_a_client_that_never_finishes_its_headers_gets_a_408_and_is_cut_off() -> None:
    sock = listening_socket("127.0.0.1", 0, shared=False)
    server = server_for(ApiGateway({}), header_timeout_s=0.5)
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        await _until(lambda: bool(server.started))
        port = sock.getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /image HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data\r\n")  # and nothing more
        started = time.monotonic()
        answer = await asyncio.wait_for(reader.read(), 5)  # up to EOF: the server closed the connection
        elapsed = time.monotonic() - started
        writer.close()
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:  # others are served
            assert (await client.get("/nothing")).status_code == 404
    finally:
        server.should_exit = True
        await serving
    assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n") and answer.endswith(
        b'{"error": "request headers not received within 0.5 s"}'
    )
    assert 0.4 < elapsed < 3


async def test_a_function_that_crashes_is_a_json_500_and_the_connection_serves_on() -> None:
    spec = FunctionSpec("Mixed", "tests.runtime.recording.http_echo", timeout_s=5, routes=(HttpRoute("GET", "/echo"),))
    crashing = FunctionSpec(  # an HTTP event has no "records": the handler raises KeyError
        "Crashing", "tests.runtime.recording.handler", timeout_s=5, routes=(HttpRoute("GET", "/boom"),)
    )
    functions = [LocalFunction(spec, {}, instances=1), LocalFunction(crashing, {}, instances=1)]
    gateway = ApiGateway({("GET", "/echo"): functions[0], ("GET", "/boom"): functions[1]})
    sock = listening_socket("127.0.0.1", 0, shared=False)
    server = server_for(gateway)
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    ports: set[int] = set()
    try:
        await _until(lambda: bool(server.started))
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{sock.getsockname()[1]}", limits=limits) as client:
            answers = []
            for path in ("/boom", "/echo", "/boom", "/echo"):
                response = await client.get(path)
                ports.add(response.extensions["network_stream"].get_extra_info("client_addr")[1])
                answers.append((response.status_code, response.text))
    finally:
        server.should_exit = True
        await serving
        for function in functions:
            await function.stop()
    assert answers == [(500, '{"error": "Crashing failed: KeyError"}'), (200, "xx")] * 2
    assert len(ports) == 1


@contextlib.asynccontextmanager
async def _served(server: Server) -> AsyncIterator[int]:
    """``server`` serving on a free local port, which is yielded; stopped on exit."""
    sock = listening_socket("127.0.0.1", 0, shared=False)
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        await _until(lambda: bool(server.started))
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        await serving


def _get(path: str, pad: int) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: h\r\nX-Pad: {'a' * pad}\r\n\r\n".encode()


async def _response(reader: asyncio.StreamReader) -> bytes:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    length = next(
        int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")
    )
    return head + await reader.readexactly(length)


async def test_a_head_at_api_gateways_limit_passes_and_one_byte_more_is_a_431() -> None:
    """API Gateway counts the request line and the header values: here "GET /x HTTP/1.1", "h" and the padding."""
    pad = API_GATEWAY_HEAD_BYTES - len("GET /x HTTP/1.1") - len("h")
    async with _served(server_for(ApiGateway({}))) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(_get("/x", pad))
        at_limit = await _response(reader)
        writer.write(_get("/x", pad + 1))  # the same kept-alive connection: each request is counted afresh
        beyond = await _response(reader)
        closed = await asyncio.wait_for(reader.read(), 5)
        writer.close()
    assert at_limit.startswith(b"HTTP/1.1 404 ")
    assert beyond.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")
    assert beyond.endswith(
        b'{"error": "request too large: 10241 bytes of request line and header values, beyond API Gateway\'s '
        b'limit of 10240"}'
    )
    assert closed == b""


def _resident_bytes() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * resource.getpagesize()


async def _read_until_closed(reader: asyncio.StreamReader) -> bytes:
    received = b""
    with contextlib.suppress(ConnectionError):
        while chunk := await reader.read(65536):
            received += chunk
    return received


async def test_a_flood_of_header_bytes_is_cut_off_without_being_read() -> None:
    """One request with 64 MB of headers (one grew the process by 800 MB and blocked its loop): the server stops
    reading after twice API Gateway's limit, answers 431 and closes; the client could only fill socket buffers."""
    offered, chunk = 64 * 1024 * 1024, b"a" * 65536
    async with _served(server_for(ApiGateway({}))) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        answer = asyncio.create_task(_read_until_closed(reader))
        before, sent = _resident_bytes(), 0
        writer.write(b"GET /x HTTP/1.1\r\nHost: h\r\nX-Big: ")
        with contextlib.suppress(ConnectionError):
            while sent < offered and not answer.done():
                writer.write(chunk)
                await writer.drain()
                sent += len(chunk)
        received = await asyncio.wait_for(answer, 10)
        grown = _resident_bytes() - before
        writer.close()
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:  # others are served
            assert (await client.get("/nothing")).status_code == 404
    assert received.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n"), received[:100]
    assert b"more than 20480 bytes of request line and headers" in received
    assert sent < offered / 4, sent
    assert grown < 32 * 1024 * 1024, grown
