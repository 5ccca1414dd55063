"""Lambda's task root is read-only: an artifact's environment here sees its folder mounted read-only too.

On Lambda the deployment package is ``/var/task`` on a read-only file system; only ``/tmp`` can be written, and a
write anywhere else fails with ``EROFS`` ("Read-only file system"). ``--build-dir`` runs each environment from
the artifact folder, which belongs to whoever built it, so a function writing next to its code would pass here
and fail on AWS. Each environment therefore starts in a mount namespace of its own (util-linux ``unshare``) where
its folder is bind-mounted onto itself read-only, then ``exec``s the runtime client: the same process, the same
pid (the memory watch still reads it), and nothing changes outside the namespace. A machine that cannot make such
a mount (no ``unshare``, or neither root nor unprivileged user namespaces) runs the folder writable and says so
once.
"""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from functools import cache
from pathlib import Path

log = logging.getLogger(__name__)

# $0 is the folder, "$@" the command: the mount happens inside the namespace, then the command replaces the shell;
# `cd` again, for a working directory entered before the mount would still be the writable folder beneath it. A
# folder that cannot be mounted so (e.g. on a file system whose flags a user namespace may not change) runs writable,
# said on stderr, rather than not at all.
_MOUNT_THEN_EXEC = (
    'if {mount} --bind "$0" "$0" && {mount} -o remount,bind,ro "$0" "$0"; then cd "$0"; '
    'else echo "faasinfer: $0 cannot be mounted read-only here: it stays writable" >&2; fi; exec "$@"'
)


def _wrapper(folder: Path) -> list[str] | None:
    unshare, mount, sh = shutil.which("unshare"), shutil.which("mount"), shutil.which("sh")
    if not (unshare and mount and sh):
        return None
    as_user = [] if os.geteuid() == 0 else ["--map-root-user"]  # unprivileged: a user namespace of its own
    script = _MOUNT_THEN_EXEC.format(mount=shlex.quote(mount))
    return [unshare, "--mount", "--propagation", "private", *as_user, sh, "-c", script, str(folder)]


@cache
def read_only_mounts_work() -> bool:
    """Whether this machine makes read-only mounts for environments: tried once on a scratch folder, which
    must then refuse a write inside the namespace."""
    with tempfile.TemporaryDirectory(prefix="faasinfer-ro-") as scratch:
        wrapper = _wrapper(Path(scratch))
        if wrapper is None:
            return False
        write = '(: > "$0/written") 2>/dev/null && exit 3 || exit 0'  # refused: 0; written: 3
        probe = [*wrapper, str(shutil.which("sh")), "-c", write, scratch]
        done = subprocess.run(probe, capture_output=True, check=False)
        return done.returncode == 0 and not (Path(scratch) / "written").exists()


def read_only(folder: Path, command: Sequence[str]) -> list[str]:
    """``command``, run with ``folder`` mounted read-only when this machine can; else as it is, said once."""
    if read_only_mounts_work():
        wrapper = _wrapper(folder)
        assert wrapper is not None
        return [*wrapper, *command]
    _warn_writable()
    return list(command)


@cache
def _warn_writable() -> None:
    log.warning(
        "artifact folders stay writable here (no mount namespace: needs util-linux unshare and root or user "
        "namespaces); on Lambda /var/task is read-only and only /tmp can be written"
    )
