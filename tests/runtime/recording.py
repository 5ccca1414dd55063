"""A function for runtime tests: records every event it is invoked with; can be told to fail."""

from __future__ import annotations

import base64
import threading
import time
from typing import Any

EVENTS: list[dict[str, Any]] = []
RELEASE = threading.Event()  # ``returns_when_released`` returns once this is set
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


def append_event(event: dict[str, Any], context: Any) -> None:
    EVENTS.append(event)


def poison_handler(event: dict[str, Any], context: Any) -> dict[str, int]:
    """Fails any batch that holds the record ``v2``."""
    values = [base64.b64decode(r["value"]).decode() for rs in event["records"].values() for r in rs]
    if "v2" in values:
        raise RuntimeError("poison record in batch")
    EVENTS.append(event)
    return {"records": len(values)}


def settings_probe(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """What the invoked function sees: its settings, Lambda's variables and the context's countdown."""
    from functions.common.settings import get_settings

    settings = get_settings()
    EVENTS.append(event)
    first = context.get_remaining_time_in_millis()
    time.sleep(event.get("sleep_s", 0))
    return {
        "function": settings.aws_lambda_function_name,
        "infer_model": settings.infer_model,
        "api_key": settings.api_key,
        "remaining_ms": [first, context.get_remaining_time_in_millis()],
        "request_id": context.aws_request_id,
    }


def slow_first(event: dict[str, Any], context: Any) -> dict[str, int]:
    """Sleeps past a 1 s Timeout on its first ``FAILURES["remaining"]`` calls, then records the event."""
    with _lock:
        slow = FAILURES["remaining"] > 0
        FAILURES["remaining"] -= 1 if slow else 0
    if slow:
        time.sleep(1.5)
        return {"late": 1}
    EVENTS.append(event)
    return {"records": sum(len(v) for v in event["records"].values())}


def http_echo(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """An HTTP function: records the API Gateway event, answers as its query asks (size, delay, status)."""
    EVENTS.append(event)
    query = event.get("queryStringParameters") or {}
    time.sleep(float(query.get("sleep", 0)))
    body = "x" * int(query.get("size", 2))
    return {"statusCode": int(query.get("status", 200)), "headers": {"content-type": "text/plain"}, "body": body}


def returns_when_released(event: dict[str, Any], context: Any) -> dict[str, str]:
    RELEASE.wait(5)
    return {"returned": "yes"}


def raises_timeout(event: dict[str, Any], context: Any) -> None:
    """A handler whose own client gave up: its TimeoutError is its failure, not Lambda's timeout."""
    raise TimeoutError("the broker did not answer within 2 s")


def hangs_after_noting(event: dict[str, Any], context: Any) -> None:
    """Writes the values it was given to ``$RECORDING_NOTE``, then never returns (until its process is killed)."""
    import json
    import os

    values = [base64.b64decode(r["value"]).decode() for rs in event["records"].values() for r in rs]
    with open(os.environ["RECORDING_NOTE"], "w") as note:
        json.dump(values, note)
    threading.Event().wait()
