"""Built artifacts run the way the Lambda service runs Python functions (``runtime.local --build-dir``).

Each execution environment is a process of its own: ``awslambdaric`` (the Lambda Runtime Interface Client, as
in AWS's base images) imports the handler from the artifact folder (``sam build``'s output) and polls a Runtime API
that this module serves on loopback, one server per environment. The process sees the standard library, the
artifact and the runtime client, nothing of the project's venv: a packaging mistake fails here as on AWS. The
artifact folder is mounted read-only for it where the machine allows (``task_root``), as /var/task is. A
``Timeout`` kills the process and starts a fresh one, as Lambda resets an environment.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import importlib.metadata
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from runtime.lambdafn.invoker import FunctionThrottled, FunctionTimedOut
from runtime.lambdafn.memory_watch import ended
from runtime.lambdafn.task_root import read_only
from runtime.sockets import Server, listening_socket
from runtime.template import FunctionSpec

log = logging.getLogger(__name__)

# The artifacts are built for Lambda's python3.12 (functions/Makefile): their compiled wheels are cp312, so they run
# on a CPython 3.12, with awslambdaric (the version this venv has) installed for it once, from PyPI, as on AWS.
LAMBDA_PYTHON_VERSION = "3.12"
_PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")


class FunctionError(Exception):
    """The handler raised: Lambda's error response (``errorType``, ``errorMessage``)."""


@cache
def lambda_python() -> str:
    """A CPython 3.12 to run the artifacts with: ``python3.12`` on PATH, else pyenv's."""
    candidates = [
        shutil.which("python3.12"),
        *sorted(glob.glob(str(Path.home() / ".pyenv/versions/3.12*/bin/python3.12"))),
    ]
    for candidate in filter(None, candidates):
        done = subprocess.run(
            [candidate, "-I", "-c", "import sys; print(sys.executable)"], capture_output=True, text=True
        )
        if done.returncode == 0:
            return done.stdout.strip()
    raise RuntimeError("--build-dir runs the artifacts as Lambda's python3.12 does and needs a CPython 3.12 "
                       "(python3.12 on PATH, or pyenv install 3.12)")  # fmt: skip


@cache
def client_path() -> str:
    """A folder holding only the runtime client for CPython 3.12 (installed there the first time)."""
    version = importlib.metadata.version("awslambdaric")
    folder = Path(os.environ.get("TMPDIR", "/tmp")) / f"faasinfer-ric-{version}-cp312"
    if not (folder / "awslambdaric").is_dir():
        scratch = Path(tempfile.mkdtemp(prefix="faasinfer-ric-"))
        platforms = [arg for platform in _PLATFORMS for arg in ("--platform", platform)]
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--target", str(scratch),
             "--python-version", LAMBDA_PYTHON_VERSION, "--implementation", "cp", "--only-binary=:all:", *platforms,
             f"awslambdaric=={version}"],
            check=True, capture_output=True,
        )  # fmt: skip
        with contextlib.suppress(OSError):  # another runtime made it meanwhile: theirs serves
            scratch.rename(folder)
    return str(folder)


