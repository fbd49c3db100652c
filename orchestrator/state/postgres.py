"""The state store on PostgreSQL: what several orchestrator replicas can share.

It keeps the `Store` protocol (protocol.py) exactly as the SQLite store does
(store.py), and passes the same contract suite (tests/contract). What differs:

- Native types: identity ids, `timestamptz` datetimes (returned tz-aware in UTC,
  to the microsecond), `jsonb` for a session's `file_list` and a known good
  `document`, text for phases and intents.
- A partial unique index keeps one live session per target: two sessions on one
  (app_id, channel, uid) that are not ended, failed or unmanageable cannot both
  exist, so two replicas can never both start the same recording. The write that
  would break it is StoreConflictError, naming the target. (An unmanageable
  session may coexist with a fresh start attempt on its target by design.)
- Migrations are versioned scripts (`_MIGRATIONS`: index + 1 is the version; never
  edit a released one, append a new one), applied by a writer in ONE transaction
  under `pg_advisory_xact_lock(ADVISORY_LOCK_KEY)`: replicas starting together
  queue on the lock, and each re-reads the version inside it, so the scripts run
  once. A reader never migrates and needs the current version; a version newer
  than this code is a StoreError.
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
  do (a server that cannot be reached is StoreUnavailableError). The password is
  removed from every message, even from what libpq said.
- No SQL is built from caller input: column names come from the whitelist of
  session fields (as identifiers), every value is a bound parameter.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar, Unpack
from urllib.parse import parse_qsl, quote, quote_plus, unquote, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg import AsyncConnection, errors, sql
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import DictRow, TupleRow, dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool, PoolClosed, PoolTimeout

from orchestrator.state.base import StoreBase, check_readable, too_new
from orchestrator.state.columns import (
    END_KIND_BACKFILL,
    FINAL_PHASE_VALUES,
    SESSION_COLUMNS,
    STATE_COLUMNS,
    Codec,
    UndecodableError,
    check_no_secret_columns,
    new_session_row,
)
from orchestrator.state.errors import (
    StoreAccessError,
    StoreConflictError,
    StoreCorruptError,
    StoreError,
    StoreFencedError,
    StoreMissingError,
    StoreUnavailableError,
)
from orchestrator.state.model import (
    AppOwner,
    KnownGood,
    ManifestState,
    Phase,
    SessionRecord,
)
from orchestrator.state.protocol import SessionFields

if TYPE_CHECKING:
    from orchestrator.state.protocol import Ownership, Store

__all__ = [
    "ADVISORY_LOCK_KEY",
    "CONNECT_TIMEOUT",
    "POOL_TIMEOUT",
    "STATEMENT_TIMEOUT",
    "PostgresOwnership",
    "PostgresStore",
    "open_postgres_store",
]

_T = TypeVar("_T")

#: The key of the transaction-level advisory lock a writer holds while it checks and
#: migrates the schema: the ASCII bytes "ORCHMIGR" as a big-endian signed 64-bit
#: integer (0x4F5243484D494752). Never change it: replicas of different versions
#: must queue on the same lock.
ADVISORY_LOCK_KEY = 0x4F52_4348_4D49_4752

#: Seconds to establish a connection (libpq's `connect_timeout`), unless the URL sets it.
CONNECT_TIMEOUT = 5
#: Seconds an operation waits for a connection from the pool before
#: StoreUnavailableError (the server is down, or every pooled connection is busy).
POOL_TIMEOUT = 5.0
#: The server-side bound on any one statement (a lock wait included), in `_configure`.
STATEMENT_TIMEOUT = "30s"
#: Seconds the pool keeps retrying a connection that failed before it gives up (a
#: later request starts a new attempt at once).
RECONNECT_TIMEOUT = 2.0
#: Connections in the pool.
POOL_MIN_SIZE = 1
POOL_MAX_SIZE = 4
#: Seconds `aclose()` waits for connections in use to come back.
CLOSE_TIMEOUT = 5.0

# The name of the index that keeps one live session per target.
_LIVE_TARGET_INDEX = "sessions_one_live_per_target"

_SCHEMA_VERSION_TABLE = """
    CREATE TABLE IF NOT EXISTS schema_version (
        singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
        version   integer NOT NULL
    )
