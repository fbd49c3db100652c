"""The notification receiver (daemon/receiver.py) over real loopback HTTP, with a real
SQLite store.

Covers: a signed notification of a session the store knows is answered 200 with a
JSON body once it is kept (a store that fails is a 503, kept nothing, and the resend
is kept), and wakes the owner of its App ID once; an answer that outlives the
listener's bound is a 503 and the connection serves its next request; a resend of
its `noticeId` is answered 200 and kept no second time; an unsigned, a wrongly
signed or a forged (signed with another secret, or a body changed after signing, or
a signature that is not ASCII) request is 401 and changes nothing; a body over
`maxBody` is 413 before it is read; a signed body that is not a notification (an
event type that is no 64-bit integer) is 400; a notification of a sid the store does
not know is kept settled, counted, and wakes nobody, unless a session of ours on its
channel and uid has no sid yet (a lost start's answer): then it is kept for that
session and wakes its owner, whatever its event, and not when two App IDs have such
a session, nor taken for an unknown sid when the start's answer is written while it
looks; another method or path is refused; the secret never appears in an answer.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from orchestrator.agora import ncs
from orchestrator.daemon import listener
from orchestrator.daemon.listener import Page
from orchestrator.daemon.receiver import NoticeReceiver
from orchestrator.state import Phase, SqliteStore, open_store

SECRET = "ncs-secret-for-tests"
PATH = "/agora/ncs"
MAX_BODY = 2048


class Rig:
    def __init__(self, store: SqliteStore, receiver: NoticeReceiver, url: str) -> None:
        self.store = store
        self.receiver = receiver
        self.url = url
        self.woken: list[str] = []
        self.counted: list[tuple[str, str]] = []
        self.tasks: list[asyncio.Future[Page]] = []
        self.events: list[str] = []

    async def settled(self) -> None:
        """Wait for the work done after each answer (bounded)."""
        async with asyncio.timeout(10):
            await asyncio.gather(*self.tasks)


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    # A short busy timeout: a locked store fails the keeping within the test's time.
    store = open_store(f"sqlite:///{tmp_path}/state.db", create=True, busy_timeout=0.5)
    holder: list[Rig] = []

    def spawn(work: Coroutine[Any, Any, Page]) -> asyncio.Future[Page]:
        task = asyncio.ensure_future(work)
        holder[0].tasks.append(task)
        holder[0].events.append("work")
        return task

    receiver = NoticeReceiver(
        store,
        SECRET,
        path=PATH,
        max_body=MAX_BODY,
        spawn=spawn,
        wake=lambda app_id: holder[0].woken.append(app_id),
        clock=lambda: datetime.now(UTC),
        observe=lambda event, outcome: holder[0].counted.append((event, outcome)),
    )
    port = await receiver.start("127.0.0.1", 0)
    rig = Rig(store, receiver, f"http://127.0.0.1:{port}{PATH}")
    holder.append(rig)
    try:
        yield rig
    finally:
        await receiver.stop()
        await store.aclose()


def body(notice_id: str, *, sid: str = "SID1", event: int = 11, **details: object) -> bytes:
    return json.dumps(
        {
            "noticeId": notice_id,
            "productId": 3,
            "eventType": event,
            "notifyMs": 1765000000000,
            "payload": {
                "cname": "lobby",
                "uid": "101",
                "sid": sid,
                "sequence": 0,
                "sendts": 1765000000000,
                "serviceType": 0,
                "details": {"msgName": "session_exit", "exitStatus": 0, **details},
            },
        }
    ).encode()


Post = Callable[..., Awaitable[httpx.Response]]


async def post(url: str, content: bytes, *, secret: str | None = SECRET) -> httpx.Response:
    headers = {"Content-Type": "application/json"}
    if secret is not None:
        headers[ncs.SIGNATURE_HEADER] = ncs.sign(secret, content)
    async with httpx.AsyncClient(timeout=10) as client:
        return await client.post(url, content=content, headers=headers)


async def a_session(store: SqliteStore, sid: str = "SID1") -> int:
    session = await store.create_session(
        manifest="lobby",
        app="main",
        app_id="app1",
        channel="lobby",
        uid=101,
        mode="mix",
        phase=Phase.RUNNING,
        resource_id="R1",
        sid=sid,
    )
    return session.id


async def test_a_signed_notification_is_answered_kept_once_and_wakes_its_owner(rig: Rig) -> None:
    session_id = await a_session(rig.store)
    answer = await post(rig.url, body("n1"))
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json"
    assert answer.json() == {"ok": True, "noticeId": "n1"}
    await rig.settled()
    (kept,) = await rig.store.pending_notices()
    assert (kept.notice_id, kept.event_type, kept.sid, kept.app_id, kept.session_id) == (
        "n1",
        11,
        "SID1",
        "app1",
        session_id,
    )
    assert kept.body["payload"]["details"]["exitStatus"] == 0
    assert rig.woken == ["app1"]

    again = await post(rig.url, body("n1"))  # NCS resends what it thinks was lost
    assert again.status_code == 200
    await rig.settled()
    assert [n.notice_id for n in await rig.store.pending_notices()] == ["n1"]
    assert rig.woken == ["app1"]  # not a second time
    assert rig.counted == [("session_exit", "kept"), ("session_exit", "duplicate")]


async def test_unsigned_forged_and_oversized_requests_change_nothing(rig: Rig) -> None:
    await a_session(rig.store)
    content = body("n2")
    unsigned = await post(rig.url, content, secret=None)
    wrong = await post(rig.url, content, secret="another-secret")
    # Signed, then changed: the signature no longer matches the body.
    async with httpx.AsyncClient(timeout=10) as client:
        changed = await client.post(
            rig.url,
            content=content.replace(b'"exitStatus": 0', b'"exitStatus": 1'),
            headers={ncs.SIGNATURE_HEADER: ncs.sign(SECRET, content)},
        )
        huge = body("n3", padding="x" * MAX_BODY)
        oversized = await client.post(
            rig.url, content=huge, headers={ncs.SIGNATURE_HEADER: ncs.sign(SECRET, huge)}
        )
    assert [r.status_code for r in (unsigned, wrong, changed)] == [401, 401, 401]
    assert oversized.status_code == 413
    for answer in (unsigned, wrong, changed, oversized):
        assert SECRET not in answer.text
    await rig.settled()
    assert await rig.store.pending_notices() == []
    assert rig.woken == []
    assert rig.counted == [
        ("unknown", "bad_signature"),
        ("unknown", "bad_signature"),
        ("unknown", "bad_signature"),
        ("unknown", "too_large"),
    ]


async def test_a_signed_body_that_is_not_a_notification_is_400(rig: Rig) -> None:
    # An event type the store's integer column cannot hold, or that is no integer: a
    # notification no NCS sends (the first was a 200, then a task failing to keep it).
    odd = [
        body("n9").replace(b'"eventType": 11', b'"eventType": ' + value)
        for value in (b"100000000000000000000000", b"-100000000000000000000", b"true", b'"11"')
    ]
    for content in (b"not json", b"[1, 2]", b'{"productId": 3}', *odd):
        answer = await post(rig.url, content)
        assert answer.status_code == 400, content
    await rig.settled()
    assert await rig.store.pending_notices() == []
    assert rig.counted == [("unknown", "bad_body")] * 7


async def test_a_signature_that_is_not_ascii_is_401_not_a_failure(rig: Rig) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        answer = await client.post(
            rig.url, content=body("n10"), headers={ncs.SIGNATURE_HEADER.encode(): b"\xe9" * 64}
        )
    assert answer.status_code == 401  # was a 500 (a str of non-ASCII in compare_digest)
    assert rig.counted == [("unknown", "bad_signature")]


async def test_a_notice_is_answered_200_only_once_kept_and_503_when_the_store_fails(
    rig: Rig, tmp_path: Path
) -> None:
    session_id = await a_session(rig.store)
    # Another process's write transaction holds the store past its busy timeout.
    other = sqlite3.connect(tmp_path / "state.db", isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        refused = await post(rig.url, body("n11"))
        assert refused.status_code == 503  # NCS sends it again: it was a 200, then lost
        assert refused.json() == {"error": "not kept: send it again"}
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert await rig.store.pending_notices() == []
    assert rig.woken == []
    again = await post(rig.url, body("n11"))  # NCS's resend
    assert again.status_code == 200
    # Kept by the time it is answered: no waiting for the work after the answer.
    assert [(n.notice_id, n.session_id) for n in await rig.store.pending_notices()] == [
        ("n11", session_id)
    ]
    assert rig.woken == ["app1"]
    assert rig.counted == [("session_exit", "store_failed"), ("session_exit", "kept")]


async def test_an_answer_past_the_listeners_bound_is_503_and_the_connection_reads_on(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(listener, "ANSWER_TIMEOUT", 0.3)
    events = rig.events
    late = listener._Connection._late

    def answered_late(connection: listener._Connection) -> None:
        events.append("503")
        monkeypatch.setattr(listener, "ANSWER_TIMEOUT", 8.0)  # the next has the usual bound
        late(connection)

    monkeypatch.setattr(listener._Connection, "_late", answered_late)
    await a_session(rig.store)
    release = asyncio.Event()
    lookup = rig.store.session_by_sid

    async def slow(sid: str) -> Any:  # a store that answers once released
        await release.wait()
        return await lookup(sid)

    monkeypatch.setattr(rig.store, "session_by_sid", slow)
    port = int(rig.url.split(":")[2].split("/")[0])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        # Two requests at once on one connection: the second waits for the first.
        for notice_id in ("n12", "n13"):
            content = body(notice_id)
            head = (
                f"POST {PATH} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(content)}\r\n"
                f"{ncs.SIGNATURE_HEADER}: {ncs.sign(SECRET, content)}\r\n\r\n"
            )
            writer.write(head.encode() + content)
        await writer.drain()
        async with asyncio.timeout(10):
            first = await reader.readuntil(b"\r\n\r\n")
            assert first.startswith(b"HTTP/1.1 503 ")
            length = int(first.split(b"Content-Length: ")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
            release.set()
            second = await reader.readuntil(b"\r\n\r\n")
        assert second.startswith(b"HTTP/1.1 200 ")
    finally:
        writer.close()
    await rig.settled()
    # The second was read only once the first was answered: one notice in work at most.
    assert events == ["work", "503", "work"]
    # The first's keeping went on after its 503 (a resend would be a duplicate).
    assert sorted(n.notice_id for n in await rig.store.pending_notices()) == ["n12", "n13"]


async def test_a_notification_of_an_unknown_sid_is_counted_not_acted_on(rig: Rig) -> None:
    answer = await post(rig.url, body("n4", sid="not-ours"))
    assert answer.status_code == 200
    await rig.settled()
    assert await rig.store.pending_notices() == []  # settled at once
    assert rig.woken == []
    assert rig.counted == [("session_exit", "unknown_session")]
    # Kept all the same: a resend is still recognised.
    assert await post(rig.url, body("n4", sid="not-ours")) is not None
    await rig.settled()
    assert rig.counted[-1] == ("session_exit", "duplicate")


async def a_sidless_session(
    store: SqliteStore, app_id: str = "app1", uid: int = 101, phase: Phase = Phase.UNMANAGEABLE
) -> int:
    """A session of `lobby` whose sid is unknown: its start's answer was lost
    (unmanageable), or is not written yet (starting)."""
    session = await store.create_session(
        manifest=f"lobby-{app_id}-{uid}",
        app="main",
        app_id=app_id,
        channel="lobby",
        uid=uid,
        mode="mix",
        phase=phase,
        resource_id=f"R-{app_id}",
    )
    return session.id


async def test_an_unknown_sid_on_a_sidless_sessions_channel_and_uid_is_kept_for_it(
    rig: Rig,
) -> None:
    await a_sidless_session(rig.store, uid=202)  # another uid: not the one named
    session_id = await a_sidless_session(rig.store)
    answer = await post(rig.url, body("n6", sid="SID-LOST", event=40))  # recorder_started
    assert answer.status_code == 200
    await rig.settled()
    # Kept unsettled, even for an event that means nothing, for the owner to confirm.
    (kept,) = await rig.store.pending_notices()
    assert (kept.sid, kept.channel, kept.app_id, kept.session_id) == (
        "SID-LOST",
        "lobby",
        "app1",
        session_id,
    )
    assert rig.woken == ["app1"]
    assert rig.counted == [("recorder_started", "kept")]
    # An exit that comes before its start's answer is written is kept for it too.
    starting_id = await a_sidless_session(rig.store, uid=303, phase=Phase.STARTING)
    exited = body("n8", sid="SID-NEW").replace(b'"uid": "101"', b'"uid": "303"')
    assert (await post(rig.url, exited)).status_code == 200
    await rig.settled()
    assert [(n.notice_id, n.session_id) for n in await rig.store.pending_notices()] == [
        ("n6", session_id),
        ("n8", starting_id),
    ]


async def test_a_start_answer_written_while_it_looks_is_not_taken_for_an_unknown_sid(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The notification of a fresh start, between the store's two looks: its sid not
    written yet when looked up, written before the look for a sidless session. It is the
    session's, not an unknown sid's (an exit would otherwise wait for the resync)."""
    session_id = await a_sidless_session(rig.store, phase=Phase.STARTING)
    sidless_on = rig.store.sidless_on

    async def answer_written_first(channel: str, uid: int) -> Any:
        await rig.store.record_outcome(session_id, sid="SID-FRESH", phase=Phase.RUNNING)
        return await sidless_on(channel, uid)

    monkeypatch.setattr(rig.store, "sidless_on", answer_written_first)
    assert (await post(rig.url, body("n9", sid="SID-FRESH"))).status_code == 200
    await rig.settled()
    assert [(n.notice_id, n.session_id) for n in await rig.store.pending_notices()] == [
        ("n9", session_id)
    ]
    assert rig.woken == ["app1"]
    assert rig.counted == [("session_exit", "kept")]


