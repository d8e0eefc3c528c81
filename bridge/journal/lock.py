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


# The files the bridge keeps in state_dir: each must be readable and writable by the user it runs as.
_OWN_FILES = ("journal.sqlite3", "journal.sqlite3-wal", "journal.sqlite3-shm", "journal.sqlite3-journal", LOCK_NAME)


def prepare_state_dir(path: Path) -> None:
    """Create ``state_dir`` if needed and check that this user can use it; one clear line if not."""
    try:
        _prepare(path)
    except OSError as exc:
        raise unusable_state_dir(path, exc) from None


def unusable_state_dir(path: Path, exc: OSError) -> StateDirError:
    """The one line for an OS error the checks did not foresee, naming the directory this user may not enter."""
    blocked = next((p for p in reversed(path.parents) if p.is_dir() and not os.access(p, os.X_OK)), None)
    if blocked is not None:
        return StateDirError(
            f"cannot use state_dir {path}: this user (uid {os.getuid()}{_owner(blocked)}) may not enter {blocked} "
            "(Permission denied); give the user hubbridge runs as access to it, or point state_dir elsewhere"
        )
    return StateDirError(
        f"cannot use state_dir {path}: {exc.strerror or exc} ({exc.filename or path}); give the user hubbridge runs "
        f"as (uid {os.getuid()}) access to it, or point state_dir elsewhere"
    )


def _prepare(path: Path) -> None:
    if path.is_file():
        raise StateDirError(f"state_dir {path} is a file, not a directory; point state_dir at a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise StateDirError(f"state_dir {path} exists and is not a directory; point state_dir at a directory") from None
    except OSError as exc:
        raise StateDirError(
            f"cannot create state_dir {path}: {exc.strerror or exc}; create it and give the user hubbridge runs as "
            f"(uid {os.getuid()}) write access (systemd: StateDirectory=hubbridge)"
        ) from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise StateDirError(
            f"state_dir {path} is not writable by this user (uid {os.getuid()}{_owner(path)}); give it to the user "
            "hubbridge runs as, or point state_dir elsewhere"
        )
    if not os.access(path, os.R_OK):
        raise StateDirError(
            f"state_dir {path}: this user (uid {os.getuid()}{_owner(path)}) cannot list it; give it to the user "
            "hubbridge runs as (mode 700 is enough), or point state_dir elsewhere"
        )
    for name in _OWN_FILES:
        child = path / name
        if not (child.exists() or child.is_symlink()):
            continue
        if not child.is_file():
            raise StateDirError(
                f"{child} is not a regular file; move it out of the way (the bridge keeps its own files there)"
            )
        if not os.access(child, os.R_OK | os.W_OK):
            raise StateDirError(
                f"{child} is not readable and writable by this user (uid {os.getuid()}{_owner(child)}); "
                f"run hubbridge as its owner, or chown the files in {path} to uid {os.getuid()}"
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
            raise StateDirError(
                f"cannot open the lock file {self.path}: {exc.strerror or exc}; it must be readable and writable by "
                f"the user hubbridge runs as (uid {os.getuid()}{_owner(self.path)})"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(fd, 32).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise StateDirLocked(
                f"another hubbridge (pid {holder}) is already using state_dir {self.path.parent}; stop it first, "
                "or give each bridge its own state_dir"
            ) from None
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        except OSError as exc:  # a full disk, say: the lock holds all the same, but say why the pid is missing
            os.close(fd)
            raise StateDirError(f"cannot write the lock file {self.path}: {exc.strerror or exc}") from None
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
