"""Emulates EventBridge schedules (``rate(...)``): invoke the function with a Scheduled Event, periodically."""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import UTC, datetime
from typing import Any

from runtime.lambdafn.invoker import Function
from runtime.template import FunctionSpec, ScheduleSource

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

    def __init__(self, function: Function, source: ScheduleSource, interval_s: float | None = None) -> None:
        self.function, self.spec, self.source = function, function.spec, source
        self.interval_s = interval_s or source.interval_s

    @property
    def invocations(self) -> int:
        return self.function.invocations

    async def run(self) -> None:
        if self.interval_s is None:
            log.warning("%s: %s is not emulated locally (rate() only)", self.spec.name, self.source.expression)
            return
        log.info("%s every %.0fs (%s)", self.spec.name, self.interval_s, self.source.expression)
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                result = await self.function.invoke(scheduled_event(self.spec, self.source))
                log.info("%s: %s", self.spec.name, result)
            except Exception:  # like EventBridge: the failure is logged, the schedule goes on
                log.exception("%s failed", self.spec.name)
