"""The state store in one SQLite file: what is SQLite's own about keeping the `Store`
protocol (the protocol's methods and their SQL are written once, in base.py and
queries.py, for both stores).

The store remembers what the orchestrator owns on Agora's side (sessions, their
resource IDs and sids) and why sessions ended, so that a process killed at any
instant leaves a record from which the next run finishes or adopts the work.

Rules it keeps:
- Every write is its own committed transaction before the caller goes on
  (intent before a mutating API call, outcome after it).
- No secret value is ever written: callers pass hashes and references only, and
  queries.py checks at import that no column of the schema looks like a secret.
- SQLite runs in WAL mode with `synchronous=FULL`: a committed intent survives a
  crash of the process and of the machine.
- No SQLite call runs on the event loop: each Store owns one worker thread that
  owns the connection and runs every operation, one at a time and in the order
  the calls were made (a read issued after a write sees it).
- One writer per store: a writer holds the writer lock for its whole life, on
  `<db>.lock` beside the real file and on the database file itself, so that no
  other name of the file (a symlink, a hard link) lets a second writer in (see
  lock.py); it needs no fencing (`fence` is a no-op). Only a writer migrates the
  database (queries.MIGRATIONS, in one transaction). A reader (`status`, `plan
  --offline`) takes no lock, creates nothing and never migrates; WAL lets it read
  while the writer works.
- A file removed or replaced under a writer is written back from its open
  connection (`restore_if_removed`) through a complete backup, `<db>.restore`. A
  backup is never truncated or removed (only a newer complete one replaces it),
  the removed file's connection is used until the backup is in place, and while
  the path cannot take it (a directory) every attempt is a StoreAccessError naming
  the backup and what to do; `aclose` writes one last backup.
- Only an explicit creation (`create=True`: `orchestrator init`, the daemon's
  first start) creates a store, and it never overwrites a file. A missing store
  is StoreMissingError; an empty file, a file that is not SQLite, a database
  without our schema, or one a query finds malformed is StoreCorruptError. A
  store that was lost is never quietly replaced by an empty one, which would
  forget every live recording. Creation builds the database beside its final
  name and links it into place, so a crash never leaves a half-made store.
- No sqlite3 exception leaves the store: every open and every operation turns
  them into a StoreError subclass with a one-line message naming the path
  (`_store_error`). A process outside our writer lock that holds an SQLite lock
  longer than `busy_timeout` is StoreLockedError, after that wait, not a hang.
- The database (and so its WAL and shared-memory files, which SQLite creates
  with the database's mode) and the lock file are created 0600.
- It needs the SQLite library 3.35 or newer (RETURNING) with its JSON functions
  (`json_each`: built in since 3.38, compiled into most builds before); an older
  one is a StoreError at open, before any file is touched.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sqlite3
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote

from orchestrator.state.base import Batch, LiveTargetTaken, SqlStore, check_readable, upgrade
from orchestrator.state.columns import Codec, Row, session_summary
from orchestrator.state.errors import (
    StoreAccessError,
    StoreBusyError,
    StoreCorruptError,
    StoreError,
    StoreLockedError,
    StoreMissingError,
)
from orchestrator.state.lock import WriterLock
from orchestrator.state.model import AppOwner
from orchestrator.state.queries import SQLITE, known_version, latest_version
from orchestrator.state.sqlite_file import (
    SIDES,
    check_file,
    check_writable,
    detail,
    exists,
    fsync,
    identity,
    lost,
    sides,
    sqlite_path_from_url,
)

if TYPE_CHECKING:
    from orchestrator.state.protocol import Store

__all__ = [
    "DEFAULT_BUSY_TIMEOUT",
    "SqliteStore",
    "StoreAccessError",
    "StoreBusyError",
    "StoreCorruptError",
    "StoreError",
    "StoreLockedError",
    "StoreMissingError",
    "open_store",
    "session_summary",
    "sqlite_path_from_url",
]

_T = TypeVar("_T")

# Seconds an operation waits for an SQLite lock held by a process outside our writer
# lock before it fails with StoreLockedError (SQLite's own default, 30 s, reads as a hang).
DEFAULT_BUSY_TIMEOUT = 5.0
# The most memory (KiB) one connection keeps of the database's pages. Each pass reads
# the sessions of every manifest, so the pages it touches grow with the store's
# history, and SQLite caches them up to this bound: the daemon's memory grows by that
# much over its first minutes, then stays flat (benchmarks/results-soak.md). Set here,
# not left to the build's default (SQLITE_DEFAULT_CACHE_SIZE), so the bound is ours.
CACHE_KIB = 2048

# RETURNING came with SQLite 3.35 (March 2021).
_MIN_SQLITE = (3, 35, 0)


class _SqliteCodec(Codec):
    """SQLite's columns: datetimes as ISO 8601 text in UTC, JSON as compact text, and
    (having no arrays) a list parameter as a JSON array, which `json_each` unnests."""

    def write_array(self, values: Iterable[str]) -> str:
        return json.dumps(list(values))

    def write_stamp(self, value: datetime) -> str:
        return value.astimezone(UTC).isoformat()

    def read_stamp(self, value: Any) -> datetime:
        return datetime.fromisoformat(value)

    def write_json(self, value: Any) -> str:
        return json.dumps(value, sort_keys=True, separators=(",", ":"))

    def read_json(self, value: Any) -> Any:
        return json.loads(value)


_CODEC = _SqliteCodec()


_DEFAULT_HOLDER = "orchestrator"


def _has_schema_table(db: sqlite3.Connection) -> bool:
    row = db.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
    ).fetchone()
    return row is not None


def _stored_version(db: sqlite3.Connection, path: Path) -> int:
    if not _has_schema_table(db):
        return 0
    row = db.execute(SQLITE.stored_version).fetchone()
    stored = int(row[0]) if row and row[0] is not None else None
    has_tables = (
        stored is None
        and db.execute("SELECT 1 FROM sqlite_master WHERE name = 'sessions'").fetchone() is not None
    )
    return known_version(path, stored, has_tables)


@contextlib.contextmanager
def _immediate(db: sqlite3.Connection) -> Iterator[None]:
    """One write transaction: committed if the block succeeds, rolled back otherwise.
    A failed ROLLBACK (SQLite may already have rolled back, e.g. after a disk
    error) never hides the error that caused it."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
        raise


