"""`plan` for rollovers: a session whose token or resource ID expires before its window
ends is replaced, make before break, on the manifest's other uid.

Covers: nothing before `expires_at - rolloverLead` (only an upcoming note, which wakes
the daemon), the successor at that instant; nothing when the expiry is past the window's
end or the manifest has no rollover uid; a chain (successor beside predecessor):
confirmed, the predecessor stopped; not yet seen recording, confirmed by a Rollover;
interrupted calls of either resumed first; wound down together when no longer wanted;
an unmanageable member leaves the other planned as the recording; a failed successor
retried with the restart backoff while the predecessor records.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from orchestrator.contract import ServiceStatus
from orchestrator.reconcile.plan import (
    ActionKind,
    ActualState,
    DesiredRecording,
    NoteKind,
    PlanPolicy,
    Rollover,
    plan,
)
from orchestrator.schedule import always_schedule, windows_schedule
from orchestrator.state import EndKind, Intent, Phase, SessionRecord
from tests.unit.reconcile.desired_recordings import desired_recording, session_record

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
UID, OTHER = 527841, 900001
LEAD = timedelta(minutes=10)
POLICY = PlanPolicy(rollover_lead=LEAD)


def desired(**changes: Any) -> DesiredRecording:
    return desired_recording(
        **{"schedule": always_schedule(), "uid": UID, "rollover_uid": OTHER, **changes}
    )


def session(**changes: Any) -> SessionRecord:
    """Recording for 23 hours; its token expires in 30 minutes."""
    return session_record(
        NOW - timedelta(hours=23),
        **{
            "last_status": ServiceStatus.RECORDING,
            "join_expires_at": NOW + timedelta(minutes=30),
            **changes,
        },
    )


def successor(**changes: Any) -> SessionRecord:
    return session(
        **{
            "id": 8,
            "uid": OTHER,
            "predecessor_id": 7,
            "started_at": NOW - timedelta(seconds=5),
            "join_expires_at": NOW + timedelta(hours=24),
            **changes,
        }
    )


def kinds(result: Any) -> list[tuple[str, int | None]]:
    return [(a.kind.value, getattr(a, "session_id", None)) for a in result.actions]


def test_before_the_lead_nothing_happens_and_the_rollover_is_upcoming() -> None:
    result = plan([desired()], ActualState(live=[session()]), NOW, POLICY)
    assert result.actions == ()
    assert result.notes == ()  # nothing is held back
    (upcoming,) = result.upcoming
    assert upcoming.kind is NoteKind.ROLLOVER_DUE
    assert upcoming.until == NOW + timedelta(minutes=20)
    assert result.wake_at == NOW + timedelta(minutes=20)
    # The message says why; the time it rolls over is `until`, shown after it once.
    expires = session().join_expires_at
    assert expires is not None
    assert (
        upcoming.message
        == f"its token or resource ID expires at {expires.isoformat()}: it rolls over"
    )
    assert upcoming.until.isoformat() not in upcoming.message


def test_at_the_lead_a_successor_is_started_on_the_other_uid() -> None:
    result = plan([desired()], ActualState(live=[session()]), NOW + timedelta(minutes=20), POLICY)
    (action,) = result.actions
    assert isinstance(action, Rollover)
    assert (action.session_id, action.successor_id, action.attempt) == (7, None, 0)
    assert action.recording.other_uid(UID) == OTHER
    assert action.recording.other_uid(OTHER) == UID  # the uids alternate
    assert "expires at" in action.reason


def test_a_session_is_never_rolled_over_before_half_its_life() -> None:
    # A lead longer than the session lives (a resource ID of 1 hour, a lead of 2):
    # replaced at half its life, not as soon as it started.
    started = NOW - timedelta(minutes=5)
    young = session(started_at=started, join_expires_at=started + timedelta(hours=1))
    lead = PlanPolicy(rollover_lead=timedelta(hours=2))
    result = plan([desired()], ActualState(live=[young]), NOW, lead)
    assert result.actions == ()
    assert [n.until for n in result.upcoming] == [started + timedelta(minutes=30)]
    at_half = plan([desired()], ActualState(live=[young]), started + timedelta(minutes=30), lead)
    assert kinds(at_half) == [("rollover", 7)]


def test_no_rollover_when_the_expiry_is_past_the_window_or_there_is_no_second_uid() -> None:
    late = NOW + timedelta(minutes=25)
    window = windows_schedule([(NOW - timedelta(hours=1), NOW + timedelta(minutes=30))])
    # the token lasts through the window's end: the window's stop comes first
    assert plan([desired(schedule=window)], ActualState(live=[session()]), late, POLICY).empty
    # never expires (a fixed token past the resource's life, or none known)
    assert plan([desired()], ActualState(live=[session(join_expires_at=None)]), late, POLICY).empty
    assert plan([desired(rollover_uid=None)], ActualState(live=[session()]), late, POLICY).empty


def test_a_change_comes_before_a_rollover() -> None:
    result = plan(
        [desired(subscription_hash="sub2")],
        ActualState(live=[session()]),
        NOW + timedelta(minutes=25),
        POLICY,
    )
    assert kinds(result) == [("update", 7)]


def test_a_confirmed_successor_stops_the_predecessor() -> None:
    result = plan([desired()], ActualState(live=[session(), successor()]), NOW, POLICY)
    assert kinds(result) == [("stop", 7)]
    assert result.actions[0].reason == "rolled over to session 8"


def test_a_successor_not_yet_seen_recording_is_confirmed_first() -> None:
    for status in (None, ServiceStatus.STARTED):
        live = [session(), successor(last_status=status)]
        result = plan([desired()], ActualState(live=live), NOW, POLICY)
        (action,) = result.actions
        assert isinstance(action, Rollover)
        assert (action.session_id, action.successor_id) == (7, 8)


def test_interrupted_calls_of_a_rollover_are_resumed_first() -> None:
    acquiring = successor(
        phase=Phase.ACQUIRING, intent=Intent.ACQUIRE, resource_id=None, sid=None, last_status=None
    )
    starting = successor(phase=Phase.STARTING, intent=Intent.START, sid=None, last_status=None)
    stopping = session(phase=Phase.STOPPING, intent=Intent.STOP)
    for live, resumed in (
        ([session(), acquiring], 8),
        ([session(), starting], 8),
        ([stopping, successor()], 7),
    ):
        result = plan([desired()], ActualState(live=live), NOW, POLICY)
        assert kinds(result) == [("resume", resumed)]


def test_a_chain_no_longer_wanted_is_wound_down_whole() -> None:
    gone = windows_schedule([(NOW - timedelta(days=2), NOW - timedelta(days=1))])
    result = plan([desired(schedule=gone)], ActualState(live=[session(), successor()]), NOW, POLICY)
    assert sorted(kinds(result)) == [("stop", 7), ("stop", 8)]
    result = plan([], ActualState(live=[session(), successor()]), NOW, POLICY)
    assert sorted(kinds(result)) == [("stop", 7), ("stop", 8)]  # manifest removed


def test_a_successor_started_with_its_sid_unknown_takes_over() -> None:
    started = successor(phase=Phase.UNMANAGEABLE, sid=None)  # code 7 on a replayed start
    result = plan([desired()], ActualState(live=[session(), started]), NOW, POLICY)
    assert kinds(result) == [("stop", 7)]
    assert [n.kind for n in result.notes] == [NoteKind.UNMANAGEABLE]


def test_a_successor_whose_sid_is_unknown_is_given_time_to_join_first() -> None:
    # Marked unmanageable just now: no query can see it record, so the predecessor
    # records on until a recorder has had time to join.
    started = successor(phase=Phase.UNMANAGEABLE, sid=None, updated_at=NOW)
    result = plan([desired()], ActualState(live=[session(), started]), NOW, POLICY)
    assert result.actions == ()
    (waits,) = [n for n in result.notes if n.kind is NoteKind.ROLLOVER]
    assert waits.until == NOW + timedelta(seconds=15) == result.wake_at
    later = plan([desired()], ActualState(live=[session(), started]), waits.until, POLICY)
    assert kinds(later) == [("stop", 7)]


def test_an_unmanageable_member_leaves_the_other_as_the_recording() -> None:
    lost = successor(phase=Phase.UNMANAGEABLE)  # 1001 on a query: may have ended
    result = plan([desired()], ActualState(live=[session(), lost]), NOW, POLICY)
    assert result.actions == ()
    assert [n.kind for n in result.notes] == [NoteKind.UNMANAGEABLE]
    # the predecessor, due, tries again (53 while the lost one records: a conflict)
    due = NOW + timedelta(minutes=20)
    result = plan([desired()], ActualState(live=[session(), lost]), due, POLICY)
    assert kinds(result) == [("rollover", 7)]
    # a lost predecessor: the successor is the recording, planned as any
    result = plan(
        [desired(subscription_hash="sub2")],
        ActualState(live=[session(phase=Phase.UNMANAGEABLE, sid=None), successor()]),
        NOW,
        POLICY,
    )
    assert kinds(result) == [("update", 8)]


def test_a_session_the_api_no_longer_recognises_is_started_afresh_token_or_not() -> None:
    """Defect: with a token, a session whose query answered 1001 or 1003 (the API lost
    it: an emulator restart, a failover gone wrong) was taken to record until its token
    expired, up to 24 hours with no recording, and the note said its sid was unknown.
    Whether it records is unknown: a fresh start is tried with the restart backoff (53
    while it still records), as without a token."""
    unrecognised = session(phase=Phase.UNMANAGEABLE, sid="SID-7")
    result = plan([desired()], ActualState(live=[unrecognised]), NOW, POLICY)
    assert [(a.kind, a.reason) for a in result.actions] == [(ActionKind.START, "always on")]
    (note,) = result.notes
    assert note.kind is NoteKind.UNMANAGEABLE
    assert "no longer recognised by the API" in note.message
    assert "unknown sid" not in note.message
    # A start whose answer was lost (code 7 on its replay) does record, with its token.
    lost = session(phase=Phase.UNMANAGEABLE, sid=None)
    result = plan([desired()], ActualState(live=[lost]), NOW, POLICY)
    assert result.actions == () and "records until its token expires" in result.notes[0].message
    assert "unknown sid" in result.notes[0].message


def test_a_failed_successor_is_retried_with_backoff_while_the_predecessor_records() -> None:
    due = NOW + timedelta(minutes=20)
    failed = successor(
        phase=Phase.FAILED,
        ended_at=due,
        end_kind=EndKind.FAILED,
        end_reason="failed: start: code 53",
        started_at=None,
        restart_count=0,
    )
    actual = ActualState(live=[session()], latest_ended={"standup": failed})
    held = plan([desired()], actual, due + timedelta(seconds=5), POLICY)
    assert held.actions == ()
    (note,) = held.notes
    assert note.kind is NoteKind.ROLLOVER
    assert note.until == due + POLICY.restart_backoff_initial
    assert held.wake_at == note.until
    retried = plan([desired()], actual, due + POLICY.restart_backoff_initial, POLICY)
    (action,) = retried.actions
    assert isinstance(action, Rollover)
    assert action.attempt == 1
    # the next failure waits twice as long
    again = replace(failed, restart_count=1, ended_at=due + timedelta(seconds=10))
    actual = ActualState(live=[session()], latest_ended={"standup": again})
    held = plan([desired()], actual, due + timedelta(seconds=20), POLICY)
    assert held.notes[0].until == again.ended_at + 2 * POLICY.restart_backoff_initial


def test_a_successor_of_another_session_does_not_delay_a_rollover() -> None:
    old = successor(id=5, predecessor_id=3, phase=Phase.FAILED, ended_at=NOW, started_at=None)
    actual = ActualState(live=[session()], latest_ended={"standup": old})
    result = plan([desired()], actual, NOW + timedelta(minutes=20), POLICY)
    assert [a.kind for a in result.actions] == [ActionKind.ROLLOVER]
