"""What each CLI command does: tables (or ``--json``) on stdout, progress bars while waiting."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from . import memory
from .api import Client, Uploaded, image_files

console = Console()  # results: stdout
notes = Console(stderr=True)  # diagnostics, progress and failures: stderr


class UsageError(Exception):
    """A command that cannot run as given: one line saying what to do instead."""


class NothingAccepted(Exception):
    """``results --wait`` on a range where nothing was accepted: it returns at once, with exit code 1."""


def _progress(args: argparse.Namespace) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=notes,
        transient=False,
        disable=args.json or not notes.is_terminal,  # progress only on a terminal
    )


def _say(args: argparse.Namespace, text: str) -> None:
    if not args.json:
        notes.print(text, soft_wrap=True)


def _emit_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value) + "\n")  # plain, uncoloured: for scripts


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


async def register(client: Client, args: argparse.Namespace) -> int:
    uuid = await client.register()
    if args.json:
        _emit_json({"uuid": uuid})
    else:
        console.print(uuid)
    return 0


async def upload(client: Client, args: argparse.Namespace) -> int:
    files = image_files([Path(p) for p in args.paths])
    if not files:
        raise UsageError(f"no image files in {', '.join(args.paths)} (looked for .jpg .jpeg .png .webp .gif …)")
    uuid = args.uuid or await client.register()
    _say(args, f"session [bold]{uuid}[/bold]")
    with _progress(args) as progress:
        task = progress.add_task("uploading", total=len(files))
        uploaded = await client.upload(
            uuid, files, args.topk, args.seq_start, args.concurrency, on_done=lambda i, p: progress.advance(task)
        )
    seq_end = args.seq_start + len(files) - 1
    names = {args.seq_start + i: p.name for i, p in enumerate(files)}
    if uploaded.accepted:  # a session with nothing accepted is not worth coming back to
        kept = {seq: names[seq] for seq in uploaded.accepted}
        memory.remember(args.url, memory.LastSession(uuid, args.seq_start, seq_end, kept))
    items = await _wait(client, args, uuid, args.seq_start, seq_end, uploaded.accepted) if args.wait else None
    if args.json:
        named = None if items is None else _named(items, names)
        _emit_json({"uuid": uuid, **_report(uploaded), **({"items": named} if named is not None else {})})
    else:
        _say(args, f"uploaded {len(uploaded.accepted)} of {len(files)} files as seq {args.seq_start}..{seq_end}")
        if items is not None:
            console.print(results_table(items, names))
        for path, seq, why in uploaded.refused:
            notes.print(f"[yellow]skipped {path} (seq {seq}): {why}[/yellow]", soft_wrap=True)
        if items is None and uploaded.accepted:
            _say(args, "results: [bold]faasinfer results --wait[/bold] (this session is remembered)")
    failed = uploaded.refused or (items is not None and any(i["status"] != "done" for i in items))
    return 1 if failed else 0


def _named(items: Sequence[dict[str, Any]], names: dict[int, str]) -> list[dict[str, Any]]:
    """Each item with the file its seq was uploaded from, when that is known."""
    return [{**item, "file": names[item["seq"]]} if item["seq"] in names else dict(item) for item in items]


def _report(uploaded: Uploaded) -> dict[str, Any]:
    refused = [{"file": str(path), "seq": seq, "error": why} for path, seq, why in uploaded.refused]
    return {"accepted": uploaded.accepted, "refused": refused}


async def _wait(
    client: Client, args: argparse.Namespace, uuid: str, start: int, end: int, seqs: Sequence[int] | None = None
) -> list[dict[str, Any]]:
    with _progress(args) as progress:
        task = progress.add_task("classifying", total=None)  # the client says how many it waits for
        return await client.wait(
            uuid,
            start,
            end,
            args.timeout,
            on_progress=lambda done, total: progress.update(task, completed=done, total=total),
            seqs=seqs,
        )


async def results(client: Client, args: argparse.Namespace) -> int:
    uuid, start, end, names = args.uuid, args.seq_start, args.seq_end, {}
    last = memory.recall(args.url)
    if uuid is None:
        if last is None:
            raise UsageError(
                f"no session given and none remembered for {args.url}: faasinfer results --uuid <uuid> --seq-end <N>"
            )
        uuid, start, end = (
            last.uuid,
            last.seq_start if start is None else start,
            last.seq_end if end is None else end,
        )
        _say(args, f"session [bold]{uuid}[/bold] (the last upload's), seq {start}..{end}")
    if end is None:
        raise UsageError("--seq-end is needed with --uuid (the last seq to show)")
    if last is not None and last.uuid == uuid:
        names = last.names
    start = 0 if start is None else start
    items = await _wait(client, args, uuid, start, end) if args.wait else await client.results(uuid, start, end)
    if args.wait and not items:
        raise NothingAccepted(f"nothing was accepted in session {uuid} at seq {start}..{end}: no result will come")
    if args.json:
        _emit_json({"uuid": uuid, "items": _named(items, names)})
    else:
        console.print(results_table(items, names))
    return 0


async def demo(client: Client, args: argparse.Namespace) -> int:
    """The prototype's demo client: periodic uploads of the sample photos, windowed polling."""
    files = image_files([Path(args.photos)])
    uuid = await client.register()
    _say(args, f"session [bold]{uuid}[/bold]: {args.rounds} rounds of {len(files)} photos")
    for round_ in range(args.rounds):
        start = round_ * len(files)
        uploaded = await client.upload(uuid, files, args.topk, start)
        items = await _wait(client, args, uuid, start, start + len(files) - 1, uploaded.accepted)
        names = {start + i: p.name for i, p in enumerate(files)}
        if args.json:
            _emit_json({"uuid": uuid, "items": items})
        else:
            console.print(results_table(items, names))
        if round_ + 1 < args.rounds:
            await asyncio.sleep(args.interval)
    return 0


async def classify(client: Client, args: argparse.Namespace) -> int:
    """One image in one call (``POST /classify``): its labels, or where to poll when they take longer than --wait."""
    path = Path(args.path)  # checked before the event loop (cli.main)
    answer = await client.classify(path.name, await asyncio.to_thread(path.read_bytes), args.topk, args.wait)
    answer["file"] = path.name
    if args.json:
        _emit_json(answer)
    elif answer["status"] == "queued":
        sys.stdout.write(f"{path.name}: still queued after {args.wait:g} s; "
                         f"`faasinfer results --uuid {answer['uuid']} --wait` prints it\n")  # fmt: skip
    elif answer["status"] == "failed":
        sys.stdout.write(f"{path.name}: failed: {answer['error']}\n")
    else:
        for label, score in zip(answer["predictions"], answer["scores"], strict=True):
            sys.stdout.write(f"{score:.3f}  {label}\n")
    return 0 if answer["status"] == "done" else 1
