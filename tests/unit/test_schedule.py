"""Schedules: the windows a manifest's recording should be running in.

Covers:
- cron windows in Asia/Shanghai (no DST), Europe/Berlin and America/New_York
  across both DST changes: a start in the skipped hour begins at the transition,
  a repeated hour gives one window, duration is elapsed time;
- standard cron details: Sunday is 0 and 7, names, day-of-month OR day-of-week,
  macros;
- merging of overlapping and touching windows (cron and explicit), chains longer
  than the merge horizon;
- explicit windows and always;
- half-open boundaries of windows_between, active_at and next_boundary;
- messages for invalid cron expressions, time zones, durations and windows;
- invariants checked with hypothesis: merged windows are sorted, disjoint and not
  touching, and active_at / next_boundary agree with windows_between.
"""

from __future__ import annotations

import itertools
import pickle
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from orchestrator.schedule import (
    FAR_FUTURE,
    FAR_PAST,
    MAX_CRON_RANGE,
    MERGE_HORIZON,
    Schedule,
    Window,
    always_schedule,
    cron_schedule,
    validate_cron,
    validate_timezone,
    windows_schedule,
)


def at(text: str) -> datetime:
    """An instant from ISO 8601 text that carries its offset."""
    value = datetime.fromisoformat(text)
    assert value.tzinfo is not None, text
    return value


def spans(windows: list[Window]) -> list[tuple[datetime, datetime]]:
    return [(w.start, w.end) for w in windows]


H = timedelta(hours=1)
M = timedelta(minutes=1)

