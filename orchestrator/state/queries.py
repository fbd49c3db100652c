"""Every statement the two state stores share, in both SQL dialects, and the one list
of migrations.

Why it exists: the SQLite store (store.py) and the PostgreSQL store (postgres.py)
keep the `Store` protocol with one implementation (base.py); what their SQL does is
the same, and how it is written differs in a few places only. Each statement is
written here once, with `?` for its parameters; where the dialects differ, both
spellings stand side by side in `Queries.__init__`:

- placeholders: SQLite's `?`, psycopg's `%s` (rewritten from `?`: no shared
  statement holds a literal `?` or `%`);
- arrays (a list bound as one parameter): PostgreSQL's `text[]`; SQLite has none, so
  the codec binds a JSON array that `json_each` unnests;
- "no limit": PostgreSQL's `LIMIT NULL`; SQLite refuses NULL and takes -1;
- column types: SQLite's INTEGER and TEXT (ISO 8601 datetimes, JSON text),
  PostgreSQL's bigint identity, timestamptz and jsonb (`_TYPES`);
- fencing (replicas): only PostgreSQL has App ID owners, so only its session writes
  carry the epoch check (`_FENCE`; see `SqlStore.fence`).

RETURNING, upserts (`ON CONFLICT ... DO UPDATE`) and the partial unique index are
written alike in both. The statements only one store runs to open or check itself
(SQLite's pragmas and `sqlite_master`, PostgreSQL's privileges, advisory locks and
`pg_locks`) stay in that store's module.

Must never: build SQL from a caller's input (column names come only from the
schema's whitelists in columns.py, every value is a bound parameter); change a
released migration (append a new one; tests/contract/test_migrations.py upgrades
what earlier releases wrote and compares it with a new store).
"""

# ruff: noqa: S608 (statements are built here from the schema's own names, never from a
# caller's input: every value is a bound parameter)
from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Literal

from orchestrator.state.columns import (
    FINAL_PHASE_VALUES,
    NOTICE_COLUMNS,
    SESSION_COLUMNS,
    STATE_COLUMNS,
    check_no_secret_columns,
)
from orchestrator.state.errors import StoreCorruptError
from orchestrator.state.model import KnownGood

Dialect = Literal["sqlite", "postgres"]

#: The PostgreSQL channel a replica NOTIFYs with a notice's App ID when it keeps one.
NOTICE_CHANNEL = "orchestrator_notices"

#: The index that keeps one live session per target (app_id, channel, uid). An
#: unmanageable session may coexist with a fresh start attempt on its target by design.
LIVE_TARGET_INDEX = "sessions_one_live_per_target"

# -- the schema ------------------------------------------------------------------------

# A column's kind -> its type in (SQLite, PostgreSQL). Frozen: released migrations are
# written with it (a new kind may be added).
_TYPES: dict[str, tuple[str, str]] = {
    "id": ("INTEGER PRIMARY KEY AUTOINCREMENT", "bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY"),
    "text": ("TEXT", "text"),
    "int": ("INTEGER", "integer"),
    "bigint": ("INTEGER", "bigint"),
    "stamp": ("TEXT", "timestamptz"),
    "json": ("TEXT", "jsonb"),
}
_NN = "NOT NULL"

# (column, kind, constraint) of the tables of version 1.
_SESSIONS = (
    ("id", "id", ""),
    ("manifest", "text", _NN),
    ("app", "text", _NN),
    ("app_id", "text", _NN),
    ("channel", "text", _NN),
    ("uid", "bigint", _NN),
    ("mode", "text", _NN),
    ("phase", "text", _NN),
    ("created_at", "stamp", _NN),
    ("updated_at", "stamp", _NN),
    ("resource_id", "text", ""),
    ("sid", "text", ""),
    ("source_file", "text", ""),
    ("spec_hash", "text", ""),
    ("subscription_hash", "text", ""),
    ("layout_hash", "text", ""),
    ("restart_hash", "text", ""),
    ("window_start", "stamp", ""),
    ("window_end", "stamp", ""),
    ("started_at", "stamp", ""),
    ("ended_at", "stamp", ""),
    ("last_query_at", "stamp", ""),
    ("last_status", "int", ""),
    ("end_reason", "text", ""),
    ("file_list", "json", ""),
    ("uploading_status", "text", ""),
    ("restart_count", "int", "NOT NULL DEFAULT 0"),
    ("intent", "text", ""),
    ("intent_at", "stamp", ""),
    ("error", "text", ""),
)
_MANIFEST_STATES = (
    ("name", "text", "PRIMARY KEY"),
    ("failed_spec_hash", "text", ""),
    ("failure_reason", "text", ""),
    ("failed_at", "stamp", ""),
)
_LAST_KNOWN_GOOD = (
    ("name", "text", "PRIMARY KEY"),
    ("source_file", "text", _NN),
    ("spec_hash", "text", _NN),
    ("document", "json", _NN),
    ("stored_at", "stamp", _NN),
)


