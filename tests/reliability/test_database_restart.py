"""MariaDB stopped and started again under load: 503 meanwhile, no accepted upload and no result lost."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import Launch, upload_with_retry, wait_all_done

MARIADBD = "/usr/sbin/mariadbd"


def _db_up() -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", 3306), timeout=1):
        return True
    return False


def _start_db() -> None:
    subprocess.run(["start-stop-daemon", "--start", "--oknodo", "--background", "--exec", MARIADBD], check=True)
    deadline = time.monotonic() + 60
    while not _db_up():
        assert time.monotonic() < deadline, "MariaDB did not come back"
        time.sleep(0.5)


def _stop_db() -> None:
    subprocess.run(["start-stop-daemon", "--stop", "--oknodo", "--retry", "30", "--exec", MARIADBD], check=True)


@pytest.fixture
def runtime_on_mariadb(tmp_path: Path, tiny_weights: Path, mariadb_url: str, local_stack: Launch) -> Iterator[str]:
    if shutil.which("start-stop-daemon") is None or not Path(MARIADBD).exists():
        pytest.skip("needs the local MariaDB server binary and start-stop-daemon to restart it")
    env = {
        "INFER_MODEL": "resnet18",
        "INFER_WEIGHTS": str(tiny_weights),
        "SWEEP_AFTER_S": "4",
        "DATABASE_URL": mariadb_url.replace("mysql+asyncmy", "mysql"),
        "PUBLISH_TIMEOUT_S": "5",
    }
    try:
        with local_stack(
            tmp_path, ["--workers", "1", "--schedule-interval", "2", "--max-retries", "2"], env
        ) as runtime:
            yield runtime.base_url
    finally:
        if not _db_up():
            _start_db()


def test_uploads_and_results_survive_a_database_restart(runtime_on_mariadb: str) -> None:
    async def scenario() -> tuple[dict[int, int], list[dict[str, Any]]]:
        async with httpx.AsyncClient(base_url=runtime_on_mariadb, timeout=60) as client:
            session = (await client.post("/register")).json()["uuid"]
            counts: dict[int, int] = {}
            await asyncio.gather(*(upload_with_retry(client, session, seq, counts) for seq in range(10)))
            await asyncio.to_thread(_stop_db)
            during = await client.post("/register")
            assert during.status_code == 503 and "unavailable" in during.json()["error"]
            uploads = asyncio.gather(*(upload_with_retry(client, session, seq, counts) for seq in range(10, 20)))
            await asyncio.sleep(3)  # uploads meet 503s and retry; results of the first ten wait in retries / DLQ
            await asyncio.to_thread(_start_db)
            await uploads  # each retried on 503 until accepted (anything else fails the helper)
            return counts, await wait_all_done(client, session, 20, timeout_s=150)

    counts, items = asyncio.run(scenario())
    assert counts.get(503, 0) >= 10  # the ten uploads during the outage really met it
    assert [(i["seq"], len(i["predictions"])) for i in items] == [(seq, 3) for seq in range(20)]