# cron, zone, duration, [a, b), expected windows (start, end) with local offsets
CRON_CASES = [
    pytest.param(
        "0 9 * * MON-FRI",
        "Asia/Shanghai",
        30 * M,
        "2024-01-05T00:00+08:00",
        "2024-01-10T00:00+08:00",
        [
            ("2024-01-05T09:00+08:00", "2024-01-05T09:30+08:00"),
            ("2024-01-08T09:00+08:00", "2024-01-08T09:30+08:00"),
            ("2024-01-09T09:00+08:00", "2024-01-09T09:30+08:00"),
        ],
        id="shanghai-weekdays",
    ),
    pytest.param(
        "0 22 * * *",
        "Asia/Shanghai",
        4 * H,
        "2024-03-30T12:00+08:00",
        "2024-04-01T12:00+08:00",
        [
            ("2024-03-30T22:00+08:00", "2024-03-31T02:00+08:00"),
            ("2024-03-31T22:00+08:00", "2024-04-01T02:00+08:00"),
        ],
        id="shanghai-over-midnight-no-dst",
    ),
    pytest.param(
        "30 2 * * *",
        "Europe/Berlin",
        H,
        "2024-03-30T00:00+01:00",
        "2024-04-02T00:00+02:00",
        [
            ("2024-03-30T02:30+01:00", "2024-03-30T03:30+01:00"),
            # 02:30 does not exist: starts at the transition, 03:00 CEST; 1 h elapsed
            ("2024-03-31T03:00+02:00", "2024-03-31T04:00+02:00"),
            ("2024-04-01T02:30+02:00", "2024-04-01T03:30+02:00"),
        ],
        id="berlin-spring-forward-skipped-start",
    ),
    pytest.param(
        "*/20 2 * * *",
        "Europe/Berlin",
        10 * M,
        "2024-03-31T00:00+01:00",
        "2024-03-31T12:00+02:00",
        # 02:00, 02:20 and 02:40 are all skipped: one window from the transition
        [("2024-03-31T03:00+02:00", "2024-03-31T03:10+02:00")],
        id="berlin-spring-forward-several-skipped-starts",
    ),
    pytest.param(
        "0 1 * * *",
        "Europe/Berlin",
        3 * H,
        "2024-03-31T00:00+01:00",
        "2024-03-31T12:00+02:00",
        # 3 h elapsed across the change: 01:00 CET + 3 h = 05:00 CEST
        [("2024-03-31T01:00+01:00", "2024-03-31T05:00+02:00")],
        id="berlin-spring-forward-duration-elapsed",
    ),
    pytest.param(
        "30 2 * * *",
        "Europe/Berlin",
        H,
        "2024-10-26T12:00+02:00",
        "2024-10-27T12:00+01:00",
        # 02:30 happens twice: one window, at the first 02:30 (CEST)
        [("2024-10-27T02:30+02:00", "2024-10-27T02:30+01:00")],
        id="berlin-fall-back-repeated-hour-one-window",
    ),
    pytest.param(
        "0 2 * * *",
        "Europe/Berlin",
        90 * M,
        "2024-10-27T00:00+02:00",
        "2024-10-27T12:00+01:00",
        [("2024-10-27T02:00+02:00", "2024-10-27T02:30+01:00")],
        id="berlin-fall-back-duration-elapsed",
    ),
    pytest.param(
        "30 2 * * *",
        "America/New_York",
        H,
        "2024-03-09T12:00-05:00",
        "2024-03-11T00:00-04:00",
        [("2024-03-10T03:00-04:00", "2024-03-10T04:00-04:00")],
        id="new-york-spring-forward-skipped-start",
    ),
    pytest.param(
        "30 1 * * *",
        "America/New_York",
        2 * H,
        "2024-11-02T12:00-04:00",
        "2024-11-04T00:00-05:00",
        [
            # a 2 h window from 01:30 on the fall-back night ends 2 h later: 02:30 EST
            ("2024-11-03T01:30-04:00", "2024-11-03T02:30-05:00"),
        ],
        id="new-york-fall-back-duration-elapsed",
    ),
    pytest.param(
        "0,30 1 * * *",
        "America/New_York",
        30 * M,
        "2024-11-03T00:00-04:00",
        "2024-11-03T12:00-05:00",
        # touching windows merge; the repeated 01:00-02:00 is recorded once
        [("2024-11-03T01:00-04:00", "2024-11-03T02:00-04:00")],
        id="new-york-fall-back-repeated-hour-once",
    ),
    pytest.param(
        "0 9,10 * * *",
        "Asia/Shanghai",
        H,
        "2024-01-01T00:00+08:00",
        "2024-01-02T00:00+08:00",
        [("2024-01-01T09:00+08:00", "2024-01-01T11:00+08:00")],
        id="touching-windows-merge",
    ),
    pytest.param(
        "0,15 9 * * *",
        "Asia/Shanghai",
        30 * M,
        "2024-01-01T00:00+08:00",
        "2024-01-02T00:00+08:00",
        [("2024-01-01T09:00+08:00", "2024-01-01T09:45+08:00")],
        id="overlapping-windows-merge",
    ),
    pytest.param(
        "0 22 * * FRI,SAT",
        "Europe/Berlin",
        24 * H,
        "2024-01-05T00:00+01:00",
        "2024-01-08T00:00+01:00",
        [("2024-01-05T22:00+01:00", "2024-01-07T22:00+01:00")],
        id="merge-across-days",
    ),
    pytest.param(
        "0 12 * * 0",
        "UTC",
        H,
        "2024-01-01T00:00+00:00",
        "2024-01-08T00:00+00:00",
        # Sunday is 0 in crontab (APScheduler 3 itself would read 0 as Monday)
        [("2024-01-07T12:00+00:00", "2024-01-07T13:00+00:00")],
        id="weekday-0-is-sunday",
    ),
    pytest.param(
        "0 12 * * 7",
        "UTC",
        H,
        "2024-01-01T00:00+00:00",
        "2024-01-08T00:00+00:00",
        [("2024-01-07T12:00+00:00", "2024-01-07T13:00+00:00")],
        id="weekday-7-is-sunday",
    ),
    pytest.param(
        "0 12 * * 1-5/2",
        "UTC",
        H,
        "2024-01-01T00:00+00:00",
        "2024-01-08T00:00+00:00",
        # Monday, Wednesday, Friday
        [
            ("2024-01-01T12:00+00:00", "2024-01-01T13:00+00:00"),
            ("2024-01-03T12:00+00:00", "2024-01-03T13:00+00:00"),
            ("2024-01-05T12:00+00:00", "2024-01-05T13:00+00:00"),
        ],
        id="weekday-range-step",
    ),
    pytest.param(
        "0 12 * * 5/2",
        "UTC",
        H,
        "2024-01-01T00:00+00:00",
        "2024-01-08T00:00+00:00",
        # a step from a weekday runs to the field's end, 7 (Sunday), as in cronie and
        # as the minute field's `5/2` does: Friday and Sunday (it was Friday only)
        [
            ("2024-01-05T12:00+00:00", "2024-01-05T13:00+00:00"),
            ("2024-01-07T12:00+00:00", "2024-01-07T13:00+00:00"),
        ],
        id="weekday-step-runs-to-sunday-7",
    ),
    pytest.param(
        "0 12 10 * MON",
        "UTC",
        H,
        "2024-01-08T00:00+00:00",
        "2024-01-16T00:00+00:00",
        # both day fields restricted: the 10th OR a Monday
        [
            ("2024-01-08T12:00+00:00", "2024-01-08T13:00+00:00"),
            ("2024-01-10T12:00+00:00", "2024-01-10T13:00+00:00"),
            ("2024-01-15T12:00+00:00", "2024-01-15T13:00+00:00"),
        ],
        id="day-of-month-or-day-of-week",
    ),
    pytest.param(
        "0 0 29 FEB *",
        "UTC",
        H,
        "2023-01-01T00:00+00:00",
        "2025-01-01T00:00+00:00",
        [("2024-02-29T00:00+00:00", "2024-02-29T01:00+00:00")],
        id="month-name-leap-day",
    ),
    pytest.param(
        "@weekly",
        "UTC",
        H,
        "2024-01-01T00:00+00:00",
        "2024-01-08T00:00+00:00",
        [("2024-01-07T00:00+00:00", "2024-01-07T01:00+00:00")],
        id="macro-weekly-sunday-midnight",
    ),
]