def _type(kind: str, dialect: Dialect) -> str:
    sqlite, postgres = _TYPES[kind]
    return sqlite if dialect == "sqlite" else postgres


def _create_table(name: str, columns: Sequence[tuple[str, str, str]], dialect: Dialect) -> str:
    lines = (f"{c} {_type(kind, dialect)} {extra}".rstrip() for c, kind, extra in columns)
    return f"CREATE TABLE {name} (\n    " + ",\n    ".join(lines) + "\n)"


@dataclass(frozen=True)
class Migration:
    """One schema version: what each dialect runs, in the writer's migration
    transaction, to reach it from the version before."""

    version: int
    about: str
    sqlite: tuple[str, ...]
    postgres: tuple[str, ...]

    def statements(self, dialect: Dialect) -> tuple[str, ...]:
        return self.sqlite if dialect == "sqlite" else self.postgres


def _tables(dialect: Dialect) -> tuple[str, ...]:
    return (
        _create_table("sessions", _SESSIONS, dialect),
        "CREATE INDEX sessions_by_phase ON sessions (phase)",
        "CREATE INDEX sessions_by_manifest ON sessions (manifest, id)",
        _create_table("manifest_states", _MANIFEST_STATES, dialect),
        _create_table("last_known_good", _LAST_KNOWN_GOOD, dialect),
    )


# IF NOT EXISTS: PostgreSQL stores made before the two lists of migrations became one
# created this index in version 1.
_LIVE_TARGET = (
    f"CREATE UNIQUE INDEX IF NOT EXISTS {LIVE_TARGET_INDEX} ON sessions (app_id, channel, uid) "
    "WHERE phase NOT IN ('ended', 'failed', 'unmanageable')"
)
# Who owns which App ID (replicas: PostgreSQL only; SQLite's one writer owns them all).
# `lock_id` is the advisory lock's object id; `epoch` grows with every claim and
# fences the writes of an owner that lost it.
_APP_OWNERS = """CREATE TABLE app_owners (
    lock_id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    app_id  text NOT NULL UNIQUE,
    owner   text,
    epoch   bigint NOT NULL DEFAULT 0,
    since   timestamptz
)"""
# Each ended session's `end_kind` from the text its `end_reason` begins with (the
# prefixes written before the column existed).
_END_KIND_BACKFILL = """UPDATE sessions SET end_kind = CASE
        WHEN end_reason LIKE 'stopped%' THEN 'stopped'
        WHEN end_reason LIKE 'exited%' THEN 'exited'
        WHEN end_reason LIKE 'failed: conflict (53)%' THEN 'conflict'
        WHEN end_reason LIKE 'failed: untracked (53)%' THEN 'untracked'
        WHEN end_reason LIKE 'failed%' THEN 'failed'
    END
    WHERE phase IN ('ended', 'failed')"""


def _add_column(table: str, column: str, kind: str, dialect: Dialect) -> str:
    return f"ALTER TABLE {table} ADD COLUMN {column} {_type(kind, dialect)}"


#: The schema versions, in order: version N is what the first N entries make, the
#: same in both stores. Never edit a released entry; append a new one. (Version 2 was
#: SQLite's live-target index and PostgreSQL's app_owners before the lists were one;
#: a store made by either list, at any version, upgrades to the same schema.)
# Version 4's columns (a rollover's): when a session's token and resource ID expire,
# and the session it replaced.
_ROLLOVER_COLUMNS = (
    ("join_expires_at", "stamp"),
    ("resource_expires_at", "stamp"),
    ("predecessor_id", "bigint"),
)

