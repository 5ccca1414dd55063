"""Hostile input on the running local stack: each answer is a 4xx naming the problem, and the connection lives on."""

from __future__ import annotations

import asyncio
import io
from typing import Any

import httpx
import pytest
from PIL import Image

from tests.helpers import photo


def _encoded(fmt: str, size: tuple[int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", size).save(buffer, format=fmt)
    return buffer.getvalue()


def _jpeg_claiming(width: int, height: int) -> bytes:
    """A small JPEG whose frame header claims ``width`` x ``height`` (the scan is the small image's)."""
    data = bytearray(_encoded("JPEG", (8, 8)))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return bytes(data)


async def _session(client: httpx.AsyncClient) -> str:
    return str((await client.post("/register")).json()["uuid"])


@pytest.mark.parametrize(
    ("payload", "size"),
    [(_encoded("PNG", (20_000, 1)), "20000x1"), (_jpeg_claiming(1, 19_000), "1x19000")],
    ids=["143-byte-png-20000x1", "small-jpeg-claiming-1x19000"],
)
def test_a_tiny_image_with_an_extreme_aspect_ratio_is_refused(local_simulation: str, payload: bytes, size: str) -> None:
    async def run() -> httpx.Response:
        async with httpx.AsyncClient(base_url=local_simulation, timeout=30) as client:
            session = await _session(client)
            form = {"uuid": session, "seq": "0", "topk": "1"}
            return await client.post("/image", data=form, files={"payload": ("x", payload)})

    response = asyncio.run(run())
    assert response.status_code == 400
    assert response.json()["error"].startswith(f"image dimensions {size} have an aspect ratio of")
    assert "beyond the limit of 20:1 (MAX_ASPECT_RATIO)" in response.json()["error"]


BAD_NUMBERS = ["²", "①", "١٢", "+-5", "--5", "1_000", "\uff15", "9" * 30, "-1"]


@pytest.mark.parametrize("value", BAD_NUMBERS)
def test_malformed_numbers_are_400s_naming_the_field_on_one_kept_alive_connection(
    local_simulation: str, value: str
) -> None:
    ports: set[int] = set()

    def port(response: httpx.Response) -> httpx.Response:
        ports.add(response.extensions["network_stream"].get_extra_info("client_addr")[1])
        return response

    async def run() -> list[tuple[str, httpx.Response]]:
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        answers: list[tuple[str, httpx.Response]] = []
        async with httpx.AsyncClient(base_url=local_simulation, timeout=30, limits=limits) as client:
            session = await _session(client)
            image = {"payload": ("c.jpg", photo())}
            for field in ("seq", "topk"):
                form: dict[str, Any] = {"uuid": session, "seq": "0", "topk": "1", field: value}
                answers.append((field, port(await client.post("/image", data=form, files=image))))
            batch = {"uuid": session, "seqStart": value, "topk": "1"}
            answers.append(("seqStart", port(await client.post("/images", data=batch, files=image))))
            for field in ("seqStart", "seqEnd"):
                query = {"uuid": session, "seqStart": "0", "seqEnd": "5", field: value}
                answers.append((field, port(await client.get("/result", params=query))))
            fine = await client.post("/image", data={"uuid": session, "seq": "1", "topk": "1"}, files=image)
            answers.append(("-", port(fine)))
        return answers

    answers = asyncio.run(run())
    *refused, (_, fine) = answers
    for field, response in refused:
        assert response.status_code == 400, (field, response.text)
        assert f"'{field}'" in response.json()["error"]
    assert fine.status_code == 202
    assert len(ports) == 1  # every answer came on the one connection: no error cost it


def test_a_burst_of_images_that_must_be_decoded_is_bounded_with_retryable_503s(local_simulation: str) -> None:
    """TIFFs are decoded at upload, two at a time per process: the rest of a burst are told to retry, and they
    are accepted when they do."""
    buffer = io.BytesIO()
    Image.new("RGB", (4000, 4000)).save(buffer, format="TIFF", compression="tiff_deflate")  # ~70 KB, ~0.13 s
    tiff = buffer.getvalue()

    async def run() -> tuple[list[httpx.Response], list[int]]:
        async with httpx.AsyncClient(base_url=local_simulation, timeout=60) as client:
            session = await _session(client)

            async def upload(seq: int) -> httpx.Response:
                form = {"uuid": session, "seq": str(seq), "topk": "1"}
                return await client.post("/image", data=form, files={"payload": ("x.tiff", tiff)})

            burst = await asyncio.gather(*(upload(seq) for seq in range(16)))
            retried = []
            for seq, response in enumerate(burst):
                while response.status_code == 503:
                    await asyncio.sleep(float(response.headers["retry-after"]))
                    response = await upload(seq)
                retried.append(response.status_code)
            return burst, retried

    burst, retried = asyncio.run(run())
    statuses = [r.status_code for r in burst]
    assert set(statuses) == {202, 503} and statuses.count(503) >= 2, statuses
    busy = next(r for r in burst if r.status_code == 503)
    assert busy.headers["retry-after"] == "1"
    assert busy.json()["error"] == "too many TIFF images are being checked at once; retry in a second"
    assert retried == [202] * 16