"""

# Versioned migrations: index + 1 is the schema version. Never edit a released one;
# append a new one. Each runs inside the migration transaction.
_MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE sessions (
        id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        manifest          text NOT NULL,
        app               text NOT NULL,
        app_id            text NOT NULL,
        channel           text NOT NULL,
        uid               bigint NOT NULL,
        mode              text NOT NULL,
        phase             text NOT NULL,
        created_at        timestamptz NOT NULL,
        updated_at        timestamptz NOT NULL,
        resource_id       text,
        sid               text,
        source_file       text,
        spec_hash         text,
        subscription_hash text,
        layout_hash       text,
        restart_hash      text,
        window_start      timestamptz,
        window_end        timestamptz,
        started_at        timestamptz,
        ended_at          timestamptz,
        last_query_at     timestamptz,
        last_status       integer,
        end_reason        text,
        file_list         jsonb,
        uploading_status  text,
        restart_count     integer NOT NULL DEFAULT 0,
        intent            text,
        intent_at         timestamptz,
        error             text
    );
    CREATE INDEX sessions_by_phase ON sessions (phase);
    CREATE INDEX sessions_by_manifest ON sessions (manifest, id);
    CREATE UNIQUE INDEX sessions_one_live_per_target ON sessions (app_id, channel, uid)
        WHERE phase NOT IN ('ended', 'failed', 'unmanageable');
    CREATE TABLE manifest_states (
        name                 text PRIMARY KEY,
        failed_spec_hash     text,
        failure_reason       text,
        failed_at            timestamptz
    );
    CREATE TABLE last_known_good (
        name        text PRIMARY KEY,
        source_file text NOT NULL,
        spec_hash   text NOT NULL,
        document    jsonb NOT NULL,
        stored_at   timestamptz NOT NULL
    );
    """,
    # 2: who owns which App ID (replicas). `lock_id` is the advisory lock's object id;
    # `epoch` grows with every claim and fences the writes of an owner that lost it.
    """
    CREATE TABLE app_owners (
        lock_id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        app_id  text NOT NULL UNIQUE,
        owner   text,
        epoch   bigint NOT NULL DEFAULT 0,
        since   timestamptz
    );
    """,
    # 3: why a session ended, as a kind the planner reads (was a prefix of end_reason).
    f"""
    ALTER TABLE sessions ADD COLUMN end_kind text;
    {END_KIND_BACKFILL}
    """,
)

# A write that records an intent (an API call is about to be made) passes only while
# the App ID's ownership epoch is the one this process claimed: {} is the App ID, the
# parameter after it the fence, {"app_id": epoch, ...}. The owner row is share-locked
# until the write commits, so a claim's epoch bump waits for it and then sees it. An
# owner that lost its lock (and so its claim, to a replica that bumped the epoch)
# makes no further call.
_FENCE_CONDITION = sql.SQL(
    "EXISTS (SELECT 1 FROM app_owners o WHERE o.app_id = {} "
    "AND o.epoch = (%s::jsonb ->> o.app_id)::bigint FOR SHARE)"
)

# Our tables: a database holding one of them but no schema_version table is not
# taken for an empty one.
_OUR_TABLES = ("sessions", "manifest_states", "last_known_good")

_FINALS = list(FINAL_PHASE_VALUES)
_COLUMN_LINE = re.compile(r"^\s*(\w+)\s+(?:bigint|integer|text|timestamptz|jsonb|boolean)\b", re.M)


# No column of the schema, as the migrations declare it, looks like a secret.
check_no_secret_columns(_COLUMN_LINE.findall(_SCHEMA_VERSION_TABLE + "".join(_MIGRATIONS)))

_SESSION_SELECT = sql.SQL("SELECT {} FROM sessions").format(
    sql.SQL(", ").join(map(sql.Identifier, SESSION_COLUMNS))
)
_SESSION_RETURNING = sql.SQL(" RETURNING {}").format(
    sql.SQL(", ").join(map(sql.Identifier, SESSION_COLUMNS))
)


_Query = sql.SQL | sql.Composed
_KNOWN_GOOD_INDEX_SELECT = sql.SQL(
    "SELECT name, source_file, spec_hash, stored_at FROM last_known_good"
)
_KNOWN_GOOD_SELECT = sql.SQL(
    "SELECT name, source_file, spec_hash, stored_at, document FROM last_known_good"
)


class _PostgresCodec(Codec):
    """PostgreSQL's columns: `timestamptz` (psycopg's tz-aware datetimes) and `jsonb`
    (decoded by psycopg as it reads)."""

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
_to_db = _CODEC.to_db
_session_from_row = _CODEC.session


def _one_line(text: str) -> str:
    return " ".join(text.split()) or "unknown error"


