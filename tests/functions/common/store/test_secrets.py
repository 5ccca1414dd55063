"""The MariaDB URL from a Secrets Manager secret (moto), as deployed functions read it."""

from __future__ import annotations

import json

import boto3
import pytest

from functions.common.errors import Misconfigured
from functions.common.settings import Settings
from functions.common.store.secrets import database_url_from_secret


@pytest.fixture
def secrets(mocked_aws: None):  # type: ignore[no-untyped-def]
    return boto3.client("secretsmanager")


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
    url = database_url_from_secret(arn, settings=Settings(database_pool_size=2))
    assert url == "mysql+asyncmy://app:p%40ss%2Fw%3Ard@db.internal:3307/results?min_size=1&max_size=2"


def test_secret_without_credentials_is_a_503_naming_it_not_its_value(secrets) -> None:  # type: ignore[no-untyped-def]
    arn = secrets.create_secret(Name="broken", SecretString=json.dumps({"host": "db", "password": "hunter2"}))["ARN"]
    with pytest.raises(Misconfigured, match="has no username") as raised:
        database_url_from_secret(arn)
    assert raised.value.status_code == 503 and arn in raised.value.message and "hunter2" not in raised.value.message


def test_rds_managed_master_secret_takes_the_host_from_the_proxy_parameter(secrets) -> None:  # type: ignore[no-untyped-def]
    # What RDS writes for ManageMasterUserPassword: username and password only.
    arn = secrets.create_secret(Name="rds!db-1", SecretString=json.dumps({"username": "admin", "password": "pw"}))
    with pytest.raises(Misconfigured, match="no host"):
        database_url_from_secret(arn["ARN"], settings=Settings())
    proxied = Settings(database_proxy_endpoint="proxy.internal", database_pool_size=1)
    url = database_url_from_secret(arn["ARN"], settings=proxied)
    assert url == "mysql+asyncmy://admin:pw@proxy.internal:3306/faasinfer?min_size=1&max_size=1"


def test_missing_secret_is_a_503_naming_the_secret(secrets) -> None:  # type: ignore[no-untyped-def]
    arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:gone-AbCdEf"
    with pytest.raises(Misconfigured, match="gone-AbCdEf cannot be read: ResourceNotFoundException"):
        database_url_from_secret(arn, settings=Settings())


def test_secret_that_is_not_json_is_a_503(secrets) -> None:  # type: ignore[no-untyped-def]
    arn = secrets.create_secret(Name="text", SecretString="host=db user=x")["ARN"]
    with pytest.raises(Misconfigured, match="not a JSON object"):
        database_url_from_secret(arn, settings=Settings())
