"""`latest_ended()` kept by the SQLite writer from its own writes (state/latest.py),
checked against the database on real files.

Covers: after a seeded sequence of 400 writes of every kind (creates of live and
failed sessions, ends, fields written to finished sessions, failovers taken back,
sessions starting and finishing while others are live) the writer's answer is, after
every write, exactly what a fresh read of the database gives, and a reader's; writes
that land while the first read is out are not lost, nor one whose caller is
cancelled while it runs; a write that renames a session's
manifest is not mistaken; another connection's writes (an operator's `sqlite3`) send
it back to the database; a reader (another process may write) never keeps it; the
bookkeeping itself: older sessions never replace newer ones, and a session taken back
sends it back to the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import sqlite3
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from orchestrator.state import EndKind, Phase, SessionRecord, SqliteStore, open_store
from orchestrator.state.latest import LatestFinished

T0 = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
NAMES = [f"m{i}" for i in range(12)]


def fields(name: str, uid: int, **extra: Any) -> dict[str, Any]:
    return {
        "manifest": name,
        "app": "main",
        "app_id": "app1",
        "channel": name,
        "uid": uid,
        "mode": "mix",
        **extra,
    }


async def fresh(path: Path) -> dict[str, SessionRecord]:
    """What a reader of the file finds (it keeps nothing)."""
    async with open_store(f"sqlite:///{path}", writer=False) as reader:
        return await reader.latest_ended()


async def test_the_writers_answer_follows_every_kind_of_write(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    rng = random.Random(20261207)
    async with open_store(f"sqlite:///{path}", create=True) as store:
        assert await store.latest_ended() == {}  # read once, now kept
        live: dict[str, SessionRecord] = {}  # manifest -> its live session
        kinds: set[str] = set()
        for step in range(400):
            name = rng.choice(NAMES)
            uid = step + 1  # a target of its own: no two live sessions share one
            current = live.get(name)
            choice = rng.random()
            ended = (await store.history(1, manifest=name) or [None])[0]
            if current is None and choice < 0.15:
                kind = "failed at once"  # a start that could not be sent
                await store.create_session(
                    **fields(name, uid, phase=Phase.FAILED, end_kind=EndKind.FAILED)
                )
            elif current is None and choice < 0.3 and ended is not None:
                kind = "taken back"  # a failover's 404 that was no end
                live[name] = await store.update_session(
                    ended.id, phase=Phase.RUNNING, ended_at=None, confirm_until=None
                )
            elif current is None:
                kind = "created"
                live[name] = await store.create_session(**fields(name, uid))
            elif choice < 0.5:
                kind = "ended"
                await store.record_outcome(
                    current.id,
                    phase=Phase.ENDED,
                    ended_at=T0 + timedelta(seconds=step),
                    end_kind=EndKind.EXITED,
                    confirm_until=T0 + timedelta(seconds=step + 90),
                )
                del live[name]
            elif choice < 0.8 or ended is None:
                kind = "running"
                live[name] = await store.update_session(current.id, phase=Phase.RUNNING)
            else:
                kind = "finished session written again"
                await store.update_session_if(
                    ended.id, (Phase.ENDED,), confirm_until=None, file_list=[step]
                )
            kinds.add(kind)
            assert await store.latest_ended() == await fresh(path), (step, kind)
        assert kinds == {
            "failed at once",
            "created",
            "ended",
            "running",
            "taken back",
            "finished session written again",
        }


async def test_writes_while_the_first_read_is_out_are_not_lost(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    async with open_store(f"sqlite:///{path}", create=True) as store:
        first = await store.create_session(**fields("a", 1))
        await store.record_outcome(first.id, phase=Phase.ENDED)
        second = await store.create_session(**fields("a", 2))
        other = await store.create_session(**fields("b", 3))
        # The first read and the writes go out together: whatever their order on
        # the store's thread, the writes are in the answers that follow.
        await asyncio.gather(
            store.latest_ended(),
            store.record_outcome(second.id, phase=Phase.FAILED),
            store.record_outcome(other.id, phase=Phase.ENDED),
            store.update_session(first.id, file_list=["after"]),
        )
        latest = await store.latest_ended()
        assert {name: s.id for name, s in latest.items()} == {"a": second.id, "b": other.id}
        assert latest == await fresh(path)


async def test_a_write_whose_caller_is_cancelled_is_not_missed(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    async with open_store(f"sqlite:///{path}", create=True) as store:
        session = await store.create_session(**fields("a", 1))
        assert await store.latest_ended() == {}
        write = asyncio.create_task(store.record_outcome(session.id, phase=Phase.ENDED))
        await asyncio.sleep(0)  # it is out, on the store's thread
        # The event loop is held here (no await) until the write is in the file, so
        # that its caller is cancelled after the write was made, before it hears so.
        with contextlib.closing(sqlite3.connect(path)) as db:
            for _ in range(1000):  # bounded: the thread makes it within moments
                row = db.execute("SELECT phase FROM sessions WHERE id = ?", (session.id,))
                if row.fetchone() == ("ended",):
                    break
                time.sleep(0.01)  # noqa: ASYNC251 (the event loop is held on purpose)
            else:
                raise AssertionError("the write was not made within 10 s")
        write.cancel()
        with pytest.raises(asyncio.CancelledError):
            await write
        assert [s.id for s in (await store.latest_ended()).values()] == [session.id]
        assert await store.latest_ended() == await fresh(path)


async def test_a_renamed_session_moves_to_its_new_manifest(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    async with open_store(f"sqlite:///{path}", create=True) as store:
        session = await store.create_session(**fields("old", 1))
        await store.record_outcome(session.id, phase=Phase.ENDED)
        assert set(await store.latest_ended()) == {"old"}
        await store.update_session(session.id, manifest="new")
        assert set(await store.latest_ended()) == {"new"}
        assert await store.latest_ended() == await fresh(path)


async def test_an_operators_hand_on_the_file_is_seen(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The writer lock keeps out our own processes, not `sqlite3` in an operator's
    hand: a session deleted or written by another connection is in the next answer
    (the database is read again then, and only then)."""
    path = tmp_path / "state.db"
    async with open_store(f"sqlite:///{path}", create=True) as store:
        ids = {}
        for name, uid in (("a", 1), ("a", 2), ("b", 3)):
            session = await store.create_session(**fields(name, uid))
            ids[uid] = (await store.record_outcome(session.id, phase=Phase.ENDED)).id
        reads = 0
        read = store._read_latest_ended

        async def counting(*args: Any) -> Any:
            nonlocal reads
            reads += 1
            return await read(*args)

        monkeypatch.setattr(store, "_read_latest_ended", counting)
        assert {n: s.id for n, s in (await store.latest_ended()).items()} == {
            "a": ids[2],
            "b": ids[3],
        }
        assert (await store.latest_ended(), reads) == (await fresh(path), 1)
        with contextlib.closing(sqlite3.connect(path)) as db, db:  # pruning by hand
            db.execute("DELETE FROM sessions WHERE id = ?", (ids[2],))
            db.execute("UPDATE sessions SET end_reason = 'by hand' WHERE id = ?", (ids[3],))
        latest = await store.latest_ended()
        assert {n: (s.id, s.end_reason) for n, s in latest.items()} == {
            "a": (ids[1], None),
            "b": (ids[3], "by hand"),
        }
        assert (latest, reads) == (await fresh(path), 2)
        # Its own writes still need no read.
        newer = await store.create_session(**fields("b", 4))
        newer = await store.record_outcome(newer.id, phase=Phase.FAILED)
        assert ((await store.latest_ended())["b"], reads) == (newer, 2)


