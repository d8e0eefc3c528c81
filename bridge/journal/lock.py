"""The state directory: checked before use, and locked for the life of the process that runs the bridge.

Two bridges on one journal would both think they own every cursor; the second one must refuse at start with a
line that names the first. The lock is an advisory ``flock`` on ``<state_dir>/hubbridge.lock``: the kernel drops it
when the process dies, even by SIGKILL, so a stale lock file never blocks a restart.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from bridge.errors import StateDirError, StateDirLocked

LOCK_NAME = "hubbridge.lock"


def prepare_state_dir(path: Path) -> None:
    """Create ``state_dir`` if needed and check that this user can write it; one clear line if not."""
    if path.exists() and not path.is_dir():
        raise StateDirError(f"state_dir {path} is a file, not a directory; point state_dir at a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StateDirError(
            f"cannot create state_dir {path}: {exc.strerror or exc}; create it and give the user hubbridge runs as "
            "write access (systemd: StateDirectory=hubbridge)"
        ) from None
    if not os.access(path, os.W_OK | os.X_OK):
        owner = _owner(path)
        raise StateDirError(
            f"state_dir {path} is not writable by this user (uid {os.getuid()}{owner}); give it to the user hubbridge "
            "runs as, or point state_dir elsewhere"
        )
    for child in path.iterdir():
        if child.name.startswith("journal.sqlite3") and child.is_file() and not os.access(child, os.R_OK | os.W_OK):
            raise StateDirError(
                f"{child} is not readable and writable by this user (uid {os.getuid()}{_owner(child)}); "
                f"run hubbridge as its owner, or chown the files in {path}"
            )


def _owner(path: Path) -> str:
    with contextlib.suppress(OSError):
        uid = path.stat().st_uid
        if uid != os.getuid():
            return f"; it belongs to uid {uid}"
    return ""


class StateDirLock:
    """Exclusive lock on a state directory, held until :meth:`release` (or the process ends)."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> None:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise StateDirError(f"cannot create the lock file {self.path}: {exc.strerror or exc}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(fd, 32).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise StateDirLocked(
                f"another hubbridge (pid {holder}) is already using state_dir {self.path.parent}; stop it first, "
                "or give each bridge its own state_dir"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