async def test_an_unknown_sid_that_two_app_ids_could_own_is_not_kept_for_either(
    rig: Rig,
) -> None:
    await a_sidless_session(rig.store, app_id="app1")
    await a_sidless_session(rig.store, app_id="app2")
    answer = await post(rig.url, body("n7", sid="SID-LOST"))
    assert answer.status_code == 200
    await rig.settled()
    assert await rig.store.pending_notices() == []
    assert rig.woken == []
    assert rig.counted == [("session_exit", "unknown_session")]


async def test_other_methods_and_paths_are_refused(rig: Rig) -> None:
    base = rig.url.removesuffix(PATH)
    async with httpx.AsyncClient(timeout=10) as client:
        get = await client.get(rig.url)
        elsewhere = await client.post(f"{base}/other", content=b"{}")
    assert get.status_code == 405 and get.headers["allow"] == "POST"
    # A path the receiver does not serve is not found, whatever the method (it was a
    # 405 naming GET: a notification URL with a wrong path looked like a wrong method).
    assert elsewhere.status_code == 404


async def test_an_event_that_means_nothing_is_counted_and_settled_without_a_wake(
    rig: Rig,
) -> None:
    await a_session(rig.store)
    answer = await post(rig.url, body("n5", event=40))  # recorder_started
    assert answer.status_code == 200
    await rig.settled()
    assert await rig.store.pending_notices() == []
    assert rig.woken == []
    assert rig.counted == [("recorder_started", "kept")]
