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
    names = ("", *NOISY, *THIRD_PARTY)
    handlers, levels = list(root.handlers), {name: logging.getLogger(name).level for name in names}
    for name in THIRD_PARTY:  # as a fresh process has them (an in-process uvicorn of another test sets its own)
        logging.getLogger(name).setLevel(logging.NOTSET)
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


def test_a_message_carrying_line_breaks_stays_one_line_in_text_logs(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("infer#0", LogSettings.of({"LOG_LEVEL": "INFO"}))
    forged = "k1\n2026-12-05 00:00:00,000 ERROR [collect] functions.collect: database wiped\r\x1b[2J"
    logging.getLogger("runtime.esm.kafka").warning("record %s failed", forged)
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("runtime.esm.kafka").exception("batch failed")
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].endswith(
        r"WARNING [infer#0] runtime.esm.kafka: record k1\n2026-12-05 00:00:00,000 ERROR [collect] "
        r"functions.collect: database wiped\r\x1b[2J failed"
    )
    assert lines[1].endswith("batch failed") and lines[2] == "Traceback (most recent call last):"  # kept as is
