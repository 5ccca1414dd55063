"""One invoke path: the function's environment, Lambda's context, its Timeout; a Kafka batch that times out is
retried as Lambda's event-source mapping retries it."""

from __future__ import annotations

import asyncio
import time

import pytest

from runtime.esm.kafka import EventSourceMapping, RetryPolicy
from runtime.kafka.broker import ensure_topics
from runtime.lambdafn.invoker import FunctionThrottled, FunctionTimedOut, LocalFunction
from runtime.template import FunctionSpec, KafkaSource
from tests.helpers import unique
from tests.runtime import recording
from tests.runtime.esm.test_kafka import _produce, _running, _until, _values


@pytest.fixture(autouse=True)
def _fresh_recording() -> None:
    recording.reset()


def _probe(timeout_s: int = 3) -> LocalFunction:
    spec = FunctionSpec("ProbeFunction", "tests.runtime.recording.settings_probe", timeout_s=timeout_s)
    return LocalFunction(spec, {"AWS_LAMBDA_FUNCTION_NAME": "ProbeFunction", "INFER_MODEL": "mobilenet_v3_small"})


async def test_handler_sees_its_environment_and_a_context_that_counts_down() -> None:
    function = _probe()
    try:
        result = await function.invoke({"sleep_s": 0.3}, request_id="req-1")
    finally:
        await function.stop()
    assert result["function"] == "ProbeFunction" and result["infer_model"] == "mobilenet_v3_small"
    first, later = result["remaining_ms"]
    assert 2500 < first <= 3000 and first - later >= 250
    assert result["request_id"] == "req-1"


async def test_an_invocation_past_its_timeout_fails_like_lambda() -> None:
    function = _probe(timeout_s=1)
    try:
        with pytest.raises(FunctionTimedOut, match=r"req-2 Task timed out after 1\.00 seconds"):
            await function.invoke({"sleep_s": 1.6}, request_id="req-2")
        assert (await function.invoke({}))["function"] == "ProbeFunction"  # the environment serves the next one
    finally:
        await function.stop()


async def test_a_kafka_batch_that_times_out_is_retried_and_committed_once_it_succeeds(broker: str) -> None:
    topic = unique("slow")
    await ensure_topics(broker, {topic: 1})
    source = KafkaSource("Events", "SelfManagedKafka", topic, 10, 0.2, "TRIM_HORIZON", unique("group"))
    spec = FunctionSpec("SlowFunction", "tests.runtime.recording.slow_first", timeout_s=1, kafka=(source,))
    recording.reset(failures=1)  # the first invocation sleeps past the 1 s Timeout
    function = LocalFunction(spec, {})
    mapping = EventSourceMapping(function, source, broker, unique("dlq"), RetryPolicy(max_retries=2, backoff_s=0.05))
    await _produce(broker, topic, 3)
    await _running(mapping, lambda: _until(lambda: len(recording.EVENTS) >= 1))
    await function.stop()
    assert _values(recording.EVENTS) == ["v0", "v1", "v2"] and mapping.invocations == 2


async def test_cancelling_an_invocation_is_never_lost_even_as_the_handler_returns() -> None:
    """Shutdown cancels the consumer loop wherever it is. Python 3.11's ``asyncio.wait_for`` drops a cancellation
    that arrives after the awaited call finished but before the caller resumed; a loop waiting on an invocation then
    never stops (a test hung 10 minutes on it). Each cancellation point along the result's way back is tried."""
    spec = FunctionSpec("HeldFunction", "tests.runtime.recording.returns_when_released", timeout_s=3)
    function = LocalFunction(spec, {})
    outcomes = []
    try:
        for steps in range(12):
            recording.RELEASE.clear()
            task = asyncio.create_task(function.invoke({}))
            await asyncio.sleep(0.05)  # the handler is running in its thread, held
            recording.RELEASE.set()
            time.sleep(0.05)  # noqa: ASYNC251 - blocks the loop on purpose: the result waits for it
            for _ in range(steps):
                await asyncio.sleep(0)
            if task.cancel():  # still running: it must end cancelled, not with the result
                outcomes.append((steps, (await asyncio.gather(task, return_exceptions=True))[0]))
    finally:
        await function.stop()
    assert outcomes and all(isinstance(o, asyncio.CancelledError) for _, o in outcomes), outcomes


async def test_the_timeout_runs_from_when_the_handler_starts_not_from_the_wait_for_an_environment() -> None:
    function = _probe(timeout_s=1)  # one environment: the second invocation waits 0.7 s, then runs 0.7 s
    try:
        first, second = await asyncio.gather(
            function.invoke({"sleep_s": 0.7}, request_id="a"), function.invoke({"sleep_s": 0.7}, request_id="b")
        )
    finally:
        await function.stop()
    assert first["request_id"] == "a" and second["request_id"] == "b"
    assert second["remaining_ms"][0] > 900  # its context counts down from its own start


async def test_an_invocation_that_finds_no_free_environment_in_time_is_throttled_and_never_runs() -> None:
    function = _probe(timeout_s=3)
    try:
        busy = asyncio.ensure_future(function.invoke({"sleep_s": 0.8, "name": "busy"}))
        await asyncio.sleep(0.1)
        with pytest.raises(FunctionThrottled, match=r"no execution environment was free within 0.2 s \(all 1 busy\)"):
            await function.invoke({"name": "throttled"}, throttle_after_s=0.2)
        await busy
        after = await function.invoke({"name": "after"}, throttle_after_s=0.2)  # the environment is free again
    finally:
        await function.stop()
    assert after["function"] == "ProbeFunction"
    assert [e["name"] for e in recording.EVENTS] == ["busy", "after"]


async def test_a_timeout_error_of_the_handler_is_its_own_failure_not_a_task_timeout() -> None:
    spec = FunctionSpec("Impatient", "tests.runtime.recording.raises_timeout", timeout_s=300)
    function = LocalFunction(spec, {})
    try:
        with pytest.raises(TimeoutError, match="the broker did not answer within 2 s") as raised:
            await function.invoke({})
    finally:
        await function.stop()
    assert not isinstance(raised.value, FunctionTimedOut)
