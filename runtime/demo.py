"""The demo client: register, upload the shipped photos, wait for the results, print the top-k."""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from pathlib import Path
from typing import Any

import httpx

log = logging.getLogger(__name__)

PHOTOS = Path(__file__).resolve().parent.parent / "demo" / "photos"
SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"}


def photo_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in SUFFIXES)


async def run_demo(
    base_url: str, photos: Path = PHOTOS, topk: int = 5, timeout_s: float = 300.0
) -> list[dict[str, Any]]:
    files = photo_files(photos)
    async with httpx.AsyncClient(base_url=base_url, timeout=60) as client:
        session = (await client.post("/register")).raise_for_status().json()["uuid"]
        for seq, path in enumerate(files):
            response = await client.post(
                "/image",
                data={"uuid": session, "seq": str(seq), "topk": str(topk)},
                files={"payload": (path.name, path.read_bytes())},
            )
            response.raise_for_status()
        deadline = time.monotonic() + timeout_s
        while True:
            page = (
                (await client.get("/result", params={"uuid": session, "seqStart": 0, "seqEnd": len(files) - 1}))
                .raise_for_status()
                .json()
            )
            items: list[dict[str, Any]] = page["items"]
            if all(i["status"] != "queued" for i in items) and len(items) == len(files):
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"results not complete after {timeout_s}s: {items}")
            await asyncio.sleep(0.5)
    for item in items:
        name = files[item["seq"]].name
        if item["status"] == "done":
            ranked = ", ".join(
                f"{label} {score:.3f}" for label, score in zip(item["predictions"], item["scores"], strict=True)
            )
            sys.stdout.write(f"{name:>16}  [{item['model']}]  {ranked}\n")
        else:
            sys.stdout.write(f"{name:>16}  FAILED: {item['error']}\n")
    return items
