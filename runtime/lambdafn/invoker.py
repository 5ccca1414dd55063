"""One way to invoke a function, shared by every trigger: the HTTP gateway, Kafka event-source mappings, schedules
and ``runtime.invoke`` only build an event and call ``LocalFunction.invoke`` (SAM CLI's ``LocalLambdaRunner.invoke``
is the model). The function's environment, Lambda's context object, its ``Timeout``, its init and shutdown hooks
live here and nowhere else.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from runtime.app import use_function_environment
from runtime.esm.events import LambdaContext
from runtime.template import FunctionSpec

log = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any], Any], Any]


class Function(Protocol):
    """What every trigger invokes: a function in this process (``LocalFunction``) or run from its built artifact
    (``artifact.ArtifactFunction``)."""

    spec: FunctionSpec
    invocations: int

    async def start(self) -> None: ...
    async def invoke(
        self, event: dict[str, Any], request_id: str | None = None, throttle_after_s: float | None = None
    ) -> Any: ...
    async def stop(self) -> None: ...


class FunctionTimedOut(Exception):
    """The invocation ran past the function's ``Timeout``: Lambda's "Task timed out after N seconds"."""


class FunctionThrottled(Exception):
    """No execution environment became free within the caller's ``throttle_after_s``: Lambda's
    ``TooManyRequestsException`` (429) for a synchronous invocation beyond the function's concurrency. Lambda starts
    another environment instead while concurrency lasts; the local stand-in has a fixed number, so an invocation
    waits for one, and its ``Timeout`` runs from when it starts, as on Lambda, never from the wait."""

    @classmethod
    def after(cls, function: str, waited_s: float | None, instances: int) -> FunctionThrottled:
        return cls(f"{function}: no execution environment was free within {waited_s:g} s (all {instances} busy)")


def _settle(future: asyncio.Future[LambdaContext], context: LambdaContext) -> None:
    if not future.done():
        future.set_result(context)


def _hook(spec: FunctionSpec, name: str) -> Any:
    """An attribute of the handler's module, or None: the handler itself, or an optional hook beside it, ``init``
    (Lambda's init phase) or ``shutdown`` (close pools at exit)."""
    return getattr(importlib.import_module(spec.module), name, None)


class LocalFunction:
    """The execution environments of one function in this process: ``instances`` threads, each running one
    invocation at a time (as a Lambda execution environment does) with the function's own environment and a
    persistent event loop of its own (``thread_setup``), so resources outlive invocations as they do on Lambda."""

    def __init__(
        self,
        spec: FunctionSpec,
        environment: Mapping[str, str],
        instances: int = 1,
        thread_setup: Callable[[], Any] | None = None,
    ) -> None:
        self.spec, self.environment, self.instances = spec, dict(environment), max(1, instances)
        self._thread_setup = thread_setup
        self._pool = ThreadPoolExecutor(self.instances, f"fn-{spec.name}", initializer=self._enter)
        self._handler: Handler | None = None
        self.invocations = 0

    def _enter(self) -> None:
        use_function_environment(self.environment)
        if self._thread_setup is not None:
            self._thread_setup()

    def _loaded(self) -> Handler:
        """The handler, imported in an environment thread (module code sees the function's settings)."""
        if self._handler is None:
            self._handler = _hook(self.spec, self.spec.attribute)
            if self._handler is None:
                raise AttributeError(f"{self.spec.module} has no {self.spec.attribute}")
        return self._handler

    def _call(self, event: dict[str, Any], context: LambdaContext) -> Any:
        return self._loaded()(event, context)

    async def start(self) -> None:
        """Import the handler and run its ``init`` hook: a function that cannot start fails here, before any event."""
        await asyncio.wrap_future(self._pool.submit(self._init))

    def _init(self) -> None:
        hook = _hook(self.spec, "init")
        if hook is not None:
            hook()
        self._loaded()

    async def invoke(
        self, event: dict[str, Any], request_id: str | None = None, throttle_after_s: float | None = None
    ) -> Any:
        """The handler's result; its exception; ``FunctionTimedOut`` once ``Timeout`` has passed since the handler
        started; ``FunctionThrottled`` when no environment was free within ``throttle_after_s`` (None: wait)."""
        self.invocations += 1
        loop = asyncio.get_running_loop()
        started: asyncio.Future[LambdaContext] = loop.create_future()

        def call() -> Any:
            context = LambdaContext.for_function(self.spec)  # its deadline runs from here, not from the queue
            if request_id is not None:
                context.aws_request_id = request_id
            loop.call_soon_threadsafe(_settle, started, context)
            return self._call(event, context)

        submitted = self._pool.submit(call)
        running = asyncio.wrap_future(submitted)
        try:
            async with asyncio.timeout(throttle_after_s):
                context = await asyncio.shield(started)
        except TimeoutError:  # only the wait can raise it here: ``started`` holds no exception
            if submitted.cancel():
                raise FunctionThrottled.after(self.spec.name, throttle_after_s, self.instances) from None
            context = await started  # it started just as the wait ended
        return await self._outcome(running, context)

    async def _outcome(self, running: asyncio.Future[Any], context: LambdaContext) -> Any:
        try:
            async with asyncio.timeout(self.spec.timeout_s) as budget:  # not wait_for: on 3.11 it can drop a cancel
                return await asyncio.shield(running)
        except TimeoutError:
            if not budget.expired():  # the handler's own TimeoutError (a client's timeout): its failure, as it is
                raise
            # Lambda would now reset the execution environment; a thread cannot be killed, so this one finishes
            # its call in the background and takes the next invocation after that.
            message = f"{context.aws_request_id} Task timed out after {self.spec.timeout_s:.2f} seconds"
            log.error("%s: %s", self.spec.name, message)
            raise FunctionTimedOut(message) from None

    async def stop(self) -> None:
        """Run the ``shutdown`` hook once in every environment thread that has one, then end the threads."""
        hook = _hook(self.spec, "shutdown") if self.invocations or self._handler is not None else None
        if hook is not None:
            everyone = threading.Barrier(self.instances)  # each thread takes exactly one of the calls

            def close() -> None:
                everyone.wait(timeout=30)
                hook()

            calls = [asyncio.wrap_future(self._pool.submit(close)) for _ in range(self.instances)]
            results = await asyncio.gather(*calls, return_exceptions=True)
            for result in results:
                if isinstance(result, BaseException):
                    log.warning("%s: shutdown hook failed: %r", self.spec.name, result)
        self._pool.shutdown(wait=False, cancel_futures=True)
