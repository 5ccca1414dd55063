"""Kafka authentication modes: the aiokafka options every client gets, and clear cold-start errors."""

from __future__ import annotations

import base64
import os
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import boto3
import pytest

from functions.common.errors import Misconfigured
from functions.common.kafka_edge import auth as kafka_auth
from functions.common.settings import Settings

ROOT = Path(__file__).resolve().parents[4]


@pytest.fixture
def secrets(mocked_aws: None, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Secrets Manager in moto, in eu-west-1, the region of the secret ARNs these tests use."""
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    return boto3.client("secretsmanager")


def test_plaintext_is_the_local_default() -> None:
    assert kafka_auth.client_options(Settings()) == {"security_protocol": "PLAINTEXT"}


def test_tls_verifies_the_brokers_certificate() -> None:
    options = kafka_auth.client_options(Settings(kafka_auth="TLS"))
    context = options["ssl_context"]
    assert options["security_protocol"] == "SSL"
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname


def test_scram_reads_the_event_sources_secret(secrets: Any) -> None:
    arn = secrets.create_secret(Name="AmazonMSK_faasinfer", SecretString='{"username": "app", "password": "s3cr3t"}')[
        "ARN"
    ]
    options = kafka_auth.client_options(Settings(kafka_auth="SASL_SCRAM_512", kafka_secret_arn=arn))
    assert options["security_protocol"] == "SASL_SSL" and options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (options["sasl_plain_username"], options["sasl_plain_password"]) == ("app", "s3cr3t")
    assert isinstance(options["ssl_context"], ssl.SSLContext)
    plain = kafka_auth.client_options(Settings(kafka_auth="SASL_SCRAM_512", kafka_secret_arn=arn, kafka_tls=False))
    assert plain["security_protocol"] == "SASL_PLAINTEXT" and "ssl_context" not in plain


async def test_msk_iam_signs_connect_tokens_for_the_region(secrets: Any) -> None:
    options = kafka_auth.client_options(Settings(kafka_auth="MSK_IAM", aws_region="eu-west-1"))
    assert (options["security_protocol"], options["sasl_mechanism"]) == ("SASL_SSL", "OAUTHBEARER")
    token = await options["sasl_oauth_token_provider"].token()
    url = urlparse(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode())
    query = parse_qs(url.query)
    assert url.hostname == "kafka.eu-west-1.amazonaws.com"
    assert query["Action"] == ["kafka-cluster:Connect"] and "X-Amz-Signature" in query


@pytest.mark.parametrize(
    ("settings", "names"),
    [
        (Settings(kafka_auth="KERBEROS"), "KafkaAuth"),
        (Settings(kafka_auth="SASL_SCRAM_512"), "KafkaSecretArn"),
        (Settings(kafka_auth="MSK_IAM"), "AWS_REGION"),
    ],
)
def test_a_misconfigured_mode_names_what_to_set(settings: Settings, names: str) -> None:
    with pytest.raises(Misconfigured, match=names):
        kafka_auth.check(settings)


def test_a_missing_scram_secret_names_the_parameter(secrets: Any) -> None:
    arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:AmazonMSK_gone"
    with pytest.raises(Misconfigured, match=r"KafkaSecretArn.*ResourceNotFoundException"):
        kafka_auth.client_options(Settings(kafka_auth="SASL_SCRAM_512", kafka_secret_arn=arn))


@pytest.mark.parametrize("module", ["upload", "infer", "collect", "sweeper"])
def test_cold_start_stops_on_scram_without_a_secret(module: str) -> None:
    """Lambda's init phase is the handler module's import: it fails there, with the parameter to set."""
    env = {**os.environ, "KAFKA_AUTH": "SASL_SCRAM_512", "KAFKA_SECRET_ARN": "", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", f"import functions.{module}.app"], env=env, capture_output=True, text=True, cwd=ROOT
    )
    assert done.returncode != 0
    assert "KAFKA_SECRET_ARN (parameter KafkaSecretArn) is empty" in done.stderr.splitlines()[-1]