def _store_error(
    path: Path, exc: sqlite3.Error, *, writer: bool, busy_timeout: float
) -> StoreError:
    """The StoreError for an sqlite3 exception, by SQLite's (primary) result code."""
    code = getattr(exc, "sqlite_errorcode", None)
    primary = code & 0xFF if isinstance(code, int) else None
    detail = str(exc) or type(exc).__name__
    if primary in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
        return StoreLockedError(path, detail, busy_timeout)
    if primary in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB) or (
        primary is None and type(exc) is sqlite3.DatabaseError
    ):
        return StoreCorruptError(path, f"is damaged: {detail}")
    files = f"{path.name}-wal and {path.name}-shm in {path.parent}"
    checks = "(check the owner, the mode, `lsattr` and read-only mounts)"
    if primary in (sqlite3.SQLITE_READONLY, sqlite3.SQLITE_PERM, sqlite3.SQLITE_AUTH):
        return StoreAccessError(
            path,
            f"state store {path} cannot be written: {detail}; the writer needs write access "
            f"to it and to {files} {checks}",
        )
    if primary == sqlite3.SQLITE_CANTOPEN:
        if writer:
            need = f"the writer must be able to write it and to create {files}"
        else:
            need = (
                f"a reader needs {files} to exist (they do while the daemon runs) "
                "or to be creatable"
            )
        return StoreAccessError(path, f"cannot open state store {path}: {detail}; {need} {checks}")
    if primary == sqlite3.SQLITE_FULL:
        return StoreError(f"state store {path} cannot grow: {detail}; free space on its disk")
    if primary == sqlite3.SQLITE_IOERR:
        return StoreError(f"I/O error on state store {path}: {detail}; check its disk")
    return StoreError(f"state store {path} failed: {detail}")