class _Target:
    """A PostgreSQL URL: what to connect with, what to show, what to hide."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("postgresql", "postgres"):
            # Never echo the URL: it may hold a password.
            raise StoreError(
                f"unsupported PostgreSQL URL scheme {parts.scheme!r}: use "
                "postgresql://USER:PASSWORD@HOST:PORT/DATABASE"
            )
        userinfo, at, hosts = parts.netloc.rpartition("@")
        user, colon, password = userinfo.partition(":")
        secrets: set[str] = set()
        if colon and password:
            secrets |= {password, unquote(password)}
        query = parse_qsl(parts.query, keep_blank_values=True)
        for key, value in query:
            if key == "password" and value:
                secrets |= {value, quote(value, safe=""), quote_plus(value)}
        kept = urlencode([(k, v) for k, v in query if k != "password"])
        netloc = f"{user}@{hosts}" if at and user else hosts
        self.url = url
        self.location = urlunsplit((parts.scheme, netloc, parts.path, kept, ""))
        # Longest first, so that no part of a password survives a shorter replacement.
        self._secrets = sorted((s for s in secrets if s), key=len, reverse=True)
        try:
            params = conninfo_to_dict(url)
        except psycopg.Error as exc:
            raise StoreError(
                f"invalid PostgreSQL URL {self.location}: {self.redact(str(exc))}"
            ) from None
        self.kwargs: dict[str, Any] = {"autocommit": True}
        if "connect_timeout" not in params:
            self.kwargs["connect_timeout"] = CONNECT_TIMEOUT
        if "application_name" not in params:
            self.kwargs["application_name"] = "orchestrator"

    def redact(self, text: str) -> str:
        """`text` on one line, without any form of the password."""
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return _one_line(text)


async def _stored_version(conn: AsyncConnection[TupleRow]) -> int | None:
    """The schema version in the database; None when it has no schema_version table."""
    cursor = await conn.execute("SELECT to_regclass('schema_version') IS NOT NULL")
    found = await cursor.fetchone()
    if found is None or not found[0]:
        return None
    cursor = await conn.execute("SELECT max(version) FROM schema_version")
    row = await cursor.fetchone()
    return int(row[0]) if row is not None and row[0] is not None else 0


async def _has_our_tables(conn: AsyncConnection[TupleRow]) -> bool:
    cursor = await conn.execute(
        "SELECT count(*) FROM unnest(%s::text[]) AS t(name) WHERE to_regclass(name) IS NOT NULL",
        (list(_OUR_TABLES),),
    )
    row = await cursor.fetchone()
    return row is not None and int(row[0]) > 0


async def _prepare(
    conn: AsyncConnection[TupleRow], location: str, *, writer: bool, create: bool
) -> int:
    """Check (readers) or bring up to date (writers) the schema; the version.

    A writer reads the version only under the advisory lock, in the transaction that
    migrates: a replica that waited for the lock sees what the one before it did.
    (No lookup happens before the lock, which could leave this session a cached
    "no such table" that outlives another replica's commit.)"""
    current = len(_MIGRATIONS)
    if not writer:
        version = await _stored_version(conn)
        if version is None:
            await _check_not_foreign(conn, location)
            raise StoreMissingError(location)
        return check_readable(location, version, current)
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (ADVISORY_LOCK_KEY,))
        version = await _stored_version(conn)
        if version is None:
            await _check_not_foreign(conn, location)
            if not create:
                raise StoreMissingError(location)
            await conn.execute(_SCHEMA_VERSION_TABLE)
            version = 0
        if version > current:
            raise too_new(location, version, current)
        for number in range(version + 1, current + 1):
            await conn.execute(_MIGRATIONS[number - 1])
        if version < current:
            await conn.execute(
                "INSERT INTO schema_version (singleton, version) VALUES (true, %s) "
                "ON CONFLICT (singleton) DO UPDATE SET version = excluded.version",
                (current,),
            )
    cursor = await conn.execute(
        "SELECT has_table_privilege('sessions', 'SELECT, INSERT, UPDATE') "
        "AND has_table_privilege('manifest_states', 'SELECT, INSERT, UPDATE') "
        "AND has_table_privilege('last_known_good', 'SELECT, INSERT, UPDATE, DELETE')"
    )
    allowed = await cursor.fetchone()
    if allowed is None or not allowed[0]:
        raise StoreAccessError(
            location,
            f"state store {location} cannot be written by this role: it needs SELECT, "
            "INSERT, UPDATE (and DELETE on last_known_good) on sessions, manifest_states "
            "and last_known_good; grant them, or use the role that ran `orchestrator init`",
        )
    return current


async def _check_not_foreign(conn: AsyncConnection[TupleRow], location: str) -> None:
    if await _has_our_tables(conn):
        raise StoreCorruptError(
            location,
            "has tables named like the orchestrator's (sessions, manifest_states, "
            "last_known_good) but no schema_version table, so it is not an orchestrator "
            "state store (or it is a damaged one)",
        )


