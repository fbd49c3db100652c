"""The state store on PostgreSQL: what several orchestrator replicas can share.

It keeps the `Store` protocol with the SQLite store's implementation (base.py, with
the statements of queries.py) and passes the same contract suite (tests/contract).
What is PostgreSQL's own lives here:

- Native types: identity ids, `timestamptz` datetimes (returned tz-aware in UTC,
  to the microsecond), `jsonb` for a session's `file_list` and a known good
  `document`, `text[]` for a list parameter.
- The partial unique index (queries.LIVE_TARGET_INDEX) keeps one live session per
  target, so two replicas can never both start the same recording; the write that
  would break it is StoreConflictError, naming the target.
- Migrations (queries.MIGRATIONS, the same versions as SQLite's) are applied by a
  writer in ONE transaction under `pg_advisory_xact_lock(ADVISORY_LOCK_KEY)`:
  replicas starting together queue on the lock, and each re-reads the version
  inside it, so the statements run once. A reader never migrates and needs the
  current version; a version newer than this code is a StoreError.
- Fencing: once `PostgresOwnership` (ownership.py) has called `fence()`, every session
  write (create, update, intent, outcome) passes only while its App ID's epoch in
  `app_owners` is the one this replica claimed, checked in the same statement; a
  replica that lost an App ID writes nothing more about its sessions
  (StoreFencedError). Reads are never fenced.
- Only an explicit creation (`create=True`, a writer's) lays the schema into a
  database that has none; otherwise such a database is StoreMissingError (run
  `orchestrator init`). The database itself is never created: that is the DBA's.
- Connections come from a small pool (1 to 4), opened explicitly. Connecting is
  bounded by `connect_timeout` (CONNECT_TIMEOUT unless the URL sets it), waiting
  for a pooled connection by POOL_TIMEOUT, every statement by STATEMENT_TIMEOUT;
  pooled connections are checked before use, so a restarted server is reconnected
  to rather than reported. Every statement runs in autocommit (committed before
  the call returns); the multi-statement writes use one explicit transaction.
- No psycopg exception leaves the store: each becomes a StoreError subclass with a
  one-line message naming `location`, the URL without its password, and what to
  do (a server that cannot be reached is StoreUnavailableError; see pgconn.py). The
  password is removed from every message, even from what libpq said.

It must never build SQL from a caller's input (queries.py builds every shared
statement from the schema's names; values are bound parameters).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

import psycopg
from psycopg import AsyncConnection, errors
from psycopg.rows import TupleRow, dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool, PoolClosed, PoolTimeout

from orchestrator.state.base import Batch, LiveTargetTaken, SqlStore, check_readable, upgrade
from orchestrator.state.columns import Codec, Row
from orchestrator.state.errors import (
    StoreAccessError,
    StoreCorruptError,
    StoreError,
    StoreMissingError,
    StoreUnavailableError,
)
from orchestrator.state.model import AppOwner
from orchestrator.state.ownership import OWNERS, OWNERSHIP_LOCK_CLASS, PostgresOwnership
from orchestrator.state.pgconn import (
    CONNECT_TIMEOUT,
    STATEMENT_TIMEOUT,
    PostgresTarget,
    configure,
    configure_reader,
    store_error,
)
from orchestrator.state.queries import LIVE_TARGET_INDEX, POSTGRES, known_version, latest_version

if TYPE_CHECKING:
    from orchestrator.state.protocol import Store

__all__ = [
    "ADVISORY_LOCK_KEY",
    "CONNECT_TIMEOUT",
    "POOL_TIMEOUT",
    "STATEMENT_TIMEOUT",
    "PostgresOwnership",
    "PostgresStore",
    "PostgresTarget",
    "open_postgres_store",
]

_T = TypeVar("_T")

#: The key of the transaction-level advisory lock a writer holds while it checks and
#: migrates the schema: the ASCII bytes "ORCHMIGR" as a big-endian signed 64-bit
#: integer (0x4F5243484D494752). Never change it: replicas of different versions
#: must queue on the same lock.
ADVISORY_LOCK_KEY = 0x4F52_4348_4D49_4752

#: Seconds an operation waits for a connection from the pool before
#: StoreUnavailableError (the server is down, or every pooled connection is busy).
POOL_TIMEOUT = 5.0
#: Seconds the pool keeps retrying a connection that failed before it gives up (a
#: later request starts a new attempt at once).
RECONNECT_TIMEOUT = 2.0
#: Connections in the pool.
POOL_MIN_SIZE = 1
POOL_MAX_SIZE = 4
#: Seconds `aclose()` waits for connections in use to come back.
CLOSE_TIMEOUT = 5.0


# Our tables: a database holding one of them but no schema_version table is not
# taken for an empty one.
_OUR_TABLES = ("sessions", "manifest_states", "last_known_good")


class _PostgresCodec(Codec):
    """PostgreSQL's columns: `timestamptz` (psycopg's tz-aware datetimes), `jsonb`
    (decoded by psycopg as it reads) and `text[]` (a list)."""

    def write_array(self, values: Iterable[str]) -> list[str]:
        return list(values)

    def write_stamp(self, value: datetime) -> datetime:
        return value

    def read_stamp(self, value: Any) -> datetime:
        if not isinstance(value, datetime) or value.tzinfo is None:
            raise TypeError(f"not a timestamptz: {type(value).__name__}")
        return value.astimezone(UTC)

    def write_json(self, value: Any) -> Jsonb:
        return Jsonb(value)

    def read_json(self, value: Any) -> Any:
        return value


_CODEC = _PostgresCodec()


async def _check_owner(conn: AsyncConnection[TupleRow], location: str, version: int) -> None:
    """An upgrade is laid by the role that owns the schema's tables: the tables it
    makes are that role's, and the role that ran `orchestrator init` is never locked
    out of them (nor is a role that may create tables but owns none let upgrade)."""
    cursor = await conn.execute(
        "SELECT current_user, pg_get_userbyid(relowner) FROM pg_class "
        "WHERE oid = to_regclass('sessions')"
    )
    row = await cursor.fetchone()
    if row is not None and row[0] != row[1]:
        raise StoreAccessError(
            location,
            f"state store {location} has schema version {version}, older than this "
            f"orchestrator's ({latest_version()}); the role that owns its tables "
            f"({row[1]}) must upgrade it (run a writer as that role once), not {row[0]}",
        )


async def _stored_version(conn: AsyncConnection[TupleRow], location: str) -> int | None:
    """The schema version in the database; None when it has no schema_version table."""
    cursor = await conn.execute("SELECT to_regclass('schema_version') IS NOT NULL")
    found = await cursor.fetchone()
    if found is None or not found[0]:
        return None
    cursor = await conn.execute(POSTGRES.stored_version)
    row = await cursor.fetchone()
    stored = int(row[0]) if row is not None and row[0] is not None else None
    return known_version(location, stored, stored is None and await _has_our_tables(conn))


async def _has_our_tables(conn: AsyncConnection[TupleRow]) -> bool:
    cursor = await conn.execute(
        "SELECT count(*) FROM unnest(%s::text[]) AS t(name) WHERE to_regclass(name) IS NOT NULL",
        (list(_OUR_TABLES),),
    )
    row = await cursor.fetchone()
    return row is not None and int(row[0]) > 0


# What a writer does to each table (`latest_finished`: the triggers of version 6 write
# it as the role that writes the sessions). has_table_privilege is true when any one
# of several privileges named together is held: each is asked alone.
_WRITER_PRIVILEGES = {
    "sessions": ("SELECT", "INSERT", "UPDATE"),
    "manifest_states": ("SELECT", "INSERT", "UPDATE"),
    "last_known_good": ("SELECT", "INSERT", "UPDATE", "DELETE"),
    "latest_finished": ("SELECT", "INSERT", "UPDATE", "DELETE"),
    "notices": ("SELECT", "INSERT", "UPDATE", "DELETE"),
    "app_owners": ("SELECT", "INSERT", "UPDATE"),
}
_WANTED = [(table, p) for table, ps in _WRITER_PRIVILEGES.items() for p in ps]


async def _prepare(
    conn: AsyncConnection[TupleRow], location: str, *, writer: bool, create: bool
) -> int:
    """Check (readers) or bring up to date (writers) the schema; the version.

    A writer reads the version only under the advisory lock, in the transaction that
    migrates: a replica that waited for the lock sees what the one before it did.
    (No lookup happens before the lock, which could leave this session a cached
    "no such table" that outlives another replica's commit.)"""
    if not writer:
        version = await _stored_version(conn, location)
        if version is None:
            await _check_not_foreign(conn, location)
            raise StoreMissingError(location)
        return check_readable(location, version)
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (ADVISORY_LOCK_KEY,))
        version = await _stored_version(conn, location)
        if version is None:
            await _check_not_foreign(conn, location)
            if not create:
                raise StoreMissingError(location)
            await conn.execute(POSTGRES.schema_version_table)
            version = 0
        elif version < latest_version():
            await _check_owner(conn, location, version)
        for statement, params in upgrade(POSTGRES, location, version):
            await conn.execute(statement, params)
    cursor = await conn.execute(
        "SELECT t, p FROM unnest(%s::text[], %s::text[]) WITH ORDINALITY AS w(t, p, n) "
        "WHERE NOT has_table_privilege(t, p) ORDER BY n",
        ([t for t, _ in _WANTED], [p for _, p in _WANTED]),
    )
    missing = [f"{privilege} on {table}" for table, privilege in await cursor.fetchall()]
    if missing:
        raise StoreAccessError(
            location,
            f"state store {location} cannot be written by this role: it lacks "
            f"{', '.join(missing)}; grant them, or use the role that ran `orchestrator init`",
        )
    return latest_version()