class SqliteStore(SqlStore):
    """Sessions and per-manifest state in one SQLite file (the `Store` protocol).

    `writer=True` (the default) takes the store's writer lock for the life of the
    Store (StoreBusyError if another process, or another Store in this one, holds
    it), then migrates the database as needed. `holder` names the command in the
    lock file so that a refused writer can say who holds it. `writer=False` opens
    an existing, current database for reading only.

    Only `create=True` (a writer's) creates a missing store; without it a missing
    store is StoreMissingError. Either way a file that exists must be a valid
    store: an empty file, a non-SQLite file or a database without our schema is
    StoreCorruptError, and is never overwritten. `busy_timeout` is how long an
    operation waits for an SQLite lock held by some other process before
    StoreLockedError.

    Construction is synchronous (it waits for the worker thread to open the
    database); everything after it runs on the worker thread. `aclose()` closes
    the database, releases the lock and ends the thread.
    """

    # The writer lock keeps every other process from writing: a writer keeps each
    # manifest's newest finished session from its own writes (latest.py).
    _sole_writer = True

    def __init__(
        self,
        path: Path,
        *,
        now: Callable[[], datetime] | None = None,
        writer: bool = True,
        holder: str = _DEFAULT_HOLDER,
        create: bool = False,
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
    ) -> None:
        if create and not writer:
            raise ValueError("only a writer creates a store (create=True needs writer=True)")
        if not busy_timeout >= 0:
            raise ValueError(f"busy_timeout must be >= 0 seconds, not {busy_timeout!r}")
        if sqlite3.sqlite_version_info < _MIN_SQLITE:
            raise StoreError(
                f"the SQLite library this Python uses is {sqlite3.sqlite_version}, older than "
                "the state store needs (3.35); use a Python built with a newer one, or a "
                "PostgreSQL store"
            )
        super().__init__(writer=writer, now=now, queries=SQLITE, codec=_CODEC)
        self.path = path
        # The file itself, symlinks resolved: where a new store is made, a removed one
        # written back, and SQLite keeps its -wal and -shm files.
        self._file = Path(os.path.realpath(path))
        self._backup = self._file.with_name(self._file.name + ".restore")
        self.busy_timeout = busy_timeout
        self._create = create
        self._lock: WriterLock | None = None
        # (device, inode) of the file a writer opened; another one at the path means
        # the store was removed or replaced under it.
        self._identity: tuple[int, int] | None = None
        # The identity of its -wal and -shm files once seen (another one: removed).
        self._sides: dict[str, tuple[int, int] | None] = {}
        # (changes, the backup's identity) when `_write_backup` last wrote it.
        self._backup_state: tuple[int, tuple[int, int] | None] | None = None
        # SQLite's count of other connections' commits, when last asked (on the
        # worker thread: `_written_by_others`).
        self._data_version: int | None = None
        if writer and create:
            try:
                self._file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreAccessError(
                    path, f"cannot create state store {path}: {exc.strerror or exc}"
                ) from None
        elif not exists(path):
            # Checked again under the lock; this early answer leaves no lock file behind.
            raise self._missing() from None
        if writer:
            self._lock = WriterLock.acquire(path, holder)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store")
        try:
            self._db, self._schema_version = self._executor.submit(self._connect).result()
        except BaseException as exc:
            # The worker is idle unless this thread was interrupted while it worked;
            # then let it finish before the lock goes.
            self._executor.shutdown(wait=True)
            if self._lock is not None:
                self._lock.release()
            self._closed = True
            if isinstance(exc, StoreMissingError):
                raise self._missing() from None
            raise

    # -- lifecycle (the worker thread's side) ----------------------------------------

    @property
    def location(self) -> str:
        return str(self.path)

    def _error(self, exc: sqlite3.Error) -> StoreError:
        return _store_error(self.path, exc, writer=self.writer, busy_timeout=self.busy_timeout)

    def _sqlite_connect(self, path: Path, *, reader: bool = False) -> sqlite3.Connection:
        """A connection whose busy handler gives up after `busy_timeout` and whose page
        cache is bounded (`CACHE_KIB`). A reader's (mode=rw) never creates the file;
        `PRAGMA query_only` then stops its writes."""
        timeout = self.busy_timeout
        if reader:
            uri = f"file:{quote(str(path.absolute()), safe='/')}?mode=rw"
            db = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=timeout)
        else:
            db = sqlite3.connect(str(path), isolation_level=None, timeout=timeout)
        db.execute(f"PRAGMA cache_size=-{CACHE_KIB}")  # negative: KiB, not pages
        return db

    def _connect(self) -> tuple[sqlite3.Connection, int]:
        """On the worker thread: check the file, open it and (writers) migrate it."""
        path = self.path
        if self.writer and self._create and not exists(self._file):
            self._create_new()
        if self._lock is not None:
            # Before SQLite opens it: a second name of a file another writer holds is
            # refused before anything is read or written through it.
            self._identity = self._lock.hold(self._file)
        check_file(path)
        if self.writer:
            check_writable(path)
        try:
            db = self._sqlite_connect(self._file, reader=not self.writer)
        except sqlite3.Error as exc:
            if not exists(path):
                raise StoreMissingError(path) from None
            raise self._error(exc) from None
        db.row_factory = sqlite3.Row
        try:
            if not self.writer:
                db.execute("PRAGMA query_only=ON")
            # Before anything changes the file: a foreign database is left as it is.
            if not _has_schema_table(db):
                raise StoreCorruptError(
                    path,
                    "is an SQLite database but not an orchestrator state store "
                    "(it has no schema_version table)",
                )
            if self.writer:
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=FULL")
                db.execute("PRAGMA foreign_keys=ON")
                version = self._migrate(db)
                self._sides = sides(self._file)  # the migration's write made them
            else:
                version = self._check_version(db)
        except StoreError:
            db.close()
            raise
        except sqlite3.Error as exc:
            db.close()
            raise self._error(exc) from None
        return db, version

    def _create_new(self) -> None:
        """Create the store (under the writer lock): build and migrate it beside its
        final name, then link it into place, which never replaces a file that
        appeared meanwhile. A crash before the link leaves only `<db>.new`, which
        the next creation discards."""
        path = self._file
        new = path.with_name(path.name + ".new")
        try:
            for leftover in ("", "-journal", "-wal", "-shm"):
                new.with_name(new.name + leftover).unlink(missing_ok=True)
            flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
            os.close(os.open(new, flags, 0o600))
            try:
                db = self._sqlite_connect(new)
                try:
                    db.execute("PRAGMA synchronous=FULL")
                    self._migrate(db)
                    db.execute("PRAGMA journal_mode=WAL")  # kept in the file's header
                finally:
                    db.close()
            except sqlite3.Error as exc:
                raise _store_error(new, exc, writer=True, busy_timeout=self.busy_timeout) from None
            fsync(new)
            try:
                os.link(new, path)
            except FileExistsError:
                pass  # someone else's file appeared: it is checked like any existing one
            except OSError:
                # No hard links on this filesystem: rename instead (only a process
                # outside the writer lock could race with it).
                if not exists(path):
                    os.replace(new, path)
            finally:
                new.unlink(missing_ok=True)
            fsync(path.parent)
        except OSError as exc:
            raise StoreAccessError(
                path, f"cannot create state store {path}: {exc.strerror or exc}"
            ) from None

    def _migrate(self, db: sqlite3.Connection) -> int:
        """Bring the schema up to date; only ever run by the lock holder. It always
        takes SQLite's write lock, so that a store this process cannot write, or one
        locked by some other process, is found at open rather than at the first
        write."""
        with _immediate(db):
            db.execute(SQLITE.schema_version_table)
            for statement, params in upgrade(SQLITE, self.path, _stored_version(db, self.path)):
                db.execute(statement, params or ())
        return latest_version()

    def _check_version(self, db: sqlite3.Connection) -> int:
        """A reader's check: the schema must be exactly the one this code knows."""
        return check_readable(self.path, _stored_version(db, self.path))

    async def restore_if_removed(self) -> bool:
        """A writer's guard against its file being deleted or replaced while in use
        (an operator's `rm`, a bad deploy): the open connection still holds every
        record, so it is written back to the path and reopened. Returns True when it
        restored the file. When the path cannot take it (a directory is in the way),
        a StoreAccessError says where the backup is and what to do; the next call
        tries again (the daemon calls this at every pass)."""
        self._require_writer()
        return await self._run(lambda _db: self._restore_on_worker())

    def _missing(self) -> StoreMissingError:
        """No store at the path; the error names the backup a daemon left, if any."""
        return StoreMissingError(
            self.path, backup=self._backup if os.path.isfile(self._backup) else None
        )

    def _restore_on_worker(self) -> bool:
        """Write the store back in two steps: a complete backup (`_write_backup`), then
        that backup renamed onto the path (`_put_back`). Until the second succeeds, the
        connection to the lost file stays open and in use: it and the backup are the
        store. Lost: removed, replaced, overwritten in place, or its -wal or -shm file
        removed (`sqlite_file.lost`)."""
        file, backup, lock, opened = self._file, self._backup, self._lock, self._identity
        if lock is None or opened is None:
            return False
        now = sides(file)
        why = lost(file, opened, self._sides, now, lambda size: lock.head(opened, size))
        if why is None:
            for side, seen in now.items():  # learnt once SQLite has made them
                self._sides[side] = self._sides.get(side) or seen
            return False
        try:
            self._write_backup()
        except OSError as exc:
            raise StoreAccessError(
                self.path,
                f"state store {file} {why} while in use and its backup {backup} cannot "
                f"be written: {detail(exc)}; every record is still in the open store, which "
                "the daemon tries to write back at each pass: fix that (free space, the "
                f"owner and mode of {file.parent}) while the daemon runs (stopped before, it "
                "loses them)",
            ) from None
        except sqlite3.Error as exc:
            raise StoreCorruptError(
                self.path,
                f"{why} while in use, and the open store cannot be read back whole "
                f"({detail(exc)}): its pages were in that file; stop the daemon",
            ) from None
        try:
            self._put_back(lock)
        except (OSError, sqlite3.Error) as exc:
            raise StoreAccessError(
                self.path,
                f"state store {file} {why} while in use and cannot be written back: "
                f"{detail(exc)}; every record is in its backup {backup} (kept, and rewritten "
                f"after every change) and in the open store; remove what is at {file} (the "
                f"daemon writes the store back at its next pass), or stop the daemon, move "
                f"{backup} to {file}, check it with `orchestrator status` and start the daemon",
            ) from None
        return True

    def _write_backup(self) -> None:
        """A complete copy of the open store at `<db>.restore`: SQLite's online backup
        into a new file beside it, fsynced, then renamed over the previous backup (a
        crash leaves at worst a `.<db>.restore.*.tmp` file, never a half-written
        backup). Skipped while the backup there is current (no change since)."""
        db, backup = self._db, self._backup
        if self._backup_state == (db.total_changes, identity(backup)):
            return
        fd, name = tempfile.mkstemp(prefix=f".{backup.name}.", suffix=".tmp", dir=backup.parent)
        os.close(fd)
        new = Path(name)
        try:
            target = sqlite3.connect(str(new), isolation_level=None)
            try:
                db.backup(target)
                # The backup copies pages by number: one the open store never read from
                # a file overwritten in place comes out as zeros, and that copy is no
                # store to advertise (sqlite3.DatabaseError: the caller says so).
                checked = target.execute("PRAGMA quick_check").fetchone()[0]
                if checked != "ok":
                    found = " ".join(str(checked).split())[:200]
                    raise sqlite3.DatabaseError(f"its copy does not check clean: {found}")
            finally:
                target.close()
            fsync(new)
            os.replace(new, backup)
        finally:
            for side in ("", "-journal", "-wal", "-shm"):
                new.with_name(new.name + side).unlink(missing_ok=True)
        fsync(backup.parent)
        self._backup_state = (db.total_changes, identity(backup))

    def _put_back(self, lock: WriterLock) -> None:
        """Rename the backup onto the path (a rename fails on a directory, and never
        leaves a half-written file there), then let go of the removed file: close its
        connection and its lock, open the file now in place, and hold it. The backup
        is locked before the rename, so no other writer can take the new file in
        between."""
        file, backup = self._file, self._backup
        # The WAL emptied into the removed file: a reader that opens the new file
        # before the old connection is closed finds nothing of the old one's to replay.
        self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        moved = lock.hold(backup)
        try:
            os.replace(backup, file)
        except OSError:
            lock.keep_only(self._identity)
            raise
        self._backup_state = None
        fsync(file.parent)
        with contextlib.suppress(sqlite3.Error):
            self._db.close()  # the removed file's: it deletes its WAL and SHM files
        for side in SIDES:
            file.with_name(file.name + side).unlink(missing_ok=True)
        self._identity, self._sides = moved, {}
        lock.keep_only(moved)
        self._db = self._sqlite_connect(file)
        self._data_version = None  # another connection's count
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")

    def _close_on_worker(self) -> None:
        """Close; a store still lost is written back if the path is free now, else one
        last backup is written, with what was written since the last pass. When even
        that fails, the error is raised once the file and the lock are let go: the
        records it had open may be gone, and the caller says so."""
        failed: StoreError | None = None
        try:
            try:
                self._restore_on_worker()
            except StoreError as exc:
                failed = exc
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
        finally:
            if self._lock is not None:
                self._lock.release()
        if failed is not None:
            raise failed

    def _call(self, operation: Callable[[sqlite3.Connection], _T]) -> _T:
        """On the worker thread: run `operation`; no sqlite3 exception gets out."""
        try:
            return operation(self._db)
        except sqlite3.Error as exc:
            raise self._error(exc) from None

    # -- lifecycle (the caller's side) ----------------------------------------------

    async def _run(self, operation: Callable[[sqlite3.Connection], _T]) -> _T:
        """Queue `operation` on the worker thread (after everything queued before) and
        wait for it. A cancelled caller stops waiting; an operation already running
        still finishes. sqlite3 errors come back as StoreError subclasses."""
        self._require_open()
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._call, operation)

    async def aclose(self) -> None:
        """Finish queued operations, close the database, release the writer lock and
        end the worker thread. Idempotent; completes even if the caller is cancelled."""
        if self._closed:
            return
        self._closed = True
        done = self._executor.submit(self._close_on_worker)
        self._executor.shutdown(wait=False)
        await asyncio.shield(asyncio.wrap_future(done))

    async def app_owners(self) -> list[AppOwner]:
        """No replicas on SQLite: its single writer owns every App ID."""
        return []

    def fence(self, epochs: Mapping[str, int]) -> None:
        """Nothing to fence: the writer lock makes this process the only writer."""

    async def _written_by_others(self) -> bool:
        """The writer lock keeps out our own processes, not an operator's `sqlite3`:
        SQLite's `data_version` changes with every commit of another connection. On the
        worker thread, as is the connection a written-back store opens anew (which
        counts as a change)."""

        def changed(db: sqlite3.Connection) -> bool:
            version = int(db.execute("PRAGMA data_version").fetchone()[0])
            changed, self._data_version = version != self._data_version, version
            return changed

        return await self._run(changed)

    # -- the runner (base.SqlStore's statements, on the worker thread) ------------------

    async def _fetch(self, query: str, params: Sequence[Any]) -> list[Row]:
        def fetch(db: sqlite3.Connection) -> list[Row]:
            try:
                cursor = db.execute(query, params)
                # Rows as dicts, made here (on the store's thread): `sqlite3.Row` finds a
                # column by name with a case-blind scan of every name, 37 for a session,
                # and a read of 10,000 sessions decoded them on the event loop.
                cursor.row_factory = None
                names = [d[0] for d in cursor.description or ()]
                return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
            except sqlite3.IntegrityError as exc:
                # The live-target index is the schema's only UNIQUE index (a primary
                # key's violation has a code of its own).
                if exc.sqlite_errorcode == sqlite3.SQLITE_CONSTRAINT_UNIQUE:
                    raise LiveTargetTaken(self.location) from None
                raise

        return await self._run(fetch)

    async def _execute(self, query: str, params: Sequence[Any]) -> int:
        return await self._run(lambda db: db.execute(query, params).rowcount)

    async def _write_batches(self, batches: Sequence[Batch]) -> None:
        def write(db: sqlite3.Connection) -> None:
            with _immediate(db):
                for query, rows in batches:
                    if rows:
                        db.executemany(query, rows)

        await self._run(write)


