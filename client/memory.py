"""The last session this user uploaded to, remembered in the user's config folder so that ``faasinfer results``
works without arguments."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class LastSession:
    uuid: str
    seq_start: int
    seq_end: int


def path() -> Path:
    """``$FAASINFER_CONFIG_DIR``, else ``$XDG_CONFIG_HOME/faasinfer``, else ``~/.config/faasinfer``."""
    base = os.environ.get("FAASINFER_CONFIG_DIR") or (
        Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "faasinfer"
    )
    return Path(base) / "last-session.json"


def remember(session: LastSession) -> None:
    target = path()
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(asdict(session)))


def recall() -> LastSession | None:
    try:
        return LastSession(**json.loads(path().read_text()))
    except (OSError, ValueError, TypeError):
        return None
