"""The MariaDB URL from a Secrets Manager secret (moto), as deployed functions read it."""

from __future__ import annotations

import json

import boto3
import pytest
from moto import mock_aws

from functions.common.store.secrets import database_url_from_secret


@pytest.fixture
def secrets(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        yield boto3.client("secretsmanager")


def test_rds_style_secret_becomes_an_asyncmy_url(secrets) -> None:  # type: ignore[no-untyped-def]
    arn = secrets.create_secret(
        Name="faasinfer-db",
        SecretString=json.dumps(
            {
                "engine": "mariadb",
                "username": "app",
                "password": "p@ss/w:rd",
                "host": "db.internal",
                "port": 3307,
                "dbname": "results",
            }
        ),
    )["ARN"]
    assert database_url_from_secret(arn) == "mysql+asyncmy://app:p%40ss%2Fw%3Ard@db.internal:3307/results"


def test_secret_without_credentials_fails_clearly(secrets) -> None:  # type: ignore[no-untyped-def]
    arn = secrets.create_secret(Name="broken", SecretString=json.dumps({"host": "db"}))["ARN"]
    with pytest.raises(KeyError, match="username"):
        database_url_from_secret(arn)
