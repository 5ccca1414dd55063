"""local/docker-compose.yml and the Dockerfiles are wired to what the code reads (no docker engine here)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from functions.common.settings import Settings
from runtime.template import load_template

ROOT = Path(__file__).resolve().parents[2]
LOCAL = ROOT / "local"
COMPOSE = yaml.safe_load((LOCAL / "docker-compose.yml").read_text())
SETTINGS = {name.upper() for name in Settings.model_fields} | {"LOG_LEVEL", "PORT"}


def _env_file(name: str) -> dict[str, str]:
    lines = (LOCAL / name).read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line.strip() and not line.startswith("#"))


def test_app_environment_names_are_settings_the_code_reads() -> None:
    app = COMPOSE["services"]["app"]
    names = set(app["environment"]) | set(_env_file(app["env_file"]))
    assert names <= SETTINGS, names - SETTINGS


def test_app_reaches_kafka_and_mariadb_as_they_are_configured() -> None:
    services = COMPOSE["services"]
    app_env, kafka_env, db_env = (services[s]["environment"] for s in ("app", "kafka", "mariadb"))
    host, port = app_env["KAFKA_BOOTSTRAP_SERVERS"].split(":")
    assert f"PLAINTEXT://{host}:{port}" in kafka_env["KAFKA_ADVERTISED_LISTENERS"]
    match = re.fullmatch(r"mysql://(\w+):(\w+)@(\w+):3306/(\w+)", app_env["DATABASE_URL"])
    assert match is not None
    assert match.groups() == (db_env["MARIADB_USER"], db_env["MARIADB_PASSWORD"], "mariadb", db_env["MARIADB_DATABASE"])
    assert services["app"]["depends_on"] == {
        "kafka-topics": {"condition": "service_completed_successfully"},
        "mariadb": {"condition": "service_healthy"},
    }
    assert "healthcheck" in services["kafka"] and "healthcheck" in services["mariadb"]
    assert "mariadb-data:/var/lib/mysql" in services["mariadb"]["volumes"]
    assert services["app"]["ports"] == ["8000:8000"] and "--port" in services["app"]["command"]


def test_topics_created_are_the_ones_the_template_and_settings_use() -> None:
    script = COMPOSE["services"]["kafka-topics"]["command"][0]
    created = set(re.search(r"for topic in ([\w\s-]+);", script).group(1).split())  # type: ignore[union-attr]
    defaults = Settings()
    template_topics = {s.topic for f in load_template(ROOT / "template.yaml").functions for s in f.kafka}
    assert created == {defaults.request_topic, defaults.result_topic, defaults.dlq_topic} | template_topics
    assert COMPOSE["services"]["kafka"]["environment"]["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"


def test_dockerfiles_copy_what_exists_and_run_the_template_handlers() -> None:
    for dockerfile in ("Dockerfile", "Dockerfile.infer"):
        text = (LOCAL / dockerfile).read_text()
        for line in text.splitlines():
            if line.startswith("COPY "):
                for source in line.split()[1:-1]:
                    assert (ROOT / source).exists(), f"{dockerfile}: {source} missing"
    infer_cmd = re.search(r'^CMD \["([\w.]+)"\]', (LOCAL / "Dockerfile.infer").read_text(), re.M)
    template = load_template(ROOT / "template.yaml")
    assert infer_cmd is not None and infer_cmd.group(1) == template.function("InferSelfManagedFunction").handler
    assert COMPOSE["services"]["app"]["build"] == {"context": "..", "dockerfile": "local/Dockerfile"}
