"""Emulates a Lambda Kafka event-source mapping with aiokafka: batch, invoke, commit after success, retry, DLQ."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError

from runtime.app import dead_letter_headers, source_of
from runtime.esm.events import (
    KAFKA_EVENT_ENVELOPE,
    LAMBDA_MAX_PAYLOAD,
    Record,
    failure_record,
    kafka_event,
    record_bytes,
)
from runtime.lambdafn.invoker import Function
from runtime.template import KafkaSource

log = logging.getLogger(__name__)

# How long the broker may hold an empty fetch. Tansu re-checks for data within that time at coarse steps, so
# it bounds how long a record waits on an idle partition; every expired fetch costs CPU in the consumer and
# the broker. Measured here, one hop produce -> consumed at low load (mean): 6 ms at 20, 9 ms at 50, 21 ms at
# 100; idle CPU of the default stack (broker + three consumers): 13% of a core at 20, 6-7% at 50.
FETCH_MAX_WAIT_MS = 50
STOP_TIMEOUT_S = 10.0


# Lambda: "When you configure both infinite retries and an on-failure destination, Lambda automatically applies a
# maximum of 10 retry attempts."
RETRIES_WITH_DESTINATION = 10


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 3  # -1: until the batch succeeds (MaximumRetryAttempts)
    backoff_s: float = 0.5
    max_backoff_s: float = 10.0
    max_record_age_s: float | None = None  # MaximumRecordAgeInSeconds: older records are not retried again

    def delay(self, attempt: int) -> float:
        return float(min(self.max_backoff_s, self.backoff_s * 2 ** (attempt - 1)))

    def expired(self, oldest_timestamp_ms: int, now_s: float) -> bool:
        return self.max_record_age_s is not None and now_s - oldest_timestamp_ms / 1000 > self.max_record_age_s

    def exhausted(self, attempt: int, oldest_timestamp_ms: int, now_s: float) -> bool:
        return self.expired(oldest_timestamp_ms, now_s) or 0 <= self.max_retries < attempt


def policy_for(source: KafkaSource) -> RetryPolicy:
    """The mapping's retry settings from the template (3 retries when it says nothing)."""
    retries = 3 if source.max_retries is None else source.max_retries
    if retries < 0 and source.on_failure:
        retries = RETRIES_WITH_DESTINATION
    age = source.max_record_age_s
    return RetryPolicy(max_retries=retries, max_record_age_s=None if age is None or age < 0 else float(age))


def _payload(batch: Sequence[Record]) -> int:
    return KAFKA_EVENT_ENVELOPE + sum(record_bytes(r) for r in batch)


