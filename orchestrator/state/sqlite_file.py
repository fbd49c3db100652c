"""The SQLite store's file as a file: the path a URL names, what can be told of the
file before SQLite opens it (it exists, is SQLite, can be written), and flushing it
to disk. store.py opens, reads and writes the database; this module never does.

Every OSError becomes a StoreError naming the path and what to check.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from pathlib import Path

from orchestrator.state.errors import (
    StoreAccessError,
    StoreCorruptError,
    StoreError,
    StoreMissingError,
)

_SQLITE_HEADER = b"SQLite format 3\x00"
_SQLITE_HEADER_SIZE = 100


def sqlite_path_from_url(url: str) -> Path:
    """`sqlite:///relative.db`, `sqlite:////abs/path.db` or a plain path -> a Path."""
    if url.startswith("sqlite:///"):
        rest = url[len("sqlite:///") :]
    elif url.startswith("sqlite://"):
        raise StoreError(f"unsupported SQLite URL {url!r}: use sqlite:///PATH")
    elif "://" in url:
        scheme = url.split("://", 1)[0]
        raise StoreError(f"unsupported state store URL scheme {scheme!r}: use sqlite:///PATH")
    else:
        rest = url
    if not rest:
        raise StoreError("the state store URL names no file")
    return Path(rest)


def exists(path: Path) -> bool:
    try:
        return path.exists()
    except OSError as exc:
        raise StoreAccessError(
            path, f"cannot look for state store {path}: {exc.strerror or exc}"
        ) from None


def check_file(path: Path) -> None:
    """What can be told from the file alone: it exists, is not empty and has an
    SQLite header. Never writes."""
    try:
        with path.open("rb") as file:
            head = file.read(_SQLITE_HEADER_SIZE)
    except FileNotFoundError:
        raise StoreMissingError(path) from None
    except OSError as exc:
        raise StoreAccessError(
            path, f"cannot read state store {path}: {exc.strerror or exc}"
        ) from None
    if not head:
        raise StoreCorruptError(
            path, "is empty (0 bytes), so it holds no record of live recordings"
        )
    if len(head) < _SQLITE_HEADER_SIZE or not head.startswith(_SQLITE_HEADER):
        raise StoreCorruptError(path, "is not an SQLite database (its header is wrong)")


def check_writable(path: Path) -> None:
    """A writer's check before SQLite opens the file: SQLite would silently open an
    unwritable file read-only and fail only at the first write."""
    try:
        fd = os.open(path, os.O_RDWR | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise StoreMissingError(path) from None
    except OSError as exc:
        raise StoreAccessError(
            path,
            f"cannot open state store {path} for writing: {exc.strerror or exc}; the writer "
            f"needs write access to it and to its directory {path.parent} (check the owner, "
            "the mode, `lsattr` and read-only mounts)",
        ) from None
    os.close(fd)


def fsync(path: Path) -> None:
    """Flush a file (or a directory's entries) to disk."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def detail(exc: OSError | sqlite3.Error) -> str:
    return (exc.strerror if isinstance(exc, OSError) else None) or str(exc) or repr(exc)


def identity(path: Path) -> tuple[int, int] | None:
    """(device, inode) of the file at `path`, or None when there is none."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


# The files SQLite keeps beside a database in WAL mode while it is open.
SIDES = ("-wal", "-shm")


def sides(path: Path) -> dict[str, tuple[int, int] | None]:
    """The identity of each of the WAL-mode files beside `path`."""
    return {side: identity(path.with_name(path.name + side)) for side in SIDES}


def lost(
    path: Path,
    opened: tuple[int, int],
    opened_sides: dict[str, tuple[int, int] | None],
    now_sides: dict[str, tuple[int, int] | None],
    head: Callable[[int], bytes],
) -> str | None:
    """Why the file at `path` is not the database a writer opened (`opened`, with
    `opened_sides` beside it; `now_sides`: `sides(path)` now), or None: removed or
    replaced, overwritten in place (its header is not SQLite's: a `truncate`, a `cp`
    of something else onto it), or its WAL or shared-memory file removed (what the
    writer commits goes to a file that no other connection, and no restart, will
    see). `head(n)`: the first n bytes of the opened file, read through a descriptor
    the writer keeps (opening and closing one here would drop the process's SQLite
    locks on it)."""
    if identity(path) != opened:
        return "was removed or replaced"
    try:
        first = head(len(_SQLITE_HEADER))
    except OSError:
        return None  # not readable now: the writer's own connection still is
    if first != _SQLITE_HEADER:
        return "was overwritten in place (it is no SQLite database now)"
    gone = [side for side, was in opened_sides.items() if was and now_sides[side] != was]
    if gone:
        return f"lost its {' and '.join(f'{path.name}{side}' for side in gone)} file(s)"
    return None
