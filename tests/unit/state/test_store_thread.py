"""The store keeps SQLite off the event loop, on one worker thread, in call order.

Every statement is observed through a recording `sqlite3.Connection` subclass
(sqlite3.connect is wrapped for the test): which thread ran it, and, for a chosen
statement, a gate that holds it inside SQLite until the test lets it go. No
assertion depends on how fast the machine is; every wait is bounded.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from orchestrator.state import Intent, KnownGood, ManifestState, StoreError, open_store

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
WAIT = 30.0  # seconds; generous bounds for a loaded machine, never reached when it works


def _session_fields() -> dict[str, object]:
    return {
        "manifest": "standup",
        "app": "main",
        "app_id": "app1",
        "channel": "room",
        "uid": 527841,
        "mode": "mix",
        "window_start": T0,
        "window_end": T0 + timedelta(hours=1),
    }


@dataclass
class Probe:
    """What ran where; `gate_on` holds matching statements until `release` is set."""

    threads: list[tuple[int, str]] = field(default_factory=list)
    statements: list[str] = field(default_factory=list)
    connections: list[sqlite3.Connection] = field(default_factory=list)
    gate_on: str | None = None
    entered: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)

    def saw(self, sql: str) -> None:
        current = threading.current_thread()
        self.threads.append((threading.get_ident(), current.name))
        self.statements.append(sql)
        if self.gate_on is not None and sql.startswith(self.gate_on):
            self.entered.set()
            assert self.release.wait(WAIT), "the test never released the gate"


@pytest.fixture
def probe(monkeypatch: pytest.MonkeyPatch) -> Probe:
    seen = Probe()

    class RecordingConnection(sqlite3.Connection):
        def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
            seen.saw(sql)
            return super().execute(sql, parameters)

        def executemany(self, sql: str, parameters: Iterable[Any], /) -> sqlite3.Cursor:
            seen.saw(sql)
            return super().executemany(sql, parameters)

    real_connect = sqlite3.connect

    def connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        connection = real_connect(*args, factory=RecordingConnection, **kwargs)
        seen.connections.append(connection)
        return connection

    monkeypatch.setattr(sqlite3, "connect", connect)
    return seen


async def _until(condition: Callable[[], bool]) -> None:
    """Yield to the loop until `condition` holds (bounded by the caller's wait_for).

    Polling on purpose: the conditions are set by the worker thread or counted by
    loop timers, and keeping the loop busy is part of what is observed."""
    while not condition():  # noqa: ASYNC110
        await asyncio.sleep(0.001)


async def test_every_statement_runs_on_one_worker_thread(tmp_path: Path, probe: Probe) -> None:
    url = str(tmp_path / "s.db")
    async with open_store(url, create=True) as store:
        created = await store.create_session(**_session_fields())
        await store.record_intent(created.id, Intent.START)
        await store.record_outcome(created.id, sid="S1")
        await store.get_session(created.id)
        await store.live_sessions()
        await store.unmanageable_on("app1", "room", 1)
        await store.history()
        await store.latest_ended()
        await store.set_manifest_state(ManifestState(name="a", failed_spec_hash="h"))
        await store.manifest_states()
        await store.clear_failures()
        await store.clear_failures(["a"])
        await store.remember_known_good([KnownGood("a", "a.yaml", "h", {})], forget=["b"])
        await store.known_good()
    by_writer = len(probe.threads)
    async with open_store(url, writer=False) as reader:
        await reader.live_sessions()

    loop_thread = threading.get_ident()
    assert len(probe.statements) > 20  # migration, pragmas and every call above
    assert all(ident != loop_thread for ident, _ in probe.threads)
    assert all(name.startswith("store") for _, name in probe.threads)
    # One thread per Store: the writer's statements all ran on a single thread.
    assert len({ident for ident, _ in probe.threads[:by_writer]}) == 1
    assert len(probe.threads) > by_writer  # the reader's statements, off the loop too


async def test_connection_is_unusable_from_the_loop_thread(tmp_path: Path, probe: Probe) -> None:
    async with open_store(str(tmp_path / "s.db"), create=True):
        assert probe.connections  # the store's, made on its worker thread
        for connection in probe.connections:
            with pytest.raises(sqlite3.ProgrammingError, match="thread"):
                connection.execute("SELECT 1")


async def test_the_loop_keeps_running_while_a_commit_is_stalled(
    tmp_path: Path, probe: Probe
) -> None:
    async with open_store(str(tmp_path / "s.db"), create=True) as store:
        created = await store.create_session(**_session_fields())
        ticks = 0

        async def heartbeat() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.001)

        beating = asyncio.create_task(heartbeat())
        probe.gate_on = "UPDATE sessions"
        write = asyncio.create_task(store.update_session(created.id, restart_count=1))
        try:
            await asyncio.wait_for(_until(probe.entered.is_set), WAIT)
            # The UPDATE is now inside SQLite on the worker, held there; timers still fire.
            stalled_at = ticks
            await asyncio.wait_for(_until(lambda: ticks >= stalled_at + 5), WAIT)
            assert not write.done()
            # A read issued after the write waits behind it (one thread, in order).
            read = asyncio.create_task(store.get_session(created.id))
            more = ticks
            await asyncio.wait_for(_until(lambda: ticks >= more + 5), WAIT)
            assert not read.done()
        finally:
            probe.release.set()
            beating.cancel()
        assert (await asyncio.wait_for(write, WAIT)).restart_count == 1
        assert (await asyncio.wait_for(read, WAIT)).restart_count == 1


async def test_a_write_already_running_completes_when_its_caller_is_cancelled(
    tmp_path: Path, probe: Probe
) -> None:
    url = str(tmp_path / "s.db")
    async with open_store(url, create=True) as store:
        created = await store.create_session(**_session_fields())
        probe.gate_on = "UPDATE sessions"
        write = asyncio.create_task(store.record_intent(created.id, Intent.STOP))
        await asyncio.wait_for(_until(probe.entered.is_set), WAIT)
        write.cancel()
        with pytest.raises(asyncio.CancelledError):
            await write
        probe.release.set()
        # The next operation queues behind the cancelled caller's write.
        assert (await store.get_session(created.id)).intent is Intent.STOP


async def test_concurrent_calls_run_in_the_order_they_were_made(tmp_path: Path) -> None:
    async with open_store(str(tmp_path / "s.db"), create=True) as store:
        created = await store.create_session(**_session_fields())
        calls = []
        for i in range(1, 31):
            calls.append(store.update_session(created.id, restart_count=i))
            calls.append(store.get_session(created.id))
        results = await asyncio.wait_for(asyncio.gather(*calls), WAIT)
        assert [r.restart_count for r in results] == [i for i in range(1, 31) for _ in (0, 1)]


async def test_aclose_finishes_queued_work_then_ends_the_thread(
    tmp_path: Path, probe: Probe
) -> None:
    url = str(tmp_path / "s.db")
    store = open_store(url, create=True)
    created = await store.create_session(**_session_fields())
    (worker, _), *_ = probe.threads
    pending = asyncio.ensure_future(store.update_session(created.id, restart_count=7))
    await asyncio.sleep(0)  # the update is queued on the worker
    await store.aclose()
    assert store.closed
    assert (await asyncio.wait_for(pending, WAIT)).restart_count == 7
    await store.aclose()  # idempotent
    with pytest.raises(StoreError, match="is closed"):
        await store.live_sessions()

    def worker_alive() -> bool:
        return any(t.ident == worker for t in threading.enumerate())

    await asyncio.wait_for(_until(lambda: not worker_alive()), WAIT)