class PostgresStore(StoreBase):
    """Sessions and per-manifest state in a PostgreSQL database, through a small
    connection pool. Built by `open_postgres_store` (construction is async);
    `aclose()` closes the pool."""

    def __init__(
        self,
        target: _Target,
        pool: AsyncConnectionPool[AsyncConnection[TupleRow]],
        *,
        writer: bool,
        schema_version: int,
        now: Callable[[], datetime] | None,
    ) -> None:
        super().__init__(writer=writer, now=now)
        self._target = target
        self._pool = pool
        self._schema_version = schema_version
        # Fencing (see PostgresOwnership): App ID -> the epoch of our claim. None: no
        # fencing (a single process); otherwise every write that records an intent
        # checks, in the same statement, that the App ID's epoch is still ours.
        self._fence: dict[str, int] | None = None

    # -- lifecycle -------------------------------------------------------------------

    @property
    def location(self) -> str:
        """The URL without its password."""
        return self._target.location

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
            raise await _unavailable(self._target, POOL_TIMEOUT) from None
        except PoolClosed:
            raise StoreError(f"state store {self.location} is closed") from None
        except psycopg.Error as exc:
            raise self._error(exc) from None
        except UndecodableError as exc:
            raise exc.corrupt(self.location) from None

    def _error(self, exc: psycopg.Error) -> StoreError:
        """The StoreError for a psycopg exception, by its kind and SQLSTATE."""
        return _store_error(self._target, exc)

    async def app_owners(self) -> list[AppOwner]:
        """Every App ID's owner as recorded (the replica that claimed it last, since
        when), and whether its lock is held now."""

        async def look(conn: AsyncConnection[TupleRow]) -> list[AppOwner]:
            cursor = await conn.execute(
                "SELECT o.app_id, o.owner, o.since, l.pid IS NOT NULL, o.epoch "
                "FROM app_owners o LEFT JOIN pg_locks l ON l.locktype = 'advisory' "
                "AND l.granted AND l.classid = %s::int::oid AND l.objid = o.lock_id::oid "
                "AND l.objsubid = 2 ORDER BY o.app_id",
                (OWNERSHIP_LOCK_CLASS,),
            )
            return [AppOwner(*row) for row in await cursor.fetchall()]

        return await self._run(look)

    # -- sessions ----------------------------------------------------------------

    async def create_session(self, **values: Unpack[SessionFields]) -> SessionRecord:
        """A new session row; `phase` defaults to ACQUIRING. Returns it as stored."""
        self._require_writer()
        given = new_session_row(values, self._now())
        columns = sorted(given)
        query = (
            sql.SQL("INSERT INTO sessions ({}) VALUES ({})").format(
                sql.SQL(", ").join(map(sql.Identifier, columns)),
                sql.SQL(", ").join(sql.Placeholder() * len(columns)),
            )
            + _SESSION_RETURNING
        )
        params = [_to_db(c, given[c]) for c in columns]
        fence = self._fence_for(given)
        fence_check = sql.SQL("SELECT 1 WHERE ") + _FENCE_CONDITION.format(sql.Placeholder())

        async def insert(conn: AsyncConnection[TupleRow]) -> SessionRecord:
            async with conn.transaction(), conn.cursor(row_factory=dict_row) as cursor:
                if fence is not None:
                    app_id = str(given["app_id"])
                    await cursor.execute(fence_check, (app_id, fence))
                    if await cursor.fetchone() is None:
                        raise StoreFencedError(self.location, app_id)
                try:
                    await cursor.execute(query, params)
                except errors.UniqueViolation as exc:
                    raise self._conflict(exc, given) from None
                row = await cursor.fetchone()
            assert row is not None  # INSERT ... RETURNING gives its row
            return _session_from_row(row)

        return await self._run(insert)

    def _fence_for(self, values: Mapping[str, Any]) -> Jsonb | None:
        """The fence a write that records an intent must pass (None: no fencing)."""
        if self._fence is None or values.get("intent") is None:
            return None
        return Jsonb(self._fence)

    def _conflict(self, exc: errors.UniqueViolation, target: Mapping[str, Any]) -> StoreError:
        if exc.diag.constraint_name != _LIVE_TARGET_INDEX:
            return self._error(exc)
        return StoreConflictError(
            self.location, str(target["app_id"]), str(target["channel"]), int(target["uid"])
        )

    async def get_session(self, session_id: int) -> SessionRecord:
        query = _SESSION_SELECT + sql.SQL(" WHERE id = %s")

        async def select(conn: AsyncConnection[TupleRow]) -> SessionRecord:
            rows = await _fetch_all(conn, query, (session_id,))
            if not rows:
                raise KeyError(session_id)
            return _session_from_row(rows[0])

        return await self._run(select)

    async def _write_session(
        self, session_id: int, phases: Collection[Phase] | None, row: dict[str, Any]
    ) -> SessionRecord | None:
        columns = sorted(row)
        query = sql.SQL("UPDATE sessions SET {} WHERE id = %s").format(
            sql.SQL(", ").join(sql.SQL("{} = %s").format(sql.Identifier(c)) for c in columns)
        )
        params = [*(_to_db(c, row[c]) for c in columns), session_id]
        if phases is not None:
            query += sql.SQL(" AND phase = ANY(%s::text[])")
            params.append([Phase(p).value for p in phases])
        fenced = row.get("intent") is not None and self._fence is not None
        if fenced:
            query += sql.SQL(" AND ") + _FENCE_CONDITION.format(sql.SQL("sessions.app_id"))
            params.append(Jsonb(self._fence))
        query += _SESSION_RETURNING

        async def update(conn: AsyncConnection[TupleRow]) -> SessionRecord | None:
            try:
                rows = await _fetch_all(conn, query, params)
            except errors.UniqueViolation as exc:
                raise await self._update_conflict(conn, exc, session_id, row) from None
            if not rows:
                if fenced:
                    found = await _fetch_all(
                        conn, sql.SQL("SELECT app_id FROM sessions WHERE id = %s"), (session_id,)
                    )
                    if found:
                        raise StoreFencedError(self.location, str(found[0]["app_id"]))
                if phases is None:
                    raise KeyError(session_id)
                return None
            return _session_from_row(rows[0])

        return await self._run(update)

    async def _update_conflict(
        self,
        conn: AsyncConnection[TupleRow],
        exc: errors.UniqueViolation,
        session_id: int,
        values: Mapping[str, Any],
    ) -> StoreError:
        """The error for an update that broke a unique index: the session's target is
        what the update wrote over what the row holds."""
        cursor = await conn.execute(
            "SELECT app_id, channel, uid FROM sessions WHERE id = %s", (session_id,)
        )
        row = await cursor.fetchone()
        stored = dict(zip(("app_id", "channel", "uid"), row or ("?", "?", 0), strict=True))
        return self._conflict(exc, {**stored, **values})

    async def _select_sessions(
        self, condition: _Query, params: Sequence[Any]
    ) -> list[SessionRecord]:
        query = _SESSION_SELECT + sql.SQL(" ") + condition

        async def select(conn: AsyncConnection[TupleRow]) -> list[SessionRecord]:
            return [_session_from_row(r) for r in await _fetch_all(conn, query, params)]

        return await self._run(select)

    async def live_sessions(self) -> list[SessionRecord]:
        """Every session that may still be recording, oldest first."""
        return await self._select_sessions(
            sql.SQL("WHERE phase <> ALL(%s::text[]) ORDER BY id"), (_FINALS,)
        )

    async def unmanageable_on(self, app_id: str, channel: str, uid: int) -> list[SessionRecord]:
        """Unmanageable sessions recording this (app, channel, uid)."""
        return await self._select_sessions(
            sql.SQL("WHERE phase = %s AND app_id = %s AND channel = %s AND uid = %s ORDER BY id"),
            (Phase.UNMANAGEABLE.value, app_id, channel, uid),
        )

    async def history(self, limit: int = 50, manifest: str | None = None) -> list[SessionRecord]:
        """Ended and failed sessions, newest first (a negative limit: all of them)."""
        bound = limit if limit >= 0 else None
        if manifest is None:
            return await self._select_sessions(
                sql.SQL("WHERE phase = ANY(%s::text[]) ORDER BY id DESC LIMIT %s"),
                (_FINALS, bound),
            )
        return await self._select_sessions(
            sql.SQL("WHERE phase = ANY(%s::text[]) AND manifest = %s ORDER BY id DESC LIMIT %s"),
            (_FINALS, manifest, bound),
        )

    async def latest_ended(self) -> dict[str, SessionRecord]:
        """The newest ended or failed session of each manifest."""
        query = sql.SQL("SELECT DISTINCT ON (manifest) {} FROM sessions").format(
            sql.SQL(", ").join(map(sql.Identifier, SESSION_COLUMNS))
        ) + sql.SQL(" WHERE phase = ANY(%s::text[]) ORDER BY manifest, id DESC")

        async def select(conn: AsyncConnection[TupleRow]) -> dict[str, SessionRecord]:
            rows = await _fetch_all(conn, query, (_FINALS,))
            return {r["manifest"]: _session_from_row(r) for r in rows}

        return await self._run(select)

    # -- manifest states ------------------------------------------------------------

    async def manifest_states(self) -> dict[str, ManifestState]:
        query = sql.SQL("SELECT {} FROM manifest_states").format(
            sql.SQL(", ").join(map(sql.Identifier, STATE_COLUMNS))
        )

        async def select(conn: AsyncConnection[TupleRow]) -> dict[str, ManifestState]:
            rows = await _fetch_all(conn, query, ())
            return {row["name"]: _CODEC.manifest_state(row) for row in rows}

        return await self._run(select)

    async def set_manifest_state(self, state: ManifestState) -> None:
        self._require_writer()
        query = sql.SQL(
            "INSERT INTO manifest_states ({}) VALUES ({}) ON CONFLICT (name) DO UPDATE SET {}"
        ).format(
            sql.SQL(", ").join(map(sql.Identifier, STATE_COLUMNS)),
            sql.SQL(", ").join(sql.Placeholder() * len(STATE_COLUMNS)),
            sql.SQL(", ").join(
                sql.SQL("{0} = excluded.{0}").format(sql.Identifier(n))
                for n in STATE_COLUMNS
                if n != "name"
            ),
        )
        params = [_to_db(n, getattr(state, n)) for n in STATE_COLUMNS]

        async def upsert(conn: AsyncConnection[TupleRow]) -> None:
            await conn.execute(query, params)

        await self._run(upsert)

    async def clear_failures(self, names: Sequence[str] | None = None) -> int:
        """Forget permanent failures (all, or of `names`) so they are tried again. The
        count: rows with a failure (all), or rows of `names` that exist (by names)."""
        self._require_writer()
        clear = (
            "UPDATE manifest_states SET failed_spec_hash = NULL, failure_reason = NULL, "
            "failed_at = NULL WHERE "
        )
        wanted = None if names is None else list(names)

        async def update(conn: AsyncConnection[TupleRow]) -> int:
            if wanted is None:
                cursor = await conn.execute(clear + "failed_spec_hash IS NOT NULL")
            else:
                cursor = await conn.execute(clear + "name = ANY(%s::text[])", (wanted,))
            return max(cursor.rowcount, 0)

        return await self._run(update)

    # -- last known good manifests ------------------------------------------------------

    async def known_good(
        self, names: Collection[str] | None = None, *, documents: bool = True
    ) -> dict[str, KnownGood]:
        """Last known good versions (all, or of `names`). `documents=False` gives an
        index without the documents (empty dicts), and does not fetch them."""
        query: _Query = _KNOWN_GOOD_SELECT if documents else _KNOWN_GOOD_INDEX_SELECT
        params: tuple[Any, ...] = ()
        if names is not None:
            query += sql.SQL(" WHERE name = ANY(%s::text[])")
            params = (sorted(set(names)),)

        async def select(conn: AsyncConnection[TupleRow]) -> dict[str, KnownGood]:
            rows = await _fetch_all(conn, query, params)
            return {row["name"]: _CODEC.known_good(row, documents=documents) for row in rows}

        return await self._run(select)

    async def remember_known_good(
        self, entries: Sequence[KnownGood], forget: Sequence[str] = ()
    ) -> None:
        """Store these versions (rows whose spec and file are unchanged are left alone,
        their `stored_at` too) and forget the names in `forget`, in one transaction."""
        self._require_writer()
        now = self._now()
        rows = [(e.name, e.source_file, e.spec_hash, Jsonb(e.document), now) for e in entries]
        gone = list(forget)

        async def write(conn: AsyncConnection[TupleRow]) -> None:
            async with conn.transaction(), conn.cursor() as cursor:
                if rows:
                    await cursor.executemany(
                        "INSERT INTO last_known_good "
                        "(name, source_file, spec_hash, document, stored_at) "
                        "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (name) DO UPDATE SET "
                        "source_file = excluded.source_file, spec_hash = excluded.spec_hash, "
                        "document = excluded.document, stored_at = excluded.stored_at "
                        "WHERE last_known_good.spec_hash <> excluded.spec_hash "
                        "OR last_known_good.source_file <> excluded.source_file",
                        rows,
                    )
                if gone:
                    await cursor.execute(
                        "DELETE FROM last_known_good WHERE name = ANY(%s::text[])", (gone,)
                    )

        await self._run(write)


