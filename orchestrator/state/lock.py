"""The writer lock: one process at a time writes to a SQLite store.

The lock is `flock(LOCK_EX | LOCK_NB)` on a side file `<db path>.lock`. The
kernel drops it when its descriptor is closed, which includes any death of the
process (SIGKILL too), so a lock is never stale and the file is never removed.
The holder writes who it is into the file (JSON: pid, host, since, command) so
that a refused writer can name it. The file is only read while someone else
holds the lock and may then be empty or half-written; that reads as "another
process".
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from orchestrator.state.errors import StoreBusyError, StoreError

_HOLDER_MAX_BYTES = 4096


def lock_path_for(db_path: Path) -> Path:
    """The side file that carries the writer lock of the store at `db_path`."""
    return db_path.with_name(db_path.name + ".lock")


class WriterLock:
    """An acquired writer lock; `release()` (or the process's death) frees it."""

    def __init__(self, db_path: Path, fd: int) -> None:
        self.db_path = db_path
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, db_path: Path, command: str) -> WriterLock:
        """Take the lock without waiting, or raise StoreBusyError naming the holder."""
        path = lock_path_for(db_path)
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(path, flags, 0o600)
        except OSError as exc:
            raise StoreError(f"cannot open the lock file {path}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            try:
                holder = _read_holder(fd)
            finally:
                os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise StoreBusyError(db_path, **holder) from None
            raise StoreError(f"cannot lock {path}: {exc.strerror}") from None
        try:
            record = {
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "since": datetime.now(UTC).replace(microsecond=0).isoformat(),
                "command": command,
            }
            data = json.dumps(record, separators=(",", ":")).encode()
            os.ftruncate(fd, 0)
            os.pwrite(fd, data, 0)
        except OSError as exc:
            os.close(fd)
            raise StoreError(f"cannot write the lock file {path}: {exc.strerror}") from None
        return cls(db_path, fd)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __del__(self) -> None:
        # An abandoned lock (its Store dropped without aclose) goes with its object,
        # as a file's descriptor does; nothing can write through it any more.
        with contextlib.suppress(Exception):
            self.release()

    def release(self) -> None:
        """Forget the holder record and drop the lock (closing the descriptor drops it)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
        finally:
            os.close(fd)


def _read_holder(fd: int) -> dict[str, Any]:
    """pid, host, since and command from the lock file; whatever cannot be read is left out."""
    try:
        raw = os.pread(fd, _HOLDER_MAX_BYTES, 0)
        data = json.loads(raw.decode())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    holder: dict[str, Any] = {}
    pid = data.get("pid")
    if isinstance(pid, int) and not isinstance(pid, bool) and pid > 0:
        holder["pid"] = pid
    host = data.get("host")
    if isinstance(host, str) and host:
        holder["host"] = host
    command = data.get("command")
    if isinstance(command, str) and command:
        holder["command"] = command
    since = data.get("since")
    if isinstance(since, str):
        with contextlib.suppress(ValueError):
            parsed = datetime.fromisoformat(since)
            if parsed.tzinfo is not None:
                holder["since"] = parsed
    return holder
