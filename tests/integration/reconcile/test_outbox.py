"""An API answer is never lost to a store that refuses writes, against the emulator.

Covers, with a real SQLite store that another connection locks (the daemon's store
locked by another process, as an operator's `sqlite3` shell would): a start whose
answer arrives while the store refuses writes keeps its sid (the outbox); the
session is unsettled and the store says it does not take writes; nothing replays
the start; once the lock goes, one flush writes the sid, in order with what came
after, and the session is stoppable; an intent that the store refuses sends
nothing.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from orchestrator.manifest.loader import load_manifests
from orchestrator.reconcile.execute import Executor
from orchestrator.reconcile.plan import ActualState, Plan, Stop, plan
from orchestrator.reconcile.reconciler import desired_recordings
from orchestrator.secrets import resolve_secret
from orchestrator.state import Intent, Phase, SqliteStore, open_store
from tests.integration.conftest import EmulatorHandle
from tests.integration.reconcile.conftest import SECRETS, manifest


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    # A short busy timeout: a locked store refuses a write after 0.2 s, not 5.
    opened = open_store(f"sqlite:///{tmp_path}/state.db", create=True, busy_timeout=0.2)
    try:
        yield opened
    finally:
        await opened.aclose()


def _lock(path: Path) -> sqlite3.Connection:
    """Another process's exclusive lock on the database: writes wait, then fail."""
    other = sqlite3.connect(str(path), isolation_level=None, timeout=10)
    other.execute("BEGIN EXCLUSIVE")
    return other


async def test_a_start_answered_while_the_store_refuses_writes_keeps_its_sid(
    store: SqliteStore,
    emulator: EmulatorHandle,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    (tmp_path / "recordings.d").mkdir()
    (tmp_path / "recordings.d" / "a.yaml").write_text(manifest("alpha", "room-a", 101))
    now = datetime.now(UTC)
    loaded = load_manifests([tmp_path / "recordings.d"], now=now)
    desired = desired_recordings(loaded.manifests, {"main": emulator.app_id})
    executor = Executor(
        store, {"main": emulator.client()}, resolve_secret=resolve_secret, now=lambda: now
    )
    the_plan = plan(desired.recordings, ActualState(), now)
    # The start takes effect at once and its answer comes 1 s later: in that second,
    # another connection takes the store's write lock.
    emulator.emu.fail_next("start", "hold", seconds=1.0)
    executing = asyncio.create_task(executor.execute(the_plan, {"alpha": desired.recordings[0]}))
    deadline = time.monotonic() + 20
    while not [s for s in await store.live_sessions() if s.intent is Intent.START]:
        assert time.monotonic() < deadline, "the start was never sent"
        await asyncio.sleep(0.02)
    lock = _lock(tmp_path / "state.db")
    try:
        (result,) = await asyncio.wait_for(executing, 30)
        assert result.ok and "kept" in result.message
        sid = emulator.emu.sessions()[0]["sid"]
        assert sid in result.message
        (session_id, manifest_name) = next(iter(executor.outbox.unsettled.items()))
        assert manifest_name == "alpha" and not executor.outbox.writable
        # The store still says the start is out; nothing is replayed while it is kept.
        assert not await executor.outbox.flush()
        assert lock.execute("SELECT intent, sid FROM sessions").fetchall() == [("start", None)]
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    assert await executor.outbox.flush()
    assert executor.outbox.writable and not executor.outbox.unsettled
    session = await store.get_session(session_id)
    assert (session.phase, session.sid, session.intent) == (Phase.RUNNING, sid, None)
    assert len(emulator.emu.requests("start")) == 1  # never replayed
    # It is manageable: the stop reaches Agora and is recorded.
    (stopped,) = await executor.execute(Plan((Stop("alpha", "window over", session_id),)), {})
    assert stopped.ok
    assert (await store.get_session(session_id)).phase is Phase.ENDED


async def test_an_intent_the_store_refuses_sends_nothing(
    store: SqliteStore,
    emulator: EmulatorHandle,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    (tmp_path / "recordings.d").mkdir()
    (tmp_path / "recordings.d" / "a.yaml").write_text(manifest("alpha", "room-a", 101))
    now = datetime.now(UTC)
    loaded = load_manifests([tmp_path / "recordings.d"], now=now)
    desired = desired_recordings(loaded.manifests, {"main": emulator.app_id})
    executor = Executor(
        store, {"main": emulator.client()}, resolve_secret=resolve_secret, now=lambda: now
    )
    lock = _lock(tmp_path / "state.db")
    try:
        (result,) = await executor.execute(
            plan(desired.recordings, ActualState(), now), {"alpha": desired.recordings[0]}
        )
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    assert not result.ok and not executor.outbox.writable
    assert emulator.emu.requests() == []  # no acquire without its intent in the store