async def test_a_reader_reads_it_every_time(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    async with open_store(f"sqlite:///{path}", create=True) as store:
        session = await store.create_session(**fields("a", 1))
        async with open_store(f"sqlite:///{path}", writer=False) as reader:
            assert isinstance(reader, SqliteStore)
            assert await reader.latest_ended() == {}
            await store.record_outcome(session.id, phase=Phase.ENDED)  # another writer
            assert [s.id for s in (await reader.latest_ended()).values()] == [session.id]


def record(session_id: int, name: str, phase: Phase) -> SessionRecord:
    return SessionRecord(
        id=session_id,
        manifest=name,
        app="main",
        app_id="app1",
        channel=name,
        uid=session_id,
        mode="mix",
        phase=phase,
        created_at=T0,
        updated_at=T0,
    )


def test_older_sessions_never_replace_newer_ones() -> None:
    latest = LatestFinished()
    latest.saw(record(1, "a", Phase.ENDED))  # before any read: nothing is known
    assert not latest.loaded
    latest.read({})
    latest.saw(record(5, "a", Phase.ENDED))
    latest.saw(record(3, "a", Phase.FAILED))  # an older one, ending late
    latest.saw(record(7, "a", Phase.RUNNING))  # a newer one, live
    assert {n: s.id for n, s in latest.snapshot().items()} == {"a": 5}
    latest.saw(record(7, "a", Phase.ENDED))
    assert latest.snapshot()["a"].id == 7
    latest.saw(record(7, "a", Phase.RUNNING))  # taken back: the one before is unknown
    assert not latest.loaded