# Version 5's (Agora's notifications and failovers, issue 19): the columns a failover
# and an unconfirmed end write, and the notifications received.
_FAILOVER_COLUMNS = (
    ("failover_at", "stamp"),
    ("failover_uid", "text"),
    ("confirm_until", "stamp"),
)
_NOTICES = (
    ("notice_id", "text", "PRIMARY KEY"),
    ("event_type", "int", _NN),
    ("received_at", "stamp", _NN),
    ("body", "json", _NN),
    ("sid", "text", ""),
    ("channel", "text", ""),
    ("app_id", "text", ""),
    ("session_id", "bigint", ""),
    ("handled_at", "stamp", ""),
    ("outcome", "text", ""),
)


def _notices_schema(dialect: Dialect) -> tuple[str, ...]:
    return (
        *(_add_column("sessions", column, kind, dialect) for column, kind in _FAILOVER_COLUMNS),
        "CREATE INDEX sessions_by_sid ON sessions (sid)",
        "CREATE INDEX sessions_unconfirmed ON sessions (id) WHERE confirm_until IS NOT NULL",
        _create_table("notices", _NOTICES, dialect),
        "CREATE INDEX notices_pending ON notices (received_at) WHERE handled_at IS NULL",
    )


# Version 6: each manifest's newest finished session, kept by the database itself
# (triggers on `sessions`), so that reading it is one row a manifest however long
# the history and however many manifests there are; every write by any process,
# an operator's included, keeps it. The final phases are written out: this is
# history, as the migration ran it.
_LATEST_FINISHED = (
    ("manifest", "text", "PRIMARY KEY"),
    ("session_id", "bigint", _NN),
)
_FINISHED = "('ended', 'failed')"
_LATEST_BACKFILL = (
    "INSERT INTO latest_finished (manifest, session_id) SELECT manifest, max(id) "
    f"FROM sessions WHERE phase IN {_FINISHED} GROUP BY manifest"
)


