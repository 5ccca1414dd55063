"""A rotated database password: the function's pool was opened with the old one, the database now refuses it; the
secret is read again once and the operation goes through on a pool opened with the new one. A secret that still
holds what the database refuses is not read again on every request. The rotation is real: ``ALTER USER`` on the
local MariaDB and a new secret value in moto's Secrets Manager."""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any
from urllib.parse import urlsplit

import asyncmy.errors
import boto3
import pytest

from functions.common.settings import Settings
from functions.common.store import open_store
from functions.common.store.secrets import database_url_from_secret
from functions.common.store.sql_store import SQLStore

SESSION = "6c1e0d9f-4a3b-4f2c-8d8e-2b3c4d5e6f70"


@pytest.fixture
def secrets(mocked_aws: None) -> Any:
    return boto3.client("secretsmanager")


async def _admin(mariadb_url: str, statement: str) -> None:
    admin = open_store(mariadb_url)
    assert isinstance(admin, SQLStore)
    try:
        await admin.backend.run(lambda db: admin.backend.execute(db, statement))  # type: ignore[arg-type]
    finally:
        await admin.close()


async def _rotating_user(mariadb_url: str, secrets: Any) -> tuple[str, str, Any]:
    """A database user with password ``first``, its RDS-style secret, and a reader of that secret."""
    user, database = f"rot_{uuid.uuid4().hex[:8]}", urlsplit(mariadb_url).path.lstrip("/")
    await _admin(mariadb_url, f"CREATE USER '{user}' IDENTIFIED BY 'first'")
    await _admin(mariadb_url, f"GRANT ALL ON {database}.* TO '{user}'")
    value = {"username": user, "password": "first", "host": "127.0.0.1", "port": 3306, "dbname": database}
    arn = secrets.create_secret(Name=user, SecretString=json.dumps(value))["ARN"]
    reads: list[str] = []

    def read() -> str:
        reads.append(arn)
        return database_url_from_secret(arn, client=secrets, settings=Settings(database_pool_size=2))

    return user, arn, (read, reads)


async def test_a_rotated_password_is_read_again_from_the_secret_once_and_the_store_goes_on(
    mariadb_url: str, secrets: Any, caplog: pytest.LogCaptureFixture
) -> None:
    user, arn, (read, reads) = await _rotating_user(mariadb_url, secrets)
    store = open_store(read(), reread=read)  # the password is read at the first use, as a cold start reads it
    try:
        await _admin(mariadb_url, f"ALTER USER '{user}' IDENTIFIED BY 'second'")  # rotation: database...
        secret = json.loads(secrets.get_secret_value(SecretId=arn)["SecretString"])
        secrets.put_secret_value(SecretId=arn, SecretString=json.dumps({**secret, "password": "second"}))  # ...secret
        with caplog.at_level(logging.WARNING, logger="functions.common.store.backend"):
            await store.create_session(SESSION)
        assert await store.session_exists(SESSION)
        assert len(reads) == 2  # the first read, and one more after the refusal
        assert [r.getMessage() for r in caplog.records] == [
            "database refused the credentials; they were read again and the pool reopened"
        ]
    finally:
        await store.close()
        await _admin(mariadb_url, f"DROP USER '{user}'")


async def test_a_secret_that_still_holds_a_refused_password_is_not_read_on_every_request(
    mariadb_url: str, secrets: Any
) -> None:
    user, _, (read, reads) = await _rotating_user(mariadb_url, secrets)
    store = open_store(read(), reread=read)
    try:
        await _admin(mariadb_url, f"ALTER USER '{user}' IDENTIFIED BY 'elsewhere'")  # the secret was not updated
        for _ in range(3):
            with pytest.raises(asyncmy.errors.OperationalError) as refused:
                await store.session_exists(SESSION)
            assert refused.value.args[0] == 1045
        assert len(reads) == 2  # read once more after the first refusal, then left alone for a while
    finally:
        await store.close()
        await _admin(mariadb_url, f"DROP USER '{user}'")
