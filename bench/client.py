"""The benchmarks' HTTP client, on aiohttp: it shares the two cores with the system it measures, and it costs
a fraction of httpx's CPU per request (measured on this machine: ~0.6-0.8 vs ~3.5-5 ms per multipart upload).

A load run encodes its multipart bodies before the clock starts (``prepare_upload``), as the TorchServe peer's
client holds its request bodies ready: the cores then go to the system measured, not to the instrument."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp


@asynccontextmanager
async def session(base_url: str | None = None, concurrency: int = 100, timeout_s: float = 120) -> AsyncIterator[Any]:
    """An aiohttp session with up to ``concurrency`` kept-alive connections."""
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(
        base_url=base_url, connector=connector, timeout=aiohttp.ClientTimeout(total=timeout_s)
    ) as client:
        yield client


async def register(client: aiohttp.ClientSession) -> str:
    async with client.post("/register") as response:
        response.raise_for_status()
        return str((await response.json())["uuid"])


@dataclass(frozen=True)
class PreparedUpload:
    """One ``POST /image`` request body, encoded (``prepare_upload``)."""

    body: bytes
    content_type: str


async def prepare_upload(uuid: str, seq: int, data: bytes, topk: int = 5) -> PreparedUpload:
    """The multipart body of ``POST /image``, encoded (a timed run does it before its clock starts)."""
    form = aiohttp.FormData()
    form.add_field("uuid", uuid)
    form.add_field("seq", str(seq))
    form.add_field("topk", str(topk))
    form.add_field("payload", data, filename=f"{seq}.jpg", content_type="image/jpeg")
    writer = form()
    return PreparedUpload(await writer.as_bytes(), writer.content_type)


async def send_upload(client: aiohttp.ClientSession, prepared: PreparedUpload) -> int:
    """``POST /image`` of a prepared body; returns the status code."""
    headers = {"Content-Type": prepared.content_type}
    async with client.post("/image", data=prepared.body, headers=headers) as response:
        await response.read()
        return response.status


async def upload(client: aiohttp.ClientSession, uuid: str, seq: int, data: bytes, topk: int = 5) -> int:
    """``POST /image`` (multipart), encoded as it is sent; returns the status code."""
    return await send_upload(client, await prepare_upload(uuid, seq, data, topk))


async def results(client: aiohttp.ClientSession, uuid: str, start: int, end: int) -> list[Any]:
    params = {"uuid": uuid, "seqStart": str(start), "seqEnd": str(end)}
    async with client.get("/result", params=params) as response:
        response.raise_for_status()
        return list((await response.json())["items"])
