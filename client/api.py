"""A small async client of the public HTTP API, used by the CLI and the demo."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

# What one Lambda request carries through API Gateway (6 MB invoke payload, the body base64-encoded): larger
# images go through a presigned S3 upload (functions/upload/staging.py).
INLINE_LIMIT = 4 * 1024 * 1024

SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"}


# What the API takes (functions/common: MAX_TOPK, MAX_UPLOAD_BYTES' default): checked before anything is sent.
MAX_TOPK = 1000
MAX_IMAGE_BYTES = 10 * 1024 * 1024


def mib(size: int) -> str:
    return f"{size / 1024 / 1024:.3g} MiB"


class ApiError(Exception):
    def __init__(self, status: int, message: str, path: str = "", json_body: bool = True) -> None:
        super().__init__(f"{status}: {message}")
        self.status, self.message, self.path, self.json_body = status, message, path, json_body


def image_files(paths: Sequence[Path]) -> list[Path]:
    """Files as given, folders expanded to their images (sorted, not recursive into hidden folders)."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.suffix.lower() in SUFFIXES and not p.name.startswith("."))
        else:
            found.append(path)
    return found


REFUSED = frozenset({400, 409, 413, 415})  # this file is wrong; the next one may be fine


@dataclass
class Uploaded:
    """What an upload of several files came to: the seqs accepted, and each refused file with its seq and why."""

    accepted: list[int] = field(default_factory=list)
    refused: list[tuple[Path, int, str]] = field(default_factory=list)


