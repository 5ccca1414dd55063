"""The runtime's logging: third-party chatter (the ONNX optimizer, aiokafka, uvicorn) at WARNING unless
``LOG_LEVEL=DEBUG``; a function's processes log as its own environment says."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from runtime.logs import NOISY, LogSettings, configure_logging

THIRD_PARTY = ("onnx_ir.passes.common.initializer_deduplication", "onnxscript.optimizer", "aiokafka", "uvicorn.access")


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, levels = list(root.handlers), {name: logging.getLogger(name).level for name in ("", *NOISY)}
    yield
    root.handlers[:] = handlers
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


@pytest.mark.parametrize(("level", "third_party"), [("INFO", logging.WARNING), ("DEBUG", logging.DEBUG)])
def test_third_party_loggers_stay_at_warning_unless_debugging(level: str, third_party: int) -> None:
    configure_logging(settings=LogSettings.of({"LOG_LEVEL": level}))
    assert logging.getLogger().level == logging.getLevelName(level)
    for name in THIRD_PARTY:
        assert logging.getLogger(name).getEffectiveLevel() == third_party, name


def test_settings_come_from_the_environment_given() -> None:
    settings = LogSettings.of({"LOG_LEVEL": "WARNING", "LOG_FORMAT": "json", "PATH": "/usr/bin"})
    assert (settings.log_level, settings.log_format) == ("WARNING", "json")
