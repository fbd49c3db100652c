"""`plan`, table-driven: every row of DESIGN.md section 4.

Covers: start in a window (and always-on), nothing outside a window; stop when the
window is over, when suspended, when the manifest is removed; an invalid manifest
file is never a deletion; update for subscription changes, updateLayout for
layout changes (mix only); restart or defer for other changes; permanent failures
held until the spec changes; restart after an exit with doubling backoff and a
restart counter; startingDeadline; interrupted calls resumed; unmanageable
sessions never duplicated; duplicate live sessions wound down.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from orchestrator.reconcile.plan import (
    ActionKind,
    ActualState,
    DesiredRecording,
    NoteKind,
    PlanPolicy,
    plan,
    restart_backoff,
)
from orchestrator.schedule import (
    FAR_FUTURE,
    FAR_PAST,
    always_schedule,
    cron_schedule,
    windows_schedule,
)
from orchestrator.state import EndKind, Intent, ManifestState, Phase, SessionRecord
from tests.unit.reconcile.desired_recordings import MANIFEST, desired_recording, session_record

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
W_START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
W_END = datetime(2026, 3, 2, 11, 0, tzinfo=UTC)
DAY = timedelta(days=1)
IN_WINDOW = windows_schedule([(W_START, W_END)])
PAST_WINDOW = windows_schedule([(W_START - timedelta(days=1), W_END - timedelta(days=1))])


def desired(**changes: Any) -> DesiredRecording:
    return desired_recording(**{"schedule": IN_WINDOW, **changes})


def session(**changes: Any) -> SessionRecord:
    return session_record(W_START, **{"window_start": W_START, "window_end": W_END, **changes})


def ended(**changes: Any) -> SessionRecord:
    return session(**{"phase": Phase.ENDED, "ended_at": NOW - timedelta(seconds=5), **changes})


def kinds(result: Any) -> list[tuple[str, str]]:
    return [(a.kind.value, a.reason) for a in result.actions]


@pytest.mark.parametrize(
    ("name", "wanted", "live", "expected"),
    [
        ("start in window", desired(), [], [("start", "window open")]),
        ("always on", desired(schedule=always_schedule()), [], [("start", "always on")]),
        ("outside window", desired(schedule=PAST_WINDOW), [], []),
        ("suspended, nothing live", desired(suspend=True), [], []),
        ("steady state", desired(), [session()], []),
        ("window over", desired(schedule=PAST_WINDOW), [session()], [("stop", "window over")]),
        ("suspended", desired(suspend=True), [session()], [("stop", "suspended")]),
        (
            "subscription changed",
            desired(subscription_hash="sub2"),
            [session()],
            [("update", "subscription changed")],
        ),
        (
            "layout changed",
            desired(layout_hash="lay2"),
            [session()],
            [("updateLayout", "layout changed")],
        ),
        (
            "layout hash changed in individual mode is no updateLayout",
            desired(layout_hash="lay2", mode="individual"),
            [session(mode="individual")],
            [],
        ),
        (
            "subscription and layout changed",
            desired(subscription_hash="sub2", layout_hash="lay2"),
            [session()],
            [("update", "subscription changed"), ("updateLayout", "layout changed")],
        ),
        (
            "other change, restart policy",
            desired(restart_hash="rst2"),
            [session()],
            [("restart", "spec changed in a way update cannot carry")],
        ),
        (
            "other change, defer policy, with a subscription change",
            desired(restart_hash="rst2", update_policy="defer", subscription_hash="sub2"),
            [session()],
            [("update", "subscription changed")],
        ),
        (
            "interrupted acquire",
            desired(),
            [session(phase=Phase.ACQUIRING, intent=Intent.ACQUIRE, resource_id=None, sid=None)],
            [("resume", "finish interrupted acquire")],
        ),
        (
            "interrupted start",
            desired(),
            [session(phase=Phase.STARTING, intent=Intent.START, sid=None)],
            [("resume", "finish interrupted start")],
        ),
        (
            "interrupted stop",
            desired(schedule=PAST_WINDOW),
            [session(phase=Phase.STOPPING, intent=Intent.STOP)],
            [("resume", "finish interrupted stop")],
        ),
        (
            "interrupted update is replanned, not resumed",
            desired(subscription_hash="sub2"),
            [session(phase=Phase.UPDATING, intent=Intent.UPDATE)],
            [("update", "subscription changed")],
        ),
        (
            # While wanted, a fresh start is tried (53 while the old one still records).
            "unmanageable in its window: a fresh start is tried",
            desired(),
            [session(phase=Phase.UNMANAGEABLE, sid=None)],
            [("start", "window open")],
        ),
        (
            "unmanageable past its window: a new window tries a start",
            desired(),
            [
                session(
                    phase=Phase.UNMANAGEABLE,
                    sid=None,
                    window_start=W_START - timedelta(days=1),
                    window_end=W_END - timedelta(days=1),
                )
            ],
            [("start", "window open")],
        ),
        (
            "deferred mode change sends no live update",
            desired(
                restart_hash="rst2",
                update_policy="defer",
                mode="individual",
                subscription_hash="sub2",
                layout_hash="lay2",
            ),
            [session()],
            [],
        ),
        (
            "an older unmanageable session beside a running one is only reported",
            desired(),
            [session(id=3, phase=Phase.UNMANAGEABLE, sid=None), session(id=7)],
            [],
        ),
        (
            "two live sessions: the older is stopped",
            desired(),
            [session(id=3), session(id=7)],
            [("stop", "a newer session of this manifest exists")],
        ),
    ],
)
def test_plan_rows(
    name: str, wanted: DesiredRecording, live: list[SessionRecord], expected: list[tuple[str, str]]
) -> None:
    result = plan([wanted], ActualState(live=live), NOW)
    assert kinds(result) == expected, name


def test_removed_manifest_is_stopped_unless_its_file_is_invalid() -> None:
    orphan = session(manifest="gone", source_file="recordings.d/gone.yaml")
    result = plan([], ActualState(live=[orphan]), NOW)
    assert kinds(result) == [("stop", "manifest removed")]
    assert result.actions[0].session_id == orphan.id

    kept = plan(
        [], ActualState(live=[orphan], invalid_files=frozenset({"recordings.d/gone.yaml"})), NOW
    )
    assert kept.actions == ()
    assert [n.kind for n in kept.notes] == [NoteKind.KEPT]


def test_removed_manifest_with_interrupted_start_is_resumed() -> None:
    orphan = session(manifest="gone", phase=Phase.STARTING, intent=Intent.START, sid=None)
    assert kinds(plan([], ActualState(live=[orphan]), NOW)) == [
        ("resume", "finish interrupted start")
    ]


def test_unmanageable_always_on_is_retried_with_backoff_then_started() -> None:
    """An always-on recording whose start's sid was lost is never blocked for good:
    each fresh start answered 53 (the old session still records) waits longer, and
    once the old one has ended a start goes through."""
    always = desired(schedule=always_schedule())
    lost = session(phase=Phase.UNMANAGEABLE, sid=None, window_start=FAR_PAST)
    conflict = ended(
        id=9,
        end_reason="failed: conflict (53): our unmanageable session 7 is still recording",
        started_at=None,
        window_start=FAR_PAST,
        restart_count=2,
        ended_at=NOW - timedelta(seconds=30),
    )
    held = plan([always], ActualState(live=[lost], latest_ended={"standup": conflict}), NOW)
    assert held.actions == ()
    assert [n.kind for n in held.notes] == [NoteKind.UNMANAGEABLE, NoteKind.BACKOFF]
    assert "it may still record" in held.notes[0].message
    later = NOW + timedelta(seconds=11)
    retried = plan([always], ActualState(live=[lost], latest_ended={"standup": conflict}), later)
    assert kinds(retried) == [("start", "restart #3 after " + str(conflict.end_reason))]


def test_starting_deadline_does_not_apply_to_always() -> None:
    always = desired(schedule=always_schedule(), starting_deadline=timedelta(minutes=5))
    assert kinds(plan([always], ActualState(), NOW)) == [("start", "always on")]


def test_starting_deadline_does_not_apply_to_a_chain_that_began_beyond_sight() -> None:
    """Defect: cron windows that merge into one (every 10 minutes for an hour) report a
    start at least `MERGE_HORIZON` ago, so with a startingDeadline such a recording
    was "missed" at every instant and never recorded."""
    chain = cron_schedule("*/10 * * * *", "UTC", timedelta(hours=1))
    merged = desired(schedule=chain, starting_deadline=timedelta(minutes=10))
    (action,) = plan([merged], ActualState(), NOW).actions
    assert action.kind is ActionKind.START
    # A window that did begin, long ago, is still missed: its start is known.
    daily = cron_schedule("0 9 * * *", "UTC", timedelta(hours=2))
    late = desired(schedule=daily, starting_deadline=timedelta(minutes=10))
    result = plan([late], ActualState(), NOW)
    assert result.actions == () and [n.kind for n in result.notes] == [NoteKind.MISSED]


def test_defer_with_always_says_the_change_is_never_applied() -> None:
    always = desired(schedule=always_schedule(), update_policy="defer", restart_hash="rst2")
    live = session(window_start=FAR_PAST, window_end=FAR_FUTURE)
    (note,) = plan([always], ActualState(live=[live]), NOW).notes
    assert note.kind is NoteKind.DEFERRED and "never" in note.message and note.until is None


def test_unmanageable_orphan_is_reported_not_acted_on() -> None:
    orphan = session(manifest="gone", phase=Phase.UNMANAGEABLE, sid=None)
    result = plan([], ActualState(live=[orphan]), NOW)
    assert result.actions == ()
    assert [n.kind for n in result.notes] == [NoteKind.UNMANAGEABLE]


def test_deferred_change_is_noted_with_the_window_end() -> None:
    twice = windows_schedule([(W_START, W_END), (W_START + DAY, W_END + DAY)])
    deferred = desired(schedule=twice, restart_hash="rst2", update_policy="defer")
    result = plan([deferred], ActualState(live=[session()]), NOW)
    assert result.actions == ()
    (note,) = result.notes
    assert note.kind is NoteKind.DEFERRED and note.until == W_END
    assert note.message == "spec changed; the new version starts with the next window"


def test_a_deferred_change_in_the_last_window_is_said_never_to_apply() -> None:
    """Defect: `plan` promised "the next window" where there is none (a schedule's
    last window): the change is never applied, as with `always`."""
    last = desired(restart_hash="rst2", update_policy="defer")  # one window: this one
    (note,) = plan([last], ActualState(live=[session()]), NOW).notes
    assert note.kind is NoteKind.DEFERRED and note.until is None
    assert note.message == (
        "spec changed, but this is its last window: the change is never applied under "
        "updatePolicy: defer (use restart)"
    )


def test_deferred_change_names_the_end_of_the_window_as_edited_since_the_start() -> None:
    """Defect: the note named the end the session was started for, a time already past
    once the schedule was edited to end later (and a window edited to `always` was
    said to end)."""
    later = W_END + timedelta(hours=3)
    live = [session(window_end=NOW - timedelta(minutes=1))]
    edited = windows_schedule([(W_START, later), (later + DAY, later + DAY + timedelta(hours=1))])
    extended = desired(schedule=edited, restart_hash="rst2", update_policy="defer")
    (note,) = plan([extended], ActualState(live=live), NOW).notes
    assert note.kind is NoteKind.DEFERRED and note.until == later
    endless = desired(schedule=always_schedule(), update_policy="defer", restart_hash="rst2")
    (note,) = plan([endless], ActualState(live=live), NOW).notes
    assert "never" in note.message and note.until is None


def test_permanent_failure_holds_until_the_spec_changes() -> None:
    failed = {
        "standup": ManifestState(name="standup", failed_spec_hash="spec1", failure_reason="code 2")
    }
    held = plan([desired()], ActualState(manifest_states=failed), NOW)
    assert held.actions == () and held.notes[0].kind is NoteKind.FAILED
    assert "code 2" in held.notes[0].message
    changed = plan([desired(spec_hash="spec2")], ActualState(manifest_states=failed), NOW)
    assert kinds(changed) == [("start", "window open")]
    # A live session of a failed spec is left alone (no update retried).
    live = plan(
        [desired(subscription_hash="sub2")],
        ActualState(live=[session()], manifest_states=failed),
        NOW,
    )
    assert live.actions == () and live.notes[0].kind is NoteKind.FAILED


def _died(restart_count: int, ran: int, ended_ago: int, **changes: Any) -> SessionRecord:
    """A restarted session that recorded `ran` seconds and ended `ended_ago` seconds ago."""
    return ended(
        end_reason="exited: abnormal exit (status 20)",
        restart_count=restart_count,
        started_at=NOW - timedelta(seconds=ran + ended_ago),
        ended_at=NOW - timedelta(seconds=ended_ago),
        **changes,
    )


@pytest.mark.parametrize(
    ("previous", "expected_kind", "expected_count"),
    [
        # The first end of a recording is restarted in the pass that notices it.
        (ended(end_reason="exited: idle exit (status 8)", restart_count=0), "start", 1),
        # A restarted recording that ends again soon waits: 10 s, then 20 s, ...
        (_died(1, ran=60, ended_ago=5), "backoff", 2),
        (_died(1, ran=60, ended_ago=11), "start", 2),
        (_died(2, ran=60, ended_ago=15), "backoff", 3),
        (_died(2, ran=60, ended_ago=21), "start", 3),
        # One that recorded at least restart_backoff_max (10 min) was healthy: count resets.
        (_died(5, ran=600, ended_ago=1), "start", 1),
        # A start that never recorded (conflict) backs off from the first failure.
        (ended(end_reason="failed: conflict (53): x", started_at=None), "backoff", 1),
        (ended(end_reason="stopped: restart (spec changed)", end_kind=EndKind.STOPPED), "start", 0),
        (
            ended(
                end_reason="exited: idle exit (status 8)",
                window_start=W_START - timedelta(days=1),
            ),
            "start",
            0,
        ),
    ],
)
def test_restart_after_exit_backs_off(
    previous: SessionRecord, expected_kind: str, expected_count: int
) -> None:
    result = plan([desired()], ActualState(latest_ended={"standup": previous}), NOW)
    if expected_kind == "start":
        (action,) = result.actions
        assert action.kind is ActionKind.START
        assert action.restart_count == expected_count
    else:
        assert result.actions == ()
        (note,) = result.notes
        assert note.kind is NoteKind.BACKOFF
        assert f"restart #{expected_count}" in note.message


def test_backoff_doubles_and_is_capped() -> None:
    policy = PlanPolicy(
        restart_backoff_initial=timedelta(seconds=10), restart_backoff_max=timedelta(minutes=1)
    )
    assert [restart_backoff(n, policy).total_seconds() for n in range(6)] == [0, 10, 20, 40, 60, 60]


@pytest.mark.parametrize(
    ("deadline", "previous", "expected"),
    [
        (timedelta(minutes=30), None, []),  # window opened an hour ago
        (timedelta(hours=2), None, [("start", "window open")]),
        (
            timedelta(minutes=30),
            ended(end_reason="exited: idle exit (status 8)", ended_at=NOW - timedelta(minutes=5)),
            [("start", "restart #1 after exited: idle exit (status 8)")],
        ),
    ],
)
def test_starting_deadline(
    deadline: timedelta, previous: SessionRecord | None, expected: list[tuple[str, str]]
) -> None:
    latest = {"standup": previous} if previous else {}
    result = plan([desired(starting_deadline=deadline)], ActualState(latest_ended=latest), NOW)
    assert kinds(result) == expected
    if not expected:
        assert [n.kind for n in result.notes] == [NoteKind.MISSED]


def test_start_carries_the_window_and_plan_is_deterministic() -> None:
    many = [desired(name=f"m{i:02d}", uid=i + 1) for i in range(20)]
    first = plan(reversed(many), ActualState(), NOW)
    assert [a.manifest for a in first.actions] == [f"m{i:02d}" for i in range(20)]
    assert all(a.window is not None and a.window.start == W_START for a in first.actions)
    assert plan(many, ActualState(), NOW) == first


def test_a_version_that_cannot_be_translated_is_held_with_its_session_kept() -> None:
    """Requests are translated at their first use, not at load: a valid manifest the
    wire models refuse (a bug the property tests rule out) leaves its live session as
    it is, with the reason, instead of failing the pass."""
    broken = MANIFEST.model_copy(update={"uid": 2**40})
    d = desired(manifest=broken, given=None)
    result = plan([d], ActualState(live=[session()]), NOW)
    assert result.actions == ()
    (note,) = result.notes
    assert note.kind is NoteKind.FAILED and "cannot translate: uid" in note.message
