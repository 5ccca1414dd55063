"""The listening socket and the uvicorn server every HTTP endpoint of the runtime uses (API, Runtime API)."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator

import uvicorn


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