async def _fetch_all(
    conn: AsyncConnection[TupleRow], query: _Query, params: Sequence[Any]
) -> list[DictRow]:
    async with conn.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(query, params)
        return await cursor.fetchall()


def _store_error(target: _Target, exc: psycopg.Error) -> StoreError:
    """The StoreError for a psycopg exception, by its kind and SQLSTATE."""
    location = target.location
    detail = target.redact(str(exc) or type(exc).__name__)
    if isinstance(exc, errors.ReadOnlySqlTransaction):
        return StoreAccessError(
            location,
            f"state store {location} cannot be written: {detail}; point the URL at the "
            "primary server, not a read-only standby",
        )
    if isinstance(exc, errors.InsufficientPrivilege):
        return StoreAccessError(
            location,
            f"state store {location} refuses this role: {detail}; grant it the privileges "
            "`orchestrator init` gave its own role, or use that role",
        )
    if isinstance(exc, errors.UndefinedTable | errors.UndefinedColumn):
        return StoreCorruptError(location, f"lacks part of the orchestrator schema ({detail})")
    if isinstance(exc, psycopg.OperationalError):
        return StoreUnavailableError(location, detail)
    return StoreError(f"state store {location} failed: {detail}")


async def _unavailable(target: _Target, waited: float) -> StoreUnavailableError:
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


