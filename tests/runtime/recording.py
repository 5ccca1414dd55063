"""A function for runtime tests: records every event it is invoked with; can be told to fail."""

from __future__ import annotations

import threading
from typing import Any

EVENTS: list[dict[str, Any]] = []
FAILURES = {"remaining": 0}
_lock = threading.Lock()


def handler(event: dict[str, Any], context: Any) -> dict[str, int]:
    with _lock:
        if FAILURES["remaining"] != 0:
            FAILURES["remaining"] -= 1
            raise RuntimeError("injected failure")
        EVENTS.append(event)
    return {"records": sum(len(v) for v in event["records"].values())}


def reset(failures: int = 0) -> None:
    EVENTS.clear()
    FAILURES["remaining"] = failures
