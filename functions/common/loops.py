"""The event loop our processes and handler threads run: uvloop where it is installed, asyncio's otherwise.

uvloop (libuv) costs less CPU per socket event and per thread-to-loop wake-up than asyncio's pure-Python
loop; on this service's 2-core box every millisecond the HTTP and consumer loops save goes to inference.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

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
