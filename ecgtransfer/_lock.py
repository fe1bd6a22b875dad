"""One writer per output folder: an advisory ``fcntl.flock`` lock file beside the folder.

The lock of ``PARENT/NAME`` is ``PARENT/.NAME.lock``; beside, not inside, because a store appears by renaming a
finished temporary folder onto ``NAME``, and so that nothing is created inside a folder before it is known to
be usable. The holder writes ``{"pid", "host", "started", "argv"}`` into it. A second writer does not wait:
it stops with a :class:`~ecgtransfer.errors.BusyError` naming the holder. The kernel drops a ``flock`` when
its process dies, so a lock file that can be locked but still names a process is the leftover of a writer
killed hard; it is taken over with a warning. The lock file is removed on release (after checking, on
acquisition, that the locked file is still the one at the path, so a remove racing an acquisition is safe).
"""
from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import json
import logging
import os
import socket
import sys
from pathlib import Path
from typing import Any, Iterator

from ecgtransfer.errors import BusyError

log = logging.getLogger(__name__)


def lock_path(folder: str | os.PathLike) -> Path:
    """The lock file of ``folder``: ``.NAME.lock`` in its (resolved) parent."""
    folder = Path(os.path.abspath(folder))
    parent = Path(os.path.realpath(folder.parent))
    return parent / f".{folder.name}.lock"


def _read_holder(fd: int) -> dict[str, Any] | None:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        raw = os.read(fd, 65536)
    except OSError:
        return None
    if not raw.strip():
        return None
    try:
        info = json.loads(raw)
    except ValueError:
        return {"raw": raw[:200].decode("utf-8", "replace").strip()}
    return info if isinstance(info, dict) else {"raw": str(info)[:200]}


def describe_holder(info: dict[str, Any] | None) -> str:
    """``pid 123 on host h, started 2026-01-01T00:00:00+00:00`` (or what is known)."""
    if not info:
        return "an unknown process (the lock file is empty)"
    if "pid" not in info:
        return f"an unknown process (lock file text {info.get('raw', '')!r})"
    return f"pid {info.get('pid')} on host {info.get('host', '?')}, started {info.get('started', '?')}"


class FolderLock:
    """The writer lock of one output folder; :meth:`acquire` / :meth:`release` or use as a context manager.

    Args:
        folder: the output folder (need not exist; its parent is created).
        what: how the folder is called in messages (``"run directory"``, ``"segment store"``, ...).
    """

    def __init__(self, folder: str | os.PathLike, *, what: str = "folder") -> None:
        self.folder = Path(folder)
        self.what = what
        self.path = lock_path(folder)
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> "FolderLock":
        """Take the lock; :class:`BusyError` naming the holder when another process has it (``OSError`` when
        the lock file cannot be created)."""
        if self._fd is not None:
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
        for _ in range(100):  # retries only when the file was removed between open and flock
            try:
                fd = os.open(self.path, flags, 0o644)
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    raise BusyError(f"lock file {self.path} of {self.what} {self.folder} is a symbolic link; "
                                    "remove it") from exc
                raise  # the caller names the folder it could not create (e.g. a file where a folder should be)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                holder = _read_holder(fd)
                os.close(fd)
                if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise BusyError(f"{self.what} {self.folder} is being written by another process "
                                    f"({describe_holder(holder)}; lock {self.path}); wait for it to finish or "
                                    "write elsewhere") from None
                raise BusyError(f"cannot lock {self.path} ({exc.strerror or exc})") from exc
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path, follow_symlinks=False).st_ino
            except FileNotFoundError:
                same = False
            if not same:  # the previous holder removed the file after we opened it: lock the new one
                os.close(fd)
                continue
            stale = _read_holder(fd)
            if stale:
                log.warning("%s %s: taking over the lock left by %s, which no longer holds it (killed?)",
                            self.what, self.folder, describe_holder(stale))
            info = {"pid": os.getpid(), "host": socket.gethostname(),
                    "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                    "argv": sys.argv[:8]}
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            os.write(fd, (json.dumps(info) + "\n").encode())
            os.fsync(fd)
            self._fd = fd
            return self
        raise BusyError(f"cannot lock {self.path}: it keeps being replaced")  # pragma: no cover

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            os.unlink(self.path)
        with contextlib.suppress(OSError):
            os.close(self._fd)
        self._fd = None

    def __enter__(self) -> "FolderLock":
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike, *, what: str = "folder", enabled: bool = True) -> Iterator[FolderLock]:
    """Hold the writer lock of ``folder`` for the block (``enabled=False``: a no-op, e.g. on torchrun rank > 0)."""
    lock = FolderLock(folder, what=what)
    if not enabled:
        yield lock
        return
    with lock:
        yield lock


__all__ = ["FolderLock", "folder_lock", "lock_path", "describe_holder"]
