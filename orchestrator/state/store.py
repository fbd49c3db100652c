"""The state store: the only module that speaks SQL.

It remembers what the orchestrator owns on Agora's side (sessions, their resource
IDs and sids) and why sessions ended, so that a process killed at any instant
leaves a record from which the next run finishes or adopts the work.

Rules it keeps:
- Every write is its own committed transaction before the caller goes on
  (intent before a mutating API call, outcome after it).
- No secret value is ever written: callers pass hashes and references only, and
  `_check_no_secret_columns` keeps the schema free of secret-shaped columns.
- SQLite runs in WAL mode with `synchronous=FULL`: a committed intent survives a
  crash of the process and of the machine.

The interface is async so that a networked backend (PostgreSQL) can share it;
SQLite calls are short and local, so they run inline.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from dataclasses import fields
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from orchestrator.state.model import (
    FINAL_PHASES,
    Intent,
    KnownGood,
    ManifestState,
    Phase,
    SessionRecord,
)


class StoreError(Exception):
    """The store cannot be opened or used (bad URL, unreadable file, newer schema)."""


# Versioned migrations: index + 1 is the schema version. Never edit a released one;
# append a new one.
_MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE sessions (
        id                INTEGER PRIMARY KEY AUTOINCREMENT,
        manifest          TEXT NOT NULL,
        app               TEXT NOT NULL,
        app_id            TEXT NOT NULL,
        channel           TEXT NOT NULL,
        uid               INTEGER NOT NULL,
        mode              TEXT NOT NULL,
        phase             TEXT NOT NULL,
        created_at        TEXT NOT NULL,
        updated_at        TEXT NOT NULL,
        resource_id       TEXT,
        sid               TEXT,
        source_file       TEXT,
        spec_hash         TEXT,
        subscription_hash TEXT,
        layout_hash       TEXT,
        restart_hash      TEXT,
        window_start      TEXT,
        window_end        TEXT,
        started_at        TEXT,
        ended_at          TEXT,
        last_query_at     TEXT,
        last_status       INTEGER,
        end_reason        TEXT,
        file_list         TEXT,
        uploading_status  TEXT,
        restart_count     INTEGER NOT NULL DEFAULT 0,
        intent            TEXT,
        intent_at         TEXT,
        error             TEXT
    );
    CREATE INDEX sessions_by_phase ON sessions (phase);
    CREATE INDEX sessions_by_manifest ON sessions (manifest, id);
    CREATE TABLE manifest_states (
        name                 TEXT PRIMARY KEY,
        failed_spec_hash     TEXT,
        failure_reason       TEXT,
        failed_at            TEXT
    );
    CREATE TABLE last_known_good (
        name        TEXT PRIMARY KEY,
        source_file TEXT NOT NULL,
        spec_hash   TEXT NOT NULL,
        document    TEXT NOT NULL,
        stored_at   TEXT NOT NULL
    );
    """,
)

_SESSION_COLUMNS = tuple(f.name for f in fields(SessionRecord))
_WRITABLE_SESSION_COLUMNS = frozenset(_SESSION_COLUMNS) - {"id", "created_at"}
_DATETIME_COLUMNS = frozenset(
    {
        "created_at",
        "updated_at",
        "window_start",
        "window_end",
        "started_at",
        "ended_at",
        "last_query_at",
        "intent_at",
        "failed_at",
        "stored_at",
    }
)
_FORBIDDEN_COLUMN_PARTS = ("secret", "token", "password", "accesskey", "key")


def _check_no_secret_columns() -> None:
    names = _SESSION_COLUMNS + tuple(f.name for f in fields(ManifestState))
    for name in names + tuple(f.name for f in fields(KnownGood)):
        if any(part in name.replace("_", "") for part in _FORBIDDEN_COLUMN_PARTS):
            raise AssertionError(f"column {name!r} looks like it could hold a secret")


_check_no_secret_columns()


def _to_db(column: str, value: Any) -> Any:
    if value is None:
        return None
    if column in _DATETIME_COLUMNS:
        if not isinstance(value, datetime) or value.tzinfo is None:
            raise TypeError(f"{column} must be a timezone-aware datetime")
        return value.astimezone(UTC).isoformat()
    if column == "file_list":
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    if isinstance(value, Phase | Intent):
        return value.value
    return value


def _from_db(column: str, value: Any) -> Any:
    if value is None:
        return None
    if column in _DATETIME_COLUMNS:
        return datetime.fromisoformat(value)
    if column == "file_list":
        return json.loads(value)
    if column == "phase":
        return Phase(value)
    if column == "intent":
        return Intent(value)
    return value


def _session_from_row(row: sqlite3.Row) -> SessionRecord:
    return SessionRecord(**{c: _from_db(c, row[c]) for c in _SESSION_COLUMNS})


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


