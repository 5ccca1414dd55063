"""The runtime's child processes. Those kept running: an exit is logged with its cause, the child is started again
after a backoff, and every restart is counted (``faasinfer_runtime_restarts_total`` in ``/metrics``, see
``shared_metrics``).

The runtime's children are infer workers and extra HTTP processes; without this watch a SIGKILLed (OOM-killed) worker
would stay ``<defunct>``, unlogged and never replaced. The embedded broker has its own watch
(``runtime.kafka.broker.keep_alive``).

A worker that runs its function in its own process (from the venv: one execution environment, concurrency 1) is
held to the function's ``MemorySize`` as Lambda holds an environment: past it, the process is killed with Lambda's
``Runtime.OutOfMemory`` wording and replaced as any exit is; its batch, never committed, is delivered again. Its
event-source mapping lives in the same process and counts too (~15 MB). A worker whose function runs from an
artifact has that environment watched by ``lambdafn.memory_watch`` instead.

Once the runtime stops (``SHUTDOWN``), exits are expected: a terminal's Ctrl-C reaches every process of the
foreground process group, so the children stop on their own while the runtime stops the rest; none is restarted.

A one-off child (a function's build step) runs to its end, each line it prints handed on (``run_to_end``).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess

from prometheus_client import Counter

from runtime.lambdafn.memory_watch import out_of_memory, rss_mib

log = logging.getLogger(__name__)


# In the runtime every process writes it to the shared folder (``shared_metrics``): /metrics shows it wherever asked.
RESTARTS = Counter("faasinfer_runtime_restarts", "Child processes the local runtime restarted", ["child"])


# Set by the runtime as it begins to stop (``runtime.local``), never cleared in that process: one runtime per process.
SHUTDOWN = threading.Event()


BACKOFF_S = (1.0, 2.0, 4.0, 8.0, 16.0, 30.0)
HEALTHY_AFTER_S = 60.0  # a child that ran this long starts its backoff over


@dataclass
class Child:
    name: str
    start: Callable[[], BaseProcess]  # a new, started process
    process: BaseProcess
    started_at: float = field(default_factory=time.monotonic)
    quick_exits: int = 0
    restart_at: float | None = None
    memory_mb: int | None = None  # the function's MemorySize, when this process is its execution environment


def describe(exitcode: int | None) -> str:
    if exitcode is None:
        return "no exit code"
    if exitcode < 0:
        return f"signal {signal.Signals(-exitcode).name}"
    return f"exit code {exitcode}"


def check(child: Child, now: float) -> None:
    """One look at a child: note an exit (log, count, schedule), or start it again once its backoff passed. Nothing
    during shutdown: the owner stops and reaps its children."""
    if SHUTDOWN.is_set():
        return
    if child.restart_at is None:
        if child.process.is_alive():
            _hold_to_memory_size(child)
            return
        child.process.join(0)  # reaped: no zombie
        if now - child.started_at >= HEALTHY_AFTER_S:
            child.quick_exits = 0
        delay = BACKOFF_S[min(child.quick_exits, len(BACKOFF_S) - 1)]  # 1 s, then longer while it keeps dying
        child.quick_exits += 1
        child.restart_at = now + delay
        RESTARTS.labels(child.name).inc()
        log.error("%s (pid %s) exited: %s; restarting in %.0f s", child.name, child.process.pid,
                  describe(child.process.exitcode), delay)  # fmt: skip
    elif now >= child.restart_at:
        child.process = child.start()
        child.started_at, child.restart_at = now, None
        log.warning("%s restarted (pid %s)", child.name, child.process.pid)


def _hold_to_memory_size(child: Child) -> None:
    if child.memory_mb is None or child.process.pid is None:
        return
    used = rss_mib(child.process.pid)
    if used > child.memory_mb:
        log.error("%s (pid %s): %s", child.name, child.process.pid, out_of_memory(used, child.memory_mb))
        child.process.kill()
        child.process.join(1)  # SIGKILL: gone at once; the next look sees the exit: logged, counted, restarted


async def watch(children: list[Child], poll_s: float = 0.5) -> None:
    """Until the runtime stops (cancelled by the owner, which stops the children)."""
    while not SHUTDOWN.is_set():
        await asyncio.sleep(poll_s)
        now = time.monotonic()
        for child in children:
            check(child, now)


async def run_to_end(
    command: Sequence[str], environment: Mapping[str, str], on_line: Callable[[str], None], hold_s: float = 2.0
) -> str | None:
    """Run ``command`` to its end, each line it prints given to ``on_line`` as it comes; the line it failed with
    (None: it succeeded). A line is held ``hold_s``: one followed at once by a failing exit is the failure, told
    once, by the caller."""
    process = await asyncio.create_subprocess_exec(
        *command, env=environment, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        start_new_session=True,  # a terminal's Ctrl-C stops the runtime, which stops this
    )  # fmt: skip
    assert process.stdout is not None
    held = last = ""
    try:
        while True:
            try:
                async with asyncio.timeout(hold_s if held else None):
                    raw = await process.stdout.readline()
            except TimeoutError:
                on_line(held)
                held = ""
                continue
            if not raw:
                break
            if held:
                on_line(held)
            held = last = raw.decode(errors="replace").rstrip()
        code = await process.wait()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    if code == 0:
        if held:
            on_line(held)
        return None
    return last or f"{' '.join(command)} exited with code {code}"
