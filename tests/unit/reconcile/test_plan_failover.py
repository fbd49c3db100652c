"""`plan` around Agora's failover (issue 19): a 404 without a notification may be an
exit or a failover, so the session it ended is *unconfirmed* for a grace.

Covers: a restart after an unconfirmed end starts at once (no gap) on the manifest's
other uid, as that session's successor; without a second uid it waits until the end
is confirmed; a confirmed end (or a grace over) restarts on the manifest's uid as
before; an unconfirmed session that answered again beside the session started in its
place is stopped as a duplicate (not a rollover: no successor id), once that one
records; a rollover whose predecessor saw a failover before it began is still a
rollover.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from orchestrator.contract import ServiceStatus
from orchestrator.reconcile.plan import (
    ActualState,
    DesiredRecording,
    NoteKind,
    PlanPolicy,
    Start,
    Stop,
    plan,
)
from orchestrator.schedule import always_schedule
from orchestrator.state import EndKind, Phase, SessionRecord
from tests.unit.reconcile.desired_recordings import desired_recording, session_record

NOW = datetime(2026, 12, 6, 10, 0, tzinfo=UTC)
UID, OTHER = 527841, 900001
GRACE = timedelta(seconds=90)
POLICY = PlanPolicy()


def desired(**changes: Any) -> DesiredRecording:
    return desired_recording(
        **{"schedule": always_schedule(), "uid": UID, "rollover_uid": OTHER, **changes}
    )


def ended_by_404(**changes: Any) -> SessionRecord:
    """Recorded for an hour; a query answered 404 five seconds ago."""
    return session_record(
        NOW - timedelta(hours=1),
        **{
            "phase": Phase.ENDED,
            "ended_at": NOW - timedelta(seconds=5),
            "end_kind": EndKind.EXITED,
            "end_reason": "exited: query answered 404",
            "confirm_until": NOW - timedelta(seconds=5) + GRACE,
            "last_status": ServiceStatus.RECORDING,
            **changes,
        },
    )


def test_an_unconfirmed_end_restarts_at_once_on_the_other_uid_as_its_successor() -> None:
    gone = ended_by_404()
    result = plan([desired()], ActualState(latest_ended={gone.manifest: gone}), NOW, POLICY)
    (start,) = result.actions
    assert isinstance(start, Start)
    assert (start.uid, start.predecessor_id) == (OTHER, gone.id)
    assert "not confirmed" in start.reason
    # A session on the other uid is followed on the manifest's own.
    on_other = ended_by_404(uid=OTHER)
    (again,) = plan(
        [desired()], ActualState(latest_ended={gone.manifest: on_other}), NOW, POLICY
    ).actions
    assert isinstance(again, Start) and again.uid == UID


def test_without_a_second_uid_the_restart_waits_for_the_end_to_be_confirmed() -> None:
    gone = ended_by_404()
    result = plan(
        [desired(rollover_uid=None)], ActualState(latest_ended={gone.manifest: gone}), NOW, POLICY
    )
    assert result.actions == ()
    (note,) = result.notes
    assert note.kind is NoteKind.BACKOFF and note.until == gone.confirm_until
    assert result.wake_at == gone.confirm_until


def test_a_confirmed_end_or_a_grace_over_restarts_on_the_manifest_uid() -> None:
    for gone in (
        ended_by_404(confirm_until=None),
        ended_by_404(confirm_until=NOW - timedelta(seconds=1)),
    ):
        (start,) = plan(
            [desired()], ActualState(latest_ended={gone.manifest: gone}), NOW, POLICY
        ).actions
        assert isinstance(start, Start)
        assert (start.uid, start.predecessor_id) == (None, None)


def _pair(*, failover_at: datetime | None) -> tuple[SessionRecord, SessionRecord]:
    old = session_record(
        NOW - timedelta(hours=1),
        last_status=ServiceStatus.RECORDING,
        failover_at=failover_at,
    )
    new = session_record(
        NOW - timedelta(seconds=40),
        id=old.id + 1,
        uid=OTHER,
        predecessor_id=old.id,
        last_status=ServiceStatus.RECORDING,
    )
    return old, new


def test_a_session_taken_back_beside_its_replacement_is_stopped_as_a_duplicate() -> None:
    old, new = _pair(failover_at=NOW - timedelta(seconds=2))  # taken back after `new` began
    (stop,) = plan([desired()], ActualState(live=[old, new]), NOW, POLICY).actions
    assert isinstance(stop, Stop)
    assert stop.session_id == old.id and stop.successor_id is None
    assert "duplicate" in stop.reason


def test_a_replacement_not_yet_recording_is_confirmed_before_the_duplicate_stops() -> None:
    old, new = _pair(failover_at=NOW - timedelta(seconds=2))
    starting = session_record(
        NOW - timedelta(seconds=3), id=new.id, uid=OTHER, predecessor_id=old.id, last_status=None
    )
    (action,) = plan([desired()], ActualState(live=[old, starting]), NOW, POLICY).actions
    assert not isinstance(action, Stop)  # the old one records until the new one does


def test_a_rollover_after_an_earlier_failover_is_still_a_rollover() -> None:
    old, new = _pair(failover_at=NOW - timedelta(hours=2))  # before `new` was created
    (stop,) = plan([desired()], ActualState(live=[old, new]), NOW, POLICY).actions
    assert isinstance(stop, Stop) and stop.successor_id == new.id
