"""Where a function runs: in this process from the venv, or from its built artifact (``--build-dir``)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from functions.common import loops

from .artifact import ArtifactFunction
from .invoker import Function, LocalFunction
from .template import FunctionSpec


def make_function(
    spec: FunctionSpec, environment: Mapping[str, str], instances: int = 1, build_dir: Path | None = None
) -> Function:
    """``sam build`` puts a zip function's artifact in ``<build-dir>/<FunctionName>``; images are not built there
    (no Docker), so those run from the venv."""
    artifact = None if build_dir is None else build_dir / spec.name
    if artifact is not None and spec.runtime != "image" and artifact.is_dir():
        return ArtifactFunction(spec, environment, artifact, instances)
    return LocalFunction(spec, environment, instances, thread_setup=loops.thread_loop)