@dataclass
class _Invocation:
    request_id: str
    event: dict[str, Any]
    deadline_ms: int
    result: asyncio.Future[Any] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class Environment:
    """One execution environment: a Runtime API server and the awslambdaric process polling it."""

    def __init__(self, spec: FunctionSpec, artifact: Path, environment: Mapping[str, str], client: str) -> None:
        self.spec, self.artifact, self.environment, self.client = spec, artifact, dict(environment), client
        self._next: asyncio.Queue[_Invocation] = asyncio.Queue(maxsize=1)
        self._current: _Invocation | None = None
        self._polled = asyncio.Event()
        self._closing = asyncio.Event()
        self._init_error: str | None = None
        self.process: asyncio.subprocess.Process | None = None
        self._server: Server | None = None
        self._serving: asyncio.Task[None] | None = None

    def _app(self) -> Starlette:
        base = "/2018-06-01/runtime"
        return Starlette(
            routes=[
                Route(f"{base}/invocation/next", self._get_next, methods=["GET"]),
                Route(f"{base}/invocation/{{request_id}}/response", self._post_response, methods=["POST"]),
                Route(f"{base}/invocation/{{request_id}}/error", self._post_error, methods=["POST"]),
                Route(f"{base}/init/error", self._post_init_error, methods=["POST"]),
            ]
        )

    async def start(self) -> None:
        sock = listening_socket("127.0.0.1", 0, shared=False)
        self._server = Server(uvicorn.Config(self._app(), lifespan="off", log_level="warning"))
        self._serving = asyncio.create_task(self._server.serve(sockets=[sock]))
        port = sock.getsockname()[1]
        env = {
            **self.environment,
            "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{port}",
            "LAMBDA_TASK_ROOT": str(self.artifact),
            "PYTHONPATH": f"{self.artifact}:{self.client}",
            "_HANDLER": self.spec.handler,
        }
        command = read_only(self.artifact, [lambda_python(), "-S", "-m", "awslambdaric", self.spec.handler])
        self.process = await asyncio.create_subprocess_exec(*command, cwd=self.artifact, env=env)
        while not self._polled.is_set():  # ready once it asks for its first event (init done)
            if self._init_error is not None or self.process.returncode is not None:
                raise RuntimeError(f"{self.spec.name} cannot start: {self._init_error or 'process exited'}")
            await asyncio.sleep(0.02)

    async def invoke(self, event: dict[str, Any], request_id: str | None = None) -> Any:
        timeout = self.spec.timeout_s
        deadline_ms = int((time.time() + timeout) * 1000)
        invocation = _Invocation(request_id or str(uuid.uuid4()), event, deadline_ms)
        await self._next.put(invocation)
        assert self.process is not None
        watch = asyncio.ensure_future(ended(self.process, self.spec.memory_mb, invocation.request_id))
        try:
            async with asyncio.timeout(timeout):  # not wait_for: on 3.11 it can drop a cancellation
                await asyncio.wait({asyncio.shield(invocation.result), watch}, return_when=asyncio.FIRST_COMPLETED)
        except TimeoutError:
            message = f"{invocation.request_id} Task timed out after {timeout:.2f} seconds"
            log.error("%s: %s; restarting its environment", self.spec.name, message)
            await self.restart()
            raise FunctionTimedOut(message) from None
        finally:
            watch.cancel()
        if invocation.result.done():
            return invocation.result.result()
        log.error("%s: %s; restarting its environment", self.spec.name, watch.result())
        await self.restart()
        raise FunctionError(watch.result())

    async def restart(self) -> None:
        """A fresh process and server, as Lambda replaces an environment whose invocation timed out."""
        await self.stop()
        self._current, self._polled, self._closing = None, asyncio.Event(), asyncio.Event()
        self._next = asyncio.Queue(maxsize=1)
        await self.start()

    async def _kill(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            await self.process.wait()

    async def stop(self) -> None:
        self._closing.set()
        await self._kill()
        await self._stop_server()

    async def _stop_server(self) -> None:
        if self._server is not None and self._serving is not None:
            self._server.should_exit = True
            await self._serving

    async def _get_next(self, request: Request) -> Response:
        self._polled.set()
        getting = asyncio.ensure_future(self._next.get())
        closing = asyncio.ensure_future(self._closing.wait())
        await asyncio.wait({getting, closing}, return_when=asyncio.FIRST_COMPLETED)
        closing.cancel()
        if not getting.done():  # the environment is being shut down: end the long poll
            getting.cancel()
            return Response(status_code=410)
        self._current = invocation = getting.result()
        headers = {
            "Lambda-Runtime-Aws-Request-Id": invocation.request_id,
            "Lambda-Runtime-Deadline-Ms": str(invocation.deadline_ms),
            "Lambda-Runtime-Invoked-Function-Arn": f"arn:aws:lambda:us-east-1:000000000000:function:{self.spec.name}",
            "Lambda-Runtime-Trace-Id": f"Root=1-{uuid.uuid4().hex[:8]}-{uuid.uuid4().hex[:24]};Sampled=0",
        }
        return Response(json.dumps(invocation.event), headers=headers, media_type="application/json")

    def _settle(self, request_id: str) -> _Invocation | None:
        current = self._current
        if current is None or current.request_id != request_id or current.result.done():
            return None
        return current

    async def _post_response(self, request: Request) -> Response:
        invocation = self._settle(request.path_params["request_id"])
        if invocation is not None:
            body = await request.body()
            invocation.result.set_result(json.loads(body) if body else None)
        return JSONResponse({"status": "OK"}, status_code=202)

    async def _post_error(self, request: Request) -> Response:
        invocation = self._settle(request.path_params["request_id"])
        if invocation is not None:
            error = json.loads(await request.body() or b"{}")
            invocation.result.set_exception(FunctionError(f"{error.get('errorType')}: {error.get('errorMessage')}"))
        return JSONResponse({"status": "OK"}, status_code=202)

    async def _post_init_error(self, request: Request) -> Response:
        error = json.loads(await request.body() or b"{}")
        self._init_error = f"{error.get('errorType')}: {error.get('errorMessage')}"
        return JSONResponse({"status": "OK"}, status_code=202)


class ArtifactFunction:
    """A function run from its built artifact in up to ``instances`` environments; same interface as
    ``LocalFunction``. One environment starts with the function (an artifact that cannot start fails there); more
    start when an invocation finds all of them busy, as Lambda scales out, each init logged with its duration
    (Lambda's ``Init Duration``)."""

    def __init__(self, spec: FunctionSpec, environment: Mapping[str, str], artifact: Path, instances: int = 1) -> None:
        self.spec, self.environment, self.artifact = spec, dict(environment), artifact
        self.instances = max(1, instances)
        self._environments: list[Environment] = []
        self._idle: asyncio.Queue[Environment] = asyncio.Queue()
        self.invocations = 0

    async def start(self) -> None:
        self._idle.put_nowait(await self._new_environment())

    async def _new_environment(self) -> Environment:
        environment = Environment(self.spec, self.artifact, self.environment, client_path())
        self._environments.append(environment)  # counted while it starts: scale-out stops at ``instances``
        started = time.perf_counter()
        try:
            await environment.start()
        except BaseException:
            self._environments.remove(environment)
            await environment.stop()
            raise
        log.info("%s: INIT_REPORT Init Duration: %.2f ms", self.spec.name, (time.perf_counter() - started) * 1000)
        return environment

    async def invoke(
        self, event: dict[str, Any], request_id: str | None = None, throttle_after_s: float | None = None
    ) -> Any:
        environment = await self._acquire(throttle_after_s)
        self.invocations += 1
        try:
            return await environment.invoke(event, request_id)
        finally:
            self._idle.put_nowait(environment)

    async def _acquire(self, throttle_after_s: float | None) -> Environment:
        if self._idle.empty() and len(self._environments) < self.instances:
            return await self._new_environment()
        try:
            async with asyncio.timeout(throttle_after_s):
                return await self._idle.get()
        except TimeoutError:
            raise FunctionThrottled.after(self.spec.name, throttle_after_s, self.instances) from None

    async def stop(self) -> None:
        await asyncio.gather(*(e.stop() for e in self._environments), return_exceptions=True)
