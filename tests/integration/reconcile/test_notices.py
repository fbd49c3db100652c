"""Acting on kept notifications (reconcile/notices.py) against a real SQLite store.

Covers: an exit ends a running session at once (kind exited, the event's reason) and
tells `on_exit`; an exit confirms an end a 404 left unconfirmed; a failover records
when and the new uid and never ends the session, also during a stop; a failover of
a session a 404 ended unconfirmed takes it back; a file list is stored; another
event is only counted; a notice of a session an action is changing waits, unsettled;
every acted notice is settled once, so acting again finds nothing; a notice of a sid
kept for a start whose answer is not written yet waits for it, then acts; one kept
for a start that failed, or was answered with another sid, is settled untouched.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from orchestrator.agora import ncs
from orchestrator.reconcile.notices import act_on_notices
from orchestrator.state import (
    EndKind,
    Intent,
    Notice,
    Phase,
    SessionRecord,
    SqliteStore,
)

NOW = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)


async def running(sqlite_store: SqliteStore, uid: int = 101, **extra: Any) -> SessionRecord:
    """A session of `room` on `uid` (`extra` overrides: by default it runs, sid S<uid>)."""
    fields: dict[str, Any] = {
        "manifest": f"m{uid}",
        "app": "main",
        "app_id": "app1",
        "channel": "room",
        "uid": uid,
        "mode": "mix",
        "phase": Phase.RUNNING,
        "resource_id": "R",
        "sid": f"S{uid}",
        "started_at": NOW - timedelta(hours=1),
    }
    return await sqlite_store.create_session(**{**fields, **extra})


async def keep(
    sqlite_store: SqliteStore,
    notice_id: str,
    session: SessionRecord,
    event: int,
    *,
    sid: str | None = None,
    **details: Any,
) -> None:
    """Keep a notice for `session` as the receiver would: of its sid, or of `sid` (one
    the store did not know, kept for a session of ours whose sid is unknown)."""
    sid = sid or session.sid
    payload = ncs.Payload(sid=sid or "", cname="room", uid=str(session.uid), details=details)
    body = json.loads(
        ncs.dumps(
            ncs.Notification(noticeId=notice_id, productId=3, eventType=event, payload=payload)
        )
    )
    kept = await sqlite_store.record_notice(
        Notice(
            notice_id=notice_id,
            event_type=event,
            received_at=NOW,
            body=body,
            sid=sid,
            channel="room",
            app_id=session.app_id,
            session_id=session.id,
        )
    )
    assert kept


async def act(sqlite_store: SqliteStore) -> tuple[int, set[str], list[SessionRecord]]:
    exits: list[SessionRecord] = []
    acted, waiting = await act_on_notices(
        sqlite_store,
        await sqlite_store.pending_notices(),
        now=lambda: NOW,
        on_exit=lambda ended, _seen: exits.append(ended),
    )
    return acted, waiting, exits


async def test_an_exit_ends_a_running_session_once(sqlite_store: SqliteStore) -> None:
    session = await running(sqlite_store)
    await keep(sqlite_store, "n1", session, 41, leaveCode=4)
    acted, waiting, exits = await act(sqlite_store)
    assert (acted, waiting) == (1, set())
    ended = await sqlite_store.get_session(session.id)
    assert ended.phase is Phase.ENDED and ended.end_kind is EndKind.EXITED
    assert ended.ended_at == NOW and "recorder_leave (leaveCode 4)" in (ended.end_reason or "")
    assert [s.id for s in exits] == [session.id]
    assert await sqlite_store.pending_notices() == []  # settled
    assert await act(sqlite_store) == (0, set(), [])


async def test_an_exit_confirms_an_unconfirmed_end(sqlite_store: SqliteStore) -> None:
    session = await running(sqlite_store)
    await sqlite_store.update_session(
        session.id, phase=Phase.ENDED, ended_at=NOW, confirm_until=NOW + timedelta(seconds=90)
    )
    await keep(sqlite_store, "n1", session, 11, exitStatus=0)
    await act(sqlite_store)
    assert (await sqlite_store.get_session(session.id)).confirm_until is None
    assert await sqlite_store.unconfirmed_sessions() == []


async def test_a_failover_is_recorded_and_never_an_exit(sqlite_store: SqliteStore) -> None:
    session = await running(sqlite_store)
    stopping = await running(sqlite_store, uid=102)
    await sqlite_store.update_session(stopping.id, phase=Phase.STOPPING)
    await keep(sqlite_store, "n1", session, 12, newUid=4242)
    await keep(sqlite_store, "n2", stopping, 12, newUid=4343)
    acted, _, exits = await act(sqlite_store)
    assert acted == 2 and exits == []
    moved = await sqlite_store.get_session(session.id)
    assert moved.phase is Phase.RUNNING
    assert (moved.failover_at, moved.failover_uid) == (NOW, "4242")
    assert (await sqlite_store.get_session(stopping.id)).failover_uid == "4343"


async def test_a_failover_takes_back_a_session_a_404_ended(sqlite_store: SqliteStore) -> None:
    session = await running(sqlite_store)
    await sqlite_store.update_session(
        session.id,
        phase=Phase.ENDED,
        ended_at=NOW,
        end_kind=EndKind.EXITED,
        end_reason="exited: query answered 404",
        confirm_until=NOW + timedelta(seconds=90),
    )
    await keep(sqlite_store, "n1", session, 12, newUid=7)
    await act(sqlite_store)
    back = await sqlite_store.get_session(session.id)
    assert back.phase is Phase.RUNNING
    assert (back.ended_at, back.end_kind, back.end_reason, back.confirm_until) == (
        None,
        None,
        None,
        None,
    )
    assert back.failover_uid == "7"


async def test_file_lists_are_stored_and_other_events_counted(sqlite_store: SqliteStore) -> None:
    session = await running(sqlite_store)
    files = [{"fileName": "S101_room.m3u8", "trackType": "audio_and_video"}]
    await keep(sqlite_store, "n1", session, 31, status=0, fileList=files)
    await keep(sqlite_store, "n2", session, 40)
    acted, _, exits = await act(sqlite_store)
    assert acted == 2 and exits == []
    stored = await sqlite_store.get_session(session.id)
    assert stored.file_list == files and stored.phase is Phase.RUNNING


async def test_a_notice_waits_while_an_action_changes_its_session(
    sqlite_store: SqliteStore,
) -> None:
    session = await running(sqlite_store)
    await sqlite_store.record_intent(session.id, Intent.UPDATE, phase=Phase.UPDATING)
    await keep(sqlite_store, "n1", session, 11, exitStatus=0)
    acted, waiting, _ = await act(sqlite_store)
    assert (acted, waiting) == (0, {session.manifest})
    assert [n.notice_id for n in await sqlite_store.pending_notices()] == ["n1"]
    await sqlite_store.record_outcome(session.id, phase=Phase.RUNNING)
    acted, waiting, exits = await act(sqlite_store)
    assert (acted, waiting, [s.id for s in exits]) == (1, set(), [session.id])


async def test_a_notice_before_its_starts_answer_is_written_waits_then_acts(
    sqlite_store: SqliteStore,
) -> None:
    starting = await running(
        sqlite_store, phase=Phase.STARTING, sid=None, started_at=None, intent=Intent.START
    )
    # The recorder left before the start's answer (its sid) was written.
    await keep(sqlite_store, "n1", starting, 41, sid="S-NEW", leaveCode=4)
    acted, waiting, _ = await act(sqlite_store)
    assert (acted, waiting) == (0, {"m101"})
    await sqlite_store.record_outcome(starting.id, phase=Phase.RUNNING, sid="S-NEW")
    acted, waiting, exits = await act(sqlite_store)
    assert (acted, waiting, [s.id for s in exits]) == (1, set(), [starting.id])
    assert (await sqlite_store.get_session(starting.id)).phase is Phase.ENDED


async def test_a_notice_kept_for_a_start_that_failed_or_got_another_sid_is_settled(
    sqlite_store: SqliteStore,
) -> None:
    other = await running(sqlite_store, uid=101)  # its start was answered: sid S101
    failed = await running(sqlite_store, uid=102, phase=Phase.STARTING, sid=None, started_at=None)
    await sqlite_store.record_outcome(failed.id, phase=Phase.FAILED, end_reason="failed: 53")
    await keep(sqlite_store, "n1", other, 41, sid="S-ELSE", leaveCode=4)
    await keep(sqlite_store, "n2", await sqlite_store.get_session(failed.id), 41, sid="S-X")
    acted, waiting, exits = await act(sqlite_store)
    assert (acted, waiting, exits) == (2, set(), [])
    assert (await sqlite_store.get_session(other.id)).phase is Phase.RUNNING
    assert await sqlite_store.pending_notices() == []
