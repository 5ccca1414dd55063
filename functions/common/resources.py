"""Lazily created, reused heavy resources: one instance per event loop, created on first use.

Lambda keeps one event loop per process (Mangum's, or ``run_sync``'s for Kafka handlers), so in the cloud
this is "one per process". Locally the HTTP functions (uvicorn's loop) and each Kafka consumer loop
(its own thread) share a process, and each gets its own pool/producer bound to its own loop.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import Callable, Coroutine
from typing import Any, Generic, TypeVar

from . import kafka_auth, loops
from .blobs import BlobStore, blob_store_from_url
from .errors import Misconfigured
from .producer import Producer
from .secrets import database_url_from_secret
from .settings import get_settings, local_database_url
from .store import Store, open_store

T = TypeVar("T")


class PerLoop(Generic[T]):
    def __init__(self, factory: Callable[[], T]) -> None:
        self._factory = factory
        self._values: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, T] = weakref.WeakKeyDictionary()

    def get(self) -> T:
        loop = asyncio.get_running_loop()
        value = self._values.get(loop)
        if value is None:
            value = self._factory()
            self._values[loop] = value
        return value

    def reset(self) -> None:
        self._values.clear()


def database_url() -> str:
    """The MariaDB URL from ``DATABASE_SECRET_ARN`` when that is set, else ``DATABASE_URL``; both empty means the
    local SQLite file, which a Lambda function cannot share with the others: there it is an error naming both."""
    settings = get_settings()
    if settings.database_secret_arn:
        return database_url_from_secret(settings.database_secret_arn)
    if settings.database_url:
        return settings.database_url
    if settings.aws_lambda_function_name:
        raise Misconfigured(
            "no results database configured: DATABASE_URL and DATABASE_SECRET_ARN are empty "
            "(set the template parameter DatabaseUrl or DatabaseSecretArn)"
        )
    return local_database_url()


store: PerLoop[Store] = PerLoop(lambda: open_store(database_url()))
blobs: PerLoop[BlobStore] = PerLoop(lambda: blob_store_from_url(get_settings().blob_url))


def _producer() -> Producer:
    settings = get_settings()
    return Producer(
        settings.kafka_bootstrap_servers, settings.publish_timeout_s, lambda: kafka_auth.client_options(settings)
    )


producer: PerLoop[Producer] = PerLoop(_producer)


def reset_all() -> None:
    """Forget every cached resource (tests change settings between cases)."""
    for cached in (store, blobs, producer):
        cached.reset()


async def aclose() -> None:
    """Close the resources of the running loop (local runtime shutdown; Lambda just freezes the process)."""
    loop = asyncio.get_running_loop()
    for cached in (store, producer):
        value = cached._values.pop(loop, None)
        if value is not None:
            await value.close()


_local = threading.local()


def thread_loop() -> asyncio.AbstractEventLoop:
    """This thread's persistent loop, also its current event loop (the one Mangum runs an HTTP handler on)."""
    loop: asyncio.AbstractEventLoop | None = getattr(_local, "loop", None)
    if loop is None or loop.is_closed():
        loop = loops.new_event_loop()
        _local.loop = loop
        asyncio.set_event_loop(loop)
    return loop


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine on this thread's persistent loop, as a Lambda handler must (resources outlive the call)."""
    return thread_loop().run_until_complete(coro)


def close_thread_loop() -> None:
    """Close this thread's handler loop and what lives on it (called by the runtime from the handler's thread)."""
    loop: asyncio.AbstractEventLoop | None = getattr(_local, "loop", None)
    if loop is not None and not loop.is_closed():
        loop.run_until_complete(aclose())
        loop.close()
