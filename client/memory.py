"""The last session this user uploaded to, remembered in the user's config folder so that ``faasinfer results``
works without arguments: per deployment URL (a session of one server means nothing to another), with the file
name of each accepted seq."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class LastSession:
    uuid: str
    seq_start: int
    seq_end: int
    names: dict[int, str] = field(default_factory=dict)  # seq -> file name, for the accepted seqs


def path() -> Path:
    """``$FAASINFER_CONFIG_DIR``, else ``$XDG_CONFIG_HOME/faasinfer``, else ``~/.config/faasinfer``."""
    base = os.environ.get("FAASINFER_CONFIG_DIR") or (
        Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "faasinfer"
    )
    return Path(base) / "last-sessions.json"


def _key(url: str) -> str:
    return url.rstrip("/")


def _all() -> dict[str, Any]:
    try:
        stored = json.loads(path().read_text())
    except (OSError, ValueError):
        return {}
    return stored if isinstance(stored, dict) else {}


def remember(url: str, session: LastSession) -> None:
    """The last session with an accepted upload at ``url``."""
    stored = _all()
    names = {str(seq): name for seq, name in session.names.items()}
    stored[_key(url)] = {"uuid": session.uuid, "seq_start": session.seq_start, "seq_end": session.seq_end,
                         "names": names}  # fmt: skip
    target = path()
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(stored))


def recall(url: str) -> LastSession | None:
    entry = _all().get(_key(url))
    if not isinstance(entry, dict):
        return None
    try:
        names = {int(seq): str(name) for seq, name in dict(entry.get("names") or {}).items()}
        return LastSession(str(entry["uuid"]), int(entry["seq_start"]), int(entry["seq_end"]), names)
    except (KeyError, TypeError, ValueError):
        return None
