"""The event-source mapping emulation against the real embedded broker."""

from __future__ import annotations

import asyncio
import base64
import copy
import dataclasses
import json
import os
import shutil
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aws_lambda_powertools.utilities.parser.models import KafkaMskEventModel, KafkaSelfManagedEventModel

from functions.common.settings import Settings
from runtime.esm.events import LAMBDA_MAX_PAYLOAD, Record
from runtime.esm.kafka import STOP_TIMEOUT_S, EventSourceMapping, RetryPolicy, policy_for
from runtime.esm.worker import mappings_for
from runtime.kafka.broker import ensure_topics
from runtime.lambdafn.invoker import LocalFunction
from runtime.template import FunctionSpec, KafkaSource, load_template
from tests.helpers import consume_all, unique
from tests.runtime import recording

TEMPLATE = Path(__file__).resolve().parents[3] / "template.yaml"


@pytest.fixture(autouse=True)
def _fresh_recording() -> None:
    recording.reset()


def _spec(source: KafkaSource, handler: str = "handler") -> FunctionSpec:
    return FunctionSpec("RecordingFunction", f"tests.runtime.recording.{handler}", timeout_s=5, kafka=(source,))


def _function(source: KafkaSource, handler: str = "handler") -> LocalFunction:
    """The recording function, invoked as the runtime invokes every function."""
    return LocalFunction(_spec(source, handler), {})


def _source(topic: str, kind: str = "SelfManagedKafka", batch: int = 4, window: float = 0.2) -> KafkaSource:
    return KafkaSource(
        "Events",
        kind,
        topic,
        batch,
        window,
        "TRIM_HORIZON",
        unique("group"),  # type: ignore[arg-type]
        stream_arn="arn:aws:kafka:local:000000000000:cluster/t/t-1" if kind == "MSK" else None,
    )


async def _produce(bootstrap: str, topic: str, n: int, start: int = 0) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for i in range(start, start + n):
            await producer.send_and_wait(
                topic, f"v{i}".encode(), key=f"k{i}".encode(), headers=[("n", str(i).encode())]
            )
    finally:
        await producer.stop()


def _values(events: list[dict[str, Any]]) -> list[str]:
    return [base64.b64decode(r["value"]).decode() for e in events for rs in e["records"].values() for r in rs]