@pytest.mark.parametrize(("cron", "zone", "duration", "a", "b", "expected"), CRON_CASES)
def test_cron_windows(
    cron: str,
    zone: str,
    duration: timedelta,
    a: str,
    b: str,
    expected: list[tuple[str, str]],
) -> None:
    schedule = cron_schedule(cron, zone, duration)
    windows = schedule.windows_between(at(a), at(b))
    assert spans(windows) == [(at(s), at(e)) for s, e in expected]
    for window in windows:
        assert window.start.tzinfo is UTC and window.end.tzinfo is UTC
        assert schedule.active_at(window.start) == window
        assert schedule.active_at(window.end) is None


def test_new_york_spring_forward_start_is_the_transition_instant() -> None:
    schedule = cron_schedule("30 2 * * *", "America/New_York", H)
    window = schedule.active_at(at("2024-03-10T07:30+00:00"))
    assert window == Window(at("2024-03-10T07:00+00:00"), at("2024-03-10T08:00+00:00"))


def test_fall_back_repeated_hour_is_not_recorded_again() -> None:
    """The second 02:30 (CET) is the same wall time as the first: no second window."""
    schedule = cron_schedule("30 2 * * *", "Europe/Berlin", 30 * M)
    assert schedule.active_at(at("2024-10-27T02:40+02:00")) is not None
    assert schedule.active_at(at("2024-10-27T02:40+01:00")) is None
    assert schedule.next_boundary(at("2024-10-27T02:40+01:00")) == at("2024-10-28T02:30+01:00")


# explicit windows and always

WINDOW_CASES = [
    pytest.param(
        [("2025-03-01T09:00+08:00", "2025-03-01T10:00+08:00")],
        [("2025-03-01T01:00+00:00", "2025-03-01T02:00+00:00")],
        id="offsets-become-utc",
    ),
    pytest.param(
        [
            ("2025-03-02T09:00+00:00", "2025-03-02T10:00+00:00"),
            ("2025-03-01T09:00+00:00", "2025-03-01T10:00+00:00"),
        ],
        [
            ("2025-03-01T09:00+00:00", "2025-03-01T10:00+00:00"),
            ("2025-03-02T09:00+00:00", "2025-03-02T10:00+00:00"),
        ],
        id="sorted",
    ),
    pytest.param(
        [
            ("2025-03-01T09:00+00:00", "2025-03-01T10:00+00:00"),
            ("2025-03-01T10:00+00:00", "2025-03-01T11:00+00:00"),
        ],
        [("2025-03-01T09:00+00:00", "2025-03-01T11:00+00:00")],
        id="touching-merge",
    ),
    pytest.param(
        [
            ("2025-03-01T09:00+00:00", "2025-03-01T12:00+00:00"),
            ("2025-03-01T10:00+00:00", "2025-03-01T11:00+00:00"),
            ("2025-03-01T11:30+00:00", "2025-03-01T13:00+00:00"),
        ],
        [("2025-03-01T09:00+00:00", "2025-03-01T13:00+00:00")],
        id="overlapping-and-contained-merge",
    ),
    pytest.param(
        [
            ("2025-03-01T09:00+01:00", "2025-03-01T10:00+01:00"),
            ("2025-03-01T09:00+00:00", "2025-03-01T10:00+00:00"),
        ],
        [
            ("2025-03-01T08:00+00:00", "2025-03-01T10:00+00:00"),
        ],
        id="different-offsets-touching",
    ),
]


@pytest.mark.parametrize(("given_windows", "expected"), WINDOW_CASES)
def test_explicit_windows(
    given_windows: list[tuple[str, str]], expected: list[tuple[str, str]]
) -> None:
    schedule = windows_schedule([(at(s), at(e)) for s, e in given_windows])
    everything = schedule.windows_between(FAR_PAST, FAR_FUTURE)
    assert spans(everything) == [(at(s), at(e)) for s, e in expected]


