"""Where the results database is: ``DATABASE_SECRET_ARN`` (an AWS Secrets Manager secret in RDS's JSON: username,
password, host, ...), else ``DATABASE_URL``, else the local SQLite file."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from functions.common.errors import Misconfigured
from functions.common.settings import get_settings, local_database_url


def database_url() -> str:
    """The MariaDB URL from ``DATABASE_SECRET_ARN`` when that is set, else ``DATABASE_URL``; both empty means the
    local SQLite file, which a Lambda function cannot share with the others: there it is an error naming both."""
    settings = get_settings()
    if settings.database_secret_arn:
        return database_url_from_secret(settings.database_secret_arn)
    if settings.database_url:
        return settings.database_url
    if settings.aws_lambda_function_name:
        raise Misconfigured(
            "no results database configured: DATABASE_URL and DATABASE_SECRET_ARN are empty "
            "(set the template parameter DatabaseUrl or DatabaseSecretArn)"
        )
    return local_database_url()


def database_url_from_secret(arn: str, client: Any = None) -> str:
    """Read once per process at the first database use; a missing field is a clear ``KeyError``."""
    if client is None:
        import boto3

        client = boto3.client("secretsmanager")
    secret = json.loads(client.get_secret_value(SecretId=arn)["SecretString"])
    user, password = quote(str(secret["username"]), safe=""), quote(str(secret["password"]), safe="")
    host, port = secret["host"], int(secret.get("port", 3306))
    return f"mysql+asyncmy://{user}:{password}@{host}:{port}/{secret.get('dbname', 'faasinfer')}"
