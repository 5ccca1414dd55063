"""Emulates EventBridge schedules (``rate(...)``): invoke the handler with a Scheduled Event, periodically."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from .kafka_esm import Handler
from .lambda_event import LambdaContext
from .template import FunctionSpec, ScheduleSource

log = logging.getLogger(__name__)


def scheduled_event(function: FunctionSpec, source: ScheduleSource) -> dict[str, Any]:
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "000000000000",
        "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": "local",
        "resources": [f"arn:aws:events:local:000000000000:rule/{function.name}-{source.event_name}"],
        "detail": {},
    }


class Schedule:
    """``await Schedule(...).run()`` until cancelled; a failing invocation is logged, the next one comes anyway."""

    def __init__(
        self,
        function: FunctionSpec,
        source: ScheduleSource,
        handler: Handler,
        interval_s: float | None = None,
        shutdown: Callable[[], Any] | None = None,
    ) -> None:
        self.function, self.source, self.handler, self.shutdown = function, source, handler, shutdown
        self.interval_s = interval_s or source.interval_s
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"fn-{function.name}")
        self.invocations = 0

    async def run(self) -> None:
        if self.interval_s is None:
            log.warning("%s: %s is not emulated locally (rate() only)", self.function.name, self.source.expression)
            return
        log.info("%s every %.0fs (%s)", self.function.name, self.interval_s, self.source.expression)
        loop = asyncio.get_running_loop()
        try:
            while True:
                await asyncio.sleep(self.interval_s)
                event, context = scheduled_event(self.function, self.source), LambdaContext.for_function(self.function)
                self.invocations += 1
                try:
                    result = await loop.run_in_executor(self._executor, self.handler, event, context)
                    log.info("%s: %s", self.function.name, result)
                except Exception:  # like EventBridge: the failure is logged, the schedule goes on
                    log.exception("%s failed", self.function.name)
        finally:
            if self.shutdown is not None and self.invocations:
                await loop.run_in_executor(self._executor, self.shutdown)
            self._executor.shutdown(wait=False, cancel_futures=True)