def _latest_finished_schema(dialect: Dialect) -> tuple[str, ...]:
    """The table, its rows for the history so far, and what keeps it: a session that
    finishes becomes its manifest's (when newer than the one kept); one that stops
    being its manifest's finished session (taken back to a live phase, moved to
    another manifest, deleted) hands that over to the newest finished one left."""
    sqlite = dialect == "sqlite"
    newest = "max" if sqlite else "GREATEST"
    # A row written meanwhile (PostgreSQL: by another transaction) keeps the newer id.
    upsert = (
        "ON CONFLICT (manifest) DO UPDATE SET "
        f"session_id = {newest}(latest_finished.session_id, excluded.session_id)"
    )
    finish = (
        "INSERT INTO latest_finished (manifest, session_id) VALUES (NEW.manifest, NEW.id) "
        f"{upsert};"
    )
    hand_over = (
        "DELETE FROM latest_finished WHERE manifest = OLD.manifest AND session_id = OLD.id; "
        "INSERT INTO latest_finished (manifest, session_id) SELECT f.manifest, f.id "
        f"FROM sessions f WHERE f.manifest = OLD.manifest AND f.phase IN {_FINISHED} "
        "AND NOT EXISTS (SELECT 1 FROM latest_finished WHERE manifest = OLD.manifest) "
        f"ORDER BY f.id DESC LIMIT 1 {upsert};"
    )
    table = (_create_table("latest_finished", _LATEST_FINISHED, dialect), _LATEST_BACKFILL)
    if sqlite:
        left = (
            f"OLD.phase IN {_FINISHED} AND (NEW.phase NOT IN {_FINISHED} "
            "OR NEW.manifest <> OLD.manifest)"
        )
        return (
            *table,
            "CREATE TRIGGER latest_finished_on_insert AFTER INSERT ON sessions "
            f"WHEN NEW.phase IN {_FINISHED} BEGIN {finish} END",
            "CREATE TRIGGER latest_finished_on_update AFTER UPDATE OF phase, manifest "
            f"ON sessions WHEN NEW.phase IN {_FINISHED} BEGIN {finish} END",
            "CREATE TRIGGER latest_finished_on_leave AFTER UPDATE OF phase, manifest "
            f"ON sessions WHEN {left} BEGIN {hand_over} END",
            "CREATE TRIGGER latest_finished_on_delete AFTER DELETE ON sessions "
            f"WHEN OLD.phase IN {_FINISHED} BEGIN {hand_over} END",
        )
    # The IFs are nested so that OLD and NEW are read only where they are rows (NEW is
    # null in a DELETE, OLD in an INSERT): PL/pgSQL may evaluate both sides of an OR.
    return (
        *table,
        "CREATE FUNCTION latest_finished_keep() RETURNS trigger LANGUAGE plpgsql AS $$\n"
        "BEGIN\n"
        "    IF TG_OP <> 'INSERT' THEN\n"
        f"        IF OLD.phase IN {_FINISHED} THEN\n"
        "            IF TG_OP = 'DELETE' THEN\n"
        f"                {hand_over}\n"
        f"            ELSIF NEW.phase NOT IN {_FINISHED} OR NEW.manifest <> OLD.manifest THEN\n"
        f"                {hand_over}\n"
        "            END IF;\n"
        "        END IF;\n"
        "    END IF;\n"
        "    IF TG_OP <> 'DELETE' THEN\n"
        f"        IF NEW.phase IN {_FINISHED} THEN\n"
        f"            {finish}\n"
        "        END IF;\n"
        "    END IF;\n"
        "    RETURN NULL;\n"
        "END\n"
        "$$",
        "CREATE TRIGGER latest_finished_keep AFTER INSERT OR UPDATE OF phase, manifest "
        "OR DELETE ON sessions FOR EACH ROW EXECUTE FUNCTION latest_finished_keep()",
    )


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "sessions, manifest states and last known good manifests",
        sqlite=_tables("sqlite"),
        postgres=_tables("postgres"),
    ),
    Migration(
        2,
        "one live session per target; who owns which App ID (replicas, PostgreSQL only)",
        sqlite=(_LIVE_TARGET,),
        postgres=(_LIVE_TARGET, _APP_OWNERS),
    ),
    Migration(
        3,
        "why a session ended, as a kind the planner reads (was a prefix of end_reason)",
        sqlite=(_add_column("sessions", "end_kind", "text", "sqlite"), _END_KIND_BACKFILL),
        postgres=(_add_column("sessions", "end_kind", "text", "postgres"), _END_KIND_BACKFILL),
    ),
    Migration(
        4,
        "rollover: when a session's token and resource ID expire, and the session it replaced",
        sqlite=tuple(
            _add_column("sessions", column, kind, "sqlite") for column, kind in _ROLLOVER_COLUMNS
        ),
        postgres=tuple(
            _add_column("sessions", column, kind, "postgres") for column, kind in _ROLLOVER_COLUMNS
        ),
    ),
    Migration(
        5,
        "Agora's notifications: a failover's time and uid, unconfirmed ends, notices received",
        sqlite=_notices_schema("sqlite"),
        postgres=_notices_schema("postgres"),
    ),
    Migration(
        6,
        "each manifest's newest finished session, kept by triggers on sessions",
        sqlite=_latest_finished_schema("sqlite"),
        postgres=_latest_finished_schema("postgres"),
    ),
)

for _index, _migration in enumerate(MIGRATIONS, start=1):
    if _migration.version != _index:
        raise AssertionError(f"migration {_migration.version} stands at place {_index}")

_COLUMN = re.compile(
    r"(?:^\s*|ADD COLUMN\s+)(\w+)\s+(?:bigint|integer|text|timestamptz|jsonb|boolean)\b",
    re.M | re.I,
)
# No column of the schema, as the migrations of both dialects declare it, nor of the
# records read from it, looks like it could hold a secret.
check_no_secret_columns(
    [name for m in MIGRATIONS for s in m.sqlite + m.postgres for name in _COLUMN.findall(s)]
    + [*SESSION_COLUMNS, *STATE_COLUMNS, *(f.name for f in fields(KnownGood)), *NOTICE_COLUMNS]
)


def latest_version() -> int:
    """The schema version this code writes (read at call time: tests append to the list)."""
    return len(MIGRATIONS)


def known_version(location: Path | str, stored: int | None, has_tables: bool) -> int:
    """The schema version of a store whose schema_version table holds `stored` (None:
    no row): 0 for a store being created; an empty table beside the store's tables
    is a damaged store (migrating it from 0 would fail on tables that exist)."""
    if stored is not None:
        return stored
    if has_tables:
        raise StoreCorruptError(
            location,
            "has an empty schema_version table beside its tables, so its schema version is unknown",
        )
    return 0