@pytest.mark.parametrize(
    ("start", "end", "message"),
    [
        (datetime(2025, 3, 1, 9), at("2025-03-01T10:00+00:00"), "has no UTC offset"),
        (at("2025-03-01T09:00+00:00"), datetime(2025, 3, 1, 10), "has no UTC offset"),
        (at("2025-03-01T10:00+00:00"), at("2025-03-01T10:00+00:00"), "must be after start"),
        (at("2025-03-01T10:00+00:00"), at("2025-03-01T09:00+00:00"), "must be after start"),
        (at("1969-03-01T10:00+00:00"), at("2025-03-01T09:00+00:00"), "between 1970"),
    ],
)
def test_explicit_windows_rejected(start: datetime, end: datetime, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        windows_schedule(
            [(at("2025-01-01T00:00+00:00"), at("2025-01-01T01:00+00:00")), (start, end)]
        )


def test_explicit_window_error_names_the_window() -> None:
    with pytest.raises(ValueError, match="window 1: "):
        windows_schedule(
            [
                (at("2025-01-01T00:00+00:00"), at("2025-01-01T01:00+00:00")),
                (at("2025-01-02T00:00+00:00"), at("2025-01-01T01:00+00:00")),
            ]
        )


def test_no_windows_is_never_active() -> None:
    schedule = windows_schedule([])
    t = at("2025-01-01T00:00+00:00")
    assert schedule.windows_between(FAR_PAST, FAR_FUTURE) == []
    assert schedule.active_at(t) is None
    assert schedule.next_boundary(t) is None


@pytest.mark.parametrize(
    "t", ["1970-01-01T00:00+00:00", "2025-06-01T12:00+02:00", "8999-12-31T00:00+00:00"]
)
def test_always(t: str) -> None:
    schedule = always_schedule()
    window = Window(FAR_PAST, FAR_FUTURE)
    assert schedule.active_at(at(t)) == window
    assert schedule.windows_between(at(t), at(t) + H) == [window]
    # FAR_FUTURE is not a boundary anyone has to wake up for
    assert schedule.next_boundary(at(t)) is None
    assert FAR_FUTURE.tzinfo is UTC and FAR_FUTURE.year >= 9000


# half-open boundaries, the same for every kind of schedule

NINE_TO_TEN = [
    pytest.param(
        windows_schedule(
            [
                (at("2025-03-01T09:00+00:00"), at("2025-03-01T10:00+00:00")),
                (at("2025-03-02T09:00+00:00"), at("2025-03-02T10:00+00:00")),
            ]
        ),
        id="windows",
    ),
    pytest.param(cron_schedule("0 9 * * *", "UTC", H), id="cron-utc"),
    pytest.param(cron_schedule("0 10 * * *", "Europe/Berlin", H), id="cron-berlin"),
]


@pytest.mark.parametrize("schedule", NINE_TO_TEN)
@pytest.mark.parametrize(
    ("a", "b", "expected_starts"),
    [
        ("2025-03-01T00:00", "2025-03-01T09:00", []),  # b is exclusive
        ("2025-03-01T00:00", "2025-03-01T09:00:00.000001", ["2025-03-01T09:00"]),
        ("2025-03-01T10:00", "2025-03-02T09:00", []),  # a equal to an end: excluded
        ("2025-03-01T09:59", "2025-03-01T09:59:30", ["2025-03-01T09:00"]),  # not clipped
        ("2025-03-01T09:30", "2025-03-02T09:30", ["2025-03-01T09:00", "2025-03-02T09:00"]),
        ("2025-03-01T12:00", "2025-03-01T11:00", []),  # empty range
        ("2025-03-01T09:30", "2025-03-01T09:15", []),  # backwards inside a window
    ],
)
def test_windows_between_is_half_open(
    schedule: Schedule, a: str, b: str, expected_starts: list[str]
) -> None:
    windows = schedule.windows_between(at(a + "+00:00"), at(b + "+00:00"))
    assert [w.start for w in windows] == [at(s + "+00:00") for s in expected_starts]
    assert all(w.end - w.start == H for w in windows)


@pytest.mark.parametrize("schedule", NINE_TO_TEN)
@pytest.mark.parametrize(
    ("t", "active", "boundary"),
    [
        ("2025-03-01T08:59:59", False, "2025-03-01T09:00"),
        ("2025-03-01T09:00", True, "2025-03-01T10:00"),  # start is inside
        ("2025-03-01T09:59:59.999999", True, "2025-03-01T10:00"),
        ("2025-03-01T10:00", False, "2025-03-02T09:00"),  # end is outside
        ("2025-03-01T23:00", False, "2025-03-02T09:00"),
    ],
)
def test_active_at_and_next_boundary(
    schedule: Schedule, t: str, active: bool, boundary: str
) -> None:
    instant = at(t + "+00:00")
    window = schedule.active_at(instant)
    if active:
        assert window == Window(at("2025-03-01T09:00+00:00"), at("2025-03-01T10:00+00:00"))
    else:
        assert window is None
    assert schedule.next_boundary(instant) == at(boundary + "+00:00")


def test_next_boundary_after_the_last_explicit_window_is_none() -> None:
    schedule = windows_schedule([(at("2025-03-01T09:00+00:00"), at("2025-03-01T10:00+00:00"))])
    assert schedule.next_boundary(at("2025-03-01T10:00+00:00")) is None


def test_next_boundary_jumps_to_a_far_fire() -> None:
    schedule = cron_schedule("0 0 1 1 *", "Asia/Shanghai", H)
    assert schedule.next_boundary(at("2025-01-01T01:00+08:00")) == at("2026-01-01T00:00+08:00")


@pytest.mark.parametrize(
    "schedule",
    [always_schedule(), windows_schedule([]), cron_schedule("0 9 * * *", "UTC", H)],
)
def test_naive_instants_are_rejected(schedule: Schedule) -> None:
    naive = datetime(2025, 3, 1, 9)
    with pytest.raises(ValueError, match="timezone-aware"):
        schedule.active_at(naive)
    with pytest.raises(ValueError, match="timezone-aware"):
        schedule.next_boundary(naive)
    with pytest.raises(ValueError, match="timezone-aware"):
        schedule.windows_between(naive, naive + H)


# chains of merged windows


def test_overlapping_fires_form_one_continuous_window() -> None:
    """Every 10 minutes for an hour: one window, however far the chain reaches."""
    schedule = cron_schedule("*/10 * * * *", "Asia/Shanghai", H)
    t = at("2025-03-01T12:34+00:00")
    window = schedule.active_at(t)
    assert window is not None
    assert window.start <= t - MERGE_HORIZON
    assert window.end >= t + MERGE_HORIZON
    # The reported edges of such a chain depend on how far one asks (the horizon).
    (day,) = schedule.windows_between(t, t + 24 * H)
    assert day.start == window.start
    assert day.end >= t + 24 * H + MERGE_HORIZON
    # The only boundary is the horizon's edge, where the window is still open.
    boundary = schedule.next_boundary(t)
    assert boundary == window.end
    assert schedule.active_at(boundary) is not None


def test_chain_breaks_where_the_fall_back_hour_is_not_repeated() -> None:
    """Fires map to the first occurrence of a repeated hour, so the second one has none."""
    schedule = cron_schedule("*/10 * * * *", "Europe/Berlin", 30 * M)
    # first 02:50 CEST (00:50Z) + 30 min = 01:20Z; next fire 03:00 CET = 02:00Z
    assert schedule.next_boundary(at("2024-10-27T00:55+00:00")) == at("2024-10-27T01:20+00:00")
    assert schedule.active_at(at("2024-10-27T01:30+00:00")) is None
    window = schedule.active_at(at("2024-10-27T02:00+00:00"))
    assert window is not None
    assert window.start == at("2024-10-27T02:00+00:00")


def test_weekday_chain_is_found_backwards() -> None:
    """Daily 08:00 for 25 h: windows overlap day to day through the week."""
    schedule = cron_schedule("0 8 * * MON-FRI", "Asia/Shanghai", 25 * H)
    window = schedule.active_at(at("2025-03-06T20:00+08:00"))  # Thursday
    assert window == Window(at("2025-03-03T08:00+08:00"), at("2025-03-08T09:00+08:00"))
    assert schedule.windows_between(at("2025-03-07T20:00+08:00"), at("2025-03-11T00:00+08:00")) == [
        window,
        Window(at("2025-03-10T08:00+08:00"), at("2025-03-15T09:00+08:00")),
    ]


# validation


@pytest.mark.parametrize(
    "cron",
    [
        "0 9 * * MON-FRI",
        "*/15 8-18 * * 1-5",
        "0 0 1,15 * *",
        "30 6 * JAN-MAR,OCT *",
        "0 12 * * sun",
        "5 4 * * 0,7",
        "  0 9 * * *  ",
        "@daily",
        "@HOURLY",
    ],
)
def test_valid_cron(cron: str) -> None:
    assert validate_cron(cron) is None


@pytest.mark.parametrize(
    ("cron", "message"),
    [
        ("", "empty cron expression"),
        ("0 9 * *", "expected 5 fields (minute hour day-of-month month day-of-week), got 4"),
        ("0 0 9 * * *", "got 6; seconds and years are not supported"),
        ("61 * * * *", "minute field '61': the last value (61) is higher than the maximum"),
        ("0 24 * * *", "hour field '24'"),
        ("0 0 0 * *", "day of month field '0'"),
        ("0 0 * 13 *", "month field '13'"),
        ("0 0 * FOO *", "month field 'FOO'"),
        ("0 0 * * 8", "8 is not a weekday"),
        ("0 0 * * FRI-MON", "runs backwards"),
        ("0 0 * * XYZ", "unknown weekday name 'XYZ'"),
        ("*/0 * * * *", "minute field '*/0'"),
        ("x * * * *", "minute field 'x': not a number, name, list, range"),
        ("0 0 ? * *", "day of month field '?'"),
        ("0 0 30 2 *", "never fires"),
        ("0 0 31 4,6 *", "never fires"),
        ("@reboot", "unknown macro '@reboot'"),
        ("every day at nine", "expected 5 fields"),
    ],
)
def test_invalid_cron_message(cron: str, message: str) -> None:
    problem = validate_cron(cron)
    assert problem is not None
    assert message in problem


def test_day_of_month_or_weekday_is_not_never_firing() -> None:
    assert validate_cron("0 0 30 2 MON") is None


@pytest.mark.parametrize("zone", ["UTC", "Asia/Shanghai", "Europe/Berlin", "America/New_York"])
def test_valid_timezone(zone: str) -> None:
    assert validate_timezone(zone) is None


@pytest.mark.parametrize(
    "zone", ["", "Mars/Olympus", "Europe/berlin ", "../../etc/passwd", "+08:00"]
)
def test_invalid_timezone(zone: str) -> None:
    problem = validate_timezone(zone)
    assert problem is not None
    assert "unknown time zone" in problem and "IANA" in problem


@pytest.mark.parametrize(
    ("cron", "zone", "duration", "message"),
    [
        ("0 9 * * *", "UTC", timedelta(0), "duration must be positive"),
        ("0 9 * * *", "UTC", -H, "duration must be positive"),
        ("0 9 * *", "UTC", H, "invalid cron expression '0 9 \\* \\*': expected 5 fields"),
        ("0 9 * * *", "Mars/Olympus", H, "unknown time zone 'Mars/Olympus'"),
    ],
)
def test_cron_schedule_rejects(cron: str, zone: str, duration: timedelta, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        cron_schedule(cron, zone, duration)


def test_window_is_normalised_to_utc_and_ordered() -> None:
    early = Window(at("2025-01-01T09:00+08:00"), at("2025-01-01T10:00+08:00"))
    late = Window(at("2025-01-01T02:00+00:00"), at("2025-01-01T03:00+00:00"))
    assert early.start == datetime(2025, 1, 1, 1, tzinfo=UTC) and early.start.tzinfo is UTC
    assert sorted([late, early]) == [early, late]
    assert early.contains(early.start) and not early.contains(early.end)
    assert early.duration == H
    with pytest.raises(ValueError, match="not after its start"):
        Window(early.end, early.start)


# invariants

CRONS = [
    "0 9 * * MON-FRI",
    "30 2 * * *",
    "*/15 1-3 * * *",
    "0,30 1 * * *",
    "0 0,12 * * *",
    "0 9 1 * *",
    "45 23 * * SUN",
    "0 12 10 * MON",
]
ZONES = ["UTC", "Asia/Shanghai", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe"]
DURATIONS = [M, 10 * M, 30 * M, H, 90 * M, 3 * H, 11 * H]
instants = st.datetimes(
    min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1), timezones=st.just(UTC)
)


def check_merged(windows: list[Window], a: datetime, b: datetime) -> None:
    for window in windows:
        assert window.start < window.end
        assert window.start < b and window.end > a  # intersects [a, b)
    for earlier, later in itertools.pairwise(windows):
        assert earlier.end < later.start  # sorted, disjoint and not touching


@settings(max_examples=150, deadline=None)
@given(
    cron=st.sampled_from(CRONS),
    zone=st.sampled_from(ZONES),
    duration=st.sampled_from(DURATIONS),
    a=instants,
    span=st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=10)),
    probes=st.lists(st.floats(min_value=0, max_value=1), max_size=8),
)
def test_cron_invariants(
    cron: str,
    zone: str,
    duration: timedelta,
    a: datetime,
    span: timedelta,
    probes: list[float],
) -> None:
    schedule = cron_schedule(cron, zone, duration)
    b = a + span
    windows = schedule.windows_between(a, b)
    check_merged(windows, a, b)
    assume(all(w.duration < MERGE_HORIZON for w in windows))
    points = [a + span * p for p in probes] + [a]
    points += [w.start for w in windows] + [w.end - timedelta(microseconds=1) for w in windows]
    for t in points:
        if not a <= t < b:
            continue
        containing = [w for w in windows if w.contains(t)]
        assert schedule.active_at(t) == (containing[0] if containing else None)
    # next_boundary agrees with the windows: the end of the one we are in, else the next start
    following = schedule.windows_between(a, a + timedelta(days=40))
    expected = next((bound for w in following for bound in (w.start, w.end) if bound > a), None)
    assert schedule.next_boundary(a) == expected