async def _check_not_foreign(conn: AsyncConnection[TupleRow], location: str) -> None:
    if await _has_our_tables(conn):
        raise StoreCorruptError(
            location,
            "has tables named like the orchestrator's (sessions, manifest_states, "
            "last_known_good) but no schema_version table, so it is not an orchestrator "
            "state store (or it is a damaged one)",
        )


class PostgresStore(SqlStore):
    """Sessions and per-manifest state in a PostgreSQL database, through a small
    connection pool. Built by `open_postgres_store` (construction is async);
    `aclose()` closes the pool."""

    def __init__(
        self,
        target: PostgresTarget,
        pool: AsyncConnectionPool[AsyncConnection[TupleRow]],
        *,
        writer: bool,
        schema_version: int,
        now: Callable[[], datetime] | None,
    ) -> None:
        super().__init__(writer=writer, now=now, queries=POSTGRES, codec=_CODEC)
        self.target = target
        self._pool = pool
        self._schema_version = schema_version

    # -- lifecycle -------------------------------------------------------------------

    @property
    def location(self) -> str:
        """The URL without its password."""
        return self.target.location

    async def aclose(self) -> None:
        """Close the pool (waiting up to CLOSE_TIMEOUT for connections in use).
        Idempotent; completes even if the caller is cancelled."""
        if self._closed:
            return
        self._closed = True
        await asyncio.shield(self._pool.close(timeout=CLOSE_TIMEOUT))

    async def restore_if_removed(self) -> bool:
        """Nothing to restore: a server keeps its own files. Always False."""
        self._require_open()
        self._require_writer()
        return False

    async def _run(self, operation: Callable[[AsyncConnection[TupleRow]], Awaitable[_T]]) -> _T:
        """Run `operation` on a pooled connection; no psycopg exception gets out."""
        self._require_open()
        try:
            async with self._pool.connection(timeout=POOL_TIMEOUT) as conn:
                return await operation(conn)
        except PoolTimeout:
            raise await _unavailable(self.target, POOL_TIMEOUT) from None
        except PoolClosed:
            raise StoreError(f"state store {self.location} is closed") from None
        except errors.UniqueViolation as exc:
            if exc.diag.constraint_name == LIVE_TARGET_INDEX:
                raise LiveTargetTaken(self.location) from None
            raise store_error(self.target, exc) from None
        except psycopg.Error as exc:
            raise store_error(self.target, exc) from None

    async def app_owners(self) -> list[AppOwner]:
        """Every App ID's owner as recorded (the replica that claimed it last, since
        when), and whether its lock is held now."""

        async def look(conn: AsyncConnection[TupleRow]) -> list[AppOwner]:
            cursor = await conn.execute(
                OWNERS,
                (OWNERSHIP_LOCK_CLASS,),
            )
            return [AppOwner(*row) for row in await cursor.fetchall()]

        return await self._run(look)

    # -- the runner (base.SqlStore's statements, each on a pooled connection) ----------

    async def _fetch(self, query: str, params: Sequence[Any]) -> list[Row]:
        async def fetch(conn: AsyncConnection[TupleRow]) -> list[Row]:
            async with conn.cursor(row_factory=dict_row) as cursor:
                await cursor.execute(query, params)
                return list(await cursor.fetchall())

        return await self._run(fetch)

    async def _execute(self, query: str, params: Sequence[Any]) -> int:
        async def execute(conn: AsyncConnection[TupleRow]) -> int:
            cursor = await conn.execute(query, params)
            return max(cursor.rowcount, 0)

        return await self._run(execute)

    async def _write_batches(self, batches: Sequence[Batch]) -> None:
        async def write(conn: AsyncConnection[TupleRow]) -> None:
            async with conn.transaction(), conn.cursor() as cursor:
                for query, rows in batches:
                    if rows:
                        await cursor.executemany(query, rows)

        await self._run(write)


