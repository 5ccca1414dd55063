"""``GET /health`` of the upload function: the database, the broker and whether inference keeps up."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from functions.common import store as stores
from functions.common.contracts import Health
from functions.common.kafka_edge import producer as producers
from functions.common.settings import get_settings

HEALTH_PROBE_TIMEOUT_S = 1.5  # every probe runs at once: /health answers within 2 s even when one hangs


async def health(request: Request) -> Response:
    """Each dependency and the inference path: the database (answering, tables present), the broker (answering),
    inference (no request queued longer than ``HEALTH_QUEUED_LIMIT_S``). 503 with the details when degraded."""
    store, settings = stores.per_loop.get(), get_settings()

    async def inference() -> None:
        count, oldest = await store.queued_since(time.time() - settings.health_queued_limit_s)
        if count:
            raise RuntimeError(
                f"{count} requests queued for more than {settings.health_queued_limit_s:g} s (oldest "
                f"{time.time() - (oldest or 0):.0f} s): inference is not keeping up, failing or not running"
            )

    probes: dict[str, Callable[[], Awaitable[None]]] = {
        "database": store.ping,
        "broker": producers.per_loop.get().ping,
        "inference": inference,
    }
    outcomes = await asyncio.gather(*(_probe(probe) for probe in probes.values()))
    checks = dict(zip(probes, outcomes, strict=True))
    if checks["database"] != "ok":
        checks["inference"] = "unknown: the database is unavailable"
    body = Health(status="ok" if all(v == "ok" for v in checks.values()) else "degraded", checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if body.status == "ok" else 503)


async def _probe(probe: Callable[[], Awaitable[None]]) -> str:
    try:
        async with asyncio.timeout(HEALTH_PROBE_TIMEOUT_S):
            await probe()
    except TimeoutError:
        return f"error: no answer within {HEALTH_PROBE_TIMEOUT_S:g} s"
    except Exception as exc:
        text = str(exc) if isinstance(exc, RuntimeError) else f"{type(exc).__name__}: {exc}"
        return f"error: {text}"[:300]
    return "ok"
