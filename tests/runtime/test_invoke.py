"""``python -m runtime.invoke``: one invocation of a template function with an event file."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from functions.common.store import RequestRow, open_store

pytestmark = pytest.mark.usefixtures("local_stack")  # runs python -m runtime.invoke

ROOT = Path(__file__).resolve().parents[2]
SESSION = "3f1c9b2e-7a4d-4c1e-9f0a-2b6d8e5c1a47"


async def _seed(url: str) -> None:
    store = open_store(url)
    await store.init_schema()
    await store.create_session(SESSION)
    for seq in range(3):
        await store.add_request(RequestRow(SESSION, seq, 1, f"{SESSION}/{seq}", "0" * 64, "image/jpeg"))
    await store.close()


async def _statuses(url: str) -> list[str]:
    store = open_store(url)
    rows = await store.get_range(SESSION, 0, 9)
    await store.close()
    return [r.status for r in rows]


def _invoke(
    function: str, event: str, env: dict[str, str], cwd: Path | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runtime.invoke", function, "--event", event],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_invoke_runs_collect_on_an_event_file(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}"
    asyncio.run(_seed(url))
    done = _invoke(
        "CollectSelfManagedFunction",
        str(ROOT / "tests/events/selfmanaged_collect.json"),
        {"DATABASE_URL": url},
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "applied": 2, "duplicate": 0, "unknown": 0, "classified": 1, "failed": 1, "dead_lettered": 0
    }  # fmt: skip
    assert asyncio.run(_statuses(url)) == ["failed", "queued", "done"]


def test_invoke_names_the_functions_it_knows(tmp_path: Path) -> None:
    done = _invoke("NoSuchFunction", "-", {}, cwd=tmp_path, stdin="{}")
    assert done.returncode != 0 and "UploadFunction" in done.stderr


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_invoke_runs_an_http_function_through_mangum(configured: dict[str, str]) -> None:
    env = {k.upper(): v for k, v in configured.items()}
    done = _invoke("UploadFunction", str(ROOT / "tests/events/apigw_v2_upload_register.json"), env)
    assert done.returncode == 0, done.stderr
    response = json.loads(done.stdout)
    assert response["statusCode"] == 200 and "uuid" in json.loads(response["body"])
