"""Start ``python -m runtime.local`` as a child process and wait until it is healthy (benchmarks, tests)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from runtime.kafka.broker import free_port

ROOT = Path(__file__).resolve().parent.parent


def wait_until_ok(url: str, timeout_s: float, alive: Callable[[], bool] = lambda: True) -> None:
    """Poll ``url`` until it answers 200; ``RuntimeError`` once ``alive()`` is false, ``TimeoutError`` after."""
    deadline = time.monotonic() + timeout_s
    while True:
        if not alive():
            raise RuntimeError(f"the server behind {url} exited")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} not answering 200 after {timeout_s}s")
        time.sleep(0.2)


EXTERNAL = ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL", "BLOB_URL")


@dataclass(frozen=True)
class Launched:
    process: subprocess.Popen[bytes]
    base_url: str
    log_path: Path


@contextmanager
def launched(
    workdir: Path, args: Sequence[str] = (), env: dict[str, str] | None = None, timeout_s: float = 120.0
) -> Iterator[Launched]:
    """Embedded defaults in ``workdir`` unless ``env`` names external services; stopped (SIGINT) after."""
    port = free_port()
    inherited = {k: v for k, v in os.environ.items() if k not in EXTERNAL}
    full_env = {**inherited, "PYTHONPATH": str(ROOT), **(env or {})}
    log_path = workdir / "runtime.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "runtime.local", "--port", str(port), *args],
            cwd=workdir,
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        try:
            wait_until_ok(f"{base}/health", timeout_s, alive=lambda: process.poll() is None)
        except (RuntimeError, TimeoutError) as exc:
            raise type(exc)(f"{exc}: {log_path.read_text()[-3000:]}") from None
        yield Launched(process, base, log_path)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
