"""Each function's own environment, as Lambda gives it: its template variables and Lambda's, nobody else's.

Resolved as SAM CLI does (``samcli/local/lambdafn/env_vars.py``): for a variable the function's template declares,
the shell's value overrides the template's; an unset parameter stays an empty string, as on AWS. Lambda's own
variables are added. From the rest of the shell only ``passes_from_shell`` goes in: the configuration knobs the
functions read (``Settings``: ``INFER_MAX_BATCH``, ``PUBLISH_TIMEOUT_S``…; ``LOG_LEVEL``), AWS credentials and
endpoints (SAM passes the shell's credentials too) and what any process needs (``PATH``, ``HOME``, ``TMPDIR``…);
never a variable another function declares, nor anything else the shell holds (``PYTHONPATH``, ``VIRTUAL_ENV``,
a variable only a developer's shell has): on Lambda the function would not see it. The result is handed to that
function alone (its threads or processes); ``os.environ`` is never written.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from runtime.app import DEFAULT_HOME, Settings, local_blob_url, local_database_url
from runtime.template import FunctionSpec, Template

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_REGION = "us-east-1"


# Knobs the functions read that a template need not declare (their defaults hold on AWS), beside Settings' own.
_KNOBS = frozenset({"LOG_LEVEL", "LOG_FORMAT", "TORCH_HOME", "OMP_NUM_THREADS", "MKL_NUM_THREADS"})
# What a process needs to run at all; Lambda sets its own values of these.
_PROCESS = frozenset({"PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "LD_LIBRARY_PATH", "PROMETHEUS_MULTIPROC_DIR"})


def passes_from_shell(name: str) -> bool:
    """Whether an undeclared shell variable reaches the functions: a knob they read, AWS's, or a process's own."""
    return name.lower() in Settings.model_fields or name in _KNOBS or name in _PROCESS or name.startswith("AWS_")


def declared_names(functions: Iterable[FunctionSpec]) -> frozenset[str]:
    return frozenset(name for spec in functions for name in spec.env)


def lambda_variables(spec: FunctionSpec, region: str, task_root: Path = ROOT) -> dict[str, str]:
    """What the Lambda service sets in every execution environment of the function."""
    return {
        "AWS_LAMBDA_FUNCTION_NAME": spec.name,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_mb),
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{spec.name}",
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,
        "LAMBDA_TASK_ROOT": str(task_root),
        "AWS_EXECUTION_ENV": "AWS_Lambda_Image" if spec.runtime == "image" else f"AWS_Lambda_{spec.runtime}",
    }


def function_environment(
    spec: FunctionSpec,
    shell: Mapping[str, str],
    declared: frozenset[str],
    task_root: Path = ROOT,
    services: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment ``spec`` runs with; ``declared``: every variable any function of the template declares;
    ``services``: variables of what the runtime started for the functions (e.g. its local S3 endpoint)."""
    defaults = {**local_defaults(), **(services or {})}
    undeclared = {key: value for key, value in shell.items() if key not in declared and passes_from_shell(key)}
    passed = {**defaults, **undeclared}
    own = {key: shell.get(key, value) for key, value in spec.env.items()}
    region = shell.get("AWS_REGION") or shell.get("AWS_DEFAULT_REGION") or DEFAULT_REGION
    return {**passed, **own, **lambda_variables(spec, region, task_root)}


LAMBDA_TASK = "/var/task"


def at_task_root(environment: Mapping[str, str], task_root: Path | None) -> dict[str, str]:
    """``environment`` with paths under Lambda's ``/var/task`` (where the artifact lies, read-only) as this machine
    has them: in the artifact folder for a function run from its artifact; from source (``None``) under
    ``.faasinfer``, where what a build would bake in (infer's engines) is made; never in a real /var/task."""
    base = str(task_root if task_root is not None else local_home())

    def moved(value: str) -> str:
        if value != LAMBDA_TASK and not value.startswith(LAMBDA_TASK + "/"):
            return value
        return base + value[len(LAMBDA_TASK) :]

    return {key: moved(value) for key, value in environment.items()}


def parameters_from_environment(template: Template, shell: Mapping[str, str]) -> dict[str, str]:
    """A shell variable that the template binds to a Parameter overrides that Parameter (``REQUEST_TOPIC`` →
    ``RequestTopic``), so event sources and every function's environment stay consistent."""
    return {
        parameter: shell[var]
        for spec in template.functions
        for var, parameter in spec.env_parameters.items()
        if var in shell
    }


def local_home() -> Path:
    """Where the embedded defaults live: ``./.faasinfer`` of the directory the runtime was started in, as an
    absolute path (functions run from other working directories, e.g. their artifact folders)."""
    return (Path.cwd() / DEFAULT_HOME).resolve()


def local_defaults() -> dict[str, str]:
    """Variables the runtime supplies when the template cannot (the blob bucket exists only on AWS)."""
    return {"BLOB_URL": local_blob_url(local_home())}


def local_parameters(template: Template, shell: Mapping[str, str], overrides: Mapping[str, str]) -> dict[str, str]:
    """Parameters for a local run: the shell's, then ``--param`` overrides, then the embedded defaults for what a
    deployment must provide (no database configured: the local SQLite file; brokers: 127.0.0.1:9092, which
    ``runtime.local`` replaces by its own; Kafka without authentication, as the embedded broker and local/'s speak
    it, unless KAFKA_AUTH says otherwise; metrics served at /metrics rather than written as CloudWatch EMF)."""
    chosen = {**parameters_from_environment(template, shell), **overrides}
    if "KafkaAuth" in template.parameters:
        chosen.setdefault("KafkaAuth", "PLAINTEXT")
    if "MetricsOutput" in template.parameters:
        chosen.setdefault("MetricsOutput", "prometheus")  # no CloudWatch here: /metrics adds up every process
    if "KafkaBootstrapServers" in template.parameters and not template.parameters["KafkaBootstrapServers"]:
        chosen.setdefault("KafkaBootstrapServers", Settings.model_fields["kafka_bootstrap_servers"].default)
    database = chosen.get("DatabaseUrl", template.parameters.get("DatabaseUrl", ""))
    secret = chosen.get("DatabaseSecretArn", template.parameters.get("DatabaseSecretArn", ""))
    if "DatabaseUrl" in template.parameters and not database and not secret:
        chosen["DatabaseUrl"] = local_database_url(local_home())
    return chosen
