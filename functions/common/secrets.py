"""The MariaDB URL from an AWS Secrets Manager secret (the RDS secret JSON: username, password, host, ...)."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote


def database_url_from_secret(arn: str, client: Any = None) -> str:
    """Read once per process at the first database use; a missing field is a clear ``KeyError``."""
    if client is None:
        import boto3

        client = boto3.client("secretsmanager")
    secret = json.loads(client.get_secret_value(SecretId=arn)["SecretString"])
    user, password = quote(str(secret["username"]), safe=""), quote(str(secret["password"]), safe="")
    host, port = secret["host"], int(secret.get("port", 3306))
    return f"mysql+asyncmy://{user}:{password}@{host}:{port}/{secret.get('dbname', 'faasinfer')}"
