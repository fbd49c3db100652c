"""One list of migrations for both stores, and every store an earlier release made
upgrades to the schema a store made now has.

Covers: the versions of `queries.MIGRATIONS` are 1..N, each with statements for
both dialects, and both stores made now stand at N; a store of each kind at each
version an earlier release wrote (its statements kept below as that release ran
them, when each store had its own list) is refused by a reader, then upgraded by a
writer to exactly the schema of a store made now (triggers and functions included),
keeping its rows (an ended session gets its `end_kind` from its `end_reason`, each
manifest's newest finished session is kept in `latest_finished`, and a session
deleted by hand hands that over to the newest left) and keeping one live session
per target; a schema newer than this code is refused by writers and readers of
both kinds and left as it was.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from orchestrator.state import (
    EndKind,
    KnownGood,
    ManifestState,
    Phase,
    StoreConflictError,
    StoreCorruptError,
    StoreError,
    open_store,
    queries,
)
from orchestrator.state.postgres import open_postgres_store
from orchestrator.state.protocol import Store
from tests.postgres import PostgresCluster

# -- what earlier releases ran, version by version (never edit: they are history) -----------

_SQLITE_V1 = """
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
"""
_SQLITE_V2 = """
    CREATE UNIQUE INDEX sessions_one_live_per_target ON sessions (app_id, channel, uid)
        WHERE phase NOT IN ('ended', 'failed', 'unmanageable');
"""
_POSTGRES_V1 = """
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
"""
_POSTGRES_V2 = """
    CREATE TABLE app_owners (
        lock_id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        app_id  text NOT NULL UNIQUE,
        owner   text,
        epoch   bigint NOT NULL DEFAULT 0,
        since   timestamptz
    );
"""
_BACKFILL = """
    UPDATE sessions SET end_kind = CASE
        WHEN end_reason LIKE 'stopped%' THEN 'stopped'
        WHEN end_reason LIKE 'exited%' THEN 'exited'
        WHEN end_reason LIKE 'failed: conflict (53)%' THEN 'conflict'
        WHEN end_reason LIKE 'failed: untracked (53)%' THEN 'untracked'
        WHEN end_reason LIKE 'failed%' THEN 'failed'
    END
    WHERE phase IN ('ended', 'failed');
