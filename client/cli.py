"""faasinfer: classify one image, register, upload files or folders, wait for results, run the demo loop."""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import json
import os
import ssl
import sys
from collections.abc import Sequence
from pathlib import Path

import httpx
from rich.markup import escape

from . import commands
from .api import MAX_IMAGE_BYTES, MAX_TOPK, ApiError, Client, mib
from .commands import NothingAccepted, UsageError, notes

PHOTOS = Path(__file__).resolve().parent.parent / "demo" / "photos"


class HELP(argparse.ArgumentDefaultsHelpFormatter):
    """A default is said once: not for flags and unset options, not when the help text already says it."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if action.default in (None, False, argparse.SUPPRESS) or "default" in text:
            return text
        return super()._get_help_string(action)


def _version() -> str:
    try:
        return importlib.metadata.version("faasinfer")
    except importlib.metadata.PackageNotFoundError:
        return "unknown (not installed)"


def _connection_options(parser: argparse.ArgumentParser, defaults: bool) -> None:
    """Given before or after the command; after it they win (a subcommand's copy has no defaults of its own)."""

    def default(value: object) -> object:
        return value if defaults else argparse.SUPPRESS

    parser.add_argument(
        "--url",
        default=default(os.environ.get("FAASINFER_URL", "http://127.0.0.1:8000")),
        help="base URL of a deployment (local runtime or API Gateway); env FAASINFER_URL",
    )
    parser.add_argument("--api-key", default=default(os.environ.get("FAASINFER_API_KEY")), help="env FAASINFER_API_KEY")
    parser.add_argument("--json", action="store_true", default=default(False), help="JSON on stdout, for scripts")
    parser.add_argument("--debug", action="store_true", default=default(False), help="print a failure's traceback")


def _command(sub: argparse._SubParsersAction[argparse.ArgumentParser], name: str, help: str) -> argparse.ArgumentParser:
    parser = sub.add_parser(name, formatter_class=HELP, help=help, description=help)
    _connection_options(parser, defaults=False)
    return parser


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="faasinfer", description=__doc__, formatter_class=HELP)
    p.add_argument("--version", action="version", version=f"faasinfer {_version()}")
    _connection_options(p, defaults=True)
    sub = p.add_subparsers(dest="command", required=True)
    _command(sub, "register", help="create a session and print its uuid")
    up = _command(sub, "upload", help="upload image files or folders (a refused file is skipped and reported)")
    up.add_argument("paths", nargs="+", help="image files and folders (their images, in name order)")
    up.add_argument("--uuid", help="an existing session (default: register a new one)")
    up.add_argument("--topk", type=int, default=5, help="labels per image")
    up.add_argument("--seq-start", type=int, default=0, help="seq of the first file; the next get +1 each")
    up.add_argument("--concurrency", type=int, default=4, help="uploads in flight")
    up.add_argument("--wait", action="store_true", help="then wait for the results and print them")
    up.add_argument("--timeout", type=float, default=600, help="seconds to wait for the results")
    one = _command(sub, "classify", help="classify one image in one call and print its labels")
    one.add_argument("path", help="an image file")
    one.add_argument("--topk", type=int, default=5, help="labels to print")
    one.add_argument("--wait", type=float, default=10, help="seconds the server waits for the result (at most 25)")
    res = _command(sub, "results", help="print the results of a seq range (default: the last upload's)")
    res.add_argument("--uuid", help="session (default: the last upload's, remembered)")
    res.add_argument("--seq-start", type=int, help="first seq (default: 0, or the last upload's)")
    res.add_argument("--seq-end", type=int, help="last seq (default: the last upload's)")
    res.add_argument("--wait", action="store_true", help="poll until all are finished, with a progress bar")
    res.add_argument("--timeout", type=float, default=600, help="seconds to wait with --wait")
    demo = _command(sub, "demo", help="periodic uploads of the sample photos, like the prototype's client")
    demo.add_argument("--photos", default=str(PHOTOS), help="folder of images")
    demo.add_argument("--rounds", type=int, default=3, help="how many times to upload them")
    demo.add_argument("--interval", type=float, default=2.0, help="seconds between rounds")
    demo.add_argument("--topk", type=int, default=5, help="labels per image")
    demo.add_argument("--timeout", type=float, default=600, help="seconds to wait for a round's results")
    return p.parse_args(argv)