# -- statements --------------------------------------------------------------------------

_SESSION = ", ".join(SESSION_COLUMNS)
_STATE = ", ".join(STATE_COLUMNS)
_FINALS = ", ".join(f"'{phase}'" for phase in FINAL_PHASE_VALUES)  # fixed enum values
_KNOWN_GOOD_INDEX = "name, source_file, spec_hash, stored_at"


def _not_final() -> str:
    """The sessions whose phase is not final, any other phase included (one this code
    does not know is read, and refused as corrupt, never taken for an end), through
    `sessions_by_phase`: one range of the index between each two final phases, so that
    the finished sessions, a store's whole history, are never read (`phase NOT IN`
    reads every session the store ever kept)."""
    bounds = list(FINAL_PHASE_VALUES)  # lowercase ASCII words: every collation agrees
    ranges = [f"phase < '{bounds[0]}'", f"phase > '{bounds[-1]}'"]
    ranges += [f"phase > '{a}' AND phase < '{b}'" for a, b in itertools.pairwise(bounds)]
    return (
        "id IN (" + " UNION ALL ".join(f"SELECT id FROM sessions WHERE {r}" for r in ranges) + ")"
    )


# A session write passes only while its App ID's ownership epoch is the one this
# process claimed: {} is the App ID, the parameter the epochs claimed, as a JSON
# object {"app_id": epoch, ...}. The owner row is share-locked until the write
# commits, so a claim's epoch bump waits for the write and then sees it. An App ID
# missing from the object is never written.
_FENCE = (
    "EXISTS (SELECT 1 FROM app_owners o WHERE o.app_id = {} "
    "AND o.epoch = (?::jsonb ->> o.app_id)::bigint FOR SHARE)"
)


def _columns(names: Sequence[str]) -> Sequence[str]:
    """`names`, once checked to be session columns (never a caller's text)."""
    unknown = set(names) - set(SESSION_COLUMNS)
    if unknown:
        raise ValueError(f"not columns of the sessions table: {sorted(unknown)}")
    return names


