"""Scale past one machine: a second ``runtime.local --functions <infer>`` (another host, in production) joins the
same consumer group on the shared broker, with the shared blob store and MariaDB; the partitions are split between
the two and every request is classified exactly once."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
from aiokafka.admin import AIOKafkaAdminClient

from runtime.kafka.broker import free_port
from tests.helpers import Launch, photo, unique, wait_all_done

ROOT = Path(__file__).resolve().parents[2]
IMAGES = 16
HANDLED = re.compile(r"InferSelfManagedFunction handled (\d+) records")


def _handled(log: Path) -> int:
    return sum(int(n) for n in HANDLED.findall(log.read_text()))


async def _group_settles_with(broker: str, group: str, members: int, timeout_s: float = 60) -> None:
    """Until the consumer group is Stable with ``members`` consumers (both hosts' workers joined)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=broker)
    await admin.start()
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            [response] = await admin.describe_consumer_groups([group])
            _, _, state, _, _, joined = response.groups[0][:6]
            if state == "Stable" and len(joined) == members:
                return
            assert time.monotonic() < deadline, (state, len(joined))
            await asyncio.sleep(0.5)
    finally:
        await admin.close()


def _wait_for(log: Path, text: str, process: subprocess.Popen[bytes], timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while text not in log.read_text():
        assert process.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.2)


def _infer_only_runtime(workdir: Path, env: dict[str, str], extra: list[str]) -> tuple[subprocess.Popen[bytes], Path]:
    """``python -m runtime.local --functions InferSelfManagedFunction`` as another host would run it."""
    workdir.mkdir()
    log_path = workdir / "runtime.log"
    command = [sys.executable, "-m", "runtime.local", "--functions", "InferSelfManagedFunction", "--workers", "1"]
    command += ["--partitions", "4", "--port", str(free_port()), *extra]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command, cwd=workdir, env={**os.environ, **env, "PYTHONPATH": str(ROOT)}, stdout=log, stderr=log
        )
    return process, log_path


async def test_two_runtimes_split_the_partitions_and_classify_each_image_once(
    broker: str,
    mariadb_url: str,
    tmp_path: Path,
    tiny_weights: Path,
    local_stack: Launch,
) -> None:
    env = {
        "INFER_MODEL": "resnet18",
        "INFER_WEIGHTS": str(tiny_weights),
        "INFER_MAX_BATCH": "2",
        "LOG_LEVEL": "INFO",
        "BLOB_URL": f"file://{tmp_path / 'shared-blobs'}",
        "DATABASE_URL": mariadb_url.replace("mysql+asyncmy", "mysql"),
        "KAFKA_BOOTSTRAP_SERVERS": broker,
        "REQUEST_TOPIC": unique("req"),
        "RESULT_TOPIC": unique("res"),
        "DLQ_TOPIC": unique("dlq"),
    }
    group = unique("infer")
    groups = ["--param", f"InferConsumerGroup={group}", "--param", f"CollectConsumerGroup={unique('collect')}"]
    other, other_log = _infer_only_runtime(tmp_path / "other-host", env, groups)
    try:
        _wait_for(other_log, "serving on", other)
        main_host = tmp_path / "main-host"
        main_host.mkdir()
        with local_stack(main_host, ["--workers", "1", "--partitions", "4", *groups], env) as runtime:
            await _group_settles_with(broker, group, members=2)
            async with httpx.AsyncClient(base_url=runtime.base_url, timeout=30) as client:
                session = (await client.post("/register")).json()["uuid"]
                for seq in range(IMAGES):
                    name = ("chelsea.jpg", "coffee.jpg", "rocket.jpg", "astronaut.jpg")[seq % 4]
                    form = {"uuid": session, "seq": str(seq), "topk": "1"}
                    response = await client.post("/image", data=form, files={"payload": (name, photo(name))})
                    assert response.status_code == 202
                await wait_all_done(client, session, IMAGES, timeout_s=180)
            here, there = _handled(runtime.log_path), _handled(other_log)
    finally:
        other.terminate()
        other.wait(30)
    assert here > 0 and there > 0, (here, there)  # both hosts took partitions
    assert here + there == IMAGES  # each record consumed once: no partition read by both
