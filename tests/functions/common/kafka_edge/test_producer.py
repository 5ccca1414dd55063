"""The shared producer on the real broker: acknowledged batches, and an even spread of a session's images."""

from __future__ import annotations

import asyncio
from collections import Counter
from itertools import pairwise

from aiokafka import AIOKafkaConsumer
from aiokafka.partitioner import DefaultPartitioner

from functions.common.contracts import message_key, parse_message_key
from functions.common.kafka_edge.producer import Producer, spread_partitioner
from runtime.kafka.broker import ensure_topics
from tests.helpers import unique

SESSION = "0b7f3a52-3d1c-4b8e-9a57-6f2e1c9d4b10"


def test_spread_partitioner_is_round_robin_per_session_and_stable() -> None:
    partitions = [0, 1, 2, 3]
    chosen = [spread_partitioner(message_key(SESSION, seq).encode(), partitions, partitions) for seq in range(40)]
    assert Counter(chosen) == dict.fromkeys(partitions, 10)
    assert all(b == (a + 1) % 4 for a, b in pairwise(chosen))  # consecutive seqs alternate
    assert chosen == [spread_partitioner(message_key(SESSION, s).encode(), partitions, []) for s in range(40)]


def test_a_message_key_is_read_back_as_written_and_nothing_else_is_one() -> None:
    assert parse_message_key(message_key(SESSION, 0).encode()) == (SESSION, 0)
    assert parse_message_key(message_key(SESSION, 2**31 - 1).encode()) == (SESSION, 2**31 - 1)
    for other in (b"", b"x", b":1", b"u:", b"u:-1", b"u:1.5", "u:\u00b2".encode(), b"u: 1"):
        assert parse_message_key(other) is None, other


def test_other_keys_fall_back_to_kafkas_default_hash() -> None:
    partitions = list(range(7))
    keys = [b"not-a-request-key", b"x:y", b"session:", b"a:b:c", *(f"k{i}".encode() for i in range(50))]
    kafka = DefaultPartitioner()
    assert [spread_partitioner(k, partitions, partitions) for k in keys] == [
        kafka(k, partitions, partitions) for k in keys
    ]
    assert len({spread_partitioner(k, partitions, partitions) for k in keys}) > 1  # a hash, not a constant
    assert spread_partitioner(None, partitions, [2]) == 2  # no key: an available partition, as Kafka's


async def test_a_sessions_images_reach_every_partition_equally(broker: str) -> None:
    topic = unique("spread")
    await ensure_topics(broker, {topic: 4})
    producer = Producer(broker, timeout_s=10)
    try:
        await producer.publish(topic, [(message_key(SESSION, seq), b"{}", []) for seq in range(40)])
    finally:
        await producer.close()
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=broker, auto_offset_reset="earliest", group_id=unique("g"))
    await consumer.start()
    seen: Counter[int] = Counter()
    try:
        async with asyncio.timeout(20):
            while sum(seen.values()) < 40:
                for tp, records in (await consumer.getmany(timeout_ms=500)).items():
                    seen[tp.partition] += len(records)
    finally:
        await consumer.stop()
    assert seen == dict.fromkeys(range(4), 10)
