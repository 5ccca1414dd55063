"""The listening socket and the uvicorn server every HTTP endpoint of the runtime uses (API, Runtime API)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
from collections.abc import Iterator

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger(__name__)

HEADER_TIMEOUT_S = 10.0


class HeaderTimeoutProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, plus a deadline for a request's headers: a client that connects, or starts a
    request, and does not finish its headers within ``header_timeout_s`` gets a 408 and the connection is closed
    (slowloris; uvicorn itself only times out idle keep-alive connections). Bodies have their own deadline
    (``gateway``)."""

    header_timeout_s = HEADER_TIMEOUT_S
    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout_s, self._headers_too_slow)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if self.transport.is_closing():
            return
        log.info(
            "closing a connection from %s: no complete request headers within %g s", self.client, self.header_timeout_s
        )
        body = json.dumps({"error": f"request headers not received within {self.header_timeout_s:g} s"}).encode()
        head = f"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
        self.transport.write(head.encode() + b"connection: close\r\n\r\n" + body)
        self.transport.close()


def header_timeout_protocol(timeout_s: float) -> type[HeaderTimeoutProtocol]:
    return type("HeaderTimeoutProtocol", (HeaderTimeoutProtocol,), {"header_timeout_s": timeout_s})


class Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:  # the runtime owns SIGINT/SIGTERM
        yield


def listening_socket(host: str, port: int, shared: bool) -> socket.socket:
    """A bound socket (``OSError`` if the port is taken); ``shared``: other processes may bind it too."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on connections of sockets that name it (else Nagle's
    # algorithm meets delayed ACKs and small responses wait ~40 ms; uvloop sets it either way).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if shared:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def nearby_free_port(host: str, port: int, tries: int = 20) -> int:
    """The first of the ``tries`` ports after ``port`` that can be bound now, or one the system picks."""
    for candidate in [*range(port + 1, min(port + 1 + tries, 65536)), 0]:
        try:
            with listening_socket(host, candidate, shared=False) as sock:
                return int(sock.getsockname()[1])
        except OSError:
            continue
    raise OSError(f"no free port on {host}")
