"""Our processes and handler threads run uvloop where it is installed."""

from __future__ import annotations

import asyncio
import threading

import uvloop

from functions.common import loops


async def _loop_type() -> type[asyncio.AbstractEventLoop]:
    await asyncio.sleep(0)
    return type(asyncio.get_running_loop())


def test_run_returns_the_result_on_a_uvloop_loop() -> None:
    assert loops.run(_loop_type()) is uvloop.Loop


def test_a_handler_thread_keeps_one_uvloop_loop_across_invocations() -> None:
    seen: list[object] = []

    def invoke_twice() -> None:
        for _ in range(2):
            seen.append(loops.run_sync(_current_loop()))
        loops.close_thread_loop()

    thread = threading.Thread(target=invoke_twice)
    thread.start()
    thread.join()
    assert len(seen) == 2 and seen[0] is seen[1]
    assert isinstance(seen[0], uvloop.Loop)


async def _current_loop() -> asyncio.AbstractEventLoop:
    return asyncio.get_running_loop()
