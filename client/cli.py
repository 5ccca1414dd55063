"""``faasinfer``: register, upload files or folders, wait for results with a progress bar, run the demo loop."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from .api import ApiError, Client, image_files

console = Console()
PHOTOS = Path(__file__).resolve().parent.parent / "demo" / "photos"


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )


def results_table(items: Sequence[dict[str, Any]], names: dict[int, str] | None = None) -> Table:
    table = Table(title="results")
    table.add_column("seq", justify="right")
    if names:
        table.add_column("file")
    table.add_column("status")
    table.add_column("top-k (score)")
    for item in items:
        if item["status"] == "done":
            ranked = ", ".join(
                f"{label} ({score:.3f})" for label, score in zip(item["predictions"], item["scores"], strict=True)
            )
        else:
            ranked = item.get("error") or ""
        row = [str(item["seq"]), *([names.get(item["seq"], "")] if names else []), item["status"], ranked]
        table.add_row(*row)
    return table


async def _upload(client: Client, args: argparse.Namespace) -> int:
    files = image_files([Path(p) for p in args.paths])
    if not files:
        console.print("[red]no image files found[/red]")
        return 2
    session = args.uuid or await client.register()
    console.print(f"session [bold]{session}[/bold]")
    with _progress() as progress:
        task = progress.add_task("uploading", total=len(files))
        await client.upload(
            session, files, args.topk, args.seq_start, args.concurrency, on_done=lambda i, p: progress.advance(task)
        )
    seq_end = args.seq_start + len(files) - 1
    console.print(f"uploaded seq {args.seq_start}..{seq_end}")
    if args.wait:
        items = await _wait(client, session, args.seq_start, seq_end, args.timeout)
        console.print(results_table(items, {args.seq_start + i: p.name for i, p in enumerate(files)}))
        return 0 if all(i["status"] == "done" for i in items) else 1
    return 0


async def _wait(client: Client, session: str, start: int, end: int, timeout_s: float) -> list[dict[str, Any]]:
    with _progress() as progress:
        task = progress.add_task("classifying", total=end - start + 1)
        return await client.wait(
            session, start, end, timeout_s, on_progress=lambda done, total: progress.update(task, completed=done)
        )


async def _results(client: Client, args: argparse.Namespace) -> int:
    if args.wait:
        items = await _wait(client, args.uuid, args.seq_start, args.seq_end, args.timeout)
    else:
        items = await client.results(args.uuid, args.seq_start, args.seq_end)
    console.print(results_table(items))
    return 0


async def _demo(client: Client, args: argparse.Namespace) -> int:
    """The prototype's demo client: periodic uploads of the sample photos, windowed polling."""
    files = image_files([Path(args.photos)])
    session = await client.register()
    console.print(f"session [bold]{session}[/bold]: {args.rounds} rounds of {len(files)} photos")
    for round_ in range(args.rounds):
        start = round_ * len(files)
        await client.upload(session, files, args.topk, start)
        items = await _wait(client, session, start, start + len(files) - 1, args.timeout)
        console.print(results_table(items, {start + i: p.name for i, p in enumerate(files)}))
        if round_ + 1 < args.rounds:
            await asyncio.sleep(args.interval)
    return 0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="faasinfer", description=__doc__)
    p.add_argument(
        "--url",
        default=os.environ.get("FAASINFER_URL", "http://127.0.0.1:8000"),
        help="base URL of a deployment (local runtime or API Gateway); env FAASINFER_URL",
    )
    p.add_argument("--api-key", default=os.environ.get("FAASINFER_API_KEY"), help="env FAASINFER_API_KEY")
    p.add_argument("--debug", action="store_true", help="print the traceback of a failure")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("register", help="create a session and print its uuid")
    up = sub.add_parser("upload", help="upload image files or folders")
    up.add_argument("paths", nargs="+")
    up.add_argument("--uuid", help="existing session (default: register a new one)")
    up.add_argument("--topk", type=int, default=5)
    up.add_argument("--seq-start", type=int, default=0)
    up.add_argument("--concurrency", type=int, default=4)
    up.add_argument("--wait", action="store_true", help="then wait for the results and print them")
    up.add_argument("--timeout", type=float, default=600)
    res = sub.add_parser("results", help="print the results of a seq range")
    res.add_argument("--uuid", required=True)
    res.add_argument("--seq-start", type=int, default=0)
    res.add_argument("--seq-end", type=int, required=True)
    res.add_argument("--wait", action="store_true", help="poll until all are done, with a progress bar")
    res.add_argument("--timeout", type=float, default=600)
    demo = sub.add_parser("demo", help="periodic uploads of the sample photos, like the prototype's client")
    demo.add_argument("--photos", default=str(PHOTOS))
    demo.add_argument("--rounds", type=int, default=3)
    demo.add_argument("--interval", type=float, default=2.0)
    demo.add_argument("--topk", type=int, default=5)
    demo.add_argument("--timeout", type=float, default=600)
    return p.parse_args(argv)


async def run(args: argparse.Namespace) -> int:
    async with Client(args.url, args.api_key) as client:
        if args.command == "register":
            console.print(await client.register())
            return 0
        if args.command == "upload":
            return await _upload(client, args)
        if args.command == "results":
            return await _results(client, args)
        return await _demo(client, args)


def main(argv: Sequence[str] | None = None) -> int:
    """Every failure is one line saying what failed and what to try, and a non-zero exit; ``--debug`` adds the
    traceback."""
    args = parse_args(argv)
    if not args.url.startswith(("http://", "https://")):
        message = f"--url {args.url!r} must start with http:// or https:// (e.g. http://127.0.0.1:8000)"
        console.print(f"[red]{message}[/red]", soft_wrap=True)
        return 2
    if args.command == "upload" and (missing := [p for p in args.paths if not Path(p).exists()]):
        console.print(f"[red]no such file or folder: {', '.join(missing)}[/red]", soft_wrap=True)  # before registering
        return 2
    try:
        return asyncio.run(run(args))
    except Exception as exc:
        if args.debug:
            console.print_exception()
        console.print(f"[red]{_one_line(exc, args.url)}[/red]", soft_wrap=True)
        return 1


def _one_line(exc: Exception, url: str) -> str:
    if isinstance(exc, ApiError):
        return f"error {exc.status}: {exc.message}"
    if isinstance(exc, httpx.ConnectError):
        return f"cannot reach {url} ({exc}); is the server running? `make run` starts one locally"
    if isinstance(exc, httpx.TimeoutException):
        return f"{url} did not answer in time ({type(exc).__name__}); try again, or a longer --timeout"
    if isinstance(exc, httpx.HTTPError):
        return f"request to {url} failed: {type(exc).__name__}: {exc}"
    if isinstance(exc, FileNotFoundError):
        return f"no such file or folder: {exc.filename}"
    if isinstance(exc, TimeoutError):
        return f"gave up waiting: {exc}; results may still come (`faasinfer results --uuid ... --wait`)"
    return f"{type(exc).__name__}: {exc} (--debug shows where)"


if __name__ == "__main__":
    sys.exit(main())
