"""The SQLite state store on real files.

Covers: migrations and schema version, WAL mode, intent/outcome writes committed
before the writer closes and surviving a reopen, live vs. history queries, latest
ended session per manifest, manifest states with failure clearing, URL parsing, a
newer schema refused, an SQLite library too old refused, and that no secret-shaped
column exists.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from orchestrator.state import (
    EndKind,
    Intent,
    ManifestState,
    Phase,
    StoreConflictError,
    StoreCorruptError,
    StoreError,
    open_store,
    queries,
)
from orchestrator.state.store import CACHE_KIB, sqlite_path_from_url

# The schema version this code writes: 3 since `end_kind` (why a session ended).
LATEST_SCHEMA = queries.latest_version()
# The columns later versions added (3: end_kind; 4: a rollover's), dropped to make an
# older store.
OLDER_COLUMNS = (
    "end_kind",
    "join_expires_at",
    "resource_expires_at",
    "predecessor_id",
    "failover_at",
    "failover_uid",
    "confirm_until",
)
# What versions 5 and 6 added besides columns (gone before the columns can be dropped).
LATER_OBJECTS = (
    *(
        f"DROP TRIGGER latest_finished_on_{event}"
        for event in ("insert", "update", "leave", "delete")
    ),
    "DROP TABLE latest_finished",
    "DROP INDEX sessions_by_sid",
    "DROP INDEX sessions_unconfirmed",
    "DROP TABLE notices",
)

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def _session_fields(name: str = "standup") -> dict[str, object]:
    return {
        "manifest": name,
        "app": "main",
        "app_id": "app1",
        "channel": "room",
        "uid": 527841,
        "mode": "mix",
        "spec_hash": "s",
        "window_start": T0,
        "window_end": T0 + timedelta(hours=1),
    }


async def test_migrates_and_uses_wal(tmp_path: Path) -> None:
    async with open_store(f"sqlite:///{tmp_path}/state.db", create=True) as store:
        assert store.schema_version == LATEST_SCHEMA
    db = sqlite3.connect(tmp_path / "state.db")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"sessions", "manifest_states", "schema_version"} <= tables


async def test_each_connection_bounds_its_page_cache(tmp_path: Path) -> None:
    # The daemon's memory for the store's pages is ours to bound, not the build's.
    url = f"sqlite:///{tmp_path}/state.db"
    async with open_store(url, create=True) as writer, open_store(url, writer=False) as reader:
        for store in (writer, reader):
            size = await store._run(lambda db: db.execute("PRAGMA cache_size").fetchone()[0])  # type: ignore[attr-defined]
            assert size == -CACHE_KIB


async def test_intent_and_outcome_survive_reopen(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/state.db"
    store = open_store(url, create=True)
    created = await store.create_session(**_session_fields(), intent=Intent.ACQUIRE)
    assert created.phase is Phase.ACQUIRING and created.is_live
    await store.record_outcome(created.id, resource_id="R1", phase=Phase.STARTING)
    await store.record_intent(created.id, Intent.START)
    # While the writer still has the store open, every write is already committed.
    # (A writer killed with SIGKILL: see test_store_lock.py.)
    async with open_store(url, writer=False) as reader:
        (live,) = await reader.live_sessions()
        assert live.resource_id == "R1"
        assert live.intent is Intent.START
        assert live.phase is Phase.STARTING
        assert live.window_start == T0
    await store.aclose()
    async with open_store(url) as reopened:
        (live,) = await reopened.live_sessions()
        assert live.intent is Intent.START
        await reopened.record_outcome(live.id, sid="S1", phase=Phase.RUNNING, started_at=T0)
    async with open_store(url, writer=False) as reader:
        again = (await reader.live_sessions())[0]
    assert again.intent is None and again.sid == "S1" and again.phase is Phase.RUNNING


async def test_history_and_latest_ended(tmp_path: Path) -> None:
    async with open_store(str(tmp_path / "s.db"), create=True) as store:
        first = await store.create_session(**_session_fields("a"))
        await store.record_outcome(
            first.id, phase=Phase.ENDED, end_reason="idle exit", file_list="a.m3u8"
        )
        second = await store.create_session(**_session_fields("a"))
        await store.record_outcome(second.id, phase=Phase.FAILED, end_reason="code 2")
        other = await store.create_session(**_session_fields("b"))
        assert [s.id for s in await store.live_sessions()] == [other.id]
        history = await store.history()
        assert [s.id for s in history] == [second.id, first.id]
        assert history[1].file_list == "a.m3u8"
        latest = await store.latest_ended()
        assert set(latest) == {"a"} and latest["a"].id == second.id
        assert [s.id for s in await store.history(manifest="b")] == []


async def test_manifest_states_round_trip_and_clear(tmp_path: Path) -> None:
    async with open_store(str(tmp_path / "s.db"), create=True) as store:
        state = ManifestState(name="a", failed_spec_hash="h", failure_reason="code 2", failed_at=T0)
        await store.set_manifest_state(state)
        assert (await store.manifest_states())["a"] == state
        await store.set_manifest_state(ManifestState(name="b", failed_spec_hash="x"))
        assert await store.clear_failures(["a"]) == 1
        states = await store.manifest_states()
        assert states["a"].failed_spec_hash is None and states["a"].failure_reason is None
        assert states["b"].failed_spec_hash == "x"
        assert await store.clear_failures() == 1


async def test_rejects_unknown_fields_and_naive_datetimes(tmp_path: Path) -> None:
    async with open_store(str(tmp_path / "s.db"), create=True) as store:
        with pytest.raises(TypeError, match="unknown session fields"):
            await store.create_session(**_session_fields(), customer_secret="x")
        with pytest.raises(TypeError, match="timezone-aware"):
            await store.create_session(
                **{**_session_fields(), "window_start": datetime(2026, 1, 1)}
            )


async def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    async with open_store(str(path), create=True):
        pass
    db = sqlite3.connect(path)
    db.execute("UPDATE schema_version SET version = 99")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="newer than this orchestrator"):
        open_store(str(path))


async def test_garbage_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    path.write_bytes(b"not a database" * 100)
    with pytest.raises(StoreCorruptError, match="is not an SQLite database"):
        open_store(str(path), create=True)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:///state.db", Path("state.db")),
        ("sqlite:////var/lib/o/state.db", Path("/var/lib/o/state.db")),
        ("/tmp/x.db", Path("/tmp/x.db")),
    ],
)
def test_sqlite_urls(url: str, expected: Path) -> None:
    assert sqlite_path_from_url(url) == expected


@pytest.mark.parametrize("url", ["postgresql://h/db", "sqlite://host/x", "sqlite:///"])
def test_bad_urls(url: str) -> None:
    with pytest.raises(StoreError):
        sqlite_path_from_url(url)


async def test_known_good_round_trip_rewrites_only_changes(tmp_path: Path) -> None:
    from orchestrator.state import KnownGood

    async with open_store(str(tmp_path / "s.db"), create=True) as store:
        first = KnownGood(
            "a", "x.yaml", "h1", {"name": "a", "storage": {"accessKey": {"env": "K"}}}
        )
        await store.remember_known_good([first, KnownGood("b", "y.yaml", "h2", {"name": "b"})])
        stored = await store.known_good()
        assert stored["a"].document == first.document and stored["a"].source_file == "x.yaml"
        stamp = stored["a"].stored_at
        await store.remember_known_good([first], forget=["b"])
        again = await store.known_good()
        assert set(again) == {"a"} and again["a"].stored_at == stamp  # unchanged: not rewritten
        await store.remember_known_good([KnownGood("a", "x.yaml", "h9", {"name": "a2"})])
        assert (await store.known_good())["a"].document == {"name": "a2"}


async def test_a_version_1_store_gets_the_one_live_session_per_target_index(
    tmp_path: Path,
) -> None:
    path = tmp_path / "state.db"
    async with open_store(f"sqlite:///{path}", create=True) as store:
        await store.create_session(**_session_fields())
        await store.create_session(**{**_session_fields(), "phase": Phase.ENDED})
    db = sqlite3.connect(path)  # as version 1 left it
    db.execute("DROP INDEX sessions_one_live_per_target")
    for statement in LATER_OBJECTS:
        db.execute(statement)
    for column in OLDER_COLUMNS:
        db.execute(f"ALTER TABLE sessions DROP COLUMN {column}")
    db.execute("UPDATE schema_version SET version = 1")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="older than this orchestrator"):
        open_store(f"sqlite:///{path}", writer=False)
    async with open_store(f"sqlite:///{path}") as store:  # a writer upgrades it
        assert store.schema_version == LATEST_SCHEMA
        with pytest.raises(StoreConflictError, match="app ID app1 channel 'room' uid 527841"):
            await store.create_session(**_session_fields())
        assert len(await store.live_sessions()) == 1


@pytest.mark.parametrize(
    ("end_reason", "kind"),
    [
        ("stopped: window over", EndKind.STOPPED),
        ("exited: idle exit or stopped (status 8)", EndKind.EXITED),
        ("failed: conflict (53): our unmanageable session 7 is still recording", EndKind.CONFLICT),
        ("failed: untracked (53): a recording the store does not know", EndKind.UNTRACKED),
        ("failed: start: code 2", EndKind.FAILED),
    ],
)
async def test_a_version_2_store_gets_end_kind_from_its_end_reasons(
    tmp_path: Path, end_reason: str, kind: EndKind
) -> None:
    """Version 3 adds `end_kind`; the sessions that had ended get theirs from the text."""
    path = tmp_path / "state.db"
    async with open_store(f"sqlite:///{path}", create=True) as store:
        ended = await store.create_session(**{**_session_fields(), "phase": Phase.ENDED})
        live = await store.create_session(**_session_fields())
    db = sqlite3.connect(path)  # as version 2 left it
    for statement in LATER_OBJECTS:
        db.execute(statement)
    for column in OLDER_COLUMNS:
        db.execute(f"ALTER TABLE sessions DROP COLUMN {column}")
    db.execute("UPDATE sessions SET end_reason = ? WHERE id = ?", (end_reason, ended.id))
    db.execute("UPDATE schema_version SET version = 2")
    db.commit()
    db.close()
    async with open_store(f"sqlite:///{path}") as store:  # a writer upgrades it
        assert store.schema_version == LATEST_SCHEMA
        assert (await store.get_session(ended.id)).end_kind is kind
        assert (await store.get_session(live.id)).end_kind is None


def test_an_sqlite_library_too_old_is_refused_before_any_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store's statements use RETURNING (SQLite 3.35): an older library is a clear
    StoreError at open, not a syntax error at the first write."""
    monkeypatch.setattr(sqlite3, "sqlite_version_info", (3, 34, 1))
    monkeypatch.setattr(sqlite3, "sqlite_version", "3.34.1")
    with pytest.raises(StoreError, match=r"SQLite library this Python uses is 3\.34\.1, older"):
        open_store(str(tmp_path / "s.db"), create=True)
    assert list(tmp_path.iterdir()) == []
