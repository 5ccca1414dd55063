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


def infrastructure_errors() -> tuple[type[BaseException], ...]:
    """The standard library's exceptions that mean "a dependency is down", not "the request is wrong" or "our code is
    broken"; each adapter names its own library's (``store.dependency_errors()``, ``blobs.dependency_errors()``,
    ``producer.dependency_errors()``), so a function loads only the libraries it uses."""
    return (OSError, TimeoutError)