def open_store(
    url: str,
    *,
    writer: bool = True,
    holder: str = _DEFAULT_HOLDER,
    create: bool = False,
    busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
) -> SqliteStore:
    """Open the SQLite store at `url`.

    A writer (the default) takes the store's writer lock, naming itself `holder`
    (e.g. "run", "apply"), and migrates the database as needed; it raises
    StoreBusyError while another process (or Store) writes to it. A reader
    (`writer=False`) needs an existing database at the current schema version and
    never takes the lock, creates a file or migrates.

    Only `create=True` (a writer's: `orchestrator init`, or the daemon's first start
    when asked to) creates a missing store, with its directory; on an existing
    store it just opens it. Otherwise a missing store is StoreMissingError. An
    empty file, a non-SQLite file or a database without our schema is
    StoreCorruptError, with or without `create` (never overwritten).

    `busy_timeout` (seconds) bounds every wait for an SQLite lock that a process
    outside our writer lock holds; then StoreLockedError (a StoreBusyError).
    """
    return SqliteStore(
        sqlite_path_from_url(url),
        writer=writer,
        holder=holder,
        create=create,
        busy_timeout=busy_timeout,
    )


if TYPE_CHECKING:

    def _implements_store(store: SqliteStore) -> Store:
        """mypy checks here that SqliteStore keeps the Store protocol."""
        return store
