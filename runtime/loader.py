"""Import a function's handler (and ASGI app) by the name the template gives it."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from .kafka_esm import Handler
from .template import FunctionSpec


def load_handler(spec: FunctionSpec) -> Handler:
    handler: Handler = getattr(importlib.import_module(spec.module), spec.attribute)
    return handler


def load_shutdown(spec: FunctionSpec) -> Callable[[], Any] | None:
    """The optional ``shutdown`` hook beside the handler: the runtime's way to close pools and producers."""
    hook: Callable[[], Any] | None = getattr(importlib.import_module(spec.module), "shutdown", None)
    return hook


def load_init(spec: FunctionSpec) -> Callable[[], Any] | None:
    """The optional ``init`` hook beside the handler: Lambda's init phase, run once when a worker starts, so a
    function that cannot start (e.g. an unusable model) fails before it is handed any event."""
    hook: Callable[[], Any] | None = getattr(importlib.import_module(spec.module), "init", None)
    return hook


def load_asgi_app(spec: FunctionSpec) -> Any:
    module = importlib.import_module(spec.module)
    app = getattr(module, "app", None)
    if app is None:
        raise TypeError(f"{spec.name}: HTTP functions must expose their ASGI `app` beside `{spec.attribute}`")
    return app
