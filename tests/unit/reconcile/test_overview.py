"""`overview`: what each recording should do, what it does, and why not, table-driven.

Covers: recording as wanted; a start due now; a start in flight; a start left
unresolved by its retries (failing); a failed start
(secret, refusal, conflict) with its last error and next attempt; a restart backoff
after an exit; held as failed; a missed window (not a fault); unmanageable sessions
(also those the API no longer recognises) with the command to forget them; a live
session out of its window (stopping); waiting for the next window; suspended;
ended; files failing to load; the one-line summary and the JSON form; counts per
App ID for the metrics; the daemon's memo (`OverviewMemo`) answering as `overview`
does whatever it is asked in whatever order, keeping a status only while nothing it
was made of has changed and its window has neither opened nor closed.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.manifest.diagnostics import Diagnostic
from orchestrator.reconcile.model import Note, NoteKind, Plan
from orchestrator.reconcile.overview import (
    Overview,
    OverviewMemo,
    Reason,
    Should,
    counts_by_app,
    held_by_reason,
    overview,
)
from orchestrator.reconcile.plan import ActualState, DesiredRecording, PlanPolicy, plan
from orchestrator.reconcile.reconciler import untracked
from orchestrator.schedule import always_schedule, cron_schedule, windows_schedule
from orchestrator.state import EndKind, ManifestState, Phase, SessionRecord
from tests.unit.reconcile.desired_recordings import desired_recording, session_record

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
W_START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
W_END = datetime(2026, 3, 2, 11, 0, tzinfo=UTC)
IN_WINDOW = windows_schedule([(W_START, W_END)])
LATER = windows_schedule([(W_END + timedelta(hours=1), W_END + timedelta(hours=2))])
POLICY = PlanPolicy(restart_backoff_initial=timedelta(seconds=10))


def desired(**changes: Any) -> DesiredRecording:
    return desired_recording(**{"schedule": IN_WINDOW, **changes})


def session(**changes: Any) -> SessionRecord:
    return session_record(W_START, **{"window_start": W_START, "window_end": W_END, **changes})


def failed_start(reason: str, *, kind: EndKind = EndKind.FAILED, ago: int = 2) -> SessionRecord:
    return session(
        id=8,
        phase=Phase.FAILED,
        started_at=None,
        sid=None,
        ended_at=NOW - timedelta(seconds=ago),
        end_reason=reason,
        end_kind=kind,
    )


def look(d: DesiredRecording, **actual: Any) -> Any:
    state = ActualState(**actual)
    return overview([d], state, plan([d], state, NOW, POLICY), NOW)


@pytest.mark.parametrize(
    ("name", "d", "actual", "should", "doing", "reason"),
    [
        ("recording as wanted", desired(), {"live": [session()]}, Should.RECORD, "recording", None),
        ("a start due now", desired(), {}, Should.RECORD, "idle", Reason.STARTING),
        (
            "a start in flight",
            desired(),
            {"live": [session(phase=Phase.STARTING, sid=None, started_at=None)]},
            Should.RECORD,
            "starting",
            Reason.STARTING,
        ),
        (
            "a start unresolved after its retries is failing, not in flight",
            desired(),
            {
                "live": [
                    session(
                        phase=Phase.STARTING, sid=None, started_at=None, error="start: HTTP 503"
                    )
                ]
            },
            Should.RECORD,
            "starting",
            Reason.FAILING,
        ),
        (
            "a failed start waits its backoff",
            desired(),
            {"latest_ended": {"standup": failed_start("failed: cannot resolve a secret: X")}},
            Should.RECORD,
            "idle",
            Reason.FAILING,
        ),
        (
            "a conflict (53) is a failing start",
            desired(),
            {
                "latest_ended": {
                    "standup": failed_start("failed: untracked (53)", kind=EndKind.UNTRACKED)
                }
            },
            Should.RECORD,
            "idle",
            Reason.FAILING,
        ),
        (
            "an exit's restart waits its backoff",
            desired(),
            {
                "latest_ended": {
                    "standup": session(
                        phase=Phase.ENDED,
                        restart_count=2,
                        started_at=NOW - timedelta(seconds=30),
                        ended_at=NOW - timedelta(seconds=3),
                        end_reason="exited: idle",
                        end_kind=EndKind.EXITED,
                    )
                }
            },
            Should.RECORD,
            "idle",
            Reason.BACKOFF,
        ),
        (
            "held as failed",
            desired(),
            {
                "manifest_states": {
                    "standup": ManifestState("standup", "spec1", "start: code 2", NOW)
                }
            },
            Should.RECORD,
            "idle",
            Reason.HELD,
        ),
        (
            "a missed window is not a fault",
            desired(starting_deadline=timedelta(minutes=10)),
            {},
            Should.RECORD,
            "idle",
            Reason.MISSED,
        ),
        (
            "an unmanageable session holds the target",
            desired(),
            {"live": [session(phase=Phase.UNMANAGEABLE, error="the API no longer recognises")]},
            Should.RECORD,
            "unmanageable",
            Reason.UNMANAGEABLE,
        ),
        (
            "live out of its window: stopping",
            desired(schedule=LATER),
            {"live": [session()]},
            Should.WAIT,
            "recording",
            Reason.STOPPING,
        ),
        ("waiting for the next window", desired(schedule=LATER), {}, Should.WAIT, "idle", None),
        ("suspended", desired(suspend=True), {}, Should.SUSPENDED, "idle", None),
        (
            "ended: no window ahead",
            desired(schedule=windows_schedule([(W_START - timedelta(days=2), W_START)])),
            {},
            Should.ENDED,
            "idle",
            None,
        ),
    ],
)
def test_status_per_recording(
    name: str,
    d: DesiredRecording,
    actual: dict[str, Any],
    should: Should,
    doing: str,
    reason: Reason | None,
) -> None:
    (status,) = look(d, **actual).recordings
    assert (status.should, status.doing, status.reason) == (should, doing, reason), name


def test_a_failed_start_says_its_last_error_and_next_attempt() -> None:
    previous = failed_start("failed: cannot resolve a secret: environment variable TOKEN unset")
    view = look(desired(), latest_ended={"standup": previous})
    (status,) = view.not_recording
    assert status.reason is Reason.FAILING
    assert status.last_error == previous.end_reason
    assert status.last_error_at == previous.ended_at
    # The first failed start (restart count 0): the next waits the initial backoff.
    assert status.next_attempt == previous.ended_at + timedelta(seconds=10)
    assert not view.ok
    assert view.reasons == {"failing": 1}
    assert "1 not recording: standup (failing)" in view.summary()


def test_a_failed_start_of_an_earlier_window_says_nothing() -> None:
    old = replace(failed_start("failed: x"), window_start=W_START - timedelta(days=1))
    (status,) = look(desired(), latest_ended={"standup": old}).recordings
    assert status.reason is Reason.STARTING and status.last_error is None


def test_a_start_due_now_is_ok_and_a_missed_window_too() -> None:
    assert look(desired()).ok
    missed = look(desired(starting_deadline=timedelta(minutes=10)))
    assert missed.ok and missed.not_recording == ()


def test_unmanageable_sessions_are_listed_with_the_command_to_forget_them() -> None:
    stuck = session(phase=Phase.UNMANAGEABLE, error="the API no longer recognises this session")
    view = look(desired(schedule=LATER), live=[stuck])
    assert view.unmanageable == (stuck,) and not view.ok
    data = view.as_dict()
    assert data["unmanageable"][0]["forget"] == ("orchestrator apply --forget-unmanageable standup")
    assert "1 unmanageable" in view.summary()


@pytest.mark.parametrize("after", [True, False], ids=["53-since", "53-before-it"])
def test_an_unmanageable_session_a_later_start_met_53_on_counts_as_recording(
    after: bool,
) -> None:
    stuck = session(phase=Phase.UNMANAGEABLE, sid=None, created_at=NOW - timedelta(minutes=9))
    met = failed_start("failed: conflict (53)", kind=EndKind.CONFLICT, ago=60)
    met = replace(met, created_at=NOW - timedelta(minutes=1 if after else 20))
    view = look(desired(), live=[stuck], latest_ended={"standup": met})
    (status,) = view.recordings
    assert status.recording is after and status.doing == "unmanageable"
    assert (view.tally.recording, len(view.not_recording)) == ((1, 0) if after else (0, 1))
    if after:  # Agora says the target is recorded; the session still needs an operator
        assert status.reason is None
        assert status.message == "its unmanageable session records: a start met 53 at 09:59:00"
        assert view.unmanageable == (stuck,) and not view.ok
    else:
        assert status.reason is Reason.UNMANAGEABLE


def test_held_counts_each_manifest_once_a_reason_and_those_on_their_kept_version() -> None:
    kept = desired(name="kept", source_file="recordings.d/broken.yaml")
    waiting = desired(name="waiting")
    state = ActualState(invalid_files=frozenset({"recordings.d/broken.yaml"}))
    notes = (
        Note(NoteKind.BACKOFF, "waiting", "its restart waits"),
        Note(NoteKind.BACKOFF, "waiting", "and another session of it too"),
        Note(NoteKind.UNMANAGEABLE, "waiting", "an older session cannot be stopped"),
        Note(NoteKind.KEPT, "gone", "no version could be kept: its session is left"),
    )
    the_plan = Plan(notes=notes)
    view = overview([kept, waiting], state, the_plan, NOW)
    assert [r.name for r in view.recordings if r.kept] == ["kept"]
    assert held_by_reason(the_plan, view) == {"backoff": 1, "unmanageable": 1, "kept": 2}


@pytest.mark.parametrize(
    ("recordings", "listed"),
    [
        ([desired()], True),  # wanted: its start is retried, and meets it again
        ([desired(suspend=True)], False),
        ([desired(schedule=LATER)], False),  # its window is over
        ([], False),  # its manifest removed
    ],
    ids=["wanted", "suspended", "window-over", "removed"],
)
def test_a_53_is_untracked_while_its_manifest_still_wants_the_target(
    recordings: list[DesiredRecording], listed: bool
) -> None:
    met = failed_start("untracked: code 53", kind=EndKind.UNTRACKED)
    state = ActualState(latest_ended={"standup": met})
    assert untracked(state, recordings, NOW) == ((met,) if listed else ())
    # A session of ours recording on it clears it too.
    assert untracked(replace(state, live=(session(),)), recordings, NOW) == ()


@pytest.mark.parametrize(
    "successor",
    [
        {"phase": Phase.UNMANAGEABLE, "sid": None},  # its start's answer lost (a kill)
        {"phase": Phase.STARTING, "sid": None, "started_at": None},  # under way
    ],
    ids=["unmanageable", "starting"],
)
def test_a_rollover_whose_successor_is_not_seen_recording_counts_its_predecessor(
    successor: dict[str, Any],
) -> None:
    """Defect: the newest session alone was looked at, so while a rollover's successor
    started (or was unmanageable after a kill), a recording whose predecessor a query
    saw recording was counted as not recording ("0 recording")."""
    rolled = desired(rollover_uid=900001)
    newest = session(id=8, uid=900001, predecessor_id=7, **successor)
    view = look(rolled, live=[session(), newest])
    (status,) = view.recordings
    assert status.recording and status.session is not None and status.session.id == 7
    assert view.not_recording == ()


def test_files_failing_to_load_are_listed_and_not_ok() -> None:
    bad = Diagnostic("recordings.d/bad.yaml", 3, 5, "layout.background", "not a colour")
    warning = Diagnostic("recordings.d/ok.yaml", 1, 1, "schedule", "ended", "warning")
    d = desired()
    state = ActualState(live=[session()], invalid_files=frozenset({"recordings.d/standup.yaml"}))
    view = overview([d], state, plan([d], state, NOW, POLICY), NOW, files_failing=[bad, warning])
    assert view.files_failing == (bad,) and view.failing_files == ("recordings.d/bad.yaml",)
    assert view.recordings[0].kept and not view.ok
    assert "1 failing to load" in view.summary()


def test_json_is_serialisable_and_bounded() -> None:
    others = [replace(desired(), name=f"m{i}") for i in range(5)]
    state = ActualState()
    view = overview(others, state, plan(others, state, NOW, POLICY), NOW)
    data = json.loads(json.dumps(view.as_dict(limit=2)))
    assert data["counts"]["wanted"] == 5 and data["counts"]["not_recording"] == 5
    assert len(data["not_recording"]) == 2
    assert data["not_recording"][0]["reason"] == "starting"


def test_counts_by_app_cover_every_app_id() -> None:
    view = look(desired(), latest_ended={"standup": failed_start("failed: x")})
    counts = counts_by_app(view, ["app1", "app2"])
    assert counts["app1"] == (1, 0, {"failing": 1})
    assert counts["app2"] == (0, 0, {})


# -- the daemon's memo ------------------------------------------------------------------

MEMO_SCHEDULES = {
    "window": IN_WINDOW,
    "later": LATER,
    "daily": cron_schedule("30 10 * * *", "Europe/Berlin", timedelta(minutes=20)),
    "chain": cron_schedule("*/7 * * * *", "UTC", timedelta(minutes=30)),  # never ends
    "always": always_schedule(),
}
MEMO_DESIRED = (
    *(
        desired(name=name, schedule=schedule, app_id=f"app{i % 2}", uid=1000 + i)
        for i, (name, schedule) in enumerate(MEMO_SCHEDULES.items())
    ),
    desired(name="paused", schedule=IN_WINDOW, suspend=True, uid=2000),
)


def same_answer(memo: Overview, fresh: Overview) -> None:
    assert memo == fresh  # every field but the tally
    assert memo.as_dict() == fresh.as_dict()
    assert memo.summary() == fresh.summary()
    assert counts_by_app(memo, ["app0", "app1", "app2"]) == counts_by_app(
        fresh, ["app0", "app1", "app2"]
    )
    assert memo.tally.sessions == fresh.tally.sessions


step = st.tuples(
    st.integers(min_value=-600, max_value=4 * 3600),  # seconds on (a clock may step back)
    st.sampled_from(["same", "live", "failed", "file", "reload"]),
)


@settings(max_examples=120, deadline=None)
@given(steps=st.lists(step, min_size=1, max_size=12))
def test_the_memo_answers_as_overview_does(steps: list[tuple[int, str]]) -> None:
    """Passes seconds to hours apart, across window boundaries, with a clock stepping
    back, sessions appearing and files failing: the memo's answer is always the fresh
    one, tally included."""
    memo = OverviewMemo()
    now = W_START - timedelta(hours=2)
    recordings = MEMO_DESIRED
    state = ActualState()
    failing: tuple[Diagnostic, ...] = ()
    for seconds, change in steps:
        now += timedelta(seconds=seconds)
        if change == "live":
            state = ActualState(live=[session(manifest="window", uid=1000)])
        elif change == "failed":
            state = ActualState(
                latest_ended={"daily": replace(failed_start("failed: x"), manifest="daily")}
            )
        elif change == "file":
            failing = (Diagnostic.general("recordings.d/x.yaml: broken"),)
        elif change == "reload":
            recordings = tuple(replace(d) for d in recordings)  # equal, not the same objects
        the_plan = plan(recordings, state, now, POLICY)
        args = (recordings, state, the_plan, now)
        same_answer(
            overview(*args, files_failing=failing, memo=memo),
            overview(*args, files_failing=failing),
        )


def test_the_memo_reuses_its_answer_until_a_window_opens() -> None:
    """Idle passes a few seconds apart get the last answer at their own instant (the
    same statuses, not made again); the first pass after a window opens is made anew."""
    memo = OverviewMemo()
    d = desired(schedule=LATER)
    state = ActualState()
    before = W_END + timedelta(minutes=50)  # LATER opens at W_END + 1 h
    views = [
        overview([d], state, plan([d], state, t, POLICY), t, memo=memo)
        for t in (before, before + timedelta(seconds=5), before + timedelta(minutes=9))
    ]
    assert [v.at for v in views] == [
        before,
        before + timedelta(seconds=5),
        before + timedelta(minutes=9),
    ]
    assert views[1].recordings is views[0].recordings is views[2].recordings
    assert views[0].recordings[0].should is Should.WAIT
    opened = W_END + timedelta(hours=1)
    view = overview([d], state, plan([d], state, opened, POLICY), opened, memo=memo)
    assert view.recordings is not views[0].recordings
    assert view.recordings[0].should is Should.RECORD
    # What was observed changed: made anew although no window moved.
    live = ActualState(live=[session(window_start=opened, window_end=opened + timedelta(hours=1))])
    later = opened + timedelta(seconds=5)
    changed = overview([d], live, plan([d], live, later, POLICY), later, memo=memo)
    assert changed.recordings is not view.recordings
    assert changed.recordings[0].doing == "recording"


def test_the_memo_makes_its_answer_anew_when_the_clock_steps_back() -> None:
    """Between two windows it shows the second; stepped back before the first, it
    shows the first, although the plan is the same (nothing to do either way)."""
    memo = OverviewMemo()
    second = (W_END + timedelta(hours=1), W_END + timedelta(hours=2))
    d = desired(schedule=windows_schedule([(W_START, W_END), second]))
    state = ActualState()
    between = W_END + timedelta(minutes=1)
    first = overview([d], state, plan([d], state, between, POLICY), between, memo=memo)
    assert first.recordings[0].window is not None
    assert first.recordings[0].window.start == second[0]
    back = W_START - timedelta(minutes=1)  # the clock was stepped back
    view = overview([d], state, plan([d], state, back, POLICY), back, memo=memo)
    assert view == overview([d], state, plan([d], state, back, POLICY), back)
    assert view.recordings[0].window is not None
    assert view.recordings[0].window.start == W_START


def test_the_memo_makes_again_only_the_statuses_whose_inputs_or_window_changed() -> None:
    """A window opening, or a session of one manifest changing, makes that manifest's
    status again; every other status is the one kept."""
    memo = OverviewMemo()
    waits = desired(name="waits", schedule=LATER, uid=1)
    opens = desired(name="opens", schedule=windows_schedule([(W_END, W_END + timedelta(hours=1))]))
    records = desired(name="records", schedule=always_schedule(), uid=3)
    both = [waits, opens, records]
    running = session(manifest="records", uid=3, window_start=None, window_end=None)
    state = ActualState(live=[running])

    def statuses(t: datetime, actual: ActualState) -> dict[str, Any]:
        view = overview(both, actual, plan(both, actual, t, POLICY), t, memo=memo)
        assert view == overview(both, actual, plan(both, actual, t, POLICY), t)
        return {r.name: r for r in view.recordings}

    first = statuses(W_END - timedelta(minutes=1), state)
    opened = statuses(W_END + timedelta(seconds=1), state)
    assert opened["waits"] is first["waits"]
    assert opened["records"] is first["records"]
    assert opened["opens"] is not first["opens"]
    assert opened["opens"].should is Should.RECORD
    queried = ActualState(live=[replace(running, last_query_at=W_END + timedelta(seconds=2))])
    later = statuses(W_END + timedelta(seconds=3), queried)
    assert later["records"] is not opened["records"]
    assert later["records"].session == queried.live[0]
    assert later["waits"] is first["waits"]
