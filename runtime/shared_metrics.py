"""One ``/metrics`` for the whole local runtime: prometheus-client's multiprocess mode, so that the HTTP processes
(``--http-processes N``), the worker processes (collect counts the images it stored) and the runtime itself (its
restarts) write their samples to one folder and ``/metrics`` adds them up, whichever process answers.

prometheus-client takes this mode from one process-wide variable, ``PROMETHEUS_MULTIPROC_DIR``, read in every
process as it creates a metric: the runtime sets it once, at its start, before any function is loaded, and the
processes it spawns inherit it. This is that library's interface, not a way of passing the functions' settings
(those come from each function's own environment, ``runtime/environment.py``)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from prometheus_client import values


def share_metrics(directory: Path) -> None:
    """Start every metric of this process, and of the processes it spawns from now on, in ``directory``, emptied
    first: counters from an earlier run must not be added to this one's."""
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
    # This process imported prometheus-client before: switch it too.
    values.ValueClass = values.MultiProcessValue()  # type: ignore[no-untyped-call]
