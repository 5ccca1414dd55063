"""A process running the event-source mappings of one Kafka-triggered function (``--workers N`` spawns N)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from multiprocessing.queues import Queue

from functions.common import loops

from .kafka_esm import EventSourceMapping, RetryPolicy
from .loader import load_handler, load_init, load_shutdown
from .logs import configure_logging
from .template import FunctionSpec

log = logging.getLogger(__name__)


async def supervise(mapping: EventSourceMapping, restart_delay_s: float = 2.0) -> None:
    """Run a mapping forever; a crash (broker gone, DLQ unreachable) restarts it from its last commit."""
    while True:
        try:
            await mapping.run()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s mapping crashed; restarting in %.0fs", mapping.function.name, restart_delay_s)
            await asyncio.sleep(restart_delay_s)


def mappings_for(
    spec: FunctionSpec, bootstrap: str, dlq_topic: str, retry: RetryPolicy | None
) -> list[EventSourceMapping]:
    handler, shutdown = load_handler(spec), load_shutdown(spec)
    return [EventSourceMapping(spec, source, handler, bootstrap, dlq_topic, retry, shutdown) for source in spec.kafka]


async def _run(spec: FunctionSpec, bootstrap: str, dlq_topic: str, retry: RetryPolicy | None) -> None:
    tasks = [asyncio.create_task(supervise(m)) for m in mappings_for(spec, bootstrap, dlq_topic, retry)]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    for task in tasks:
        task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.gather(*tasks)


# glibc gives every decode thread its own malloc arena; with images of many sizes they fragment and RSS creeps
# up (bench/memory.py: +294 MiB over 1,000 images, +34 MiB with two arenas). Read by glibc at process start.
WORKER_ENV = {"MALLOC_ARENA_MAX": "2"}


def initialise(spec: FunctionSpec) -> str | None:
    """Run the function's init hook; the reason it cannot start, or None when it is ready."""
    try:
        hook = load_init(spec)
        if hook is not None:
            hook()
    except Exception as exc:
        log.debug("init of %s failed", spec.name, exc_info=True)
        return str(exc) or repr(exc)
    return None


def worker_main(
    spec: FunctionSpec,
    env: dict[str, str],
    bootstrap: str,
    dlq_topic: str,
    retry: RetryPolicy | None,
    index: int,
    started: Queue[tuple[int, str | None]],
) -> None:
    """Entry point of a spawned worker process: init (reported on ``started``), then the mappings."""
    os.environ.update(env)
    configure_logging(f"{spec.name}#{index}")
    failure = initialise(spec)
    started.put((index, failure))
    if failure is not None:
        sys.exit(1)
    loops.run(_run(spec, bootstrap, dlq_topic, retry))
