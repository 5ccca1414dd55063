"""The event loops our processes and handler threads run, and the resources that live on each loop.

The loop is uvloop's where it is installed, asyncio's otherwise.

uvloop (libuv) costs less CPU per socket event and per thread-to-loop wake-up than asyncio's pure-Python
loop; on this service's 2-core box every millisecond the HTTP and consumer loops save goes to inference.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import Callable, Coroutine
from typing import Any, Generic, TypeVar

T = TypeVar("T")


def new_event_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:  # not on every platform (Windows); asyncio's own loop does the same, slower
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` on ``new_event_loop()``."""
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        return runner.run(main)


class PerLoop(Generic[T]):
    """A resource created on first use, one per event loop, kept in the registry so that ``aclose`` and
    ``reset_all`` reach it without importing the adapter that owns it.

    Lambda keeps one event loop per process (Mangum's, or ``run_sync``'s for Kafka handlers), so in the cloud this is
    "one per process". Locally several handler threads share a process, each with its own loop and so its own
    pool or producer."""

    def __init__(self, factory: Callable[[], T]) -> None:
        self._factory = factory
        self._values: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, T] = weakref.WeakKeyDictionary()
        _REGISTRY.append(self)

    def get(self) -> T:
        loop = asyncio.get_running_loop()
        value = self._values.get(loop)
        if value is None:
            value = self._factory()
            self._values[loop] = value
        return value

    def pop(self, loop: asyncio.AbstractEventLoop) -> T | None:
        return self._values.pop(loop, None)

    def reset(self) -> None:
        self._values.clear()


_REGISTRY: list[PerLoop[Any]] = []


def reset_all() -> None:
    """Forget every per-loop resource (tests change settings between cases)."""
    for cached in _REGISTRY:
        cached.reset()


async def aclose() -> None:
    """Close this loop's resources that can be closed (local shutdown; Lambda just freezes the process)."""
    loop = asyncio.get_running_loop()
    for cached in _REGISTRY:
        value = cached.pop(loop)
        close = getattr(value, "close", None)
        if close is not None and asyncio.iscoroutinefunction(close):
            await close()


_local = threading.local()


def thread_loop() -> asyncio.AbstractEventLoop:
    """This thread's persistent loop, also its current event loop (the one Mangum runs an HTTP handler on)."""
    loop: asyncio.AbstractEventLoop | None = getattr(_local, "loop", None)
    if loop is None or loop.is_closed():
        loop = new_event_loop()
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
