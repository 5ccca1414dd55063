"""Built artifacts run as Lambda runs Python: awslambdaric in a process of its own, polling our Runtime API."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from runtime.lambdafn.artifact import ArtifactFunction, FunctionError
from runtime.lambdafn.invoker import FunctionTimedOut
from runtime.template import FunctionSpec

pytestmark = pytest.mark.usefixtures("local_stack")  # Lambda environments from artifacts, as processes

HANDLER = """
import os, sys, time
STARTED = time.time()

def handler(event, context):
    if event.get("fail"):
        raise ValueError("asked to fail")
    time.sleep(event.get("sleep", 0))
    return {
        "event": event,
        "pid": os.getpid(),
        "cwd": os.getcwd(),
        "path": sys.path,
        "ric": "awslambdaric" in sys.modules,
        "name": os.environ["AWS_LAMBDA_FUNCTION_NAME"],
        "request_id": context.aws_request_id,
        "remaining_ms": context.get_remaining_time_in_millis(),
    }
"""


def _artifact(tmp_path: Path, source: str) -> Path:
    folder = tmp_path / "ProbeFunction"
    (folder / "probe").mkdir(parents=True)
    (folder / "probe" / "__init__.py").write_text("")
    (folder / "probe" / "app.py").write_text(source)
    return folder


@pytest.fixture
async def probe(tmp_path: Path) -> AsyncIterator[ArtifactFunction]:
    spec = FunctionSpec("ProbeFunction", "probe.app.handler", timeout_s=2)
    function = ArtifactFunction(spec, {"AWS_LAMBDA_FUNCTION_NAME": "ProbeFunction"}, _artifact(tmp_path, HANDLER))
    await function.start()
    yield function
    await function.stop()


async def test_handler_runs_from_its_artifact_through_the_runtime_client(probe: ArtifactFunction) -> None:
    result = await probe.invoke({"k": [1, 2]}, request_id="req-7")
    assert result["event"] == {"k": [1, 2]} and result["request_id"] == "req-7"
    assert result["ric"] and result["name"] == "ProbeFunction" and result["cwd"] == str(probe.artifact)
    assert result["path"][0] == str(probe.artifact)
    venv = str(Path(sys.prefix) / "lib")
    assert not [p for p in result["path"] if p.startswith(venv)], result["path"]  # nothing of the project's venv
    assert 1000 < result["remaining_ms"] <= 2000


async def test_a_handler_error_is_lambdas_error_response(probe: ArtifactFunction) -> None:
    with pytest.raises(FunctionError, match="ValueError: asked to fail"):
        await probe.invoke({"fail": True})
    assert (await probe.invoke({}))["event"] == {}


async def test_a_timeout_replaces_the_environment(probe: ArtifactFunction) -> None:
    before = (await probe.invoke({}))["pid"]
    with pytest.raises(FunctionTimedOut, match=r"Task timed out after 2\.00 seconds"):
        await probe.invoke({"sleep": 3})
    after = (await probe.invoke({}))["pid"]
    assert after != before  # a fresh process, as Lambda resets an environment


WRITER = (
    HANDLER
    + """
import errno

def writer(event, context):
    outcomes = {}
    for where in (os.environ["LAMBDA_TASK_ROOT"] + "/written", "written-here", "/tmp/written-by-probe"):
        try:
            with open(where, "w") as out:
                out.write("x")
            outcomes[where] = "written"
        except OSError as exc:
            outcomes[where] = errno.errorcode[exc.errno]
    return outcomes
"""
)


async def test_the_artifact_folder_is_read_only_as_var_task_is_and_tmp_writable(tmp_path: Path) -> None:
    spec = FunctionSpec("ProbeFunction", "probe.app.writer", timeout_s=5)
    artifact = _artifact(tmp_path, WRITER)
    function = ArtifactFunction(spec, {"AWS_LAMBDA_FUNCTION_NAME": "ProbeFunction"}, artifact)
    await function.start()
    try:
        outcomes = await function.invoke({})
    finally:
        await function.stop()
    assert outcomes == {
        f"{artifact}/written": "EROFS",  # Lambda: "[Errno 30] Read-only file system"
        "written-here": "EROFS",  # the working directory is the task root, the read-only one
        "/tmp/written-by-probe": "written",
    }
    assert not (artifact / "written").exists() and not (artifact / "written-here").exists()
    os.remove("/tmp/written-by-probe")
    assert (artifact / "probe" / "app.py").read_text() == WRITER  # outside the environment, the folder is as it was


async def test_an_import_error_fails_at_start_with_the_reason(tmp_path: Path) -> None:
    spec = FunctionSpec("ProbeFunction", "probe.app.handler", timeout_s=2)
    broken = _artifact(tmp_path, "import mangum_is_not_in_this_artifact\n")
    function = ArtifactFunction(spec, {}, broken)
    with pytest.raises(RuntimeError, match=r"cannot start: .*No module named 'mangum_is_not_in_this_artifact'"):
        await function.start()
    await function.stop()


GREEDY = (
    HANDLER
    + """
def greedy(event, context):
    hoard = bytearray(event["mb"] * 1024 * 1024)
    for i in range(0, len(hoard), 4096):
        hoard[i] = 1  # touched: resident
    time.sleep(1)
    return {"pid": os.getpid()}
"""
)


async def test_an_environment_past_its_memory_size_is_ended_like_lambda_ends_it(tmp_path: Path) -> None:
    spec = FunctionSpec("ProbeFunction", "probe.app.greedy", timeout_s=10, memory_mb=128)
    function = ArtifactFunction(spec, {"AWS_LAMBDA_FUNCTION_NAME": "ProbeFunction"}, _artifact(tmp_path, GREEDY))
    await function.start()
    try:
        small = await function.invoke({"mb": 8})
        with pytest.raises(
            FunctionError,
            match=r"^Runtime\.OutOfMemory: RequestId: req-9 Error: Runtime exited with "
            r"error: signal: killed \(\d+ MB used, MemorySize 128 MB\)$",
        ):
            await function.invoke({"mb": 300}, request_id="req-9")
        after = await function.invoke({"mb": 8})
    finally:
        await function.stop()
    assert after["pid"] != small["pid"]  # a fresh environment serves the next invocation


async def test_environments_start_when_needed_up_to_the_bound_each_init_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spec = FunctionSpec("ProbeFunction", "probe.app.handler", timeout_s=5)
    function = ArtifactFunction(spec, {"AWS_LAMBDA_FUNCTION_NAME": "ProbeFunction"}, _artifact(tmp_path, HANDLER), 2)
    with caplog.at_level(logging.INFO, logger="runtime.lambdafn.artifact"):
        await function.start()
        try:
            assert len(function._environments) == 1  # one at start: the others are cold starts to come
            results = await asyncio.gather(*(function.invoke({"sleep": 0.5}) for _ in range(3)))
        finally:
            await function.stop()
    assert len({r["pid"] for r in results}) == 2  # scaled out to the bound, no further
    inits = [r.getMessage() for r in caplog.records if "INIT_REPORT" in r.getMessage()]
    assert len(inits) == 2 and all(
        re.fullmatch(r"ProbeFunction: INIT_REPORT Init Duration: \d+\.\d\d ms", m) for m in inits
    )
