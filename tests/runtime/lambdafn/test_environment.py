"""Each function's environment: its own template variables and Lambda's, never another function's."""

from __future__ import annotations

import threading
from pathlib import Path

from functions.common.settings import get_settings, settings_from, use_function_environment
from runtime.lambdafn.environment import declared_names, function_environment, local_parameters
from runtime.template import FunctionSpec, load_template

TEMPLATE = Path(__file__).resolve().parents[3] / "template.yaml"


def _functions() -> dict[str, FunctionSpec]:
    template = load_template(TEMPLATE, {"DatabaseUrl": ""})
    return {spec.name: spec for spec in template.functions}


def test_a_function_gets_its_own_variables_and_lambdas_and_no_others() -> None:
    functions = _functions()
    declared = declared_names(functions.values())
    shell = {"INFER_MODEL": "resnet18", "REQUEST_TOPIC": "mine", "LOG_LEVEL": "DEBUG", "PATH": "/usr/bin",
             "INFER_MAX_BATCH": "4", "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE", "PYTHONPATH": "/home/dev/src",
             "VIRTUAL_ENV": "/home/dev/.venv", "MY_SHELL_ONLY_SETTING": "x"}  # fmt: skip
    upload = function_environment(functions["UploadFunction"], shell, declared)
    infer = function_environment(functions["InferSelfManagedFunction"], shell, declared)

    assert "INFER_MODEL" not in upload  # infer's variable, set in the shell: still not upload's
    assert infer["INFER_MODEL"] == "resnet18"  # the shell overrides what the function declares (SAM's rule)
    assert upload["REQUEST_TOPIC"] == infer["REQUEST_TOPIC"] == "mine"  # Globals: every function's
    assert upload["LOG_LEVEL"] == "DEBUG" and infer["INFER_MAX_BATCH"] == "4"  # knobs the functions read
    assert upload["PATH"] == "/usr/bin" and upload["AWS_ACCESS_KEY_ID"] == "AKIDEXAMPLE"  # a process's, AWS's
    for only_in_a_shell in ("PYTHONPATH", "VIRTUAL_ENV", "MY_SHELL_ONLY_SETTING"):  # on Lambda: not there
        assert only_in_a_shell not in upload and only_in_a_shell not in infer
    assert upload["DATABASE_URL"] == "" and upload["API_KEY"] == ""  # unset parameters arrive as "", as on AWS
    assert upload["AWS_LAMBDA_FUNCTION_NAME"] == "UploadFunction"
    assert upload["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "512" and infer["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "1769"
    assert upload["AWS_EXECUTION_ENV"] == infer["AWS_EXECUTION_ENV"] == "AWS_Lambda_python3.12"
    assert {"AWS_REGION", "AWS_LAMBDA_FUNCTION_VERSION", "LAMBDA_TASK_ROOT"} <= set(upload)


def test_locally_an_unset_database_is_the_embedded_sqlite_file_unless_a_secret_is_given() -> None:
    template = load_template(TEMPLATE)
    local = f"sqlite+aiosqlite:///{Path.cwd().resolve() / '.faasinfer' / 'faasinfer.db'}"
    assert local_parameters(template, {}, {})["DatabaseUrl"] == local  # absolute: functions run from elsewhere
    assert local_parameters(template, {"DATABASE_URL": "mysql://u:p@db/x"}, {})["DatabaseUrl"] == "mysql://u:p@db/x"
    assert "DatabaseUrl" not in local_parameters(template, {}, {"DatabaseSecretArn": "arn:aws:secretsmanager:x"})


def test_threads_of_one_process_read_the_settings_of_their_own_function() -> None:
    seen: dict[str, tuple[str | None, str | None]] = {}

    def run(name: str, environment: dict[str, str]) -> None:
        use_function_environment(environment)
        settings = get_settings()
        seen[name] = (settings.aws_lambda_function_name, settings.api_key)

    threads = [
        threading.Thread(target=run, args=("a", {"AWS_LAMBDA_FUNCTION_NAME": "A", "API_KEY": "secret"})),
        threading.Thread(target=run, args=("b", {"AWS_LAMBDA_FUNCTION_NAME": "B"})),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert seen == {"a": ("A", "secret"), "b": ("B", None)}
    assert settings_from({"INFER_MODEL": "vit_b_16"}).infer_model == "vit_b_16"


def test_paths_under_var_task_are_the_artifact_or_the_local_home(tmp_path: Path) -> None:
    """The template's INFER_ENGINE_CACHE=/var/task/engines: in the artifact folder when the function runs from its
    artifact, under .faasinfer from source; a real /var/task is never written."""
    from runtime.lambdafn.environment import at_task_root, local_home

    environment = {"INFER_ENGINE_CACHE": "/var/task/engines", "OTHER": "/var/taskforce", "ROOT": "/var/task"}
    assert at_task_root(environment, tmp_path) == {
        "INFER_ENGINE_CACHE": f"{tmp_path}/engines", "OTHER": "/var/taskforce", "ROOT": str(tmp_path),
    }  # fmt: skip
    assert at_task_root(environment, None)["INFER_ENGINE_CACHE"] == f"{local_home()}/engines"
