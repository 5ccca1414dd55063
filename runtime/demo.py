"""The demo run by ``python -m runtime.local --demo``: upload the shipped photos, wait, print their top-k."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from client.api import Client, image_files

PHOTOS = Path(__file__).resolve().parent.parent / "demo" / "photos"


async def run_demo(
    base_url: str, photos: Path = PHOTOS, topk: int = 5, timeout_s: float = 300.0
) -> list[dict[str, Any]]:
    files = image_files([photos])
    async with Client(base_url) as client:
        session = await client.register()
        await client.upload(session, files, topk)
        items = await client.wait(session, 0, len(files) - 1, timeout_s)
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