class Queries:
    """Every shared statement in one dialect (`SQLITE` and `POSTGRES` below).

    Attributes are complete statements; methods build the ones whose columns or
    conditions vary, and say which parameters they take, in order."""

    def __init__(self, dialect: Dialect) -> None:
        self.dialect: Dialect = dialect
        sqlite = dialect == "sqlite"
        # -- what differs -----------------------------------------------------------
        self._mark = "?" if sqlite else "%s"
        # A column's value is one of an array parameter's (the codec's `write_array`).
        self._in_array = (
            "{} IN (SELECT value FROM json_each(?))" if sqlite else "{} = ANY(?::text[])"
        )
        #: The LIMIT parameter that means no limit.
        self.unlimited: int | None = -1 if sqlite else None
        #: Whether session writes can be fenced (App ID owners exist).
        self.fences = not sqlite
        # What changes with every write of a row, whichever process writes it
        # (PostgreSQL's xmin: the transaction that wrote this version of the row);
        # SQLite has none, nor needs one (its writer is the only one: latest.py).
        row_version = None if sqlite else "xmin::text"
        self.schema_version_table = (
            "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)"
            if sqlite
            else "CREATE TABLE IF NOT EXISTS schema_version ("
            "singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton), "
            "version integer NOT NULL)"
        )
        # -- the same in both ---------------------------------------------------------
        self.stored_version = "SELECT max(version) FROM schema_version"
        self.clear_version = "DELETE FROM schema_version"
        self.set_version = self._sql("INSERT INTO schema_version (version) VALUES (?)")

        select = f"SELECT {_SESSION} FROM sessions"
        #: (id)
        self.get_session = self._sql(f"{select} WHERE id = ?")
        self.live_sessions = f"{select} WHERE {_not_final()} ORDER BY id"
        #: (phase, app_id, channel, uid)
        self.unmanageable_on = self._sql(
            f"{select} WHERE phase = ? AND app_id = ? AND channel = ? AND uid = ? ORDER BY id"
        )
        #: (channel, uid, phase, phase)
        self.sidless_on = self._sql(
            f"{select} WHERE sid IS NULL AND channel = ? AND uid = ? AND phase IN (?, ?) "
            "ORDER BY id"
        )
        #: (limit)
        self.history = self._sql(f"{select} WHERE phase IN ({_FINALS}) ORDER BY id DESC LIMIT ?")
        #: (manifest, limit)
        self.history_of = self._sql(
            f"{select} WHERE phase IN ({_FINALS}) AND manifest = ? ORDER BY id DESC LIMIT ?"
        )
        # The newest finished session of each manifest: the ids the triggers of
        # version 6 keep, one a manifest, each looked up by its primary key. On
        # PostgreSQL as an array, so that the plan is those lookups whatever the
        # table's statistics say (a join, planned on none, read every session).
        latest = (
            "id IN (SELECT session_id FROM latest_finished)"
            if sqlite
            else "id = ANY(ARRAY(SELECT session_id FROM latest_finished))"
        )
        of_apps = f" AND {self._in_array.format('app_id')}"
        self.latest_ended = f"{select} WHERE {latest}"
        #: (app_ids: an array)
        self.latest_ended_of = self._sql(self.latest_ended + of_apps)
        #: The same sessions' ids and row versions (none: the dialect has no row
        #: version); then (app_ids: an array).
        self.latest_versions: str | None = None
        self.latest_versions_of: str | None = None
        #: (ids: an array of session ids) those sessions with their row versions.
        self.versioned_sessions: str | None = None
        if row_version is not None:
            versions = f"SELECT id, {row_version} AS row_version FROM sessions WHERE {latest}"
            self.latest_versions = versions
            self.latest_versions_of = self._sql(versions + of_apps)
            self.versioned_sessions = self._sql(
                f"SELECT {row_version} AS row_version, {_SESSION} FROM sessions "
                "WHERE id = ANY(?::bigint[])"
            )

        self.unconfirmed = (
            # Through the partial index `sessions_unconfirmed` (SQLite would otherwise
            # take `sessions_by_phase` and read every finished session).
            f"{select} WHERE id IN (SELECT id FROM sessions WHERE confirm_until IS NOT NULL) "
            f"AND phase IN ({_FINALS}) ORDER BY id"
        )
        #: (sid)
        self.session_by_sid = self._sql(f"{select} WHERE sid = ? ORDER BY id DESC LIMIT 1")

        notices = ", ".join(NOTICE_COLUMNS)
        #: (every column of NOTICE_COLUMNS, in order); a notice_id kept before: no row.
        #: PostgreSQL: one statement also wakes the replicas that LISTEN (NOTIFY with
        #: its App ID, sent as it commits) when it waits to be acted on, so that no
        #: notice is kept without its wake-up (two statements could fail in between,
        #: and a resend is a duplicate that wakes nobody).
        insert = (
            f"INSERT INTO notices ({notices}) VALUES ({', '.join('?' for _ in NOTICE_COLUMNS)}) "
            "ON CONFLICT (notice_id) DO NOTHING RETURNING notice_id"
        )
        if not sqlite:
            insert = (
                f"WITH kept AS ({insert}, app_id, handled_at) SELECT notice_id, "
                f"CASE WHEN app_id IS NOT NULL AND handled_at IS NULL "
                f"THEN pg_notify('{NOTICE_CHANNEL}', app_id) END FROM kept"
            )
        self.insert_notice = self._sql(insert)
        pending = f"SELECT {notices} FROM notices WHERE handled_at IS NULL"
        #: (limit)
        self.pending_notices = self._sql(f"{pending} ORDER BY received_at, notice_id LIMIT ?")
        #: (app_ids: an array, limit)
        self.pending_notices_of = self._sql(
            f"{pending} AND {self._in_array.format('app_id')} "
            "ORDER BY received_at, notice_id LIMIT ?"
        )
        #: (handled_at, outcome, notice_id)
        self.settle_notice = self._sql(
            "UPDATE notices SET handled_at = ?, outcome = ? WHERE notice_id = ?"
        )
        #: (before)
        self.prune_notices = self._sql(
            "DELETE FROM notices WHERE handled_at IS NOT NULL AND received_at < ?"
        )

        self.manifest_states = f"SELECT {_STATE} FROM manifest_states"
        #: (every column of STATE_COLUMNS, in order)
        self.set_manifest_state = self._sql(
            f"INSERT INTO manifest_states ({_STATE}) "
            f"VALUES ({', '.join('?' for _ in STATE_COLUMNS)}) ON CONFLICT (name) DO UPDATE SET "
            + ", ".join(f"{c} = excluded.{c}" for c in STATE_COLUMNS if c != "name")
        )
        clear = (
            "UPDATE manifest_states SET failed_spec_hash = NULL, failure_reason = NULL, "
            "failed_at = NULL WHERE "
        )
        self.clear_all_failures = clear + "failed_spec_hash IS NOT NULL"
        #: (names: an array)
        self.clear_failures_of = self._sql(clear + self._in_array.format("name"))

        #: (name, source_file, spec_hash, document, stored_at); a row whose spec and
        #: file are unchanged is left alone, its stored_at too.
        self.remember_known_good = self._sql(
            "INSERT INTO last_known_good (name, source_file, spec_hash, document, stored_at) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET "
            "source_file = excluded.source_file, spec_hash = excluded.spec_hash, "
            "document = excluded.document, stored_at = excluded.stored_at "
            "WHERE last_known_good.spec_hash <> excluded.spec_hash "
            "OR last_known_good.source_file <> excluded.source_file"
        )
        #: (names: an array)
        self.forget_known_good = self._sql(
            "DELETE FROM last_known_good WHERE " + self._in_array.format("name")
        )

    def migrations(self, after: int) -> list[str]:
        """The statements, in this dialect, of every migration after version `after`."""
        return [s for migration in MIGRATIONS[after:] for s in migration.statements(self.dialect)]

    def _sql(self, text: str) -> str:
        """`text` with this dialect's placeholders."""
        if self._mark == "?":
            return text
        if "%" in text:
            raise ValueError(f"a shared statement holds a literal %: {text!r}")
        return text.replace("?", self._mark)

    def _fenced(self, app_id: str) -> str:
        if not self.fences:
            raise ValueError(f"{self.dialect} stores have no App ID owners to fence with")
        return _FENCE.format(app_id)

    def insert_session(self, columns: Sequence[str], *, fenced: bool) -> str:
        """A new session, returned as stored. Parameters: the columns' values, then
        (fenced) the App ID and the claimed epochs; fenced, no row comes back when the
        fence refuses it."""
        names = ", ".join(_columns(columns))
        values = ", ".join("?" for _ in columns)
        source = f"SELECT {values} WHERE {self._fenced('?')}" if fenced else f"VALUES ({values})"
        return self._sql(f"INSERT INTO sessions ({names}) {source} RETURNING {_SESSION}")

    def update_session(self, columns: Sequence[str], *, phases: bool, fenced: bool) -> str:
        """Write the columns of one session and return it as stored. Parameters: the
        columns' values, the id, then (phases) the phases it must be in, as an array,
        then (fenced) the claimed epochs. No row comes back when the session is not
        there, not in one of the phases, or fenced off."""
        sets = ", ".join(f"{c} = ?" for c in _columns(columns))
        where = "id = ?"
        if phases:
            where += " AND " + self._in_array.format("phase")
        if fenced:
            where += " AND " + self._fenced("sessions.app_id")
        return self._sql(f"UPDATE sessions SET {sets} WHERE {where} RETURNING {_SESSION}")

    def session_standing(self, *, fenced: bool) -> str:
        """Why an update wrote nothing: the session's `app_id` and whether the fence
        lets it be written (`owned`, true when unfenced); no row when there is no such
        session. Parameters: (fenced) the claimed epochs, then the id."""
        owned = self._fenced("sessions.app_id") if fenced else "1 = 1"
        return self._sql(f"SELECT app_id, {owned} AS owned FROM sessions WHERE id = ?")

    def known_good(self, *, documents: bool, by_name: bool) -> str:
        """Last known good versions (with their documents or not), all or (by_name)
        those named. Parameters: (by_name) the names, as an array."""
        columns = _KNOWN_GOOD_INDEX + (", document" if documents else "")
        query = f"SELECT {columns} FROM last_known_good"
        if by_name:
            query += " WHERE " + self._in_array.format("name")
        return self._sql(query)


SQLITE = Queries("sqlite")
POSTGRES = Queries("postgres")
