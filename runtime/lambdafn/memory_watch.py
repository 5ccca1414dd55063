"""Lambda's ``MemorySize`` held to an execution environment that is a process of its own (``--build-dir``).

Lambda ends an environment whose memory passes the function's ``MemorySize`` and answers the invocation with
``Runtime.OutOfMemory`` ("Runtime exited with error: signal: killed"); a runtime that dies by itself is a
``Runtime.ExitError``. Here the process's resident memory is read from ``/proc`` while it runs an invocation (a
20 ms poll: an allocation faster than that can overshoot before it is seen, never go unseen for long).
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

POLL_S = 0.02


def rss_mib(pid: int) -> float:
    """The process's resident memory (``VmRSS``), 0 when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    return 0.0


async def ended(process: asyncio.subprocess.Process, limit_mib: int, request_id: str) -> str:
    """Lambda's error for the invocation ``request_id`` once the process passes ``limit_mib`` (it is killed
    then) or exits by itself; runs until one of them happens."""
    while True:
        if process.returncode is not None:
            return f"Runtime.ExitError: RequestId: {request_id} Error: Runtime exited with error: {_status(process)}"
        used = rss_mib(process.pid)
        if used > limit_mib:
            process.kill()
            await process.wait()
            return out_of_memory(used, limit_mib, request_id)
        await asyncio.sleep(POLL_S)


def out_of_memory(used_mib: float, limit_mib: int, request_id: str | None = None) -> str:
    """Lambda's error for an environment ended past its ``MemorySize``."""
    request = f"RequestId: {request_id} " if request_id else ""
    return (
        f"Runtime.OutOfMemory: {request}Error: Runtime exited with error: signal: killed "
        f"({used_mib:.0f} MB used, MemorySize {limit_mib} MB)"
    )


def _status(process: asyncio.subprocess.Process) -> str:
    code = process.returncode or 0
    return f"signal: {signal.Signals(-code).name.removeprefix('SIG').lower()}" if code < 0 else f"exit status {code}"
