"""The upload app over ASGI, for the tests of this folder."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from functions.upload.app import app


@pytest.fixture
async def client(app_settings: dict[str, Any], loop_resources: None) -> AsyncIterator[httpx.AsyncClient]:
    """For what upload answers without publishing (refusals, replays): Kafka is a closed port."""
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as c:
        yield c


@pytest.fixture
def publishing_client(configured: dict[str, Any], client: httpx.AsyncClient) -> httpx.AsyncClient:
    """``client`` (this folder's, or a module's own) with the real broker: accepted uploads are published."""
    return client
