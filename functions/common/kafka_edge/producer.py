"""A lazily started aiokafka producer shared by the functions that publish."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner, murmur2

from functions.common.contracts import parse_message_key
from functions.common.loops import PerLoop
from functions.common.settings import get_settings

from . import auth

log = logging.getLogger(__name__)

Headers = list[tuple[str, bytes]]


def spread_partitioner(key: bytes | None, all_partitions: list[int], available: list[int]) -> int:
    """Keys ``<uuid>:<seq>`` go to partition ``(murmur2(uuid) + seq) mod n``: consecutive images of a session
    land on consecutive partitions, so the consumers get equal shares (murmur2 of the whole key is only even
    on average: ~10% imbalance for 320 images over 4 partitions). Still a function of the key, so a retry
    lands where the first attempt did. Other keys: Kafka's default (murmur2)."""
    parsed = None if key is None else parse_message_key(key)
    if parsed is not None:
        uuid, seq = parsed
        return all_partitions[((int(murmur2(uuid.encode())) & 0x7FFFFFFF) + seq) % len(all_partitions)]
    return int(DefaultPartitioner()(key, all_partitions, available))


class Producer:
    """``options``: aiokafka's connection options (``kafka_auth.client_options``), asked for at the first publish
    (SCRAM reads its secret then)."""

    def __init__(
        self, bootstrap_servers: str, timeout_s: float, options: Callable[[], Mapping[str, Any]] = dict
    ) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.timeout_s = timeout_s
        self._options = options
        self._producer: AIOKafkaProducer | None = None
        self._lock: asyncio.Lock | None = None

    async def _ready(self) -> AIOKafkaProducer:
        if self._producer is not None:
            return self._producer
        self._lock = self._lock or asyncio.Lock()
        async with self._lock:
            if self._producer is None:
                producer = AIOKafkaProducer(
                    bootstrap_servers=self.bootstrap_servers,
                    acks="all",
                    linger_ms=0,
                    partitioner=spread_partitioner,
                    request_timeout_ms=int(self.timeout_s * 1000),
                    **self._options(),
                )
                try:
                    async with asyncio.timeout(self.timeout_s):
                        await producer.start()
                except BaseException:
                    await producer.stop()
                    raise
                log.info("kafka producer connected to %s", self.bootstrap_servers)
                self._producer = producer
        return self._producer

    async def publish(self, topic: str, messages: Sequence[tuple[str | None, bytes, Headers]]) -> None:
        """Send a batch and wait until the broker acknowledged every message (or raise)."""
        if not messages:
            return
        producer = await self._ready()
        futures = [
            await producer.send(topic, value, key=None if key is None else key.encode(), headers=headers)
            for key, value, headers in messages
        ]
        async with asyncio.timeout(self.timeout_s):
            await asyncio.gather(*futures)

    async def ping(self) -> None:
        producer = await self._ready()
        async with asyncio.timeout(self.timeout_s):
            await producer.client.force_metadata_update()

    async def close(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None


def dependency_errors() -> tuple[type[BaseException], ...]:
    """What publishing raises when the brokers cannot be reached."""
    from aiokafka.errors import KafkaError

    return (KafkaError,)


def _configured() -> Producer:
    settings = get_settings()
    return Producer(settings.kafka_bootstrap_servers, settings.publish_timeout_s, lambda: auth.client_options(settings))


per_loop: PerLoop[Producer] = PerLoop(_configured)
