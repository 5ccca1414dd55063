"""The demo run by ``python -m runtime.local --demo``: upload the shipped photos, wait, print their top-k as a table."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from rich.console import Console
from rich.table import Table

from client.api import Client, image_files

PHOTOS = Path(__file__).resolve().parent.parent / "demo" / "photos"


def demo_table(items: list[dict[str, Any]], names: dict[int, str], seconds: dict[int, float]) -> Table:
    """photo | model | top-k labels with scores | time (upload accepted → result queryable)."""
    models = {item.get("model") or "" for item in items}
    one_model = len(models) == 1
    table = Table(title="faasinfer demo: top-k per photo", caption=f"model: {models.pop()}" if one_model else None)
    table.add_column("photo")
    if not one_model:
        table.add_column("model", overflow="fold")
    table.add_column("top-k (score)")
    table.add_column("time", justify="right")
    for item in items:
        if item["status"] == "done":
            ranked = "\n".join(
                f"{label} {score:.3f}" for label, score in zip(item["predictions"], item["scores"], strict=True)
            )
        else:
            ranked = f"[red]FAILED: {item['error']}[/red]"
        seq = item["seq"]
        took = f"{seconds[seq] * 1000:.0f} ms" if seq in seconds else ""
        model = [] if one_model else [item.get("model") or ""]
        table.add_row(names.get(seq, str(seq)), *model, ranked, took)
    return table


async def run_demo(
    base_url: str, photos: Path = PHOTOS, topk: int = 5, timeout_s: float = 300.0, console: Console | None = None
) -> list[dict[str, Any]]:
    files = image_files([photos])
    accepted: dict[int, float] = {}
    seconds: dict[int, float] = {}
    async with Client(base_url) as client:
        session = await client.register()
        await client.upload(session, files, topk, on_done=lambda i, _: accepted.__setitem__(i, time.monotonic()))
        deadline = time.monotonic() + timeout_s
        while True:
            items = await client.results(session, 0, len(files) - 1)
            now = time.monotonic()
            for item in items:
                if item["status"] != "queued":
                    seconds.setdefault(item["seq"], now - accepted[item["seq"]])
            if len(seconds) == len(files):
                break
            if now > deadline:
                raise TimeoutError(f"{len(seconds)} of {len(files)} results after {timeout_s:.0f}s")
            await asyncio.sleep(0.05)
    (console or Console()).print(demo_table(items, {i: f.name for i, f in enumerate(files)}, seconds))
    return items


def next_steps(base_url: str, default_port: int = 8000) -> str:
    """What to do once the demo has shown the stack works: serve it, and use it."""
    url = urlsplit(base_url)
    make_run = "make run" if url.port == default_port else f"make run PORT={url.port}"
    return (
        f"next: `{make_run}` serves the same stack until Ctrl-C;\n"
        f"      open {base_url}/ in a browser to classify your own photos,\n"
        "      or use the command line: .venv/bin/faasinfer --help"
    )


async def run_demo_unless(stopped: asyncio.Event, base_url: str) -> int:
    """The demo, then what to do next, unless ``stopped`` comes first; the exit code (1: a photo failed)."""
    console = Console()
    demo = asyncio.create_task(run_demo(base_url, console=console))
    waiting = asyncio.create_task(stopped.wait())
    await asyncio.wait([demo, waiting], return_when=asyncio.FIRST_COMPLETED)
    waiting.cancel()
    if not demo.done():
        demo.cancel()
        return 0
    console.print(next_steps(base_url), markup=False, highlight=False, soft_wrap=True)
    return 0 if all(item["status"] == "done" for item in demo.result()) else 1
