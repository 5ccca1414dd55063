"""A child that exits is reaped, counted and started again, later each time it keeps dying at once."""

from __future__ import annotations

import multiprocessing
import os
from multiprocessing.process import BaseProcess

import pytest

from runtime import supervisor
from runtime.supervisor import Child, check

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