@settings(max_examples=150, deadline=None)
@given(
    raw=st.lists(
        st.tuples(instants, st.timedeltas(min_value=M, max_value=timedelta(days=3))),
        max_size=12,
    ),
    probes=st.lists(instants, max_size=10),
)
def test_explicit_window_invariants(
    raw: list[tuple[datetime, timedelta]], probes: list[datetime]
) -> None:
    pairs = [(start, start + length) for start, length in raw]
    schedule = windows_schedule(pairs)
    windows = schedule.windows_between(FAR_PAST, FAR_FUTURE)
    check_merged(windows, FAR_PAST, FAR_FUTURE)
    for t in probes + [start for start, _ in pairs] + [end for _, end in pairs]:
        covered = any(start <= t < end for start, end in pairs)
        window = schedule.active_at(t)
        assert (window is not None) == covered
        if window is not None:
            assert window in windows and window.contains(t)
            assert schedule.next_boundary(t) == window.end


# An independent reference: walk real minutes one by one and ask a plain predicate
# about the wall clock, instead of mapping cron fire times to instants.

REFERENCE_CRONS = {
    "30 2 * * *": lambda w: w.hour == 2 and w.minute == 30,
    "*/20 2 * * *": lambda w: w.hour == 2 and w.minute % 20 == 0,
    "*/15 1-3 * * *": lambda w: 1 <= w.hour <= 3 and w.minute % 15 == 0,
    "0,30 1 * * *": lambda w: w.hour == 1 and w.minute in (0, 30),
    "0 9 * * MON-FRI": lambda w: w.hour == 9 and w.minute == 0 and w.weekday() < 5,
    "45 23 * * SUN": lambda w: w.hour == 23 and w.minute == 45 and w.weekday() == 6,
    "0 12 10 * MON": lambda w: (w.hour, w.minute) == (12, 0) and (w.day == 10 or w.weekday() == 0),
}
DST_NIGHTS = [
    datetime(2024, 3, 31, tzinfo=UTC),  # Europe spring forward
    datetime(2024, 10, 27, tzinfo=UTC),  # Europe fall back
    datetime(2024, 3, 10, tzinfo=UTC),  # US spring forward
    datetime(2024, 11, 3, tzinfo=UTC),  # US fall back
    datetime(2024, 4, 7, tzinfo=UTC),  # Lord Howe: 30 minute change
    datetime(2024, 10, 6, tzinfo=UTC),  # Lord Howe
]