"""
RELEASED: dict[str, tuple[str, ...]] = {
    "sqlite": (
        _SQLITE_V1,
        _SQLITE_V2,
        "ALTER TABLE sessions ADD COLUMN end_kind TEXT;" + _BACKFILL,
    ),
    "postgres": (
        _POSTGRES_V1,
        _POSTGRES_V2,
        "ALTER TABLE sessions ADD COLUMN end_kind text;" + _BACKFILL,
    ),
}
VERSION_TABLE = {
    "sqlite": "CREATE TABLE schema_version (version INTEGER NOT NULL)",
    "postgres": "CREATE TABLE schema_version (singleton boolean PRIMARY KEY DEFAULT true "
    "CHECK (singleton), version integer NOT NULL)",
}

# Rows a release of version 1 wrote: an ended session, a live one on the same target,
# a manifest state and a last known good manifest.
ROWS = (
    "INSERT INTO sessions (manifest, app, app_id, channel, uid, mode, phase, created_at, "
    "updated_at, end_reason) VALUES ('standup', 'main', 'app1', 'room', 7, 'mix', 'ended', "
    "'2026-03-01T09:00:00+00:00', '2026-03-01T09:30:00+00:00', 'stopped: window over')",
    "INSERT INTO sessions (manifest, app, app_id, channel, uid, mode, phase, created_at, "
    "updated_at) VALUES ('standup', 'main', 'app1', 'room', 7, 'mix', 'running', "
    "'2026-03-01T10:00:00+00:00', '2026-03-01T10:00:00+00:00')",
    "INSERT INTO manifest_states (name, failed_spec_hash) VALUES ('standup', 'h')",
    "INSERT INTO last_known_good (name, source_file, spec_hash, document, stored_at) VALUES "
    """('standup', '/r/standup.yaml', 'h', '{"name": "standup"}', '2026-03-01T09:00:00+00:00')""",
    "INSERT INTO sessions (manifest, app, app_id, channel, uid, mode, phase, created_at, "
    "updated_at) VALUES ('retro', 'main', 'app1', 'hall', 8, 'mix', 'failed', "
    "'2026-03-02T09:00:00+00:00', '2026-03-02T09:30:00+00:00')",
    "INSERT INTO sessions (manifest, app, app_id, channel, uid, mode, phase, created_at, "
    "updated_at) VALUES ('retro', 'main', 'app1', 'hall', 8, 'mix', 'ended', "
    "'2026-03-02T10:00:00+00:00', '2026-03-02T10:30:00+00:00')",
)


@dataclass
class Place:
    """Where one kind of store lives for a test: a file, or a database of the cluster."""

    kind: str
    url: str
    fresh_url: str
    cluster: PostgresCluster | None = None

    async def open(self, url: str | None = None, **options: Any) -> Store:
        if self.kind == "sqlite":
            return open_store(url or self.url, **options)
        return await open_postgres_store(url or self.url, **options)

    def run(self, *statements: str) -> None:
        """Run statements (scripts) as the store's own role would, not as a superuser."""
        if self.kind == "sqlite":
            db = sqlite3.connect(self.url.removeprefix("sqlite:///"), isolation_level=None)
            try:
                for statement in statements:
                    db.executescript(statement)
            finally:
                db.close()
            return
        with psycopg.connect(self.url, autocommit=True) as conn:
            for statement in statements:
                conn.execute(statement)

    def version(self) -> int:
        """The schema version stored."""
        query = "SELECT max(version) FROM schema_version"
        if self.kind == "sqlite":
            db = sqlite3.connect(self.url.removeprefix("sqlite:///"))
            try:
                return int(db.execute(query).fetchone()[0])
            finally:
                db.close()
        with psycopg.connect(self.url, autocommit=True) as conn:
            row = conn.execute(query).fetchone()
        assert row is not None
        return int(row[0])

    def schema(self, url: str) -> list[tuple[Any, ...]]:
        """What the database's schema is, in a form that two equal schemas share."""
        if self.kind == "sqlite":
            db = sqlite3.connect(url.removeprefix("sqlite:///"))
            try:
                rows = db.execute(
                    "SELECT type, name, tbl_name, sql FROM sqlite_master "
                    "WHERE name NOT LIKE 'sqlite_%' ORDER BY type, name"
                ).fetchall()
            finally:
                db.close()
            return [(*row[:3], " ".join(str(row[3]).split())) for row in rows]
        with psycopg.connect(url, autocommit=True) as conn:
            columns = conn.execute(
                "SELECT table_name, ordinal_position, column_name, data_type, is_nullable, "
                "column_default, identity_generation FROM information_schema.columns "
                "WHERE table_schema = 'public' ORDER BY table_name, ordinal_position"
            ).fetchall()
            indexes = conn.execute(
                "SELECT tablename, indexname, indexdef FROM pg_indexes "
                "WHERE schemaname = 'public' ORDER BY indexname"
            ).fetchall()
            constraints = conn.execute(
                "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) "
                "FROM pg_constraint WHERE connamespace = 'public'::regnamespace ORDER BY conname"
            ).fetchall()
            triggers = conn.execute(
                "SELECT event_object_table, trigger_name, event_manipulation, action_timing, "
                "action_orientation, action_statement FROM information_schema.triggers "
                "WHERE trigger_schema = 'public' ORDER BY trigger_name, event_manipulation"
            ).fetchall()
            functions = conn.execute(
                "SELECT proname, pg_get_functiondef(oid) FROM pg_proc "
                "WHERE pronamespace = 'public'::regnamespace ORDER BY proname"
            ).fetchall()
        return [*columns, *indexes, *constraints, *triggers, *functions]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def place(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Place]:
    if request.param == "sqlite":
        yield Place("sqlite", f"sqlite:///{tmp_path}/old.db", f"sqlite:///{tmp_path}/new.db")
        return
    url = str(request.getfixturevalue("postgres_url"))
    cluster: PostgresCluster = request.getfixturevalue("postgres_cluster")
    fresh = cluster.create_database()
    try:
        yield Place("postgres", url, cluster.url(fresh), cluster)
    finally:
        cluster.drop_database(fresh)


@pytest.fixture
async def opened() -> AsyncIterator[list[Store]]:
    stores: list[Store] = []
    try:
        yield stores
    finally:
        for store in reversed(stores):
            await store.aclose()