class Store:
    """Sessions and per-manifest state in one SQLite file."""

    def __init__(self, path: Path, *, now: Callable[[], datetime] | None = None) -> None:
        self.path = path
        self._now = now or (lambda: datetime.now(UTC))
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(path), isolation_level=None, timeout=30.0)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open state store {path}: {exc}") from None
        self._db.row_factory = sqlite3.Row
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._migrate()
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise StoreError(f"state store {path} is not usable: {exc}") from None

    # -- lifecycle -------------------------------------------------------------

    def _migrate(self) -> None:
        db = self._db
        db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        row = db.execute("SELECT version FROM schema_version").fetchone()
        current = row[0] if row else 0
        if current > len(_MIGRATIONS):
            raise StoreError(
                f"state store {self.path} has schema version {current}, newer than this "
                f"orchestrator understands ({len(_MIGRATIONS)}); upgrade the orchestrator"
            )
        for version in range(current + 1, len(_MIGRATIONS) + 1):
            db.execute("BEGIN IMMEDIATE")
            try:
                for statement in _MIGRATIONS[version - 1].split(";"):
                    if statement.strip():
                        db.execute(statement)
                db.execute("DELETE FROM schema_version")
                db.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    @property
    def schema_version(self) -> int:
        row = self._db.execute("SELECT version FROM schema_version").fetchone()
        return int(row[0]) if row else 0

    async def aclose(self) -> None:
        self._db.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- sessions ----------------------------------------------------------------

    async def create_session(self, **values: Any) -> SessionRecord:
        """A new session row; `phase` defaults to ACQUIRING. Returns it as stored."""
        now = self._now()
        values.setdefault("phase", Phase.ACQUIRING)
        values.setdefault("updated_at", now)
        values["created_at"] = now
        unknown = set(values) - _WRITABLE_SESSION_COLUMNS - {"created_at"}
        if unknown:
            raise TypeError(f"unknown session fields: {sorted(unknown)}")
        columns = sorted(values)
        cursor = self._db.execute(
            f"INSERT INTO sessions ({', '.join(columns)}) "  # noqa: S608 (columns are whitelisted)
            f"VALUES ({', '.join('?' for _ in columns)})",
            [_to_db(c, values[c]) for c in columns],
        )
        assert cursor.lastrowid is not None
        return await self.get_session(cursor.lastrowid)

    async def get_session(self, session_id: int) -> SessionRecord:
        row = self._db.execute("SELECT * FROM sessions WHERE id = ?", (session_id,)).fetchone()
        if row is None:
            raise KeyError(session_id)
        return _session_from_row(row)

    async def update_session(self, session_id: int, **values: Any) -> SessionRecord:
        """Write the given fields (and `updated_at`) in one committed statement."""
        unknown = set(values) - _WRITABLE_SESSION_COLUMNS
        if unknown:
            raise TypeError(f"unknown session fields: {sorted(unknown)}")
        values["updated_at"] = self._now()
        columns = sorted(values)
        self._db.execute(
            f"UPDATE sessions SET {', '.join(f'{c} = ?' for c in columns)} WHERE id = ?",  # noqa: S608
            [*(_to_db(c, values[c]) for c in columns), session_id],
        )
        return await self.get_session(session_id)

    async def record_intent(self, session_id: int, intent: Intent, **values: Any) -> SessionRecord:
        """Before a mutating API call: what is about to be done (with any new phase)."""
        return await self.update_session(session_id, intent=intent, intent_at=self._now(), **values)

    async def record_outcome(self, session_id: int, **values: Any) -> SessionRecord:
        """After a mutating API call: its outcome; clears the intent."""
        values.setdefault("intent", None)
        values.setdefault("intent_at", None)
        values.setdefault("error", None)
        return await self.update_session(session_id, **values)

    async def live_sessions(self) -> list[SessionRecord]:
        """Every session that may still be recording, oldest first."""
        finals = tuple(p.value for p in FINAL_PHASES)
        rows = self._db.execute(
            "SELECT * FROM sessions WHERE phase NOT IN (?, ?) ORDER BY id", finals
        ).fetchall()
        return [_session_from_row(r) for r in rows]

    async def unmanageable_on(self, app_id: str, channel: str, uid: int) -> list[SessionRecord]:
        """Unmanageable sessions recording this (app, channel, uid): one indexed lookup."""
        rows = self._db.execute(
            "SELECT * FROM sessions WHERE phase = ? AND app_id = ? AND channel = ? AND uid = ? "
            "ORDER BY id",
            (Phase.UNMANAGEABLE.value, app_id, channel, uid),
        ).fetchall()
        return [_session_from_row(r) for r in rows]

    async def history(self, limit: int = 50, manifest: str | None = None) -> list[SessionRecord]:
        """Ended and failed sessions, newest first."""
        finals = tuple(p.value for p in FINAL_PHASES)
        if manifest is None:
            rows = self._db.execute(
                "SELECT * FROM sessions WHERE phase IN (?, ?) ORDER BY id DESC LIMIT ?",
                (*finals, limit),
            ).fetchall()
        else:
            rows = self._db.execute(
                "SELECT * FROM sessions WHERE phase IN (?, ?) AND manifest = ? "
                "ORDER BY id DESC LIMIT ?",
                (*finals, manifest, limit),
            ).fetchall()
        return [_session_from_row(r) for r in rows]

    async def latest_ended(self) -> dict[str, SessionRecord]:
        """The newest ended or failed session of each manifest."""
        finals = tuple(p.value for p in FINAL_PHASES)
        rows = self._db.execute(
            "SELECT s.* FROM sessions s JOIN ("
            "  SELECT manifest, MAX(id) AS id FROM sessions WHERE phase IN (?, ?) GROUP BY manifest"
            ") latest ON latest.id = s.id",
            finals,
        ).fetchall()
        return {row["manifest"]: _session_from_row(row) for row in rows}

    # -- manifest states ------------------------------------------------------------

    async def manifest_states(self) -> dict[str, ManifestState]:
        rows = self._db.execute("SELECT * FROM manifest_states").fetchall()
        names = tuple(f.name for f in fields(ManifestState))
        return {
            row["name"]: ManifestState(**{n: _from_db(n, row[n]) for n in names}) for row in rows
        }

    async def set_manifest_state(self, state: ManifestState) -> None:
        names = [f.name for f in fields(ManifestState)]
        values = [_to_db(n, getattr(state, n)) for n in names]
        self._db.execute(
            f"INSERT INTO manifest_states ({', '.join(names)}) "  # noqa: S608
            f"VALUES ({', '.join('?' for _ in names)}) "
            f"ON CONFLICT (name) DO UPDATE SET "
            f"{', '.join(f'{n} = excluded.{n}' for n in names if n != 'name')}",
            values,
        )

    async def clear_failures(self, names: Sequence[str] | None = None) -> int:
        """Forget permanent failures (all, or of `names`) so they are tried again."""
        if names is None:
            cursor = self._db.execute(
                "UPDATE manifest_states SET failed_spec_hash = NULL, failure_reason = NULL, "
                "failed_at = NULL WHERE failed_spec_hash IS NOT NULL"
            )
        else:
            cursor = self._db.executemany(
                "UPDATE manifest_states SET failed_spec_hash = NULL, failure_reason = NULL, "
                "failed_at = NULL WHERE name = ?",
                [(n,) for n in names],
            )
        return cursor.rowcount

    # -- last known good manifests ------------------------------------------------------

    async def known_good(self) -> dict[str, KnownGood]:
        rows = self._db.execute("SELECT * FROM last_known_good").fetchall()
        return {
            row["name"]: KnownGood(
                name=row["name"],
                source_file=row["source_file"],
                spec_hash=row["spec_hash"],
                document=json.loads(row["document"]),
                stored_at=datetime.fromisoformat(row["stored_at"]),
            )
            for row in rows
        }

    async def remember_known_good(
        self, entries: Sequence[KnownGood], forget: Sequence[str] = ()
    ) -> None:
        """Store these versions (rows whose spec and file are unchanged are left alone)
        and forget the names in `forget`, in one transaction."""
        now = _to_db("stored_at", self._now()) if entries else None
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.executemany(
                "INSERT INTO last_known_good (name, source_file, spec_hash, document, stored_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET "
                "source_file = excluded.source_file, spec_hash = excluded.spec_hash, "
                "document = excluded.document, stored_at = excluded.stored_at "
                "WHERE last_known_good.spec_hash != excluded.spec_hash "
                "OR last_known_good.source_file != excluded.source_file",
                [
                    (
                        e.name,
                        e.source_file,
                        e.spec_hash,
                        json.dumps(e.document, sort_keys=True, separators=(",", ":")),
                        now,
                    )
                    for e in entries
                ],
            )
            self._db.executemany(
                "DELETE FROM last_known_good WHERE name = ?", [(n,) for n in forget]
            )
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise


def open_store(url: str) -> Store:
    """Open (creating and migrating as needed) the store at `url`."""
    return Store(sqlite_path_from_url(url))


def session_summary(record: SessionRecord) -> Mapping[str, Any]:
    """A JSON-ready view of a session (for `status --format json`); holds no secret."""
    out: dict[str, Any] = {}
    for name in _SESSION_COLUMNS:
        value = getattr(record, name)
        if isinstance(value, datetime):
            value = value.isoformat()
        elif isinstance(value, Phase | Intent):
            value = value.value
        out[name] = value
    return out
