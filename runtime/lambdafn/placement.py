"""Where a function runs: in this process from the venv, or from its built artifact (``--build-dir``)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from runtime.app import loops
from runtime.lambdafn.artifact import ArtifactFunction
from runtime.lambdafn.environment import at_task_root
from runtime.lambdafn.invoker import Function, LocalFunction
from runtime.template import FunctionSpec


def make_function(
    spec: FunctionSpec, environment: Mapping[str, str], instances: int = 1, build_dir: Path | None = None
) -> Function:
    """``sam build`` puts a zip function's artifact in ``<build-dir>/<FunctionName>``; images are not built there
    (no Docker), so those run from the venv."""
    artifact = artifact_of(spec, build_dir)
    if artifact is not None:
        return ArtifactFunction(spec, at_task_root(environment, artifact), artifact, instances)
    return LocalFunction(spec, at_task_root(environment, None), instances, thread_setup=loops.thread_loop)


def artifact_of(spec: FunctionSpec, build_dir: Path | None) -> Path | None:
    """The function's `sam build` artifact, when there is one to run."""
    artifact = None if build_dir is None else build_dir / spec.name
    return artifact if artifact is not None and spec.runtime != "image" and artifact.is_dir() else None
