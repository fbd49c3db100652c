"""The writer lock: one process at a time writes to a SQLite store.

A store is one database file, whatever path names it: a symlink to it, a path
spelled with `..`, a hard link or a bind mount are other names for the same file,
and a second writer through any of them would send every call twice. So the lock
is on the file, in two parts, both `flock(LOCK_EX | LOCK_NB)`:

- **The lock file** `<db>.lock` beside the database's real path (`lock_path_for`
  resolves symlinks and `..` first, so every name that resolves to one file finds
  one lock file). It exists before the database does (a new store is created under
  it), and the holder writes who it is into it (JSON: pid, host, since, command) so
  that a refused writer can name it. It is only read while someone else holds the
  lock and may then be empty (a lock file its holder has just made): the holder is
  then named by the pid the kernel reports, as below. The record is written over
  the last one before the file is cut to its length, so that one holder's record
  never reads as empty to the next one's refused writer.
- **The database file itself** (its device and inode), held through a descriptor
  opened read-only as soon as the file exists (store.py: at open, after a
  creation) and kept until the lock is released. A name that resolves elsewhere (a
  hard link, a bind mount) has a lock file of its own but meets this lock. The
  refused writer cannot find the holder's lock file from the inode, so it names
  the holder from what the kernel says (`/proc/locks` on Linux: the pid; the host
  is this one, flock being local), or "another process".

The kernel drops a flock when its descriptor is closed, which includes any death of
the process (SIGKILL too), so a lock is never stale and the lock file is never
removed.

Why flock on the database and not byte-range (fcntl) locks: SQLite locks the same
file with POSIX byte-range locks, which belong to the process, and closing *any*
descriptor of the file drops all of them, SQLite's too; a byte-range lock of ours
would be dropped by SQLite's own closes (and F_OFD locks, which are not, cannot say
who holds them). On Linux a flock is a lock of its own kind: it neither conflicts
with POSIX locks nor is dropped by them, so this lock and SQLite's never meet.
(Network filesystems emulate flock with POSIX locks; the store's WAL mode does not
work on them anyway.) The same rule is why a second Store of this process is
refused from a table of the files this process holds (`_HELD`), before it opens the
database: closing its descriptor would drop the SQLite locks of the first.

A store written back after its file was removed (`SqliteStore.restore_if_removed`)
is a new file with a new inode: store.py locks it (`hold`) before it is renamed
into place, and lets the old one go (`keep_only`) once it no longer uses it, so the
process holds its store throughout.

Must never: block (a second writer fails at once), write to the database file, or
take a lock for a reader (`status`, `plan --offline`).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from orchestrator.state.errors import (
    StoreAccessError,
    StoreBusyError,
    StoreError,
    StoreMissingError,
)

_HOLDER_MAX_BYTES = 4096
_BUSY = (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES)
_PROC_LOCKS = Path("/proc/locks")

Identity = tuple[int, int]  # (device, inode)

# The database files this process holds, by identity: the holder record of each.
_HELD: dict[Identity, dict[str, Any]] = {}
# Reentrant: an abandoned WriterLock released by the garbage collector (`__del__`)
# may run while this thread is inside `hold`.
_HELD_LOCK = threading.RLock()


def lock_path_for(db_path: Path) -> Path:
    """The side file that carries the writer lock of the store at `db_path`: beside
    the file the path resolves to (symlinks and `..` resolved), so every name of one
    file that resolves to it finds the same lock file."""
    real = Path(os.path.realpath(db_path))
    return real.with_name(real.name + ".lock")


class WriterLock:
    """An acquired writer lock; `release()` (or the process's death) frees it."""

    def __init__(self, db_path: Path, fd: int, record: dict[str, Any]) -> None:
        self.db_path = db_path
        self._fd: int | None = fd
        self._record = record
        # Descriptors of the database files held (normally one; two while a written
        # back store replaces the removed one).
        self._files: dict[Identity, int] = {}

    @classmethod
    def acquire(cls, db_path: Path, command: str) -> WriterLock:
        """Take the lock file without waiting, or raise StoreBusyError naming the
        holder. The database file is held by `hold` once it exists."""
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
                holder = _read_holder(fd) or _kernel_holder(_identity_of(os.fstat(fd)))
            finally:
                os.close(fd)
            if exc.errno in _BUSY:
                raise StoreBusyError(db_path, **holder) from None
            raise StoreError(f"cannot lock {path}: {exc.strerror}") from None
        since = datetime.now(UTC).replace(microsecond=0)
        record = {"pid": os.getpid(), "host": socket.gethostname(), "command": command}
        try:
            data = json.dumps({**record, "since": since.isoformat()}, separators=(",", ":"))
            written = os.pwrite(fd, data.encode(), 0)
            os.ftruncate(fd, written)
        except OSError as exc:
            os.close(fd)
            raise StoreError(f"cannot write the lock file {path}: {exc.strerror}") from None
        return cls(db_path, fd, {**record, "since": since})

    @property
    def held(self) -> bool:
        return self._fd is not None

    def hold(self, path: Path) -> Identity:
        """Hold the database file at `path` as well (the files held before stay held);
        its identity. StoreBusyError naming the holder when another writer holds that
        file (through any name), StoreMissingError when there is none."""
        try:
            identity = _identity_of(os.stat(path))
        except FileNotFoundError:
            raise StoreMissingError(self.db_path) from None
        except OSError as exc:
            raise _unreadable(path, exc) from None
        with _HELD_LOCK:
            if identity in self._files:
                return identity
            # Another Store of this process: refused without opening the file (see the
            # module docstring).
            mine = _HELD.get(identity)
            if mine is not None:
                raise StoreBusyError(self.db_path, **mine)
            try:
                fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
            except FileNotFoundError:
                raise StoreMissingError(self.db_path) from None
            except OSError as exc:
                raise _unreadable(path, exc) from None
            try:
                identity = _identity_of(os.fstat(fd))  # what was opened, whatever `path` is now
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                if exc.errno in _BUSY:
                    raise StoreBusyError(self.db_path, **_kernel_holder(identity)) from None
                raise StoreError(f"cannot lock state store {path}: {exc.strerror}") from None
            self._files[identity] = fd
            _HELD[identity] = self._record
        return identity

    def head(self, identity: Identity, size: int) -> bytes:
        """The first `size` bytes of the held database file `identity`, read through
        the descriptor that holds it. Never open and close another one: that would
        drop this process's SQLite locks on the file (see the module docstring), and a
        reader closing then takes itself for the last connection and deletes the WAL."""
        with _HELD_LOCK:
            return os.pread(self._files[identity], size, 0)

    def keep_only(self, identity: Identity | None) -> None:
        """Let go of every database file held but the one with `identity` (a store
        written back, or the removed one when writing back failed)."""
        with _HELD_LOCK:
            for other in [i for i in self._files if i != identity]:
                _HELD.pop(other, None)
                os.close(self._files.pop(other))

    def __del__(self) -> None:
        # An abandoned lock (its Store dropped without aclose) goes with its object,
        # as a file's descriptor does; nothing can write through it any more.
        with contextlib.suppress(Exception):
            self.release()

    def release(self) -> None:
        """Let go of the database files, forget the holder record and drop the lock
        (closing the descriptor drops it). Call it after the database is closed: a
        closed descriptor drops the process's SQLite locks on the file."""
        self.keep_only(None)
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
        finally:
            os.close(fd)


def _identity_of(st: os.stat_result) -> Identity:
    return st.st_dev, st.st_ino


def _unreadable(path: Path, exc: OSError) -> StoreAccessError:
    return StoreAccessError(
        path,
        f"cannot open state store {path} to lock it: {exc.strerror or exc}; the writer "
        "needs read and write access to it (check the owner, the mode, `lsattr` and "
        "read-only mounts)",
    )


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


def _kernel_holder(identity: Identity) -> dict[str, Any]:
    """The pid (and so this host) of the process holding a flock on the file with
    `identity`, from /proc/locks (Linux); empty when it cannot be told. A line reads
    `1: FLOCK  ADVISORY  WRITE 1234 fe:00:2146449 0 EOF` (device numbers in hex, the
    inode in decimal); a waiter's line has `->` after the number and is skipped."""
    device, inode = identity
    key = f"{os.major(device):02x}:{os.minor(device):02x}:{inode}"
    try:
        lines = _PROC_LOCKS.read_text(encoding="ascii", errors="replace").splitlines()
    except OSError:
        return {}
    for line in lines:
        fields = line.split()
        if fields[1:4] == ["FLOCK", "ADVISORY", "WRITE"] and fields[5:6] == [key]:
            pid = int(fields[4]) if fields[4].isdigit() else 0
            # 0: a process of a pid namespace this one cannot see (another container)
            if pid > 0:
                return {"pid": pid, "host": socket.gethostname()}
    return {}