class EventSourceMapping:
    """One consumer loop feeding one function: ``await mapping.run()`` until cancelled."""

    def __init__(
        self,
        function: Function,
        source: KafkaSource,
        bootstrap: str,
        dlq_topic: str,
        retry: RetryPolicy | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        self.function = function
        self.options = dict(options or {})  # aiokafka connection options: functions.common.kafka_edge.auth
        self.spec = function.spec
        self.source = source
        self.bootstrap = bootstrap
        self.dlq_topic = dlq_topic
        self.retry = retry or policy_for(source)
        self.consumer: AIOKafkaConsumer | None = None  # while running: for status and tests
        self._committing: asyncio.Task[None] | None = None  # the last batch's commit, on its way
        self._carried: list[Record] = []  # fetched past the last batch's payload limit: the next batch's start

    @property
    def invocations(self) -> int:
        return self.function.invocations

    def _consumer(self) -> AIOKafkaConsumer:
        # A batch may be retried several times; the group must not evict us meanwhile (unlimited retries: a
        # rebalance after this long hands the batch to another consumer, at least once as ever).
        retries = self.retry.max_retries if self.retry.max_retries >= 0 else RETRIES_WITH_DESTINATION
        budget_ms = (self.spec.timeout_s + 30) * 1000 * (retries + 1)
        return AIOKafkaConsumer(
            self.source.topic,
            bootstrap_servers=self.bootstrap,
            group_id=self.source.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest" if self.source.starting_position == "TRIM_HORIZON" else "latest",
            max_poll_records=self.source.batch_size,
            fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
            max_poll_interval_ms=max(300_000, budget_ms),
            session_timeout_ms=10_000,  # a dead worker's partitions move on within seconds
            heartbeat_interval_ms=1_000,
            **self.options,
        )

    async def run(self) -> None:
        consumer = self.consumer = self._consumer()
        self._committing, self._carried = None, []  # a new consumer starts from the committed offsets
        try:  # a stop that comes while the consumer starts (Ctrl-C at once) still stops it
            await consumer.start()
            await self._consume(consumer)
        finally:
            self.consumer = None
            try:  # leaving the group can wait on a broker that never answers: shutdown must not
                async with asyncio.timeout(STOP_TIMEOUT_S):
                    if self._committing is not None:
                        committing = self._committing
                        await asyncio.wait([committing])
                        if not committing.cancelled() and (error := committing.exception()) is not None:
                            log.warning("%s: the last commit failed: %r", self.spec.name, error)
                    await consumer.stop()
            except TimeoutError:
                log.warning("%s: consumer did not stop within %.0f s; abandoned", self.spec.name, STOP_TIMEOUT_S)

    async def _consume(self, consumer: AIOKafkaConsumer) -> None:
        log.info(
            "%s <- %s (group %s, batch %d, window %.1fs, %s)",
            self.spec.name,
            self.source.topic,
            self.source.group_id,
            self.source.batch_size,
            self.source.window_s,
            self.source.kind,
        )
        # A batch's commit travels while the next batch is fetched and invoked (the function does not wait a broker
        # round trip per batch); commits stay in order, and the last one is awaited before the consumer stops.
        while True:
            batch = await self._next_batch(consumer)
            if batch:
                await self._deliver(batch)
                if self._committing is not None:
                    await asyncio.shield(self._committing)  # a stop must not cancel a commit on its way
                self._committing = asyncio.create_task(self._commit(consumer, batch))

    async def _next_batch(self, consumer: AIOKafkaConsumer) -> list[Record]:
        """Up to BatchSize records, and no more than fit Lambda's 6 MB payload (one record alone always goes); the
        batching window starts with the first record, as Lambda's does. Records fetched past the payload limit
        open the next batch (their offsets are committed only once they are delivered)."""
        size = self.source.batch_size
        batch, self._carried = self._carried, []
        if not batch:
            fetched = await consumer.getmany(timeout_ms=1000, max_records=size)
            batch = [r for records in fetched.values() for r in records]
            if not batch:
                return batch
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.source.window_s
        while len(batch) < size and _payload(batch) <= LAMBDA_MAX_PAYLOAD and (remaining := deadline - loop.time()) > 0:
            more = await consumer.getmany(timeout_ms=int(remaining * 1000), max_records=size - len(batch))
            batch.extend(r for records in more.values() for r in records)
        total = KAFKA_EVENT_ENVELOPE
        for index, record in enumerate(batch):
            total += record_bytes(record)
            if total > LAMBDA_MAX_PAYLOAD and index > 0:
                batch, self._carried = batch[:index], batch[index:]
                break
        return batch

    async def _invoke(self, records: Sequence[Record]) -> Any:
        event = kafka_event(records, self.source, self.bootstrap)
        request_id = str(uuid.uuid4())
        summary = await self.function.invoke(event, request_id)
        fields = {"function": self.spec.name, "request_id": request_id, "records": len(records)}
        if isinstance(summary, dict):
            fields.update({k: v for k, v in summary.items() if isinstance(v, int | float | str)})
        log.info("%s handled %d records: %s", self.spec.name, len(records), summary, extra=fields)
        return summary

    async def _deliver(self, batch: list[Record]) -> None:
        """Invoke until success; once the retries are exhausted (``MaximumRetryAttempts``, -1: never) or the records
        are older than ``MaximumRecordAgeInSeconds``, the batch goes to the on-failure destination. With
        ``BisectBatchOnFunctionError`` a failed batch is split in two at its first error and each half delivered on
        its own, so one poison record does not take its neighbours along: "When your function returns an error,
        split the batch into two smaller batches and retry each separately"
        (https://docs.aws.amazon.com/lambda/latest/dg/kafka-retry-configurations.html); the retries are spent on
        what cannot be split further."""
        attempt = 0
        while True:
            try:
                await self._invoke(batch)
                return
            except Exception as exc:
                attempt += 1
                retries = "unlimited" if self.retry.max_retries < 0 else str(self.retry.max_retries)
                log.warning(
                    "%s failed on %d records (attempt %d, retries %s): %r",
                    self.spec.name, len(batch), attempt, retries, exc,
                )  # fmt: skip
                if self.source.bisect_on_error and len(batch) > 1:
                    half = len(batch) // 2
                    await self._deliver(batch[:half])
                    await self._deliver(batch[half:])
                    return
                oldest, now = min(r.timestamp for r in batch), time.time()
                if self.retry.exhausted(attempt, oldest, now):
                    expired = self.retry.expired(oldest, now)
                    await self._on_failure(batch, exc, attempt, "RecordAgeExceeded" if expired else None)
                    return
                await asyncio.sleep(self.retry.delay(attempt))

    async def _on_failure(
        self, batch: Sequence[Record], exc: BaseException, attempts: int, condition: str | None = None
    ) -> None:
        """``kafka://topic``: the records themselves, with the reason in headers (Lambda's Kafka destination); an
        SQS/SNS/S3 ARN: the metadata-only invocation record Lambda sends there, written here to the dead-letter
        topic in its place (no such service runs locally); no destination: the dead-letter topic."""
        destination = self.source.on_failure or f"kafka://{self.dlq_topic}"
        reason = f"{type(exc).__name__}: {exc}"
        if destination.startswith("kafka://"):
            topic = destination.removeprefix("kafka://")
            messages = [
                (r.key, r.value,
                 [*r.headers, *dead_letter_headers(reason, self.spec.name, source_of(r.topic, r.partition, r.offset))])
                for r in batch
            ]  # fmt: skip
        else:
            topic = self.dlq_topic
            record = failure_record(
                batch, self.source, self.bootstrap, self.spec.name, attempts, condition or "RetryAttemptsExhausted"
            )
            messages = [(None, json.dumps(record).encode(), [("destination", destination.encode())])]
        await self._produce(topic, messages)
        log.error("%s: %d records sent to %s after %d attempts", self.spec.name, len(batch), destination, attempts)

    async def _produce(self, topic: str, messages: Sequence[tuple[bytes | None, bytes | None, Any]]) -> None:
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all", **self.options)
        await producer.start()
        try:
            sent = [await producer.send(topic, value, key=key, headers=headers) for key, value, headers in messages]
            await asyncio.gather(*sent)
        finally:
            await producer.stop()

    async def _commit(self, consumer: AIOKafkaConsumer, batch: Sequence[Record]) -> None:
        offsets: dict[TopicPartition, int] = {}
        for r in batch:
            tp = TopicPartition(r.topic, r.partition)
            offsets[tp] = max(offsets.get(tp, 0), r.offset + 1)
        try:
            await consumer.commit(offsets)
        except (CommitFailedError, KafkaError) as exc:
            # The group rebalanced while we worked: the new owner gets these records again (at-least-once).
            log.warning("%s: commit failed, records will be redelivered: %r", self.spec.name, exc)
