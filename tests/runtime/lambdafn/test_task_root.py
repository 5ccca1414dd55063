"""Where no read-only mount can be made, an environment runs its folder writable, and the runtime says so once."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime.lambdafn import task_root


@pytest.fixture
def without_unshare(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    real_which = shutil.which
    monkeypatch.setattr(shutil, "which", lambda name: None if name == "unshare" else real_which(name))
    task_root.read_only_mounts_work.cache_clear()
    task_root._warn_writable.cache_clear()
    yield
    task_root.read_only_mounts_work.cache_clear()
    task_root._warn_writable.cache_clear()


@pytest.mark.usefixtures("without_unshare")
def test_without_unshare_the_command_runs_as_it_is_and_the_writable_folder_is_said_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    command = ["python3.12", "-S", "-m", "awslambdaric", "probe.app.handler"]
    with caplog.at_level(logging.WARNING, logger=task_root.__name__):
        first = task_root.read_only(tmp_path, command)
        second = task_root.read_only(tmp_path, command)
    assert first == second == command
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "/var/task is read-only" in warnings[0], warnings
