"""A process running the event-source mappings of one Kafka-triggered function (``--workers N`` spawns N)."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import sys
from collections.abc import Mapping
from multiprocessing.queues import Queue
from pathlib import Path

from runtime.app import Settings, kafka_auth, loops, settings_from
from runtime.esm.kafka import EventSourceMapping, RetryPolicy
from runtime.lambdafn.invoker import Function
from runtime.lambdafn.placement import make_function
from runtime.logs import configure_logging
from runtime.template import FunctionSpec

log = logging.getLogger(__name__)


async def supervise(mapping: EventSourceMapping, restart_delay_s: float = 2.0) -> None:
    """Run a mapping forever; a crash (broker gone, DLQ unreachable) restarts it from its last commit."""
    while True:
        try:
            await mapping.run()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s mapping crashed; restarting in %.0fs", mapping.spec.name, restart_delay_s)
            await asyncio.sleep(restart_delay_s)


def mappings_for(
    function: Function, bootstrap: str, settings: Settings, retry: RetryPolicy | None
) -> list[EventSourceMapping]:
    """The function's event sources, consuming as its own clients connect (``KAFKA_AUTH``)."""
    options = kafka_auth.client_options(settings)
    return [
        EventSourceMapping(function, source, bootstrap, settings.dlq_topic, retry, options)
        for source in function.spec.kafka
    ]


WORKER_NICENESS = 5


def _limit_malloc_arenas(environment: Mapping[str, str]) -> None:
    """glibc reads MALLOC_ARENA_MAX only at process start; the function's value (template: infer) is applied with
    mallopt instead, before any decode thread exists. Every decode thread otherwise gets its own arena; with images
    of many sizes they fragment and RSS creeps up (bench/memory.py: +294 MiB over 1,000 images, +34 with two)."""
    value = environment.get("MALLOC_ARENA_MAX", "")
    if value.isdigit() and sys.platform == "linux":
        m_arena_max = -8
        ctypes.CDLL("libc.so.6").mallopt(m_arena_max, int(value))


async def _run(function: Function, bootstrap: str, settings: Settings, retry: RetryPolicy | None) -> None:
    tasks = [asyncio.create_task(supervise(m)) for m in mappings_for(function, bootstrap, settings, retry)]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    for task in tasks:
        task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.gather(*tasks)
    await function.stop()


async def _start(function: Function) -> str | None:
    """Run the function's init; the reason it cannot start, or None when it is ready."""
    try:
        await function.start()
    except Exception as exc:
        log.debug("init of %s failed", function.spec.name, exc_info=True)
        return str(exc) or repr(exc)
    return None


def worker_main(
    spec: FunctionSpec,
    environment: dict[str, str],
    bootstrap: str,
    retry: RetryPolicy | None,
    index: int,
    started: Queue[tuple[int, str | None]],
    build_dir: Path | None = None,
) -> None:
    """Entry point of a spawned worker process: init (reported on ``started``), then the mappings; the function
    from its artifact when ``build_dir`` holds one (``--build-dir``), as the HTTP functions."""
    configure_logging(f"{spec.name}#{index}")
    _limit_malloc_arenas(environment)
    # Batch work yields the CPU to the HTTP process on a shared machine (on Lambda each function has its own):
    # see bench/hostile.py for an ordinary upload's latency while the workers decode a flood of costly images.
    os.nice(WORKER_NICENESS)

    async def main() -> None:
        function = make_function(spec, environment, 1, build_dir)
        failure = await _start(function)
        started.put((index, failure))
        if failure is not None:
            await function.stop()
            sys.exit(1)
        await _run(function, bootstrap, settings_from(environment), retry)

    loops.run(main())
