"""Which rate-limiter slots the refresh's queries take (issue 19), against the emulator.

Covers: a paced round (the resync's polling) asks for query slots, within the query
share and behind mutating calls; an unpaced one (the start-up adoption of live
sessions, `apply`, a rollover's confirmation: something waits on the answers) asks
for ordinary slots, at the full rate. Counted by the limiter's `on_query_wait` hook,
which is told of every query slot granted. A session whose App ID was handed over
while the round waited for its turn is not queried.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from orchestrator.agora.client import AgoraClient, RateLimiter
from orchestrator.reconcile.refresh import refresh_sessions
from orchestrator.state import Phase, SessionRecord, SqliteStore
from tests.harness import wait_until
from tests.integration.conftest import EmulatorHandle


async def test_paced_rounds_take_query_slots_unpaced_ones_ordinary_slots(
    emulator: EmulatorHandle, sqlite_store: SqliteStore
) -> None:
    emulator.emu.settings.update({"rate_limit": 1000})  # the limiter's rate, not Agora's
    query_grants: list[str] = []
    limiter = RateLimiter(
        per_second=1000, query_share=0.5, on_query_wait=lambda app, _s: query_grants.append(app)
    )
    client = emulator.client(limiter=limiter)
    app = emulator.app_id
    sessions = await _recording(emulator, client, sqlite_store, 3)
    assert query_grants == []  # acquire and start take ordinary slots

    async def go(_session: SessionRecord) -> bool:
        await asyncio.sleep(0)
        return True

    limit = asyncio.Semaphore(4)
    await refresh_sessions(sqlite_store, {"main": client}, sessions, now=now, limit=limit)
    assert query_grants == []  # unpaced: the full rate
    assert len(emulator.emu.requests("query")) == 3
    await refresh_sessions(sqlite_store, {"main": client}, sessions, now=now, limit=limit, pace=go)
    assert query_grants == [app] * 3  # paced: the resync's polling, within the share
    assert len(emulator.emu.requests("query")) == 6


def now() -> datetime:
    return datetime.now(UTC)


async def _recording(
    emulator: EmulatorHandle, client: AgoraClient, store: SqliteStore, count: int
) -> list[SessionRecord]:
    """`count` sessions recording in the emulator, each stored as running."""
    app = emulator.app_id
    sessions: list[SessionRecord] = []
    for n in range(count):
        channel, uid = f"room-{n}", str(100 + n)
        emulator.emu.join(app, channel, "7")
        resource = await client.acquire(app, {"cname": channel, "uid": uid, "clientRequest": {}})
        sid = await client.start(
            app,
            resource,
            "mix",
            {"cname": channel, "uid": uid, "clientRequest": {"recordingConfig": {}}},
        )
        sessions.append(
            await store.create_session(
                manifest=f"m{n}",
                app="main",
                app_id=app,
                channel=channel,
                uid=int(uid),
                mode="mix",
                phase=Phase.RUNNING,
                resource_id=resource,
                sid=sid,
            )
        )
    return sessions


async def test_a_session_handed_over_while_the_round_waited_is_not_queried(
    emulator: EmulatorHandle, sqlite_store: SqliteStore
) -> None:
    """A replica's resync spreads its queries over the interval; an App ID handed over
    meanwhile is the next owner's to query: the rest of the round leaves it alone."""
    client = emulator.client()
    sessions = await _recording(emulator, client, sqlite_store, 3)
    owned = {emulator.app_id}
    handed = asyncio.Event()

    async def turn(session: SessionRecord) -> bool:  # m0 first; the others after the hand-over
        if session.manifest != "m0":
            await handed.wait()
        return session.app_id in owned  # still this replica's to query

    round_ = asyncio.create_task(
        refresh_sessions(
            sqlite_store,
            {"main": client},
            sessions,
            now=now,
            limit=asyncio.Semaphore(4),
            pace=turn,
        )
    )
    queried = lambda: len(emulator.emu.requests("query"))  # noqa: E731
    await wait_until(lambda: queried() == 1, within=30, what="the round's first query")
    owned.clear()  # handed over
    handed.set()
    assert await asyncio.wait_for(round_, 30) == []
    assert queried() == 1


async def test_a_session_that_ended_while_the_round_waited_is_not_queried(
    emulator: EmulatorHandle, sqlite_store: SqliteStore
) -> None:
    """A stop that ends a session while the round waits for its turn (here m1, stopped
    at Agora and recorded as ended, as the executor does): its query would spend a query
    slot on a 404 and log a warning; it is left alone, the others are queried."""
    client = emulator.client()
    sessions = await _recording(emulator, client, sqlite_store, 3)
    stopped = sessions[1]

    async def turn(session: SessionRecord) -> bool:
        if session.id == stopped.id:
            assert stopped.resource_id is not None and stopped.sid is not None
            body = {"cname": stopped.channel, "uid": str(stopped.uid), "clientRequest": {}}
            await client.stop(emulator.app_id, stopped.resource_id, stopped.sid, "mix", body)
            await sqlite_store.record_outcome(stopped.id, phase=Phase.ENDED, ended_at=now())
        return True

    problems = await refresh_sessions(
        sqlite_store, {"main": client}, sessions, now=now, limit=asyncio.Semaphore(4), pace=turn
    )
    assert problems == []
    paths = [r["path"] for r in emulator.emu.requests("query")]
    assert sorted(s.manifest for s in sessions if any(s.sid in p for p in paths)) == ["m0", "m2"]
    assert (await sqlite_store.get_session(stopped.id)).end_reason is None  # as the stop left it
