"""The pieces ``runtime.local`` composes, each an async context manager: started on entry, stopped on exit.

Every function gets its own environment (``environment.function_environment``) and is invoked through one
interface (``invoker.Function``); these pieces only decide where functions run (threads of this process, worker
processes, extra HTTP processes, processes running built artifacts) and which trigger feeds them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import queue
import socket
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from runtime import supervisor
from runtime.apigw.server import Environments, http_functions, http_process_main, server_for
from runtime.app import Settings
from runtime.esm.kafka import RetryPolicy
from runtime.esm.worker import mappings_for, supervise, worker_main
from runtime.eventbridge.schedule import Schedule
from runtime.kafka.broker import EmbeddedBroker, keep_alive
from runtime.lambdafn.placement import artifact_of, make_function
from runtime.supervisor import Child
from runtime.template import FunctionSpec

log = logging.getLogger(__name__)
_spawn = multiprocessing.get_context("spawn")


@dataclass(frozen=True)
class Placement:
    """A function of the template with its environment (and its settings, read from that environment)."""

    spec: FunctionSpec
    environment: Mapping[str, str]
    settings: Settings


@contextlib.asynccontextmanager
async def broker_watch(broker: EmbeddedBroker | None, topics: dict[str, int]) -> AsyncIterator[None]:
    """Restart the embedded broker if it dies (external brokers are someone else's)."""
    async with _tasks([keep_alive(broker, topics)] if broker is not None else []):
        yield


def worker_count(placement: Placement, requested: int | None, partitions: int) -> int:
    """Processes for a function marked ``LocalWorkers`` (0: it runs in this process); never more than the
    partitions (the rest would idle) nor, by default, than the cores (processes x INFER_THREADS)."""
    spec = placement.spec
    if spec.local_workers is None:
        return 0
    if requested is not None:
        count = max(1, requested)
    elif spec.local_workers != "auto":
        count = max(1, int(spec.local_workers))
    else:
        count = max(1, (os.cpu_count() or 1) // max(1, placement.settings.infer_threads))
    if count > partitions:
        log.warning("%s: %d workers but %d partitions; using %d", spec.name, count, partitions, partitions)
    return min(count, partitions)


def _spawner(name: str, target: Callable[..., None], args: tuple[Any, ...]) -> Callable[[], BaseProcess]:
    """Starts a new daemon process running ``target(*args)``, each time it is called (first start, restarts)."""

    def start() -> BaseProcess:
        process = _spawn.Process(target=target, name=name, daemon=True, args=args)
        process.start()
        return process

    return start


@contextlib.asynccontextmanager
async def worker_processes(
    placements: Sequence[tuple[Placement, int]],
    bootstrap: str,
    retry: RetryPolicy | None,
    build_dir: Path | None = None,
) -> AsyncIterator[None]:
    """Start every worker process, wait until each ran its function's init (a failure raises ``RuntimeError``:
    nothing is served by a system that cannot classify), keep them running (``supervisor``), stop them on exit."""
    started: multiprocessing.Queue[tuple[int, str | None]] = _spawn.Queue()
    children: list[Child] = []

    try:
        for placement, count in placements:
            for index in range(count):
                name = f"{placement.spec.name}#{index}"
                args = (placement.spec, dict(placement.environment), bootstrap, retry, index, started, build_dir)
                start = _spawner(name, worker_main, args)
                in_process = artifact_of(placement.spec, build_dir) is None  # this process is the environment
                memory = placement.spec.memory_mb if in_process else None
                children.append(Child(name, start, start(), memory_mb=memory))
            log.info("%s: %d worker processes", placement.spec.name, count)
        for _ in children:
            await _worker_started(started)
        async with _tasks([supervisor.watch(children), _report_restarted_inits(started)]):
            yield
    finally:
        await _stop_processes([c.process for c in children])


async def _report_restarted_inits(started: multiprocessing.Queue[tuple[int, str | None]]) -> None:
    """A restarted worker reports its init like the first one did; a failed init is logged (and restarted)."""
    while True:
        try:  # with a timeout: a thread blocked in ``get`` would hold up the interpreter's exit
            _, failure = await asyncio.to_thread(started.get, True, 1.0)
        except queue.Empty:
            continue
        if failure is not None:
            log.error("a restarted worker cannot start: %s", failure)


async def _worker_started(started: multiprocessing.Queue[tuple[int, str | None]], timeout_s: float = 600) -> None:
    try:
        _, failure = await asyncio.to_thread(started.get, True, timeout_s)
    except queue.Empty:
        raise RuntimeError(f"workers did not start within {timeout_s:.0f} s") from None
    if failure is not None:
        raise RuntimeError(f"cannot start: {failure}")


async def _stop_processes(processes: Sequence[BaseProcess]) -> None:
    for process in processes:
        if process.is_alive():
            process.terminate()
    for process in processes:
        await asyncio.to_thread(process.join, 10)
        if process.is_alive():
            process.kill()


@contextlib.asynccontextmanager
async def in_process_functions(
    placements: Sequence[Placement],
    bootstrap: str,
    retry: RetryPolicy | None,
    schedule_interval: float | None,
    build_dir: Path | None,
) -> AsyncIterator[None]:
    """Kafka functions without ``LocalWorkers`` and scheduled functions: threads of this process, or processes
    running their artifacts (``build_dir``)."""
    functions = [make_function(p.spec, p.environment, 1, build_dir) for p in placements]
    await asyncio.gather(*(f.start() for f in functions))
    work = []
    for function, placement in zip(functions, placements, strict=True):
        work += [supervise(m) for m in mappings_for(function, bootstrap, placement.settings, retry)]
        work += [Schedule(function, source, schedule_interval).run() for source in function.spec.schedules]
    try:
        async with _tasks(work):
            yield
    finally:
        await asyncio.gather(*(f.stop() for f in functions))


@contextlib.asynccontextmanager
async def http_service(
    environments: Environments, sock: socket.socket, processes: int, instances: int, build_dir: Path | None
) -> AsyncIterator[None]:
    """The HTTP API on ``sock``: this process, plus ``processes - 1`` more binding the same port."""
    host, port = sock.getsockname()[:2]
    extra = [(_spawn.Event(), index) for index in range(1, processes if environments else 1)]

    children: list[Child] = []
    gateway, functions = http_functions(environments, instances, build_dir)
    server = server_for(gateway)
    try:
        await asyncio.gather(*(f.start() for f in functions))
        for ready, index in extra:
            start = _spawner(
                f"http#{index}", http_process_main, (environments, instances, build_dir, host, port, ready)
            )
            children.append(Child(f"http#{index}", start, start()))
        for ready, _ in extra:  # all of them accept before the port answers at all (clients keep connections)
            if not await asyncio.to_thread(ready.wait, 120):
                log.error("an HTTP process did not start within 120 s")
        serving = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started:
            if serving.done():
                await serving
                raise RuntimeError("the HTTP server stopped while starting")
            await asyncio.sleep(0.05)
        for route in sorted(gateway.routes, key=lambda r: r[1]):
            log.info("route %-4s %s -> %s", *route, gateway.routes[route].spec.name)
        async with _tasks([supervisor.watch(children)]):
            yield
        server.should_exit = True
        await serving
    finally:
        await asyncio.gather(*(f.stop() for f in functions))
        await _stop_processes([c.process for c in children])


@contextlib.asynccontextmanager
async def _tasks(coroutines: Sequence[Coroutine[Any, Any, None]]) -> AsyncIterator[None]:
    """Run the coroutines as tasks for the duration of the block; cancelled at its end."""
    tasks = [asyncio.create_task(c) for c in coroutines]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