async def run(args: argparse.Namespace) -> int:
    handlers = {
        "register": commands.register, "upload": commands.upload, "results": commands.results,
        "classify": commands.classify,
    }  # fmt: skip
    async with Client(args.url, args.api_key) as client:
        return await handlers.get(args.command, commands.demo)(client, args)


def main(argv: Sequence[str] | None = None) -> int:
    """Every failure is one line saying what failed and what to try (under ``--json`` also ``{"error": …}`` on
    stdout), and a non-zero exit: 2 for a command that cannot run as given, 1 for one that failed; ``--debug`` adds
    the traceback."""
    args = parse_args(argv)
    if (refusal := _refusal(args)) is not None:
        return _fail(args, refusal, 2)
    try:
        return asyncio.run(run(args))
    except UsageError as exc:
        return _fail(args, str(exc), 2)
    except NothingAccepted as exc:
        return _fail(args, str(exc), 1)
    except Exception as exc:
        if args.debug:
            notes.print_exception()
        return _fail(args, _one_line(exc, args.url), 1)


def _fail(args: argparse.Namespace, message: str, code: int) -> int:
    notes.print(f"[red]{escape(message)}[/red]", soft_wrap=True, highlight=False)
    if args.json:
        sys.stdout.write(json.dumps({"error": message}) + "\n")
    return code


def _refusal(args: argparse.Namespace) -> str | None:
    """What makes the command unable to run, found before anything is sent."""
    if not args.url.startswith(("http://", "https://")):
        return f"--url {args.url!r} must start with http:// or https:// (e.g. http://127.0.0.1:8000)"
    if not 1 <= getattr(args, "topk", 1) <= MAX_TOPK:
        return f"--topk {args.topk} is out of range: 1 to {MAX_TOPK}"
    if args.command == "upload" and (missing := [p for p in args.paths if not Path(p).exists()]):
        return f"no such file or folder: {', '.join(missing)}"  # before registering
    if args.command == "classify":
        path = Path(args.path)
        if not path.is_file():
            return f"no such file: {args.path}"
        if (size := path.stat().st_size) > MAX_IMAGE_BYTES:
            return f"{args.path} is {mib(size)}, over the {mib(MAX_IMAGE_BYTES)} an image may have"
    return None


def _one_line(exc: Exception, url: str) -> str:
    if isinstance(exc, ApiError):
        return _api_error(exc, url)
    if isinstance(exc, httpx.ConnectError) and (_tls(exc) or "SSL" in str(exc)):
        return f"TLS with {url} failed ({exc}): does the server speak HTTPS, and is its certificate trusted?"
    if isinstance(exc, httpx.ConnectError):
        return f"cannot reach {url} ({exc}); is the server running? `make run` starts one locally"
    if isinstance(exc, httpx.RemoteProtocolError):
        return f"{url} did not answer in HTTP ({exc}): if it speaks HTTPS, use an https:// URL"
    if isinstance(exc, httpx.TimeoutException):
        return f"{url} did not answer in time ({type(exc).__name__}); try again, or a longer --timeout"
    if isinstance(exc, httpx.HTTPError):
        return f"request to {url} failed: {type(exc).__name__}: {exc}"
    if isinstance(exc, FileNotFoundError):
        return f"no such file or folder: {exc.filename}"
    if isinstance(exc, TimeoutError):
        return f"gave up waiting: {exc}; results may still come (`faasinfer results --wait`)"
    return f"{type(exc).__name__}: {exc} (--debug shows where)"


def _tls(exc: BaseException) -> bool:
    return isinstance(exc.__cause__, ssl.SSLError) or isinstance(exc.__context__, ssl.SSLError)


def _api_error(exc: ApiError, url: str) -> str:
    if exc.status == 401:
        return f"error 401: {exc.message}; give the key with --api-key or FAASINFER_API_KEY"
    if exc.status in (404, 405) and (not exc.json_body or exc.message in ("not found", "Not Found")):
        return (
            f"no faasinfer API at {url} ({exc.status} for {exc.path}): check --url "
            "(a deployed API's URL is the stack's ApiUrl output)"
        )
    return f"error {exc.status}: {exc.message}"


if __name__ == "__main__":
    sys.exit(main())