def reference_windows(
    cron: str, zone: str, duration: timedelta, a: datetime, b: datetime
) -> list[tuple[datetime, datetime]]:
    from zoneinfo import ZoneInfo

    matches = REFERENCE_CRONS[cron]
    tz = ZoneInfo(zone)
    fires = []
    minute = (a - duration - timedelta(days=1)).replace(second=0, microsecond=0)
    previous_wall = (minute - M).astimezone(tz).replace(tzinfo=None)
    while minute < b:
        local = minute.astimezone(tz)
        wall = local.replace(tzinfo=None, fold=0)
        if local.fold == 0 and matches(wall):  # the first occurrence of a wall time
            fires.append(minute)
        elif wall - previous_wall > M:  # clocks jumped: the skipped wall times start now
            skipped = previous_wall + M
            while skipped < wall:
                if matches(skipped):
                    fires.append(minute)
                    break
                skipped += M
        previous_wall = wall if local.fold == 0 else max(previous_wall, wall)
        minute += M
    merged: list[list[datetime]] = []
    for fire in fires:
        if merged and fire <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], fire + duration)
        else:
            merged.append([fire, fire + duration])
    return [(s, e) for s, e in merged if s < b and e > a]


@settings(max_examples=40, deadline=None)
@given(
    cron=st.sampled_from(sorted(REFERENCE_CRONS)),
    zone=st.sampled_from(["Europe/Berlin", "America/New_York", "Australia/Lord_Howe"]),
    duration=st.sampled_from([M, 15 * M, 30 * M, 2 * H, 5 * H]),
    night=st.sampled_from(DST_NIGHTS),
    shift=st.timedeltas(min_value=-timedelta(days=1), max_value=timedelta(days=1)),
)
def test_cron_matches_minute_by_minute_reference(
    cron: str, zone: str, duration: timedelta, night: datetime, shift: timedelta
) -> None:
    a = night + shift
    b = a + timedelta(days=8)  # every cron here fires in any 8 days
    expected = reference_windows(cron, zone, duration, a, b)
    actual = spans(cron_schedule(cron, zone, duration).windows_between(a, b))

    # The reference sees fires in [a - duration - 1 day, b): compare the windows it saw whole.
    def whole(windows: list[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
        return [(s, e) for s, e in windows if s > a - timedelta(days=1) and e < b]

    assert whole(actual) == whole(expected)
    assert len(whole(expected)) >= 1


def test_cron_range_is_bounded() -> None:
    """The cost of windows_between grows with the range: a cron refuses absurd ones."""
    schedule = cron_schedule("0 9 * * *", "UTC", H)
    start = at("2025-01-01T00:00+00:00")
    assert len(schedule.windows_between(start, start + MAX_CRON_RANGE)) == MAX_CRON_RANGE.days
    with pytest.raises(ValueError, match="range longer than"):
        schedule.windows_between(FAR_PAST, FAR_FUTURE)


@settings(max_examples=60, deadline=None)
@given(
    cron=st.sampled_from(["*/7 * * * *", "30 9 * * MON-FRI", "0 9,10 * * *", "15 2 * * *"]),
    zone=st.sampled_from(["UTC", "Europe/Berlin", "America/New_York"]),
    minutes=st.integers(min_value=1, max_value=120),
    offsets=st.lists(st.integers(min_value=0, max_value=3 * 24 * 3600), min_size=2, max_size=25),
)
def test_active_at_memo_answers_as_a_fresh_walk(
    cron: str, zone: str, minutes: int, offsets: list[int]
) -> None:
    """The daemon asks `active_at` about every manifest on every pass, and the cron
    schedule remembers its last answer: asked in any order, it must agree with a
    walk of the windows that uses no memo."""
    schedule = cron_schedule(cron, zone, timedelta(minutes=minutes))
    base = datetime(2026, 3, 27, tzinfo=UTC)  # spans Europe's spring-forward night
    for offset in offsets:
        t = base + timedelta(seconds=offset)
        walked = schedule.windows_between(t, t + timedelta(microseconds=1))
        assert schedule.active_at(t) == (walked[0] if walked else None)
        following = [w for w in schedule.windows_between(t, t + timedelta(days=40)) if w.start > t]
        expected = walked[0].end if walked else (following[0].start if following else None)
        assert schedule.next_boundary(t) == expected


def test_the_pass_and_the_overview_each_keep_their_answer() -> None:
    """On each pass the planner asks an idle schedule about now, and the overview asks
    it about the start of its next window: both answers are remembered at once, so a
    second pass walks the cron for neither (one memo would evict the other)."""
    schedule = cron_schedule.__wrapped__("0 9 * * *", "Europe/Berlin", H)  # not shared
    walks: list[datetime] = []
    walk = schedule.windows_between

    def counted(a: datetime, b: datetime) -> list[Window]:
        walks.append(a)
        return walk(a, b)

    schedule.windows_between = counted  # type: ignore[method-assign]
    now = at("2026-05-04T10:00+00:00")  # after today's window (09:00-10:00 Berlin)
    answers = []
    for second in range(3):  # three passes, a second apart
        t = now + timedelta(seconds=second)
        following = schedule.next_boundary(t)
        assert following == at("2026-05-05T07:00+00:00")
        answers.append((schedule.active_at(t), schedule.active_at(following)))
    tomorrow = Window(at("2026-05-05T07:00+00:00"), at("2026-05-05T08:00+00:00"))
    assert answers == [(None, tomorrow)] * 3
    assert len(walks) == 2  # the first pass's two, and none after


def test_a_cron_schedule_unpickles_as_the_shared_one() -> None:
    """A worker's results and the daemon's snapshot carry schedules pickled: each comes
    back as the process's own schedule of those arguments, with what it remembers."""
    schedule = cron_schedule("0 9 * * *", "Europe/Berlin", H)
    copy = pickle.loads(pickle.dumps(schedule))  # noqa: S301  # our own bytes
    assert copy is schedule
    fresh = pickle.loads(pickle.dumps(cron_schedule.__wrapped__("0 9 * * *", "Asia/Tokyo", H)))  # noqa: S301
    assert fresh is cron_schedule("0 9 * * *", "Asia/Tokyo", H)
    t = at("2026-05-04T00:30+00:00")
    assert fresh.active_at(t) == Window(at("2026-05-04T00:00+00:00"), at("2026-05-04T01:00+00:00"))


@settings(max_examples=80, deadline=None)
@given(
    cron=st.sampled_from(["*/7 * * * *", "30 9 * * MON-FRI", "0 9,10 * * *", "15 2 * * *"]),
    zone=st.sampled_from(["UTC", "Europe/Berlin", "America/New_York"]),
    minutes=st.sampled_from([1, 30, 60, 120, 600]),
    offset=st.integers(min_value=0, max_value=3 * 24 * 3600),
    probes=st.lists(st.floats(min_value=0, max_value=1, exclude_max=True), max_size=8),
)
def test_a_cron_schedule_answers_alike_until_it_is_steady_no_more(
    cron: str, zone: str, minutes: int, offset: int, probes: list[float]
) -> None:
    """`steady_until(t)`: before it, `active_at` and `next_boundary` answer as at `t`
    (the daemon's overview is reused on that promise); at it, `active_at` answers
    otherwise. A chain of windows longer than MERGE_HORIZON (every 7 minutes for 30
    minutes or more) promises nothing: its reported bounds move with the instant."""
    schedule = cron_schedule.__wrapped__(cron, zone, timedelta(minutes=minutes))
    fresh = cron_schedule.__wrapped__(cron, zone, timedelta(minutes=minutes))  # no memo shared
    t = datetime(2026, 3, 27, tzinfo=UTC) + timedelta(seconds=offset)  # Europe's spring forward
    steady = schedule.steady_until(t)
    window = fresh.active_at(t)
    if window is not None and window.duration >= MERGE_HORIZON:
        assert steady == t
        return
    assert steady > t
    for p in probes:
        u = min(t + (steady - t) * p, steady - timedelta(microseconds=1))  # p * span rounds
        assert fresh.active_at(u) == window
        assert fresh.next_boundary(u) == fresh.next_boundary(t)
    assert fresh.active_at(steady) != window


@settings(max_examples=80, deadline=None)
@given(
    raw=st.lists(
        st.tuples(instants, st.timedeltas(min_value=M, max_value=timedelta(days=3))),
        max_size=6,
    ),
    t=instants,
    probes=st.lists(st.floats(min_value=0, max_value=1, exclude_max=True), max_size=8),
)
def test_explicit_windows_answer_alike_until_they_are_steady_no_more(
    raw: list[tuple[datetime, timedelta]], t: datetime, probes: list[float]
) -> None:
    schedule = windows_schedule([(start, start + length) for start, length in raw])
    steady = schedule.steady_until(t)
    assert steady > t
    window = schedule.active_at(t)
    for p in probes:
        u = min(t + (steady - t) * p, steady - timedelta(microseconds=1))  # p * span rounds
        assert schedule.active_at(u) == window
        assert schedule.next_boundary(u) == schedule.next_boundary(t)
    if steady < FAR_FUTURE:
        assert schedule.active_at(steady) != window
    assert always_schedule().steady_until(t) == FAR_FUTURE