def test_one_list_of_versions_for_both_stores() -> None:
    versions = [m.version for m in queries.MIGRATIONS]
    assert (
        versions
        == list(range(1, len(versions) + 1))
        == list(range(1, queries.latest_version() + 1))
    )
    for migration in queries.MIGRATIONS:
        assert migration.about
        assert migration.statements("sqlite") and migration.statements("postgres")
    # Earlier releases' lists had as many versions in both stores, none past this one.
    assert len({len(scripts) for scripts in RELEASED.values()}) == 1
    assert len(RELEASED["sqlite"]) <= queries.latest_version()


async def test_a_new_store_stands_at_the_latest_version(place: Place, opened: list[Store]) -> None:
    store = await place.open(create=True)
    opened.append(store)
    assert store.schema_version == queries.latest_version()
    assert place.version() == queries.latest_version()


@pytest.mark.parametrize("version", range(1, len(RELEASED["sqlite"]) + 1))
async def test_a_store_an_earlier_release_made_is_upgraded(
    place: Place, opened: list[Store], version: int
) -> None:
    # Made by a release of version 1, then upgraded by earlier releases to `version`.
    first, *later = RELEASED[place.kind][:version]
    place.run(
        first,
        *ROWS,
        *later,
        VERSION_TABLE[place.kind],
        f"INSERT INTO schema_version (version) VALUES ({version})",  # noqa: S608 (an int)
    )
    if version < queries.latest_version():
        with pytest.raises(StoreError, match=rf"schema version {version}, older than this"):
            await place.open(writer=False)
    store = await place.open()
    opened.append(store)
    assert store.schema_version == queries.latest_version()
    assert place.version() == queries.latest_version()
    opened.append(await place.open(place.fresh_url, create=True))
    assert place.schema(place.url) == place.schema(place.fresh_url)

    ended, live = [await store.get_session(i) for i in (1, 2)]
    assert (ended.phase, ended.end_kind, ended.end_reason) == (
        Phase.ENDED,
        EndKind.STOPPED,
        "stopped: window over",
    )
    assert (live.phase, live.end_kind) == (Phase.RUNNING, None)
    assert await store.live_sessions() == [live]
    # Version 6 keeps each manifest's newest finished session, the history's included.
    older, newest = [await store.get_session(i) for i in (3, 4)]
    assert await store.latest_ended() == {"standup": ended, "retro": newest}
    assert older.phase is Phase.FAILED and newest.phase is Phase.ENDED
    assert (await store.manifest_states())["standup"] == ManifestState("standup", "h")
    (kept,) = (await store.known_good()).values()
    assert (kept.name, kept.document) == ("standup", {"name": "standup"})
    with pytest.raises(StoreConflictError):
        await store.create_session(
            manifest="other", app="main", app_id="app1", channel="room", uid=7, mode="mix"
        )
    await store.remember_known_good([KnownGood("b", "/r/b.yaml", "hb", {})])
    reader = await place.open(writer=False)
    opened.append(reader)
    assert await reader.live_sessions() == [live]
    assert await reader.latest_ended() == {"standup": ended, "retro": newest}
    # An operator's pruning of the history by hand hands over to what is left.
    place.run("DELETE FROM sessions WHERE id = 4", "DELETE FROM sessions WHERE id = 1")
    assert await reader.latest_ended() == {"retro": older}


async def test_a_newer_schema_is_refused_by_both_stores(place: Place, opened: list[Store]) -> None:
    await (await place.open(create=True)).aclose()
    newer = queries.latest_version() + 1
    place.run(f"UPDATE schema_version SET version = {newer}")  # noqa: S608 (an int)
    for options in ({"writer": True}, {"writer": True, "create": True}, {"writer": False}):
        with pytest.raises(StoreError, match=rf"schema version {newer}, newer than this"):
            await place.open(**options)
    assert place.version() == newer


async def test_an_empty_version_table_beside_the_tables_is_a_damaged_store(
    place: Place, opened: list[Store]
) -> None:
    """Defect: an emptied schema_version table read as version 0, and the writer ran
    every migration again ("relation sessions already exists"); `init` said so with
    no way out. It is a damaged store, and the message says how to recover."""
    await (await place.open(create=True)).aclose()
    place.run("DELETE FROM schema_version")
    for options in ({"writer": True}, {"writer": True, "create": True}, {"writer": False}):
        with pytest.raises(StoreCorruptError, match="empty schema_version table") as refused:
            await place.open(**options)
        assert "restore it from a backup" in str(refused.value)
