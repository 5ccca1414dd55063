"""Typed service errors; the HTTP layer maps them to ``{"error": ...}`` in one place."""

from __future__ import annotations


class ServiceError(Exception):
    status_code = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(ServiceError):
    status_code = 400


class NotFound(ServiceError):
    status_code = 404


class Conflict(ServiceError):
    status_code = 409


class PayloadTooLarge(ServiceError):
    status_code = 413


class UnsupportedMedia(ServiceError):
    status_code = 415


class Busy(ServiceError):
    """Capacity is exhausted for now; the answer carries ``Retry-After``."""

    status_code = 503

    def __init__(self, message: str, retry_after_s: int = 1) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class Misconfigured(ServiceError):
    """A setting the deployment must provide is missing; the message names the template parameter."""

    status_code = 503


_INFRA_ERRORS: tuple[type[BaseException], ...] | None = None


def infrastructure_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean "a dependency is down", not "the request is wrong" or "our code is broken"."""
    global _INFRA_ERRORS
    if _INFRA_ERRORS is None:
        import sqlite3

        import asyncmy.errors
        from aiokafka.errors import KafkaError
        from botocore.exceptions import BotoCoreError

        _INFRA_ERRORS = (
            OSError,
            TimeoutError,
            KafkaError,
            BotoCoreError,  # S3 or Secrets Manager unreachable (endpoint, timeouts, credentials): not the request
            sqlite3.OperationalError,
            asyncmy.errors.OperationalError,
            asyncmy.errors.InterfaceError,
        )
    return _INFRA_ERRORS
