"""A child that exits is reaped, counted and started again, later each time it keeps dying at once, but never
during shutdown; a build step runs to its end with its lines handed on."""

from __future__ import annotations

import logging
import multiprocessing
import os
import re
import signal
import sys
import time
from collections.abc import Iterator
from multiprocessing.process import BaseProcess

import pytest

from runtime import supervisor
from runtime.lambdafn.memory_watch import rss_mib
from runtime.supervisor import Child, check, run_to_end

_spawn = multiprocessing.get_context("spawn")


def _start() -> BaseProcess:
    process = _spawn.Process(target=os._exit, args=(3,), daemon=True)
    process.start()
    return process


def test_an_exiting_child_is_restarted_with_a_growing_backoff(caplog: pytest.LogCaptureFixture) -> None:
    child = Child("flaky#0", _start, _start(), started_at=0.0)
    child.process.join(10)
    before = supervisor.RESTARTS.labels("flaky#0")._value.get()

    delays, pids = [], {child.process.pid}
    now = 1.0
    for _ in range(4):
        check(child, now)  # notices the exit
        assert child.restart_at is not None and child.process.exitcode == 3
        delays.append(child.restart_at - now)
        check(child, child.restart_at - 0.01)  # still waiting
        assert child.restart_at is not None
        now = child.restart_at
        check(child, now)  # started again
        assert child.restart_at is None
        pids.add(child.process.pid)
        child.process.join(10)

    assert delays == [1.0, 2.0, 4.0, 8.0]
    assert len(pids) == 5
    assert supervisor.RESTARTS.labels("flaky#0")._value.get() - before == 4
    assert "flaky#0 (pid" in caplog.text and "exited: exit code 3; restarting in 1 s" in caplog.text


def test_a_child_that_ran_long_starts_its_backoff_over() -> None:
    child = Child("steady#0", _start, _start(), started_at=0.0, quick_exits=4)
    child.process.join(10)
    check(child, supervisor.HEALTHY_AFTER_S + 5)
    assert child.restart_at == supervisor.HEALTHY_AFTER_S + 5 + 1.0


@pytest.fixture
def shutting_down() -> Iterator[None]:
    supervisor.SHUTDOWN.set()
    yield
    supervisor.SHUTDOWN.clear()


@pytest.mark.usefixtures("shutting_down")
def test_a_child_that_exits_during_shutdown_is_neither_restarted_nor_reported(caplog: pytest.LogCaptureFixture) -> None:
    """A terminal's Ctrl-C reaches every process of the group: the children stop while the runtime stops the rest."""
    child = Child("worker#0", _start, _start(), started_at=0.0)
    child.process.join(10)
    before = supervisor.RESTARTS.labels("worker#0")._value.get()
    for now in (1.0, 100.0):
        check(child, now)
    assert child.restart_at is None and child.process.exitcode == 3
    assert supervisor.RESTARTS.labels("worker#0")._value.get() == before
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_a_build_step_hands_on_its_progress_and_fails_with_its_last_line_once() -> None:
    lines: list[str] = []
    script = "import sys, time; print('building the engine', flush=True); time.sleep(1); sys.exit('no such model')"
    failure = await run_to_end([sys.executable, "-c", script], dict(os.environ), lines.append, hold_s=0.3)
    assert failure == "no such model"
    assert lines == ["building the engine"]  # shown while it ran; the failure is the caller's to tell


async def test_a_build_step_that_succeeds_hands_on_every_line() -> None:
    lines: list[str] = []
    failure = await run_to_end([sys.executable, "-c", "print('one'); print('two')"], dict(os.environ), lines.append)
    assert failure is None and lines == ["one", "two"]


async def test_a_silent_failing_build_step_is_named_with_its_exit_code() -> None:
    command = [sys.executable, "-c", "raise SystemExit(4)"]
    assert await run_to_end(command, dict(os.environ), print) == f"{' '.join(command)} exited with code 4"


def _hoard(mb: int) -> None:
    hoard = bytearray(mb * 1024 * 1024)
    for i in range(0, len(hoard), 4096):
        hoard[i] = 1  # touched: resident
    time.sleep(60)


def _start_greedy() -> BaseProcess:
    process = _spawn.Process(target=_hoard, args=(200,), daemon=True)
    process.start()
    return process


def test_a_worker_past_its_memory_size_is_ended_like_lambda_ends_it_and_replaced(
    caplog: pytest.LogCaptureFixture,
) -> None:
    child = Child("greedy#0", _start_greedy, _start_greedy(), started_at=0.0, memory_mb=150)
    first = child.process
    try:
        for _ in range(200):  # up to 10 s to import and fill its 200 MB
            check(child, 1.0)
            if not first.is_alive():
                break
            time.sleep(0.05)
        assert first.exitcode == -signal.SIGKILL
        assert re.search(
            r"greedy#0 \(pid \d+\): Runtime\.OutOfMemory: Error: Runtime exited with error: signal: killed "
            r"\(\d+ MB used, MemorySize 150 MB\)",
            caplog.text,
        ), caplog.text
        check(child, 1.0)  # the exit, as any other: counted, and a start scheduled
        assert child.restart_at is not None
        check(child, child.restart_at)
        assert child.process is not first and child.process.is_alive()
    finally:
        child.process.kill()
        child.process.join(10)


def test_a_worker_within_its_memory_size_and_an_unheld_one_are_left_alone() -> None:
    held = Child("light#0", _start_greedy, _start_greedy(), started_at=0.0, memory_mb=400)
    unheld = Child("http#0", _start_greedy, _start_greedy(), started_at=0.0)  # functions in threads: not held
    try:
        for child in (held, unheld):
            for _ in range(200):  # up to 10 s to import and fill its 200 MB
                if rss_mib(child.process.pid or 0) > 200:
                    break
                time.sleep(0.05)
            assert rss_mib(child.process.pid or 0) > 200
            check(child, 1.0)
            assert child.process.is_alive() and child.restart_at is None
    finally:
        for child in (held, unheld):
            child.process.kill()
            child.process.join(10)
