"""One ``/metrics`` for the whole local runtime: prometheus-client's multiprocess mode, so that the HTTP processes
(``--http-processes N``), the worker processes (collect counts the images it stored) and the runtime itself (its
restarts) write their samples to one folder and ``/metrics`` adds them up, whichever process answers.

prometheus-client takes that folder only from the process environment (``PROMETHEUS_MULTIPROC_DIR``), read as
each metric is created. Rather than write ``os.environ``, the runtime starts itself again with the variable in
the new process's environment, before anything is imported; the processes it spawns inherit it."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

VARIABLE = "PROMETHEUS_MULTIPROC_DIR"


def restart_with_shared_metrics(directory: Path) -> None:
    """Re-execute this command with ``VARIABLE`` set to ``directory``, emptied first (counters of an earlier run
    must not be added to this one's). Returns at once when the variable is set: in the re-executed process, or
    when the user chose the folder."""
    if VARIABLE in os.environ:
        return
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    os.execve(sys.executable, sys.orig_argv, {**os.environ, VARIABLE: str(directory)})
