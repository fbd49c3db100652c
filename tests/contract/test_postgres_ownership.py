"""App ID ownership on a real PostgreSQL server: locks, membership, epochs, fencing.

Two `PostgresOwnership`s on one database stand for two replicas. Covers: one owner
per App ID; membership counts live replicas and drops one the moment its session
ends; a claim bumps the epoch; a replica whose App ID another claimed since can
write nothing more about its sessions, neither an intent nor an outcome nor any
other update (StoreFencedError, nothing written), while its reads go on and the
new owner writes freely; a hand-over (release, claim) keeps the sessions;
`owners()` says who holds what; a dropped lock connection leaves the replica owning
nothing, and so does a server that stops answering, within the check's bound, its
caller cancelled or not; a caller cancelled mid-read keeps the connection and its
locks, one cancelled mid-change (a claim, a release) closes it and owns nothing;
another database on the same server is another deployment (its locks are neither
members nor owners here).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import pytest

from orchestrator.state import (
    Intent,
    ManifestState,
    Phase,
    SessionNotFoundError,
    StoreFencedError,
    StoreUnavailableError,
    ownership,
)
from orchestrator.state.postgres import PostgresOwnership, PostgresStore, open_postgres_store
from tests.postgres import PostgresCluster

pytestmark = [pytest.mark.postgres]

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def fields(app_id: str, uid: int = 527841) -> dict[str, Any]:
    return {
        "manifest": f"rec-{app_id}-{uid}",
        "app": "main",
        "app_id": app_id,
        "channel": "room",
        "uid": uid,
        "mode": "mix",
        "window_start": T0,
        "intent": Intent.ACQUIRE,
        "intent_at": T0,
    }


@pytest.fixture
async def stores(postgres_url: str) -> AsyncIterator[tuple[PostgresStore, PostgresStore]]:
    first = await open_postgres_store(postgres_url, create=True)
    second = await open_postgres_store(postgres_url)
    try:
        yield first, second
    finally:
        await first.aclose()
        await second.aclose()


@pytest.fixture
async def replicas(
    stores: tuple[PostgresStore, PostgresStore],
) -> AsyncIterator[tuple[PostgresOwnership, PostgresOwnership]]:
    """Replicas A and B, one on each store, A owning app1."""
    a, b = (PostgresOwnership(store, name) for store, name in zip(stores, "AB", strict=True))
    try:
        assert await a.claim("app1")
        yield a, b
    finally:
        await a.aclose()
        await b.aclose()


async def test_one_owner_per_app_id_and_membership(
    stores: tuple[PostgresStore, PostgresStore],
) -> None:
    a, b = (PostgresOwnership(store, name) for store, name in zip(stores, "AB", strict=True))
    try:
        assert await a.claim("app1")
        assert not await b.claim("app1")
        assert await b.claim("app2")
        members, holders = await a.survey()
        assert members == 2
        assert holders == {"app1": "A", "app2": "B"}
        assert a.owned == {"app1"} and b.owned == {"app2"}
        owners = {o.app_id: o for o in await b.owners()}
        assert owners["app1"].owner == "A" and owners["app1"].held
        assert owners["app1"].since is not None and owners["app1"].epoch == 1
        await a.aclose()  # its session ends: its locks and its membership go with it
        # The server ends a closed connection's session on its own time (the backend
        # sees the disconnect, then exits): wait for that, bounded.
        deadline = time.monotonic() + 15
        members, holders = await b.survey()
        while members != 1 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            members, holders = await b.survey()
        assert members == 1
        assert holders == {"app1": None, "app2": "B"}
        assert await b.claim("app1")
        assert {o.app_id: o.epoch for o in await b.owners()} == {"app1": 2, "app2": 1}
    finally:
        await a.aclose()
        await b.aclose()


async def test_another_database_on_the_server_is_another_deployment(
    postgres_cluster: PostgresCluster, postgres_url: str
) -> None:
    # Two deployments, one server: their App IDs' lock ids are both numbered from 1.
    other = postgres_cluster.create_database()
    here = await open_postgres_store(postgres_url, create=True)
    there = await open_postgres_store(postgres_cluster.url(other), create=True)
    a, b = PostgresOwnership(here, "A"), PostgresOwnership(there, "B")
    try:
        assert await a.claim("app1")
        assert await b.claim("app1")  # advisory locks are per database
        # Each sees one member and itself as the owner, and keeps what it claimed.
        assert await a.survey() == (1, {"app1": "A"})
        assert await b.survey() == (1, {"app1": "B"})
        assert a.owned == {"app1"} and b.owned == {"app1"}
        assert [(o.owner, o.held) for o in await here.app_owners()] == [("A", True)]
        assert [(o.owner, o.held) for o in await there.app_owners()] == [("B", True)]
    finally:
        await a.aclose()
        await b.aclose()
        await here.aclose()
        await there.aclose()
        postgres_cluster.drop_database(other)


async def test_a_replica_that_lost_its_app_id_can_write_nothing_about_its_sessions(
    stores: tuple[PostgresStore, PostgresStore],
) -> None:
    store_a, store_b = stores
    a, b = PostgresOwnership(store_a, "A"), PostgresOwnership(store_b, "B")
    try:
        assert await a.claim("app1")
        session = await store_a.create_session(**fields("app1"))  # A owns it: written
        session = await store_a.record_outcome(session.id, resource_id="R", phase=Phase.STARTING)
        session = await store_a.record_intent(session.id, Intent.START)
        # A's lock connection is cut (a network partition, say) but A has not noticed:
        # its store still holds the old epoch. B claims the App ID (epoch 2).
        conn = a._conn
        assert conn is not None
        a._conn = None
        await conn.close()
        assert a.owned == {"app1"}
        assert await b.claim("app1")
        writes: list[Callable[[], Awaitable[object]]] = [
            lambda: store_a.create_session(**fields("app1", uid=2)),
            lambda: store_a.record_intent(session.id, Intent.STOP, phase=Phase.STOPPING),
            # The answer to the call A had announced: the new owner settles it instead,
            # from the intent it finds.
            lambda: store_a.record_outcome(session.id, sid="S1", phase=Phase.RUNNING),
            lambda: store_a.update_session(session.id, last_status=5),
            lambda: store_a.update_session_if(session.id, [Phase.STARTING], sid="S2"),
        ]
        for write in writes:
            with pytest.raises(StoreFencedError, match="no longer owns app ID app1") as caught:
                await write()
            assert caught.value.app_id == "app1"
        # Nothing was written; A still reads, and writes what is not a session's.
        assert await store_a.get_session(session.id) == session
        assert await store_b.live_sessions() == [session]
        await store_a.set_manifest_state(ManifestState(name="rec-app1-527841"))
        # A session A's store does not hold is still SessionNotFoundError.
        with pytest.raises(SessionNotFoundError):
            await store_a.record_outcome(424242, phase=Phase.FAILED)
        # The new owner writes freely: it settles the intent and starts another.
        done = await store_b.record_outcome(session.id, phase=Phase.FAILED, ended_at=T0)
        assert done.phase is Phase.FAILED and done.intent is None
        await store_b.create_session(**fields("app1", uid=3))
        assert [s.uid for s in await store_b.live_sessions()] == [3]
    finally:
        await a.aclose()
        await b.aclose()


async def test_the_fence_is_the_epoch_in_the_database(
    stores: tuple[PostgresStore, PostgresStore],
) -> None:
    """The fence is the epoch in the database, not what a replica believes: a store
    told an epoch that is no longer the App ID's writes nothing, whichever write it
    is, and one told the current epoch writes."""
    store_a, store_b = stores
    a = PostgresOwnership(store_a, "A")
    try:
        assert await a.claim("app1")
        session = await store_a.create_session(**fields("app1"))
        store_b.fence({"app1": 0})  # an epoch that was never claimed
        with pytest.raises(StoreFencedError):
            await store_b.record_outcome(session.id, phase=Phase.ENDED, ended_at=T0)
        store_b.fence({"app2": 1})  # another App ID's epoch: none for app1
        with pytest.raises(StoreFencedError):
            await store_b.record_outcome(session.id, phase=Phase.ENDED, ended_at=T0)
        assert await store_a.get_session(session.id) == session
        store_b.fence({"app1": 1})  # the epoch of A's claim: the fence lets it through
        ended = await store_b.record_outcome(session.id, phase=Phase.ENDED, ended_at=T0)
        assert ended.phase is Phase.ENDED
        # A fenced write stores every kind of value as an unfenced one does.
        every = {
            **fields("app1", uid=9),
            "phase": Phase.RUNNING,
            "file_list": [{"fileName": "a.m3u8", "uid": "0"}],
            "ended_at": None,
            "last_status": 5,
            "end_kind": None,
            "restart_count": 2,
            "error": None,
        }
        created = await store_b.create_session(**every)
        for name, value in every.items():
            assert getattr(created, name) == value, name
        assert await store_a.get_session(created.id) == created
        updated = await store_b.update_session(created.id, file_list=None, window_end=T0)
        assert updated.file_list is None and updated.window_end == T0
    finally:
        await a.aclose()


async def test_a_hand_over_keeps_the_sessions(
    stores: tuple[PostgresStore, PostgresStore],
    replicas: tuple[PostgresOwnership, PostgresOwnership],
) -> None:
    store_a, store_b = stores
    a, b = replicas
    created = await store_a.create_session(**fields("app1"))
    await store_a.record_outcome(created.id, phase=Phase.RUNNING, sid="S1", resource_id="R")
    await a.release("app1")
    assert a.owned == frozenset()
    with pytest.raises(StoreFencedError):  # released: A writes no intent for it
        await store_a.record_intent(created.id, Intent.STOP)
    with pytest.raises(StoreFencedError):  # nor an outcome
        await store_a.record_outcome(created.id, phase=Phase.ENDED)
    assert await b.claim("app1")
    (live,) = await store_b.live_sessions()
    assert live.sid == "S1" and live.phase is Phase.RUNNING
    await store_b.record_intent(live.id, Intent.STOP, phase=Phase.STOPPING)


async def test_a_failed_lock_connection_leaves_the_replica_owning_nothing(
    stores: tuple[PostgresStore, PostgresStore],
) -> None:
    store_a, store_b = stores
    a = PostgresOwnership(store_a, "A")
    try:
        assert await a.claim("app1")
        conn = a._conn
        assert conn is not None
        pid = conn.info.backend_pid

        async def terminate(c: Any) -> None:  # the server ends A's lock session
            await c.execute("SELECT pg_terminate_backend(%s)", (pid,))

        await store_b._run(terminate)
        with pytest.raises(StoreUnavailableError, match="unavailable"):
            await a.survey()
        assert a.owned == frozenset()
        with pytest.raises(StoreFencedError):
            await store_a.create_session(**fields("app1"))
        assert await a.claim("app1")  # it reconnects and claims again
    finally:
        await a.aclose()


async def test_the_lock_connection_has_keepalive_on_both_ends(
    stores: tuple[PostgresStore, PostgresStore],
) -> None:
    """So that PostgreSQL ends a vanished replica's session (and its locks) within
    about 15 s: the server's settings for that session, and libpq's on ours."""
    store_a, _ = stores
    a = PostgresOwnership(store_a, "A")
    try:
        assert await a.claim("app1")
        conn = a._conn
        assert conn is not None
        shown = {}
        for name in ("tcp_keepalives_idle", "tcp_keepalives_interval", "tcp_keepalives_count"):
            cursor = await conn.execute(f"SHOW {name}")
            row = await cursor.fetchone()
            assert row is not None
            shown[name] = row[0]
        assert shown == {
            "tcp_keepalives_idle": "5",
            "tcp_keepalives_interval": "2",
            "tcp_keepalives_count": "3",
        }
        cursor = await conn.execute("SHOW tcp_user_timeout")
        row = await cursor.fetchone()
        assert row is not None and row[0] in ("10s", "10000")
        params = conn.info.get_parameters()
        assert params["keepalives"] == "1" and params["keepalives_idle"] == "5"
    finally:
        await a.aclose()


class Relay:
    """A TCP relay to the PostgreSQL server on 127.0.0.1 that can stop passing bytes
    on (`freeze`): a server that hangs, or a network cut that no reset announces.
    What it holds back is passed on after `thaw`."""

    def __init__(self, port: int) -> None:
        self._target = port
        self._moving = asyncio.Event()
        self._moving.set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: list[asyncio.StreamWriter] = []
        self.port = 0

    async def __aenter__(self) -> Relay:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self._target)
        self._writers += [writer, up_writer]
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pump(source, sink))
            self._tasks.add(task)

    async def _pump(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await source.read(65536):
                await self._moving.wait()
                sink.write(data)
                await sink.drain()
        sink.close()

    def freeze(self) -> None:
        self._moving.clear()

    def thaw(self) -> None:
        self._moving.set()

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.thaw()
        self._server.close()
        for writer in self._writers:
            writer.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()


@pytest.fixture
async def behind_a_relay(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[Relay, PostgresOwnership]]:
    """Replica A, owning app1, whose server is reached through a `Relay`; a statement
    on its lock connection has 1 s (bound: 2 s)."""
    monkeypatch.setattr(ownership, "LOCK_STATEMENT_TIMEOUT", 1.0)
    port = urlsplit(postgres_url).port
    async with Relay(port) as relay:
        url = postgres_url.replace(f":{port}/", f":{relay.port}/")
        store = await open_postgres_store(url, create=True)
        own = PostgresOwnership(store, "A")
        try:
            assert await own.claim("app1")
            yield relay, own
        finally:
            relay.thaw()
            await own.aclose()
            await store.aclose()


BOUND = 2.0  # a statement's 1 s, and 1 s more a call (behind_a_relay)


@pytest.mark.parametrize("cancelled", [False, True], ids=["answered", "caller-cancelled"])
async def test_a_check_the_server_never_answers_ends_within_its_bound(
    behind_a_relay: tuple[Relay, PostgresOwnership], cancelled: bool
) -> None:
    """Within its bound: not its bound and then psycopg's 5 to 10 s of asking a silent
    server to cancel the statement; its connection closed, and with it every lock."""
    relay, own = behind_a_relay
    relay.freeze()
    started = time.monotonic()
    if cancelled:  # the claim loop at shutdown, say
        running = asyncio.create_task(own.check())
        await asyncio.sleep(0.3)
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running
    else:
        with pytest.raises(StoreUnavailableError, match="no answer in time"):
            await own.check()
    assert time.monotonic() - started < BOUND + 2
    assert own._conn is None and own.owned == frozenset()


async def test_a_caller_cancelled_mid_read_keeps_the_connection_and_its_locks(
    replicas: tuple[PostgresOwnership, PostgresOwnership],
) -> None:
    a, b = replicas
    conn = a._conn
    assert conn is not None

    async def sleeps(c: Any) -> None:
        await c.execute("SELECT pg_sleep(3)")

    running = asyncio.create_task(a._do(sleeps, reads=True))
    await asyncio.sleep(0.2)
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    # The statement was cancelled, not the connection closed: A still owns app1.
    assert a._conn is conn and not conn.closed and a.owned == {"app1"}
    assert not await b.claim("app1")
    await a.check()


async def test_a_caller_cancelled_mid_change_closes_the_connection_and_owns_nothing(
    replicas: tuple[PostgresOwnership, PostgresOwnership],
) -> None:
    """A claim or a release cut short may have taken or kept a lock the replica does
    not know of: the session goes, and every lock with it."""
    a, b = replicas

    async def sleeps(c: Any) -> None:
        await c.execute("SELECT pg_sleep(3)")

    running = asyncio.create_task(a._do(sleeps))
    await asyncio.sleep(0.2)
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    assert a._conn is None and a.owned == frozenset()
    deadline = time.monotonic() + 15  # the server ends the closed session on its own time
    while not await b.claim("app1"):
        assert time.monotonic() < deadline, "app1 still held by A's closed session"
        await asyncio.sleep(0.05)
