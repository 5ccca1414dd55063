"""How every Kafka client of ours authenticates: the producers in the functions, the local runtime's event-source
mappings and the topic tool take their aiokafka connection options from here, so they all speak to the cluster the
way the template's event sources do (``KafkaAuth`` parameter → ``KAFKA_AUTH``).

- ``PLAINTEXT``: no TLS, no authentication (the local broker; a private test cluster).
- ``TLS``: TLS without client authentication (MSK port 9094); ``KAFKA_CA_FILE`` names a private CA bundle.
- ``SASL_SCRAM_512``: SASL/SCRAM-SHA-512 over TLS (MSK port 9096, or a self-managed cluster) with the username and
  password of the Secrets Manager secret ``KAFKA_SECRET_ARN`` (``{"username": …, "password": …}``, the secret the
  event source reads too). ``KAFKA_TLS=false`` speaks SCRAM without TLS (SASL_PLAINTEXT), for clusters that do.
- ``MSK_IAM``: SASL/OAUTHBEARER with tokens signed by the function's IAM role (MSK port 9098), from
  ``aws-msk-iam-sasl-signer-python``.
"""

from __future__ import annotations

import json
import ssl
from enum import StrEnum
from typing import Any

from aiokafka.abc import AbstractTokenProvider
from aiokafka.helpers import create_ssl_context

from functions.common.errors import Misconfigured
from functions.common.settings import Settings


class KafkaAuth(StrEnum):
    PLAINTEXT = "PLAINTEXT"
    TLS = "TLS"
    SASL_SCRAM_512 = "SASL_SCRAM_512"
    MSK_IAM = "MSK_IAM"


class MskIamTokens(AbstractTokenProvider):  # type: ignore[misc]  # aiokafka is untyped
    """OAUTHBEARER tokens for MSK IAM, signed with the credentials of the process (the Lambda role)."""

    def __init__(self, region: str) -> None:
        self.region = region

    async def token(self) -> str:
        from aws_msk_iam_sasl_signer import MSKAuthTokenProvider

        token, _expiry_ms = MSKAuthTokenProvider.generate_auth_token(self.region)
        return str(token)


def check(settings: Settings) -> KafkaAuth:
    """The configured mode, or ``Misconfigured`` naming the template parameter that is wrong or missing (a cold-start
    check: nothing is fetched)."""
    try:
        auth = KafkaAuth(settings.kafka_auth.upper())
    except ValueError:
        valid = ", ".join(KafkaAuth)
        raise Misconfigured(
            f"KAFKA_AUTH (parameter KafkaAuth) is {settings.kafka_auth!r}; use one of {valid}"
        ) from None
    if auth is KafkaAuth.SASL_SCRAM_512 and not settings.kafka_secret_arn:
        raise Misconfigured("KAFKA_AUTH is SASL_SCRAM_512 but KAFKA_SECRET_ARN (parameter KafkaSecretArn) is empty")
    if auth is KafkaAuth.MSK_IAM and not settings.aws_region:
        raise Misconfigured("KAFKA_AUTH is MSK_IAM but AWS_REGION is not set (Lambda sets it; set it locally)")
    return auth


def scram_credentials(arn: str, client: Any = None) -> tuple[str, str]:
    """Username and password from the secret the event source uses; errors name the parameter."""
    if client is None:
        import boto3

        client = boto3.client("secretsmanager")
    try:
        secret = json.loads(client.get_secret_value(SecretId=arn)["SecretString"])
        return str(secret["username"]), str(secret["password"])
    except Exception as exc:
        raise Misconfigured(
            f"cannot read the SCRAM credentials from KAFKA_SECRET_ARN (parameter KafkaSecretArn) {arn!r}: "
            f"{type(exc).__name__}: {exc}"
        ) from exc


def _tls(settings: Settings) -> ssl.SSLContext:
    context: ssl.SSLContext = create_ssl_context(cafile=settings.kafka_ca_file or None)
    return context


def client_options(settings: Settings, secrets_client: Any = None) -> dict[str, Any]:
    """Keyword arguments for ``AIOKafkaProducer`` / ``AIOKafkaConsumer`` / ``AIOKafkaAdminClient``."""
    auth = check(settings)
    if auth is KafkaAuth.PLAINTEXT:
        return {"security_protocol": "PLAINTEXT"}
    if auth is KafkaAuth.TLS:
        return {"security_protocol": "SSL", "ssl_context": _tls(settings)}
    if auth is KafkaAuth.SASL_SCRAM_512:
        username, password = scram_credentials(settings.kafka_secret_arn, secrets_client)
        options: dict[str, Any] = {
            "security_protocol": "SASL_SSL" if settings.kafka_tls else "SASL_PLAINTEXT",
            "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_plain_username": username,
            "sasl_plain_password": password,
        }
        if settings.kafka_tls:
            options["ssl_context"] = _tls(settings)
        return options
    return {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "OAUTHBEARER",
        "sasl_oauth_token_provider": MskIamTokens(settings.aws_region),
        "ssl_context": _tls(settings),
    }