async def _until(predicate: Callable[[], bool], timeout_s: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not predicate():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


async def _until_committed(mapping: EventSourceMapping, topic: str, offset: int, timeout_s: float = 30.0) -> None:
    """Until the running mapping's group has committed ``offset`` on partition 0 (asked through its own consumer)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while mapping.consumer is None or await mapping.consumer.committed(TopicPartition(topic, 0)) != offset:
        assert loop.time() < deadline, f"offset {offset} not committed in time"
        await asyncio.sleep(0.05)


async def _committed(bootstrap: str, group: str, topic: str, partitions: int) -> list[int | None]:
    """The group's committed offsets. Tansu has been seen to leave an offset fetch unanswered right after a member
    left the group: each attempt gets 20 s and a fresh consumer, three attempts, then the test fails (no 10-minute
    stall)."""
    for attempt in range(3):
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
        try:
            await asyncio.wait_for(consumer.start(), 20)
            return [await asyncio.wait_for(consumer.committed(TopicPartition(topic, p)), 20) for p in range(partitions)]
        except TimeoutError:
            if attempt == 2:
                raise
        finally:
            await asyncio.wait_for(consumer.stop(), 20)
    raise AssertionError("unreachable")


async def _running(mapping: EventSourceMapping, body: Callable[[], Awaitable[None]]) -> None:
    task = asyncio.create_task(mapping.run())
    try:
        await body()
    finally:
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=STOP_TIMEOUT_S + 10)
        assert done, "the mapping did not stop when cancelled"  # fails here, not after pytest's 10-minute timeout


@pytest.mark.parametrize("kind", ["MSK", "SelfManagedKafka"])
async def test_batches_respect_size_validate_and_commit(broker: str, kind: str) -> None:
    topic = unique("esm")
    await ensure_topics(broker, {topic: 1})
    source = _source(topic, kind, batch=4)
    mapping = EventSourceMapping(_function(source), source, broker, unique("dlq"))
    await _produce(broker, topic, 10)

    async def body() -> None:
        await _until(lambda: len(_values(recording.EVENTS)) >= 10)
        await _until_committed(mapping, topic, 10)  # the commit follows the last handler return

    await _running(mapping, body)
    assert _values(recording.EVENTS) == [f"v{i}" for i in range(10)]  # in order, exactly once
    assert max(sum(len(v) for v in e["records"].values()) for e in recording.EVENTS) <= 4
    model = KafkaMskEventModel if kind == "MSK" else KafkaSelfManagedEventModel
    for event in recording.EVENTS:
        parsed = model.model_validate(copy.deepcopy(event))
        assert parsed.records[f"{topic}-0"][0].headers[0]["n"].isdigit()
    assert await _committed(broker, source.group_id, topic, 1) == [10]


class _SlowCommits(EventSourceMapping):
    """A broker that takes its time to acknowledge commits: each one is logged when it starts and when it lands,
    beside each batch's invocation."""

    log: list[tuple[str, int]]

    async def _deliver(self, batch: list[Record]) -> None:
        self.log.append(("invoked", max(r.offset for r in batch) + 1))
        await super()._deliver(batch)

    async def _commit(self, consumer: AIOKafkaConsumer, batch: Sequence[Record]) -> None:
        last = max(r.offset for r in batch) + 1
        self.log.append(("commit sent", last))
        await asyncio.sleep(0.5)
        await super()._commit(consumer, batch)
        self.log.append(("commit landed", last))


async def test_the_next_batch_does_not_wait_for_a_commit_and_a_stop_lets_a_sent_commit_land(broker: str) -> None:
    topic = unique("esm")
    await ensure_topics(broker, {topic: 1})
    source = _source(topic, batch=2, window=0)
    mapping = _SlowCommits(_function(source), source, broker, unique("dlq"))
    mapping.log = []
    await _produce(broker, topic, 6)
    invoked = recording.EVENTS

    async def body() -> None:
        await _until(lambda: ("commit sent", 6) in mapping.log)

    await _running(mapping, body)  # stopped while the last commit travels: it still lands
    assert _values(invoked) == [f"v{i}" for i in range(6)]
    # the second batch was invoked while the first batch's commit was still travelling
    assert mapping.log.index(("invoked", 4)) < mapping.log.index(("commit landed", 2))
    commits = [entry for entry in mapping.log if entry[0] != "invoked"]
    assert commits == [(step, n) for n in (2, 4, 6) for step in ("commit sent", "commit landed")]  # one at a time
    assert await _committed(broker, source.group_id, topic, 1) == [6]


async def test_batching_window_gathers_records_into_one_invocation(broker: str) -> None:
    topic = unique("window")
    await ensure_topics(broker, {topic: 1})
    source = _source(topic, batch=100, window=3.0)
    mapping = EventSourceMapping(_function(source), source, broker, unique("dlq"))

    async def body() -> None:
        await _produce(broker, topic, 3)
        await asyncio.sleep(0.5)
        await _produce(broker, topic, 3, start=3)  # arrives inside the window opened by the first record
        await _until(lambda: len(_values(recording.EVENTS)) >= 6)

    await _running(mapping, body)
    assert len(recording.EVENTS) == 1 and len(_values(recording.EVENTS)) == 6


async def test_failing_batch_is_retried_then_succeeds(broker: str) -> None:
    topic = unique("retry")
    await ensure_topics(broker, {topic: 1})
    recording.reset(failures=2)
    source = _source(topic)
    mapping = EventSourceMapping(
        _function(source), source, broker, unique("dlq"), RetryPolicy(max_retries=3, backoff_s=0.05)
    )
    await _produce(broker, topic, 3)

    async def body() -> None:
        await _until(lambda: len(_values(recording.EVENTS)) >= 3)
        await _until_committed(mapping, topic, 3)

    await _running(mapping, body)
    assert mapping.invocations == 3 and _values(recording.EVENTS) == ["v0", "v1", "v2"]
    assert await _committed(broker, source.group_id, topic, 1) == [3]


async def test_exhausted_retries_send_records_to_the_dlq_and_move_on(broker: str) -> None:
    topic, dlq = unique("poison"), unique("dlq")
    await ensure_topics(broker, {topic: 1, dlq: 1})
    recording.reset(failures=-1)  # always fail
    source = _source(topic, batch=10)
    mapping = EventSourceMapping(_function(source), source, broker, dlq, RetryPolicy(max_retries=2, backoff_s=0.05))
    await _produce(broker, topic, 2)

    dead: list[Any] = []

    async def body() -> None:
        dead.extend(await consume_all(broker, dlq, 2))
        await _until(lambda: mapping.invocations >= 3)
        await _until_committed(mapping, topic, 2)

    await _running(mapping, body)
    assert mapping.invocations == 3  # first try + 2 retries
    assert sorted(r.value for r in dead) == [b"v0", b"v1"]
    headers = dict(dead[0].headers)
    assert headers["error"] == b"RuntimeError: injected failure" and headers["function"] == b"RecordingFunction"
    assert headers["n"] in (b"0", b"1")  # original headers are kept
    assert await _committed(broker, source.group_id, topic, 1) == [2]


async def test_nothing_is_committed_while_the_handler_keeps_failing(broker: str) -> None:
    topic = unique("uncommitted")
    await ensure_topics(broker, {topic: 1})
    recording.reset(failures=-1)
    source = _source(topic)
    mapping = EventSourceMapping(
        _function(source), source, broker, unique("dlq"), RetryPolicy(max_retries=1000, backoff_s=0.05)
    )
    await _produce(broker, topic, 2)
    await _running(mapping, lambda: _until(lambda: mapping.invocations >= 3))
    assert await _committed(broker, source.group_id, topic, 1) == [None]

    recording.reset()  # the next owner of the group gets the records again
    again = EventSourceMapping(_function(source), source, broker, unique("dlq"))
    await _running(again, lambda: _until(lambda: len(_values(recording.EVENTS)) >= 2))
    assert _values(recording.EVENTS) == ["v0", "v1"]


async def test_two_workers_in_one_group_share_partitions(broker: str) -> None:
    topic = unique("shared")
    await ensure_topics(broker, {topic: 4})
    source = _source(topic, batch=5)
    workers = [EventSourceMapping(_function(source), source, broker, unique("dlq")) for _ in range(2)]
    tasks = [asyncio.create_task(w.run()) for w in workers]
    try:

        def balanced() -> bool:
            owned = [w.consumer.assignment() if w.consumer else set() for w in workers]
            return all(owned) and sum(len(o) for o in owned) == 4

        await _until(balanced)
        await _produce(broker, topic, 40)
        await _until(lambda: len(_values(recording.EVENTS)) >= 40)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    assert sorted(_values(recording.EVENTS)) == sorted(f"v{i}" for i in range(40))  # each exactly once
    assert all(w.invocations > 0 for w in workers)


async def test_runtime_follows_an_edited_template(broker: str, tmp_path: Path) -> None:
    topic = unique("audit")
    await ensure_topics(broker, {topic: 1})
    edited = tmp_path / "template.yaml"
    shutil.copy(TEMPLATE, edited)
    text = edited.read_text().replace(
        "Outputs:",
        f"""  AuditFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: .
      Runtime: python3.11
      Handler: tests.runtime.recording.handler
      Events:
        Audit:
          Type: SelfManagedKafka
          Properties:
            KafkaBootstrapServers: !Split [",", !Ref KafkaBootstrapServers]
            Topics: ["{topic}"]
            StartingPosition: TRIM_HORIZON
            BatchSize: 2
            ConsumerGroupId: audit
            SourceAccessConfigurations:
              - Type: SASL_SCRAM_512_AUTH
                URI: !Ref KafkaSecretArn

Outputs:""",
    )
    edited.write_text(text)
    spec = load_template(edited, {"KafkaBootstrapServers": broker}).function("AuditFunction")
    [mapping] = mappings_for(LocalFunction(spec, {}), broker, Settings(dlq_topic=unique("dlq")), None)
    await _produce(broker, topic, 5)
    await _running(mapping, lambda: _until(lambda: len(_values(recording.EVENTS)) >= 5))
    assert [len(e["records"][f"{topic}-0"]) for e in recording.EVENTS] in ([2, 2, 1], [1, 2, 2], [2, 1, 2])
    assert all(e["bootstrapServers"] == broker for e in recording.EVENTS)


async def test_schedule_invokes_with_eventbridge_events() -> None:
    from aws_lambda_powertools.utilities.parser.models import EventBridgeModel

    from runtime.eventbridge.schedule import Schedule
    from runtime.template import ScheduleSource

    source = ScheduleSource("EveryMinute", "rate(1 minute)")
    assert source.interval_s == 60.0 and ScheduleSource("x", "cron(0 * * * ? *)").interval_s is None
    spec = FunctionSpec("SweeperFunction", "tests.runtime.recording.append_event", schedules=(source,))
    schedule = Schedule(LocalFunction(spec, {}), source, interval_s=0.05)
    task = asyncio.create_task(schedule.run())
    try:
        await _until(lambda: len(recording.EVENTS) >= 2)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    for event in recording.EVENTS:
        parsed = EventBridgeModel.model_validate(event)
        assert parsed.detail_type == "Scheduled Event" and parsed.source == "aws.events"


async def test_bisect_on_error_isolates_the_poison_record(broker: str) -> None:
    topic, dlq = unique("bisect"), unique("dlq")
    await ensure_topics(broker, {topic: 1, dlq: 1})
    source = KafkaSource(
        "Events", "SelfManagedKafka", topic, 4, 0.5, "TRIM_HORIZON", unique("group"), bisect_on_error=True
    )
    mapping = EventSourceMapping(
        _function(source, "poison_handler"), source, broker, dlq, RetryPolicy(max_retries=2, backoff_s=0.01)
    )
    await _produce(broker, topic, 4)
    dead: list[Any] = []

    async def body() -> None:
        dead.extend(await consume_all(broker, dlq, 1))
        await _until(lambda: len(_values(recording.EVENTS)) >= 3)

    await _running(mapping, body)
    assert sorted(_values(recording.EVENTS)) == ["v0", "v1", "v3"]  # the neighbours of the poison got through
    assert [r.value for r in dead] == [b"v2"]
    # split at the first error, as Lambda does; the retries are spent on the poison alone:
    # [v0..v3] fails, [v0 v1] passes, [v2 v3] fails, [v2] fails 1 + 2 retries, [v3] passes
    assert mapping.invocations == 7


async def test_a_kafka_destination_gets_the_records_themselves(broker: str) -> None:
    """``DestinationConfig.OnFailure: kafka://topic`` (the template's design): the failed records go there."""
    topic, destination, dlq = unique("src"), unique("dest"), unique("dlq")
    await ensure_topics(broker, {topic: 1, destination: 1, dlq: 1})
    recording.reset(failures=-1)
    source = dataclasses.replace(_source(topic, batch=10), max_retries=1, on_failure=f"kafka://{destination}")
    mapping = EventSourceMapping(_function(source), source, broker, dlq)
    mapping.retry = dataclasses.replace(mapping.retry, backoff_s=0.05)
    await _produce(broker, topic, 2)
    dead: list[Any] = []

    async def body() -> None:
        dead.extend(await consume_all(broker, destination, 2))

    await _running(mapping, body)
    assert mapping.invocations == 2  # the first try and MaximumRetryAttempts 1
    assert sorted(r.value for r in dead) == [b"v0", b"v1"]


@pytest.mark.parametrize(
    ("retries", "age_s", "condition"), [(0, None, "RetryAttemptsExhausted"), (1000, 0, "RecordAgeExceeded")]
)
async def test_an_sqs_destination_gets_metadata_only(
    broker: str, retries: int, age_s: int | None, condition: str
) -> None:
    """What Lambda sends to an SQS/SNS destination: where the batch was, never its records (written to the
    dead-letter topic locally, no queue runs here), and why it gave up."""
    topic, dlq = unique("src"), unique("dlq")
    await ensure_topics(broker, {topic: 1, dlq: 1})
    recording.reset(failures=-1)
    queue = "arn:aws:sqs:us-east-1:123456789012:failed-batches"
    source = dataclasses.replace(
        _source(topic, batch=10), max_retries=retries, max_record_age_s=age_s, on_failure=queue
    )
    mapping = EventSourceMapping(_function(source), source, broker, dlq)
    await _produce(broker, topic, 3)
    dead: list[Any] = []

    async def body() -> None:
        dead.extend(await consume_all(broker, dlq, 1))

    await _running(mapping, body)
    [record] = dead
    body_ = json.loads(record.value)
    assert dict(record.headers)["destination"] == queue.encode()
    assert body_["requestContext"]["condition"] == condition
    info = body_["KafkaBatchInfo"]
    assert info["batchSize"] == 3 and info["bootstrapServers"] == broker
    assert info["recordsInfo"][f"{topic}-0"]["firstRecordOffset"] == "0"
    assert info["recordsInfo"][f"{topic}-0"]["lastRecordOffset"] == "2"
    assert b"v0" not in record.value


def test_retry_settings_follow_the_template() -> None:
    source = _source("t")
    assert policy_for(source).max_retries == 3  # nothing said: 3, as before
    forever = dataclasses.replace(source, max_retries=-1)
    assert policy_for(forever).max_retries == -1 and not policy_for(forever).exhausted(10_000, 0, 0)
    # Lambda caps unlimited retries at 10 once an on-failure destination is set
    assert policy_for(dataclasses.replace(forever, on_failure="kafka://dlq")).max_retries == 10
    aged = policy_for(dataclasses.replace(forever, max_record_age_s=60))
    now = 1_000_000.0
    assert not aged.exhausted(1, int((now - 30) * 1000), now) and aged.exhausted(1, int((now - 61) * 1000), now)
    assert policy_for(dataclasses.replace(source, max_record_age_s=-1)).max_record_age_s is None


def test_the_template_sends_failed_batches_to_the_dlq_topic_in_provisioned_mode() -> None:
    template = load_template(TEMPLATE, {"KafkaBootstrapServers": "b:9092", "KafkaAuth": "PLAINTEXT"})
    for spec in template.functions:
        for source in spec.kafka:
            assert source.on_failure == "kafka://inference-dlq" and source.bisect_on_error
            assert policy_for(source).max_retries == 3


async def test_a_batch_ends_before_its_event_passes_lambdas_6_mb_payload_and_nothing_is_lost(broker: str) -> None:
    """Lambda ends a batch at BatchSize, at the window's end or when the payload would pass 6 MB; 20 records of
    700 kB (933 kB in base64) make events of 6 records at most, in order, each under the limit."""
    topic = unique("big")
    await ensure_topics(broker, {topic: 1})
    source = _source(topic, batch=100, window=1.0)
    mapping = EventSourceMapping(_function(source), source, broker, unique("dlq"))
    producer = AIOKafkaProducer(bootstrap_servers=broker, max_request_size=2 * 1024 * 1024)
    await producer.start()
    try:
        for i in range(20):
            await producer.send_and_wait(topic, bytes([i]) * 700_000, key=f"k{i}".encode())
    finally:
        await producer.stop()

    async def body() -> None:
        await _until(lambda: sum(_count(e) for e in recording.EVENTS) >= 20)
        await _until_committed(mapping, topic, 20)

    await _running(mapping, body)
    sizes = [len(json.dumps(e)) for e in recording.EVENTS]
    assert all(size <= LAMBDA_MAX_PAYLOAD for size in sizes) and len(sizes) >= 4, sizes
    delivered = [base64.b64decode(r["value"])[0] for e in recording.EVENTS for rs in e["records"].values() for r in rs]
    assert delivered == list(range(20))


def _count(event: dict[str, Any]) -> int:
    return sum(len(rs) for rs in event["records"].values())


ROOT = str(Path(__file__).resolve().parents[3])
KILLED_MAPPING = """
import asyncio, sys
from runtime.lambdafn.invoker import LocalFunction
from runtime.esm.kafka import EventSourceMapping
from runtime.template import FunctionSpec, KafkaSource
topic, group, bootstrap = sys.argv[1:4]
source = KafkaSource("Events", "SelfManagedKafka", topic, 10, 0.2, "TRIM_HORIZON", group)
spec = FunctionSpec("Hangs", "tests.runtime.recording.hangs_after_noting", timeout_s=300, kafka=(source,))
asyncio.run(EventSourceMapping(LocalFunction(spec, {}), source, bootstrap, "dlq").run())
"""


async def test_a_mapping_killed_between_invoke_and_commit_leaves_its_batch_to_the_next_consumer(
    broker: str, tmp_path: Path
) -> None:
    """The event-source mapping commits only after the function returned: kill its process while the function
    runs (SIGKILL: no clean-up, no commit) and the group's next consumer gets the very same records. A mapping that
    committed before invoking would leave it nothing."""
    topic, group = unique("killed"), unique("group")
    await ensure_topics(broker, {topic: 1})
    await _produce(broker, topic, 3)
    note = tmp_path / "invoked.json"
    env = {**os.environ, "RECORDING_NOTE": str(note), "PYTHONPATH": ROOT}
    child = await asyncio.create_subprocess_exec(sys.executable, "-c", KILLED_MAPPING, topic, group, broker, env=env)
    try:
        await _until(lambda: note.is_file() and note.stat().st_size > 0, timeout_s=60)
    finally:
        child.kill()  # mid-invocation
        await child.wait()
    assert json.loads(note.read_text()) == ["v0", "v1", "v2"]
    source = dataclasses.replace(_source(topic, batch=10), group_id=group)
    mapping = EventSourceMapping(_function(source), source, broker, unique("dlq"))

    async def body() -> None:
        await _until(lambda: len(_values(recording.EVENTS)) >= 3, timeout_s=60)  # after the dead member is evicted
        await _until_committed(mapping, topic, 3)

    await _running(mapping, body)
    assert _values(recording.EVENTS) == ["v0", "v1", "v2"]  # re-delivered: the killed batch was never committed