async def _configure(conn: AsyncConnection[TupleRow]) -> None:
    """Every connection: statements bounded, datetimes in UTC."""
    await conn.execute("SET statement_timeout = '30s'; SET TimeZone = 'UTC'")


async def _configure_reader(conn: AsyncConnection[TupleRow]) -> None:
    """A reader's connection also refuses writes (like SQLite's `query_only`)."""
    await conn.execute(
        "SET statement_timeout = '30s'; SET TimeZone = 'UTC'; "
        "SET default_transaction_read_only = on"
    )


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
    target = _Target(url)
    location = target.location
    try:
        conn = await AsyncConnection.connect(url, **target.kwargs)
    except psycopg.Error as exc:
        raise StoreUnavailableError(location, target.redact(str(exc))) from None
    try:
        try:
            await _configure(conn)
            version = await _prepare(conn, location, writer=writer, create=create)
        finally:
            await conn.close()
    except psycopg.Error as exc:
        raise _store_error(target, exc) from None
    pool: AsyncConnectionPool[AsyncConnection[TupleRow]] = AsyncConnectionPool(
        url,
        kwargs=target.kwargs,
        min_size=POOL_MIN_SIZE,
        max_size=POOL_MAX_SIZE,
        open=False,
        configure=_configure if writer else _configure_reader,
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


#: The advisory lock class (first key) of App ID ownership: "ORCH"; the object id
#: (second key) is the App ID's `app_owners.lock_id`.
OWNERSHIP_LOCK_CLASS = 0x4F524348
#: The advisory lock class of replica membership ("MEMB"); the object id is the
#: backend pid of the replica's lock connection, so each live replica holds one.
MEMBERSHIP_LOCK_CLASS = 0x4D454D42
#: TCP keepalive on the lock connection, both ways: the server probes a silent
#: replica after KEEPALIVE_IDLE s, every KEEPALIVE_INTERVAL s, KEEPALIVE_COUNT times,
#: and gives up on unacknowledged data after TCP_USER_TIMEOUT_MS: a replica that
#: vanished (host down, network cut) loses its session, and so its locks, within
#: about LOCK_LOSS_BOUND seconds.
KEEPALIVE_IDLE = 5
KEEPALIVE_INTERVAL = 2
KEEPALIVE_COUNT = 3
TCP_USER_TIMEOUT_MS = 10_000
LOCK_LOSS_BOUND = KEEPALIVE_IDLE + KEEPALIVE_INTERVAL * KEEPALIVE_COUNT + 4  # 15 s
#: Seconds any statement on the lock connection may take before the replica takes
#: the server for unreachable (and stops acting).
LOCK_STATEMENT_TIMEOUT = 4.0


class PostgresOwnership:
    """This replica's App IDs: session-level advisory locks on a dedicated connection.

    Holding `(OWNERSHIP_LOCK_CLASS, lock_id)` is owning the App ID; claiming it bumps its
    epoch in `app_owners`, which the store then requires of every intent it writes
    for that App ID (fencing, see `_FENCE_CONDITION`). Replicas count each other by
    their membership locks. The connection has TCP keepalive set on both ends, so
    that a vanished replica's session, and its locks, end within LOCK_LOSS_BOUND s.
    Any failure of the connection is StoreUnavailableError: the caller then takes
    itself for owning nothing (`lost()`) and reconnects later.
    """

    def __init__(self, store: PostgresStore, name: str) -> None:
        self._store = store
        self._target = store._target
        self.name = name
        self._conn: AsyncConnection[TupleRow] | None = None
        self._owned: dict[str, int] = {}  # App ID -> epoch of our claim
        self._lock = asyncio.Lock()

    @property
    def owned(self) -> frozenset[str]:
        return frozenset(self._owned)

    async def _connection(self) -> AsyncConnection[TupleRow]:
        if self._conn is not None and not self._conn.closed:
            return self._conn
        if self._conn is not None:  # closed under us: its session, and locks, are gone
            self._conn = None
            self.lost()
        kwargs = dict(self._target.kwargs)
        kwargs.update(
            keepalives=1,
            keepalives_idle=KEEPALIVE_IDLE,
            keepalives_interval=KEEPALIVE_INTERVAL,
            keepalives_count=KEEPALIVE_COUNT,
            tcp_user_timeout=TCP_USER_TIMEOUT_MS,
            application_name=f"orchestrator {self.name}"[:63],
        )
        conn = await AsyncConnection.connect(self._target.url, **kwargs)
        await conn.execute(
            f"SET TimeZone = 'UTC'; SET statement_timeout = '{int(LOCK_STATEMENT_TIMEOUT)}s'; "
            f"SET tcp_keepalives_idle = {KEEPALIVE_IDLE}; "
            f"SET tcp_keepalives_interval = {KEEPALIVE_INTERVAL}; "
            f"SET tcp_keepalives_count = {KEEPALIVE_COUNT}; "
            f"SET tcp_user_timeout = {TCP_USER_TIMEOUT_MS}"
        )
        await conn.execute(
            "SELECT pg_advisory_lock(%s::int, pg_backend_pid())", (MEMBERSHIP_LOCK_CLASS,)
        )
        self._conn = conn
        return conn

    async def _do(self, operation: Callable[[AsyncConnection[TupleRow]], Awaitable[_T]]) -> _T:
        """Run `operation` on the lock connection, bounded; a failure means every lock
        may be gone: the connection is dropped and StoreUnavailableError raised."""
        async with self._lock:
            try:
                async with asyncio.timeout(LOCK_STATEMENT_TIMEOUT + CONNECT_TIMEOUT + 1):
                    conn = await self._connection()
                    return await operation(conn)
            except (psycopg.Error, TimeoutError) as exc:
                await self._drop()
                detail = str(exc) or "no answer in time"
                raise StoreUnavailableError(
                    self._target.location, self._target.redact(detail)
                ) from None

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        self.lost()
        if conn is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), 1.0)

    def lost(self) -> None:
        """Own nothing from now on (the lock connection failed or is closed)."""
        self._owned.clear()
        self._store._fence = {}

    async def survey(self) -> tuple[int, dict[str, str | None]]:
        """(live replicas, App ID -> holder's replica name or None when nobody holds
        it), for the App IDs in `app_owners`; also checks that our locks still stand."""

        async def look(conn: AsyncConnection[TupleRow]) -> tuple[int, dict[str, str | None]]:
            cursor = await conn.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
                "AND classid = %s::int::oid AND objsubid = 2",
                (MEMBERSHIP_LOCK_CLASS,),
            )
            members = await cursor.fetchone()
            cursor = await conn.execute(
                "SELECT o.app_id, o.owner, l.pid IS NOT NULL, l.pid = pg_backend_pid() "
                "FROM app_owners o LEFT JOIN pg_locks l ON l.locktype = 'advisory' "
                "AND l.granted AND l.classid = %s::int::oid AND l.objid = o.lock_id::oid "
                "AND l.objsubid = 2",
                (OWNERSHIP_LOCK_CLASS,),
            )
            holders: dict[str, str | None] = {}
            for app_id, owner, held, mine in await cursor.fetchall():
                holders[app_id] = owner if held else None
                if app_id in self._owned and not mine:
                    self._owned.pop(app_id)  # not ours any more: stop acting on it
            return (int(members[0]) if members else 1), holders

        count, holders = await self._do(look)
        self._store._fence = dict(self._owned)
        return max(count, 1), holders

    async def check(self) -> None:
        """That the lock connection still answers (and so our locks stand); a failure
        leaves us owning nothing (StoreUnavailableError)."""
        if not self._owned:
            return

        async def ping(conn: AsyncConnection[TupleRow]) -> None:
            await conn.execute("SELECT 1")

        await self._do(ping)

    async def claim(self, app_id: str) -> bool:
        """Try to own `app_id` (never waits for another replica); True when owned now."""

        async def take(conn: AsyncConnection[TupleRow]) -> int | None:
            await conn.execute(
                "INSERT INTO app_owners (app_id) VALUES (%s) ON CONFLICT (app_id) DO NOTHING",
                (app_id,),
            )
            cursor = await conn.execute(
                "SELECT lock_id FROM app_owners WHERE app_id = %s", (app_id,)
            )
            row = await cursor.fetchone()
            assert row is not None
            cursor = await conn.execute(
                "SELECT pg_try_advisory_lock(%s::int, %s::int)", (OWNERSHIP_LOCK_CLASS, row[0])
            )
            got = await cursor.fetchone()
            if not got or not got[0]:
                return None
            cursor = await conn.execute(
                "UPDATE app_owners SET owner = %s, epoch = epoch + 1, since = now() "
                "WHERE app_id = %s RETURNING epoch",
                (self.name, app_id),
            )
            epoch = await cursor.fetchone()
            assert epoch is not None
            return int(epoch[0])

        if app_id in self._owned:
            return True
        epoch = await self._do(take)
        if epoch is None:
            return False
        self._owned[app_id] = epoch
        self._store._fence = dict(self._owned)
        return True

    async def release(self, app_id: str) -> None:
        """Stop owning `app_id` (a hand-over: its recordings go on; another replica
        adopts them)."""
        epoch = self._owned.pop(app_id, None)
        self._store._fence = dict(self._owned)
        if epoch is None:
            return

        async def unlock(conn: AsyncConnection[TupleRow]) -> None:
            await conn.execute(
                "SELECT pg_advisory_unlock(%s::int, lock_id) FROM app_owners WHERE app_id = %s",
                (OWNERSHIP_LOCK_CLASS, app_id),
            )

        await self._do(unlock)

    async def owners(self) -> list[AppOwner]:
        """Every App ID's owner as recorded, and whether its lock is held now."""
        return await self._store.app_owners()

    async def aclose(self) -> None:
        """Release everything (closing the connection ends its session and locks)."""
        async with self._lock:
            await self._drop()


if TYPE_CHECKING:

    def _implements_store(store: PostgresStore) -> Store:
        """mypy checks here that PostgresStore keeps the Store protocol."""
        return store

    def _implements_ownership(ownership: PostgresOwnership) -> Ownership:
        return ownership
