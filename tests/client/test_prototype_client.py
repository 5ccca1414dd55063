"""The prototype's own NodeJS demo client, ported: it must keep working unchanged against this service.

Its loop: post one image every 100 ms with topk 3; every 100 ms ask ``/result`` for a window of 3 seqs after the
highest seq it has seen, print each item, and move the window to the highest seq it printed. It reads only
``items[].seq`` and ``items[].predictions``; listing queued seqs as items (with no predictions) made it print
them empty and skip past them for good.
"""

from __future__ import annotations

import asyncio
import time

import httpx

from tests.helpers import photo

IMAGES = 30


async def _prototype_client(base: str) -> list[tuple[int, list[str]]]:
    printed: list[tuple[int, list[str]]] = []
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        uuid = (await http.post("/register")).json()["uuid"]
        uploads_done = asyncio.Event()

        async def upload() -> None:
            for seq in range(IMAGES):
                form = {"uuid": uuid, "seq": str(seq), "topk": "3"}
                response = await http.post("/image", data=form, files={"payload": ("a.jpg", photo("coffee.jpg"))})
                assert response.status_code == 202, response.text
                await asyncio.sleep(0.1)
            uploads_done.set()

        async def poll() -> None:
            highest = -1
            deadline = time.monotonic() + 120
            while highest < IMAGES - 1 and time.monotonic() < deadline:
                params = {"uuid": uuid, "seqStart": highest + 1, "seqEnd": highest + 3}
                for item in (await http.get("/result", params=params)).json()["items"]:
                    printed.append((item["seq"], item["predictions"]))  # console.log(`seq: ${seq}`, predictions)
                    highest = max(highest, item["seq"])
                await asyncio.sleep(0.1)

        await asyncio.gather(upload(), poll())
    return printed


def test_the_prototype_client_prints_every_image_with_its_three_labels(local_simulation: str) -> None:
    printed = asyncio.run(_prototype_client(local_simulation))
    assert printed, "nothing was printed"
    assert all(len(labels) == 3 for _, labels in printed), [p for p in printed if len(p[1]) != 3]
    seqs = [seq for seq, _ in printed]
    assert seqs == list(range(IMAGES))  # every image, once, in order
