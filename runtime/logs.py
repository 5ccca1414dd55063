"""Logging of every runtime process: quiet by default, details with ``LOG_LEVEL=DEBUG``, JSON with ``LOG_FORMAT=json``.

Text lines carry the process (``[InferSelfManagedFunction#0]``); JSON lines are powertools' Lambda log format, with
the ``extra`` fields a line adds (function, request id, record counts) as keys.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from typing import Literal

from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter
from pydantic_settings import BaseSettings, SettingsConfigDict

# Chatty at INFO: one line per HTTP client request (httpx), group coordination and connections (aiokafka),
# every pool connect and disconnect (databases), every request (mangum, uvicorn's access log, werkzeug under moto),
# every rewritten node of an ONNX export (torch.onnx, onnxscript's optimizer, onnx_ir's passes).
NOISY = (
    "httpx", "httpcore", "aiokafka", "databases", "mangum", "asyncio", "botocore", "urllib3", "uvicorn", "werkzeug",
    "torch", "onnx", "onnx_ir", "onnxscript", "onnxruntime",
)  # fmt: skip


class LogSettings(BaseSettings):
    model_config = SettingsConfigDict(frozen=True, extra="ignore", case_sensitive=False)

    log_level: str = "INFO"
    log_format: Literal["text", "json"] = "text"

    @classmethod
    def of(cls, environment: Mapping[str, str]) -> LogSettings:
        """As a function's own environment says (``runtime.lambdafn.environment``; it holds the runtime's local
        knobs such as ``LOG_LEVEL``, so it wins over this process's environment)."""
        return cls.model_validate(
            {name: environment[name.upper()] for name in cls.model_fields if name.upper() in environment}
        )


# Control characters in a message (a Kafka record's field, a client's header) would forge or split lines: each
# is written as its escape, so one record is one line; a traceback keeps its lines.
_ESCAPED = {i: repr(chr(i))[1:-1] for i in (*range(32), 127) if i != 9}


class OneLineFormatter(logging.Formatter):
    def formatMessage(self, record: logging.LogRecord) -> str:
        return super().formatMessage(record).translate(_ESCAPED)


def _with_logger_name(record: logging.LogRecord) -> bool:
    record.logger = record.name  # an extra attribute: powertools puts it beside the message
    return True


def configure_logging(process: str | None = None, settings: LogSettings | None = None) -> None:
    """Replace the root handler; ``process`` names this process in text lines."""
    settings = settings or LogSettings()
    level = logging.getLevelName(settings.log_level.upper())
    if not isinstance(level, int):
        level = logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    if settings.log_format == "json":
        handler.setFormatter(LambdaPowertoolsFormatter(service="faasinfer", process_name=process))
        handler.addFilter(_with_logger_name)
    else:
        where = f" [{process}]" if process else ""
        handler.setFormatter(OneLineFormatter(f"%(asctime)s %(levelname)s{where} %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for name in NOISY:
        logging.getLogger(name).setLevel(logging.DEBUG if level <= logging.DEBUG else logging.WARNING)
