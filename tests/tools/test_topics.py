"""``python -m tools.topics``: the deploy-time topic step, on the real broker."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient

from tests.helpers import unique

ROOT = Path(__file__).resolve().parents[2]


def _topics(broker: str, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "tools.topics", "--bootstrap-servers", broker, *args]
    return subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=120)


async def _partitions(broker: str, names: list[str]) -> dict[str, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=broker)
    await admin.start()
    try:
        described = await admin.describe_topics(names)
    finally:
        await admin.close()
    return {t["topic"]: len(t["partitions"]) for t in described}


async def test_creates_the_three_topics_with_the_partitions_asked_and_is_safe_to_rerun(broker: str) -> None:
    names = {"--request-topic": unique("req"), "--result-topic": unique("res"), "--dlq-topic": unique("dlq")}
    flags = [part for item in names.items() for part in item]
    first = _topics(broker, *flags, "--partitions", "3", "--dlq-partitions", "1", "--replication-factor", "1")
    assert first.returncode == 0, first.stderr
    assert "topics ready" in first.stderr
    again = _topics(broker, *flags, "--partitions", "5", "--replication-factor", "1")
    assert again.returncode == 0, again.stderr
    request, result, dlq = names.values()
    assert await _partitions(broker, [request, result, dlq]) == {request: 3, result: 3, dlq: 1}  # left as they were
    assert (
        f"topics ready on {broker}: {request}(3), {result}(3), {dlq}(1)" in again.stderr
    )  # what is, not what was asked
    assert f"{request} has 3 partitions, not the 5 asked" in again.stderr


def test_scram_without_a_secret_names_the_parameter(broker: str) -> None:
    done = _topics(broker, "--auth", "SASL_SCRAM_512")
    assert done.returncode == 2
    assert "KafkaSecretArn" in done.stderr and "Traceback" not in done.stderr
