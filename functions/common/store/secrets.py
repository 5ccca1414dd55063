"""Where the results database is: ``DATABASE_SECRET_ARN`` (an AWS Secrets Manager secret in RDS's JSON: username,
password, and host/port unless ``DATABASE_PROXY_ENDPOINT`` names the host), else ``DATABASE_URL``, else the local
SQLite file.

A secret RDS manages itself for a master password holds only ``username`` and ``password``
(https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/rds-secrets-manager.html): the host then comes from
``DATABASE_PROXY_ENDPOINT``. A secret that cannot be read or used is a ``Misconfigured`` (503) naming the secret and
what is missing, never its value.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from functions.common.errors import Misconfigured
from functions.common.settings import Settings, get_settings, local_database_url


def database_url() -> str:
    """The MariaDB URL from ``DATABASE_SECRET_ARN`` when that is set, else ``DATABASE_URL``; both empty means the
    local SQLite file, which a Lambda function cannot share with the others: there it is an error naming both."""
    settings = get_settings()
    if settings.database_secret_arn:
        return database_url_from_secret(settings.database_secret_arn, settings=settings)
    if settings.database_url:
        return _with_pool(settings.database_url, settings)
    if settings.aws_lambda_function_name:
        raise Misconfigured(
            "no results database configured: DATABASE_URL and DATABASE_SECRET_ARN are empty "
            "(set the template parameter DatabaseUrl or DatabaseSecretArn)"
        )
    return local_database_url()


def database_url_from_secret(arn: str, client: Any = None, settings: Settings | None = None) -> str:
    """Read at a process's first database use, and again when the database refuses the credentials (a rotated
    password: ``Backend.run``)."""
    settings = settings or get_settings()
    secret = _read(arn, client)
    missing = [key for key in ("username", "password") if not secret.get(key)]
    host = settings.database_proxy_endpoint or secret.get("host")
    if not host:
        missing.append("host (or the DatabaseProxyEndpoint parameter)")
    if missing:
        raise Misconfigured(f"database secret {arn} has no {', '.join(missing)}")
    user, password = quote(str(secret["username"]), safe=""), quote(str(secret["password"]), safe="")
    try:
        port = int(secret.get("port", 3306))
    except (TypeError, ValueError):
        raise Misconfigured(f"database secret {arn}: port is not a number") from None
    url = f"mysql+asyncmy://{user}:{password}@{host}:{port}/{secret.get('dbname', 'faasinfer')}"
    return _with_pool(url, settings)


def _read(arn: str, client: Any) -> dict[str, Any]:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        if client is None:
            import boto3

            client = boto3.client("secretsmanager")
        secret = json.loads(client.get_secret_value(SecretId=arn)["SecretString"])
    except ClientError as exc:  # AccessDenied, ResourceNotFound, DecryptionFailure...
        code = exc.response.get("Error", {}).get("Code", "error")
        raise Misconfigured(f"database secret {arn} cannot be read: {code}") from None
    except BotoCoreError as exc:
        raise Misconfigured(f"database secret {arn} cannot be read: {type(exc).__name__}") from None
    except (KeyError, ValueError, TypeError):
        raise Misconfigured(f"database secret {arn} is not a JSON object with a SecretString") from None
    if not isinstance(secret, dict):
        raise Misconfigured(f"database secret {arn} is not a JSON object")
    return secret


def _with_pool(url: str, settings: Settings) -> str:
    """A MariaDB URL with ``DATABASE_POOL_SIZE`` as the pool's bounds (``databases`` reads min_size/max_size)."""
    if not url.startswith(("mysql", "mariadb")) or "max_size=" in url:
        return url
    size = settings.database_pool_size
    return f"{url}{'&' if '?' in url else '?'}min_size=1&max_size={size}"
