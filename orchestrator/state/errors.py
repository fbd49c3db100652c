"""What the state store raises (kept apart so that every module of the store shares it).

Every failure of the store, at open or in any later operation, is a StoreError
whose message is one line naming the store's path (or, for PostgreSQL, its URL
without the password), what is wrong and what to do; no sqlite3 or psycopg
exception, and no bare KeyError, leaves the store. `StoreError` hangs under the
package's one root, `orchestrator.errors.OrchestratorError`:

    StoreError
    ├── StoreMissingError        no store where one should be
    ├── StoreCorruptError        not a usable store (empty, foreign, damaged)
    ├── StoreAccessError         cannot be read or written by us
    ├── StoreBusyError           another process holds the writer lock
    │   └── StoreLockedError     another process holds an SQLite lock
    ├── StoreUnavailableError    the server (PostgreSQL) cannot be reached
    ├── StoreConflictError       a second live session for one target
    ├── StoreFencedError         a session write of an App ID this replica lost
    └── SessionNotFoundError     no session with that id
"""

from __future__ import annotations

from dataclasses import KW_ONLY, dataclass
from datetime import datetime
from pathlib import Path

from orchestrator.errors import OrchestratorError

# How to recover from a store that is gone or damaged (shared by several messages).
RECOVER = (
    "restore it from a backup, or move it aside and run `orchestrator init` to create "
    "a new one (a new empty store forgets every live recording)"
)


class StoreError(OrchestratorError):
    """The store cannot be opened or used (bad URL, unreadable file, newer schema)."""


# eq=False: equal only to itself (and hashable); repr=False: the message is its repr.
@dataclass(eq=False, repr=False)
class _Described(StoreError):
    """A StoreError whose fields are declared once, as a dataclass's, and whose
    message `_message` makes of them."""

    def __post_init__(self) -> None:
        super().__init__(self._message())

    def _message(self) -> str:
        raise NotImplementedError


@dataclass(eq=False, repr=False)
class StoreMissingError(_Described):
    """No store exists at the path (for PostgreSQL: the database has no orchestrator
    schema) and the caller did not ask to create one. `backup`: the copy a daemon
    wrote when the store was removed under it and could not put back (SQLite's
    `<db>.restore`), when there is one: the message then says to move it into place."""

    path: Path | str
    _: KW_ONLY
    backup: Path | None = None

    def _message(self) -> str:
        path, backup = self.path, self.backup
        if backup is not None:
            return (
                f"no state store at {path}, but {backup} is the copy of it that the daemon "
                f"wrote when it was removed: with no orchestrator running on it, move {backup} "
                f"to {path}, check it with `orchestrator status`, then start the daemon"
            )
        return (
            f"no state store at {path}: create it with `orchestrator init` (with SQLite "
            "the daemon's very first start does too); if it existed, restore it from a backup "
            "— a new empty store forgets every live recording"
        )


@dataclass(eq=False, repr=False)
class StoreCorruptError(_Described):
    """The file at the path is not a usable state store: empty, not an SQLite
    database, a database without our schema, or damaged (a query found it
    malformed). `problem` says which, in a few words."""

    path: Path | str
    problem: str

    def _message(self) -> str:
        return f"state store {self.path} {self.problem}; {RECOVER}"


@dataclass(eq=False, repr=False)
class StoreAccessError(_Described):
    """The file or its directory cannot be read or written by this process
    (permissions, an immutable attribute, a read-only mount); for PostgreSQL, the
    role lacks a privilege or the server is a read-only standby."""

    path: Path | str
    message: str

    def _message(self) -> str:
        return self.message


@dataclass(eq=False, repr=False)
class StoreBusyError(_Described):
    """Another process holds the store's writer lock.

    The holder is whatever that process wrote into the lock file; any part of it
    may be None when the file is empty or half-written (it is then "another
    process"). StoreLockedError, a subclass, is the same situation one level down:
    some process holds an SQLite lock on the database itself.
    """

    path: Path
    _: KW_ONLY
    pid: int | None = None
    host: str | None = None
    since: datetime | None = None
    command: str | None = None

    def _message(self) -> str:
        who = f'"{self.command}"' if self.command else "another process"
        details = []
        if self.pid is not None:
            details.append(f"pid {self.pid}")
        if self.host:
            details.append(f"on {self.host}")
        if self.since is not None:
            details.append(f"since {self.since.isoformat()}")
        if details:
            who += f" ({' '.join(details)})"
        return (
            f"state store {self.path} is in use by {who}; "
            "only one process may write to a store at a time"
        )


class StoreLockedError(StoreBusyError):
    """A process that does not hold our writer lock (a `sqlite3` shell, a backup
    tool) holds an SQLite lock on the database longer than the busy timeout. Who it
    is, is unknown (the holder's attributes are None)."""

    def __init__(self, path: Path, detail: str, busy_timeout: float) -> None:
        self.detail = detail
        self.busy_timeout = busy_timeout
        super().__init__(path)

    def _message(self) -> str:
        return (
            f"state store {self.path} is locked by another process (not an orchestrator "
            f"holding the writer lock): {self.detail} after waiting {self.busy_timeout:g} s; "
            f"find it with `fuser {self.path}` and end it (then retry)"
        )


@dataclass(eq=False, repr=False)
class StoreUnavailableError(_Described):
    """The store's server (PostgreSQL) cannot be reached or refuses the connection:
    down, unreachable, timing out, or a wrong user, password or database. `path`
    is the URL without its password; `detail` what the client library said (with any
    password removed). The same operation may succeed later."""

    path: str
    detail: str

    def _message(self) -> str:
        return (
            f"state store {self.path} is unavailable: {self.detail}; check that the "
            "PostgreSQL server is running and reachable from this host and that the URL's "
            "host, port, user, password and database are right, then retry"
        )


@dataclass(eq=False, repr=False)
class StoreConflictError(_Described):
    """A write would make two live sessions record one target (app ID, channel, uid),
    which the store's unique index forbids: another process (a replica, or a second
    daemon) already manages that recording."""

    path: Path | str
    app_id: str
    channel: str
    uid: int

    def _message(self) -> str:
        return (
            f"state store {self.path} already has a live session recording app ID "
            f"{self.app_id} channel {self.channel!r} uid {self.uid}; another orchestrator "
            "process may be managing it: reload the live sessions (the next reconcile "
            "adopts it) instead of starting a second recording"
        )


@dataclass(eq=False, repr=False)
class StoreFencedError(_Described):
    """A session write was refused: this process no longer owns the session's App ID
    (another replica claimed it since, or this one lost or released it). Nothing was
    written: an intent refused so is never followed by its API call, and an outcome
    refused so is left to the new owner, which finds the intent and settles it."""

    path: str
    app_id: str

    def _message(self) -> str:
        return (
            f"state store {self.path}: this replica no longer owns app ID {self.app_id} "
            "(another replica claimed it); nothing about its sessions was written"
        )


@dataclass(eq=False, repr=False)
class SessionNotFoundError(_Described):
    """No session has this id in the store (a read or write of a session that was
    never created here)."""

    path: Path | str
    session_id: int

    def _message(self) -> str:
        return f"state store {self.path} has no session {self.session_id}"