@dataclass
class Client:
    """``async with Client(url) as client``: one connection pool for every call (polling included)."""

    base_url: str
    api_key: str | None = None
    timeout_s: float = 60.0

    _pool: httpx.AsyncClient | None = field(default=None, init=False, repr=False)

    async def __aenter__(self) -> Client:
        headers = {"x-api-key": self.api_key} if self.api_key else {}
        self._pool = httpx.AsyncClient(base_url=self.base_url.rstrip("/"), headers=headers, timeout=self.timeout_s)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._pool is not None:
            await self._pool.aclose()
            self._pool = None

    @property
    def _http(self) -> httpx.AsyncClient:
        if self._pool is None:
            raise RuntimeError("use the client as `async with Client(...) as client`")
        return self._pool

    @staticmethod
    def _check(response: httpx.Response) -> Any:
        if response.status_code >= 400:
            path = f"{response.request.method} {response.request.url.path}"
            try:
                body = response.json()
                message, json_body = str(body.get("error", response.text)), isinstance(body, dict) and "error" in body
            except (ValueError, AttributeError):
                message, json_body = response.text[:200], False
            raise ApiError(response.status_code, message, path, json_body)
        return response.json()

    async def register(self) -> str:
        return str(self._check(await self._http.post("/register"))["uuid"])

    async def upload(
        self,
        uuid: str,
        files: Sequence[Path],
        topk: int,
        seq_start: int = 0,
        concurrency: int = 4,
        on_done: Callable[[int, Path], Awaitable[None] | None] | None = None,
    ) -> Uploaded:
        """Upload concurrently; the i-th file gets seq ``seq_start + i``. A file the server refuses (not an image,
        corrupt, too large, a conflict: ``REFUSED``) is skipped and reported, the others go on; anything else (the
        session unknown, the key wrong, the server down) stops the upload."""
        gate = asyncio.Semaphore(concurrency)
        uploaded = Uploaded()

        sizes = await asyncio.to_thread(lambda: [path.stat().st_size for path in files])

        async def one(index: int, path: Path) -> None:
            seq = seq_start + index
            if (size := sizes[index]) > MAX_IMAGE_BYTES:  # refused here, not after sending it
                uploaded.refused.append((path, seq, f"{mib(size)}, over the {mib(MAX_IMAGE_BYTES)} an image may have"))
            else:
                await send(seq, path)
            if on_done is not None:
                maybe = on_done(index, path)
                if maybe is not None:
                    await maybe

        async def send(seq: int, path: Path) -> None:
            async with gate:
                data = await asyncio.to_thread(path.read_bytes)
                response = await self.upload_bytes(uuid, seq, topk, path.name, data)
            try:
                self._check(response)
                uploaded.accepted.append(seq)
            except ApiError as exc:
                if exc.status not in REFUSED:
                    raise
                uploaded.refused.append((path, seq, f"error {exc.status}: {exc.message}"))

        await asyncio.gather(*(one(i, p) for i, p in enumerate(files)))
        uploaded.accepted.sort()
        uploaded.refused.sort(key=lambda refusal: refusal[1])
        return uploaded

    async def upload_bytes(self, uuid: str, seq: int, topk: int, name: str, data: bytes) -> httpx.Response:
        """``POST /image``; above ``INLINE_LIMIT`` (what a Lambda request can carry) a presigned S3 upload and
        ``POST /image/confirm`` instead. The answer of the call that accepts or refuses the image."""
        form = {"uuid": uuid, "seq": str(seq), "topk": str(topk)}
        if len(data) <= INLINE_LIMIT:
            return await self._post_retrying_busy("/image", data=form, files={"payload": (name, data)})
        target = self._check(await self._http.post("/upload-url", data={"uuid": uuid, "seq": str(seq)}))
        async with httpx.AsyncClient(timeout=self.timeout_s) as s3:  # S3 gets no API key
            sent = await s3.post(target["url"], data=target["fields"], files={"file": (name, data)})
        if sent.status_code >= 300:
            raise ApiError(sent.status_code, f"the presigned upload of {name} to S3 failed: {sent.text[:300]}")
        return await self._post_retrying_busy("/image/confirm", data={**form, "key": target["key"]})

    async def _post_retrying_busy(self, path: str, attempts: int = 6, **kwargs: Any) -> httpx.Response:
        """POST; a 503 (server busy, or a dependency down) is retried after its ``Retry-After`` (uploads are
        idempotent: the same seq with the same bytes is accepted once)."""
        for _ in range(attempts - 1):
            response = await self._http.post(path, **kwargs)
            if response.status_code != 503:
                return response
            retry_after = response.headers.get("retry-after", "1")
            await asyncio.sleep(min(10.0, float(retry_after)) if retry_after.isdigit() else 1.0)
        return await self._http.post(path, **kwargs)

    async def classify(self, name: str, data: bytes, topk: int, wait_s: float) -> dict[str, Any]:
        """``POST /classify``: the result when the server has it within ``wait_s`` (status done or failed), else
        status queued with ``poll``, the ``GET /result`` that will hold it."""
        form = {"topk": str(topk), "wait": f"{wait_s:g}"}
        response = await self._post_retrying_busy("/classify", data=form, files={"payload": (name, data)})
        answer: dict[str, Any] = self._check(response)
        return answer

    async def results(self, uuid: str, seq_start: int, seq_end: int) -> list[dict[str, Any]]:
        """The finished results of the range, every page of it (``MAX_RANGE`` seqs per query; a page that would
        not fit a Lambda response stops early at ``nextSeq``)."""
        return (await self.results_and_pending(uuid, seq_start, seq_end))[0]

    async def results_and_pending(
        self, uuid: str, seq_start: int, seq_end: int
    ) -> tuple[list[dict[str, Any]], set[int]]:
        """The finished results of the range and the seqs still queued (a seq in neither was never accepted)."""
        items: list[dict[str, Any]] = []
        pending: set[int] = set()
        start: int | None = seq_start
        while start is not None and start <= seq_end:
            end = min(seq_end, start + 999)
            params: dict[str, str | int] = {"uuid": uuid, "seqStart": start, "seqEnd": end}
            page = self._check(await self._http.get("/result", params=params))
            items += page["items"]
            pending.update(page.get("pending") or [])
            start = page.get("nextSeq") or end + 1
        return items, pending

    async def wait(
        self,
        uuid: str,
        seq_start: int,
        seq_end: int,
        timeout_s: float = 600.0,
        poll_s: float = 0.5,
        on_progress: Callable[[int, int], None] | None = None,
        seqs: Collection[int] | None = None,
    ) -> list[dict[str, Any]]:
        """Poll until every seq of the range (or of ``seqs``, e.g. the accepted ones) has a final status, or none
        of the others is still queued (a seq the server never accepted will not come)."""
        wanted = set(range(seq_start, seq_end + 1) if seqs is None else seqs)
        expected = len(wanted)
        deadline = asyncio.get_running_loop().time() + timeout_s
        while True:
            found, pending = await self.results_and_pending(uuid, seq_start, seq_end)
            items = [i for i in found if i["seq"] in wanted]
            finished = len(items)  # finished seqs only; queued ones are listed apart
            if on_progress is not None:
                on_progress(finished, finished + len(pending & wanted))
            if finished >= expected or not pending & wanted:
                return items
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"{finished} of {expected} results after {timeout_s:.0f}s")
            await asyncio.sleep(poll_s)
