"""The store's part of Agora's notifications (issue 19), on both stores: notices kept
once per `notice_id` (a resend is recognised), pending ones listed oldest first and
by App ID, settled and pruned; the failover columns and unconfirmed ends; sessions
found by sid; and, on PostgreSQL, the NOTIFY that wakes the owner of the App ID."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from orchestrator.state import Notice, Phase, ownership_for
from orchestrator.state.postgres import open_postgres_store
from orchestrator.state.protocol import Store
from orchestrator.state.queries import NOTICE_CHANNEL
from tests.contract import test_store_contract as contract

# The contract's fixtures: each test runs on a SQLite file and on PostgreSQL.
backend_url = contract.backend_url
backend = contract.backend
store = contract.store
target = contract.target

T0 = datetime(2026, 12, 6, 9, 0, 0, 250000, tzinfo=UTC)


def notice(
    notice_id: str, *, app_id: str | None = "app1", at: datetime = T0, **extra: object
) -> Notice:
    return Notice(
        notice_id=notice_id,
        event_type=11,
        received_at=at,
        body={"noticeId": notice_id, "productId": 3, "eventType": 11, "payload": {"sid": "S1"}},
        sid="S1",
        channel="room",
        app_id=app_id,
        session_id=None,
        **extra,  # type: ignore[arg-type]
    )


async def test_a_notice_is_kept_once(store: Store) -> None:
    assert await store.record_notice(notice("n1")) is True
    assert await store.record_notice(notice("n1", at=T0 + timedelta(seconds=3))) is False
    pending = await store.pending_notices()
    assert [n.notice_id for n in pending] == ["n1"]
    kept = pending[0]
    assert kept.received_at == T0  # the first one's, untouched by the resend
    assert kept.body["payload"] == {"sid": "S1"}
    assert (kept.sid, kept.channel, kept.app_id, kept.handled_at) == ("S1", "room", "app1", None)


async def test_pending_notices_oldest_first_by_app_and_settled(store: Store) -> None:
    await store.record_notice(notice("late", at=T0 + timedelta(seconds=2)))
    await store.record_notice(notice("early", at=T0))
    await store.record_notice(notice("other", app_id="app2", at=T0 + timedelta(seconds=1)))
    assert [n.notice_id for n in await store.pending_notices()] == ["early", "other", "late"]
    mine = await store.pending_notices(frozenset({"app1"}))
    assert [n.notice_id for n in mine] == ["early", "late"]
    assert await store.pending_notices(frozenset()) == []
    assert [n.notice_id for n in await store.pending_notices(limit=1)] == ["early"]

    await store.settle_notice("early", "ended the session")
    assert [n.notice_id for n in await store.pending_notices()] == ["other", "late"]
    # A settled notice is still recognised as a resend.
    assert await store.record_notice(notice("early")) is False

    # One kept settled (what no pass needs to act on: one write, no settle after it).
    done = notice("counted", at=T0, handled_at=T0, outcome="counted")
    assert await store.record_notice(done) is True
    assert [n.notice_id for n in await store.pending_notices()] == ["other", "late"]

    # Pruning forgets settled notices received before the bound, never pending ones.
    assert await store.prune_notices(T0 + timedelta(seconds=10)) == 2
    assert await store.record_notice(notice("early")) is True  # forgotten: new again


async def test_failover_columns_unconfirmed_ends_and_sid_lookup(store: Store) -> None:
    first = await store.create_session(**target(sid="S1", phase=Phase.RUNNING))
    assert first.failover_at is None and first.failover_uid is None
    assert first.confirm_until is None
    later = await store.update_session(
        first.id, failover_at=T0, failover_uid="4294967295", confirm_until=None
    )
    assert (later.failover_at, later.failover_uid) == (T0, "4294967295")

    assert await store.unconfirmed_sessions() == []
    ended = await store.update_session(
        first.id, phase=Phase.ENDED, ended_at=T0, confirm_until=T0 + timedelta(seconds=90)
    )
    assert [s.id for s in await store.unconfirmed_sessions()] == [ended.id]
    assert ended.confirm_until == T0 + timedelta(seconds=90)
    await store.update_session(first.id, confirm_until=None)
    assert await store.unconfirmed_sessions() == []

    second = await store.create_session(**target(uid=2, sid="S1"))
    found = await store.session_by_sid("S1")
    assert found is not None and found.id == second.id  # the newest with that sid
    assert await store.session_by_sid("nope") is None


@pytest.mark.postgres
async def test_postgres_notifies_the_app_id_of_a_kept_notice(postgres_url: str) -> None:
    opened = await open_postgres_store(postgres_url, writer=True, create=True)
    try:
        async with await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as conn:
            await conn.execute(f"LISTEN {NOTICE_CHANNEL}")
            assert await opened.record_notice(notice("n9", app_id="app7")) is True
            assert await opened.record_notice(notice("n9", app_id="app7")) is False  # no 2nd
            # Kept settled (nothing to act on), or of no App ID: nobody to wake.
            settled = notice("n8", app_id="app7", handled_at=T0, outcome="counted")
            assert await opened.record_notice(settled) is True
            assert await opened.record_notice(notice("n7", app_id=None)) is True
            payloads = []
            async with asyncio.timeout(10):
                async for note in conn.notifies(timeout=2):
                    payloads.append(note.payload)
            assert payloads == ["app7"]
    finally:
        await opened.aclose()


@pytest.mark.postgres
async def test_a_replica_listening_is_woken_with_the_app_id(postgres_url: str) -> None:
    """`Ownership.listen`: woken with "" once listening, then with the App ID of each
    notice any replica keeps; cancelled, it ends."""
    opened = await open_postgres_store(postgres_url, writer=True, create=True)
    ownership = ownership_for(opened, "listener")
    assert ownership is not None
    woken: asyncio.Queue[str] = asyncio.Queue()
    task = asyncio.create_task(ownership.listen(woken.put_nowait))
    try:
        async with asyncio.timeout(10):
            assert await woken.get() == ""  # listening: catch up on what was kept
            assert await opened.record_notice(notice("n10", app_id="app9")) is True
            assert await woken.get() == "app9"
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await ownership.aclose()
        await opened.aclose()
