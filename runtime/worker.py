"""A process running the event-source mappings of one Kafka-triggered function (``--workers N`` spawns N)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal

from functions.common import loops

from .kafka_esm import EventSourceMapping, RetryPolicy
from .loader import load_handler, load_shutdown
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


def worker_main(
    spec: FunctionSpec, env: dict[str, str], bootstrap: str, dlq_topic: str, retry: RetryPolicy | None, index: int
) -> None:
    """Entry point of a spawned worker process."""
    os.environ.update(env)
    logging.basicConfig(
        level=os.environ.get("LOG_LEVEL", "INFO"),
        format=f"%(asctime)s %(levelname)s [{spec.name}#{index}] %(name)s: %(message)s",
    )
    loops.run(_run(spec, bootstrap, dlq_topic, retry))
