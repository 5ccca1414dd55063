"""Serving the gateway with uvicorn, in the runtime's process and optionally in more processes on one port.

``--http-processes N`` runs the gateway in N processes, like N concurrent instances behind an API gateway: one
Python process runs one request's code at a time, so on a multi-core box a single process caps the upload rate
(bench/http_load.py). Each binds the port with ``SO_REUSEPORT`` and the kernel spreads connections evenly
(one socket shared by all, as uvicorn's ``--workers`` does, measured 3:1 here: asyncio accepts every pending
connection at once in whichever process wakes first).
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Mapping, Sequence
from multiprocessing.synchronize import Event
from pathlib import Path

import uvicorn

from functions.common import loops

from .gateway import ApiGateway
from .invoker import Function
from .logs import configure_logging
from .placement import make_function
from .sockets import HEADER_TIMEOUT_S, Server, header_timeout_protocol, listening_socket
from .template import FunctionSpec


def server_for(gateway: ApiGateway, header_timeout_s: float = HEADER_TIMEOUT_S) -> Server:
    """uvicorn serving ``gateway`` on the sockets given to ``serve`` (``listening_socket``); request headers must
    arrive within ``header_timeout_s``."""
    protocol = header_timeout_protocol(header_timeout_s)
    return Server(uvicorn.Config(gateway, lifespan="off", log_level="warning", http=protocol))


Environments = Sequence[tuple[FunctionSpec, Mapping[str, str]]]  # each function with its own environment


def http_functions(
    environments: Environments, instances: int, build_dir: Path | None
) -> tuple[ApiGateway, list[Function]]:
    """The gateway and the functions behind it: ``instances`` execution environments per function."""
    functions = [make_function(spec, env, instances, build_dir) for spec, env in environments]
    routes = {(route.method, route.path): f for f in functions for route in f.spec.routes}
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