async def _unavailable(target: PostgresTarget, waited: float) -> StoreUnavailableError:
    """Why the pool gave no connection within `waited` seconds: a direct attempt tells
    what libpq says (the server is down, refuses us...); if it succeeds, every pooled
    connection was busy."""
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT + 1):
            conn = await AsyncConnection.connect(target.url, **target.kwargs)
    except (psycopg.Error, TimeoutError) as exc:
        detail = f"no connection within {waited:g} s: {str(exc) or 'connecting timed out'}"
    else:
        await conn.close()
        detail = (
            f"no connection within {waited:g} s (all {POOL_MAX_SIZE} connections of this "
            "process are busy)"
        )
    return StoreUnavailableError(target.location, target.redact(detail))


async def open_postgres_store(
    url: str,
    *,
    writer: bool = True,
    create: bool = False,
    now: Callable[[], datetime] | None = None,
) -> PostgresStore:
    """Open the store in the PostgreSQL database at `url`
    (`postgresql://USER:PASSWORD@HOST:PORT/DATABASE`).

    A writer (the default) migrates the schema as needed, under the advisory lock.
    Only `create=True` (a writer's: `orchestrator init`, the daemon's first start)
    lays the schema into a database without one; otherwise that is
    StoreMissingError. A reader (`writer=False`) never migrates and needs the
    current schema version. A server that cannot be reached is
    StoreUnavailableError within about CONNECT_TIMEOUT seconds.
    """
    if create and not writer:
        raise ValueError("only a writer creates a store (create=True needs writer=True)")
    target = PostgresTarget(url)
    location = target.location
    try:
        conn = await AsyncConnection.connect(url, **target.kwargs)
    except psycopg.Error as exc:
        raise StoreUnavailableError(location, target.redact(str(exc))) from None
    try:
        try:
            await configure(conn)
            version = await _prepare(conn, location, writer=writer, create=create)
        finally:
            await conn.close()
    except psycopg.Error as exc:
        raise store_error(target, exc) from None
    pool: AsyncConnectionPool[AsyncConnection[TupleRow]] = AsyncConnectionPool(
        url,
        kwargs=target.kwargs,
        min_size=POOL_MIN_SIZE,
        max_size=POOL_MAX_SIZE,
        open=False,
        configure=configure if writer else configure_reader,
        check=AsyncConnectionPool.check_connection,
        timeout=POOL_TIMEOUT,
        # Give up a failed reconnection soon: the next request then tries afresh at
        # once, instead of waiting out the pool's growing backoff (1 s, 2 s, 4 s, ...)
        # after the server comes back from an outage.
        reconnect_timeout=RECONNECT_TIMEOUT,
        name="orchestrator-store",
    )
    try:
        await pool.open(wait=True, timeout=POOL_TIMEOUT + CONNECT_TIMEOUT)
    except PoolTimeout:
        await pool.close()
        raise await _unavailable(target, POOL_TIMEOUT + CONNECT_TIMEOUT) from None
    except BaseException:
        await pool.close()
        raise
    return PostgresStore(target, pool, writer=writer, schema_version=version, now=now)


if TYPE_CHECKING:

    def _implements_store(store: PostgresStore) -> Store:
        """mypy checks here that PostgresStore keeps the Store protocol."""
        return store
