"""The plan timeline: lanes clipped to the horizon, events, and the text chart.

Covers: a window inside the horizon fills the right columns, a suspended lane is
drawn differently, `always` has no stop event, the next-step summary; with a limit,
a lane holds the first windows of the unlimited one and says whether there are
more, for dense, sparse, late and open-now schedules.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from orchestrator.reconcile.plan import ActualState, DesiredRecording, Note, NoteKind, Plan, plan
from orchestrator.reconcile.timeline import Lane, describe_next, lanes, render
from orchestrator.schedule import (
    FAR_FUTURE,
    Schedule,
    Window,
    always_schedule,
    cron_schedule,
    windows_schedule,
)
from tests.unit.reconcile.desired_recordings import desired_recording

NOW = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)


def desired(name: str, schedule: object, suspend: bool = False) -> DesiredRecording:
    return desired_recording(name=name, schedule=schedule, suspend=suspend)


def test_chart_columns_and_events() -> None:
    six_to_twelve = windows_schedule([(NOW + timedelta(hours=6), NOW + timedelta(hours=12))])
    result = lanes(
        [
            desired("b-always", always_schedule()),
            desired("a-morning", six_to_twelve),
            desired("c-paused", six_to_twelve, suspend=True),
        ],
        NOW,
        timedelta(hours=24),
    )
    assert [lane.manifest for lane in result] == ["a-morning", "b-always", "c-paused"]
    assert result[0].events() == [
        (NOW + timedelta(hours=6), "start"),
        (NOW + timedelta(hours=12), "stop"),
    ]
    assert [e for _, e in result[1].events()] == ["start"]
    chart = render(result, NOW, timedelta(hours=24), width=24).splitlines()
    assert chart[1] == "a-morning  " + "·" * 6 + "█" * 6 + "·" * 12
    assert chart[2] == "b-always   " + "█" * 24
    assert chart[3] == "c-paused   " + "·" * 6 + "░" * 6 + "·" * 12 + "  suspended"
    assert describe_next(result[0], NOW).startswith("next start 2026-03-02T06:00:00")
    assert describe_next(result[1], NOW) == "recording (always)"
    assert describe_next(result[2], NOW) == "suspended"


def test_nothing_in_horizon() -> None:
    later = windows_schedule([(NOW + timedelta(days=3), NOW + timedelta(days=4))])
    (lane,) = lanes([desired("x", later)], NOW, timedelta(hours=24))
    assert lane.windows == () and describe_next(lane, NOW) == "no window in the horizon"
    assert render([], NOW, timedelta(hours=1)) == "(no manifests)"


def test_what_is_wanted_and_what_will_happen_are_drawn_apart() -> None:
    """A window open now that is missed (startingDeadline) or held is wanted but not
    recorded; a restart in backoff records from the end of its backoff."""
    open_now = windows_schedule([(NOW - timedelta(hours=1), NOW + timedelta(hours=2))])
    missed = desired_recording(
        name="late", schedule=open_now, starting_deadline=timedelta(minutes=10)
    )
    held = desired_recording(name="held", schedule=open_now)
    fine = desired_recording(name="fine", schedule=open_now)
    waits = NOW + timedelta(hours=1)
    the_plan = plan([missed, fine], ActualState(), NOW)
    the_plan = Plan(
        the_plan.actions,
        (
            *the_plan.notes,
            Note(NoteKind.FAILED, "held", "not starting: code 2"),
            Note(NoteKind.BACKOFF, "fine", "restart #2 waits", until=waits),
        ),
    )
    result = {
        lane.manifest: lane
        for lane in lanes([missed, held, fine], NOW, timedelta(hours=4), the_plan)
    }
    assert result["late"].skipped is not None and "startingDeadline" in result["late"].skipped
    assert result["held"].skipped == "held as failed"
    assert result["fine"].waits_until == waits
    chart = render(list(result.values()), NOW, timedelta(hours=4), width=4).splitlines()
    assert chart[1:4] == ["fine  x█··", "held  xx··", "late  xx··"]
    assert "x wanted, not recorded" in chart[-1]
    assert describe_next(result["late"], NOW).startswith("wanted until 2026-03-02T02:00:00")
    assert "not recorded: missed" in describe_next(result["late"], NOW)
    # It may never have recorded: no "again"; to the second, as every other instant.
    fine = describe_next(result["fine"], NOW)
    assert "its next start waits until 2026-03-02T01:00:00+00:00 (backoff)" in fine
    assert describe_next(result["fine"], NOW, lambda at: f"{at:%H:%M}").endswith("01:00 (backoff)")


@pytest.mark.parametrize(
    "schedule",
    [
        cron_schedule("* * * * *", "UTC", timedelta(seconds=20)),  # 1,440 a day
        cron_schedule("*/20 * * * *", "UTC", timedelta(minutes=5)),  # 72: past the first hours
        cron_schedule("0 3,20 * * *", "Europe/Berlin", timedelta(hours=1)),  # late in the day
        cron_schedule("0 * * * *", "UTC", timedelta(hours=2)),  # overlapping: merged
        windows_schedule([(NOW - timedelta(hours=1), NOW + timedelta(hours=30))]),  # open now
        always_schedule(),
        windows_schedule([]),
    ],
    ids=["every-minute", "every-20-min", "twice-a-day", "merged", "open-now", "always", "none"],
)
def test_a_limited_lane_is_the_first_windows_of_the_whole_one(schedule: Schedule) -> None:
    """Defect: the status page listed every window of 24 hours: with 200 every-minute
    crons its JSON was 29 MB, and making it held the event loop for seconds."""
    whole = lanes([desired("x", schedule)], NOW, timedelta(hours=24))[0]
    for limit in (1, 6, 48):
        (lane,) = lanes([desired("x", schedule)], NOW, timedelta(hours=24), limit=limit)
        assert lane.windows == whole.windows[:limit]
        assert lane.more == (len(whole.windows) > limit)
    assert not whole.more


def test_instants_are_written_to_the_second() -> None:
    """Defect: a backoff's end was written with its microseconds (the status page wrote
    every other instant as `2026-03-02 00:00:07 UTC`)."""
    lane = Lane(
        "x",
        (Window(NOW - timedelta(hours=1), FAR_FUTURE),),
        suspended=False,
        waits_until=NOW + timedelta(seconds=7, microseconds=505705),
    )
    assert describe_next(lane, NOW) == (
        "wanted (always); its next start waits until 2026-03-02T00:00:07+00:00 (backoff)"
    )
