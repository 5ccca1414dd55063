"""The fast tier cannot hold a test that starts what integration tests start: each refuses, naming its fixture."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime.kafka.broker import EmbeddedBroker
from tools.launcher import launched


def test_this_test_is_in_the_fast_tier(request: pytest.FixtureRequest) -> None:
    assert request.node.get_closest_marker("integration") is None


def test_starting_runtime_local_asks_for_the_local_stack_fixture(tmp_path: Path) -> None:
    refused = r"starts runtime\.local in the fast tier: ask for the `local_stack`"
    with pytest.raises(AssertionError, match=refused), launched(tmp_path):
        pass


def test_starting_a_broker_asks_for_the_broker_fixture(tmp_path: Path) -> None:
    with pytest.raises(AssertionError, match="starts a broker in the fast tier: ask for the `broker` fixture"):
        EmbeddedBroker(log_path=tmp_path / "broker.log").start()


def test_translating_the_template_asks_for_the_build_tools_fixture() -> None:
    from tests.deploy.stack import Stack

    with pytest.raises(AssertionError, match="runs the SAM translator in the fast tier: ask for the `build_tools`"):
        Stack.deployed({})


def test_exporting_an_engine_asks_for_the_engine_build_fixture(tmp_path: Path) -> None:
    from functions.infer.config import EngineSpec, ModelSpec
    from functions.infer.loading import load_classifier
    from functions.infer.model import ModelUnavailable

    spec = ModelSpec("efficientnet_lite0", engine=EngineSpec("onnxruntime", "fp32", tmp_path, tmp_path))
    with pytest.raises(ModelUnavailable, match="exports an engine in the fast tier: ask for the `engine_build`"):
        load_classifier(spec)
