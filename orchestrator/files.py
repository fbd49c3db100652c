"""Reading a small file the operator named, in bounded time and memory (a leaf).

Used for every file whose path comes from a manifest or the config: the YAML files
themselves (manifest/reading.py) and secret files (`{file: PATH}`, systemd
credentials: secrets.py). Only a regular file is opened, without blocking (a FIFO
put in a file's place opens without a writer; a terminal never becomes ours), its
type is checked again on the open descriptor (the path may have been replaced
meanwhile), and at most `limit` bytes are read (a file that grows past it while it
is read is refused too: `/dev/zero` is refused before it is opened).

It must never block, read past the limit, or quote what a file holds in a message.
"""

from __future__ import annotations

import enum
import os
import stat

__all__ = ["ReadError", "ReadFailure", "file_kind", "read_regular"]


class ReadFailure(enum.Enum):
    """Why a file's bytes were not taken: what a caller decides on, never the message."""

    UNREADABLE = "unreadable"
    """It could not be examined, opened or read: what it holds is unknown."""
    NOT_REGULAR = "not-regular"
    """A directory, FIFO, socket or device: never read."""
    TOO_BIG = "too-big"
    """Larger than the limit: not read."""


class ReadError(Exception):
    """A file that was not read: why (`failure`) and the reason in words, which quote
    nothing of the file (`it is a FIFO (named pipe), not a regular file`)."""

    def __init__(self, failure: ReadFailure, reason: str) -> None:
        super().__init__(reason)
        self.failure = failure
        self.reason = reason


_OPEN_FLAGS = (
    os.O_RDONLY
    | getattr(os, "O_NONBLOCK", 0)  # a FIFO put in the file's place opens without a writer
    | getattr(os, "O_NOCTTY", 0)  # ... and a terminal never becomes ours
    | getattr(os, "O_CLOEXEC", 0)
)

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def file_kind(mode: int) -> str:
    """What a file that is not a regular one is, in words (`a directory`)."""
    return next((name for test, name in _KINDS if test(mode)), "something else")


def read_regular(
    path: str | os.PathLike[str], limit: int, st: os.stat_result | None = None
) -> bytes:
    """The bytes of the regular file at `path`, of at most `limit` bytes, or ReadError.

    `st`: a `stat` of the path just taken by the caller, else it is taken here. A path
    that cannot be one (a NUL in it) cannot be read, like a missing one.
    """
    try:
        st = os.stat(path) if st is None else st
        _check_regular(st, limit)
        fd = os.open(path, _OPEN_FLAGS)
    except (OSError, ValueError) as exc:
        raise ReadError(ReadFailure.UNREADABLE, _reason(exc)) from None
    try:
        _check_regular(os.fstat(fd), limit)
        chunks: list[bytes] = []
        size = 0
        while size <= limit:
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
            size += len(chunk)
        raise _too_big(max(size, os.fstat(fd).st_size), limit)  # it grew since it was measured
    except OSError as exc:
        raise ReadError(ReadFailure.UNREADABLE, _reason(exc)) from None
    finally:
        os.close(fd)


def _check_regular(st: os.stat_result, limit: int) -> None:
    if not stat.S_ISREG(st.st_mode):
        kind = file_kind(st.st_mode)
        raise ReadError(ReadFailure.NOT_REGULAR, f"it is {kind}, not a regular file")
    if st.st_size > limit:
        raise _too_big(st.st_size, limit)


def _too_big(size: int, limit: int) -> ReadError:
    return ReadError(
        ReadFailure.TOO_BIG, f"it is {size} bytes; the limit is {limit} ({_kib(limit)})"
    )


def _kib(size: int) -> str:
    return f"{size >> 20} MiB" if size % (1 << 20) == 0 else f"{size / 1024:g} KiB"


def _reason(exc: OSError | ValueError) -> str:
    if isinstance(exc, ValueError):  # os.stat's "embedded null byte"
        return "the path holds a NUL byte"
    return exc.strerror or type(exc).__name__
