"""Recording windows: when a manifest's recording should be running.

A schedule is one of three forms (DESIGN.md section 3):

- cron + IANA time zone + duration: a window `[fire, fire + duration)` for
  every time the cron expression fires, read as wall-clock time in the zone;
- explicit `[start, end)` windows with UTC offsets;
- always: one window from the distant past to `FAR_FUTURE`.

Windows of one schedule that overlap or touch are merged, so that a recording
spanning them is never stopped and started again.

This module is pure: every question takes the instant it is about as an
argument. It must never read the clock (`datetime.now()`), do I/O or log.

Cron semantics, the parts an operator has to know:

- Standard five fields `minute hour day-of-month month day-of-week`, with
  lists, ranges, steps and the names `JAN`-`DEC`, `SUN`-`SAT`; `0` and `7`
  are Sunday; when both day fields are restricted a day matching either one
  fires (as in Vixie cron). The macros `@hourly`, `@daily`/`@midnight`,
  `@weekly`, `@monthly`, `@yearly`/`@annually` are accepted. Parsing and
  matching are APScheduler 3's `CronTrigger`, evaluated on naive wall-clock
  time; this module only maps wall-clock fire times to instants.
- A fire time that does not exist on the wall clock (the hour skipped when
  clocks spring forward) starts at the first valid instant after it, the
  transition itself: `02:30` on the spring-forward night in Europe/Berlin
  starts at 03:00 CEST.
- A fire time that exists twice (the hour repeated when clocks fall back) is
  its first occurrence, once: a repeated hour yields one window, never two.
- Duration is elapsed time: a 2 h window starting at 01:30 on the fall-back
  night in America/New_York ends at 02:30 EST, two real hours later.

Merging and its horizon: a cron whose windows overlap the next fire (every
10 minutes with a duration of 1 h) forms one continuous window. To keep every
question cheap, a chain of merged windows is followed at most `MERGE_HORIZON`
before and after the instants asked about. A chain that reaches further is
reported with the earliest start and the latest end seen within the horizon:
`active_at` is still exact (a recording is wanted exactly when some window
covers the instant), only the reported start of such a long chain is "at least
`MERGE_HORIZON` ago", and `next_boundary` may name the horizon's edge, where a
new evaluation simply finds the window still open.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import Any, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.cron import CronTrigger

__all__ = [
    "FAR_FUTURE",
    "FAR_PAST",
    "MAX_CRON_RANGE",
    "MERGE_HORIZON",
    "Schedule",
    "Window",
    "always_schedule",
    "cron_schedule",
    "validate_cron",
    "validate_timezone",
    "windows_schedule",
]

FAR_PAST = datetime(1970, 1, 1, tzinfo=UTC)
"""Start of the `always` window; explicit windows may not start earlier."""

FAR_FUTURE = datetime(9000, 1, 1, tzinfo=UTC)
"""End of the `always` window. Far enough to never be reached, near enough that
adding a duration to it cannot overflow `datetime`. A boundary at FAR_FUTURE is
no boundary: `next_boundary` answers None instead."""

MERGE_HORIZON = timedelta(days=31)
"""How far a chain of merged cron windows is followed past the instants asked
about (see the module docstring). Longer than any sensible `startingDeadline`."""

MAX_CRON_RANGE = timedelta(days=3660)
"""The longest range `windows_between` accepts for a cron schedule (about ten years)."""

_DAY = timedelta(days=1)
_CACHE_DAYS = 4096  # per-schedule memo of day lookups; cleared when full


@dataclass(frozen=True, order=True)
class Window:
    """A half-open interval `[start, end)` of instants, stored in UTC. `open_start`: a
    chain of merged cron windows that reaches further back than `MERGE_HORIZON`, whose
    reported start is only "at least that long ago" (not part of equality)."""

    start: datetime
    end: datetime
    open_start: bool = field(default=False, compare=False)

    def __post_init__(self) -> None:
        start = _utc(self.start, "window start")
        end = _utc(self.end, "window end")
        if end <= start:
            raise ValueError(f"window end {end.isoformat()} is not after its start")
        object.__setattr__(self, "start", start)
        object.__setattr__(self, "end", end)

    def contains(self, t: datetime) -> bool:
        return self.start <= t < self.end

    @property
    def duration(self) -> timedelta:
        return self.end - self.start


class Schedule(Protocol):
    """The windows of one manifest. All arguments must be timezone-aware."""

    def windows_between(self, a: datetime, b: datetime) -> list[Window]:
        """Merged windows intersecting `[a, b)`, sorted, not clipped to `[a, b)`."""
        ...

    def active_at(self, t: datetime) -> Window | None:
        """The merged window containing `t`, if any."""
        ...

    def next_boundary(self, t: datetime) -> datetime | None:
        """The first window start or end strictly after `t`; None if there is none."""
        ...

    def steady_until(self, t: datetime) -> datetime:
        """An instant after `t` before which `active_at` and `next_boundary` answer as
        they do at `t` (`FAR_FUTURE`: for ever), or `t` itself where they may not (the
        reported bounds of a chain longer than `MERGE_HORIZON` move with the instant)."""
        ...


def _utc(t: datetime, what: str = "time") -> datetime:
    if t.tzinfo is None or t.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware, got naive {t.isoformat()}")
    return t.astimezone(UTC)


# ---------------------------------------------------------------------------
# explicit windows and always


class _FixedSchedule:
    """A finite, already merged list of windows."""

    def __init__(self, windows: Sequence[Window]) -> None:
        self._windows = tuple(windows)
        self._starts = [w.start for w in self._windows]
        self._ends = [w.end for w in self._windows]
        self._bounds = [b for w in self._windows for b in (w.start, w.end)]

    def windows_between(self, a: datetime, b: datetime) -> list[Window]:
        a, b = _utc(a), _utc(b)
        result: list[Window] = []
        if b <= a:
            return result
        for window in self._windows[bisect_right(self._ends, a) :]:
            if window.start >= b:
                break
            result.append(window)
        return result

    def active_at(self, t: datetime) -> Window | None:
        t = _utc(t)
        i = bisect_right(self._starts, t) - 1
        if i >= 0 and t < self._ends[i]:
            return self._windows[i]
        return None

    def next_boundary(self, t: datetime) -> datetime | None:
        t = _utc(t)
        i = bisect_right(self._bounds, t)
        if i < len(self._bounds) and self._bounds[i] < FAR_FUTURE:
            return self._bounds[i]
        return None

    def steady_until(self, t: datetime) -> datetime:
        return self.next_boundary(t) or FAR_FUTURE

    def __repr__(self) -> str:
        return f"windows_schedule({len(self._windows)} windows)"


def _merge(windows: Sequence[Window]) -> list[Window]:
    merged: list[Window] = []
    for window in sorted(windows):
        if merged and window.start <= merged[-1].end:
            if window.end > merged[-1].end:
                merged[-1] = Window(merged[-1].start, window.end)
        else:
            merged.append(window)
    return merged


def windows_schedule(windows: Sequence[tuple[datetime, datetime]]) -> Schedule:
    """Explicit `[start, end)` windows. Naive datetimes and empty windows are rejected
    (ValueError); overlapping or touching windows merge."""
    checked = []
    for i, (start, end) in enumerate(windows):
        for what, value in (("start", start), ("end", end)):
            if value.tzinfo is None or value.utcoffset() is None:
                raise ValueError(
                    f"window {i}: {what} {value.isoformat()} has no UTC offset "
                    "(write it like 2025-03-01T09:00:00+08:00)"
                )
        if end <= start:
            raise ValueError(
                f"window {i}: end {end.isoformat()} must be after start {start.isoformat()}"
            )
        if start < FAR_PAST or end > FAR_FUTURE:
            raise ValueError(f"window {i}: must lie between 1970 and {FAR_FUTURE.year}")
        checked.append(Window(start, end))
    return _FixedSchedule(_merge(checked))


_ALWAYS = _FixedSchedule([Window(FAR_PAST, FAR_FUTURE)])


def always_schedule() -> Schedule:
    """One window from FAR_PAST to FAR_FUTURE: record continuously."""
    return _ALWAYS


# ---------------------------------------------------------------------------
# cron: parsing (APScheduler) and validation

_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_FIELDS = (
    ("minute", "minute", "0-59"),
    ("hour", "hour", "0-23"),
    ("day", "day of month", "1-31"),
    ("month", "month", "1-12 or JAN-DEC"),
    ("day_of_week", "day of week", "0-7 or SUN-SAT (0 and 7 are Sunday)"),
)
_WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")  # standard cron order: 0 = Sunday
_DOW_PART = re.compile(r"(\*|[0-9]+|[a-z]+)(?:-([0-9]+|[a-z]+))?(?:/([0-9]+))?", re.IGNORECASE)
_TRIGGER_END = FAR_FUTURE


class _CronError(ValueError):
    pass


def _weekday_number(token: str) -> int:
    if token.isdigit():
        number = int(token)
        if number > 7:
            raise _CronError(f"{token} is not a weekday (0-7, 0 and 7 are Sunday)")
        return number
    try:
        return _WEEKDAYS.index(token.lower())
    except ValueError:
        raise _CronError(
            f"unknown weekday name {token!r} (use SUN MON TUE WED THU FRI SAT)"
        ) from None


def _weekdays(expr: str) -> list[str]:
    """Standard cron day-of-week field -> APScheduler weekday names.

    APScheduler 3 numbers weekdays from Monday = 0 while crontab uses Sunday = 0,
    so numbers and steps are resolved here to names, which mean the same in both.
    """
    days: set[int] = set()
    for part in expr.split(","):
        match = _DOW_PART.fullmatch(part)
        if not match:
            raise _CronError(f"{part!r} is not a weekday, range or step")
        first, last, step = match.groups()
        if first == "*":
            if last is not None:
                raise _CronError(f"{part!r} is not a weekday, range or step")
            low, high = 0, 6
        else:
            low = _weekday_number(first)
            # A step from a day runs to the field's end, 7 (Sunday again), as in
            # cronie and as APScheduler reads `5/2` in the other fields.
            high = _weekday_number(last) if last is not None else (7 if step else low)
            if high < low:
                raise _CronError(
                    f"range {part!r} runs backwards; list the days instead (e.g. SAT,SUN)"
                )
        increment = int(step) if step is not None else 1
        if increment < 1:
            raise _CronError(f"step in {part!r} must be at least 1")
        days.update(day % 7 for day in range(low, high + 1, increment))
    # APScheduler's names; its week starts on Monday, which does not matter for a list.
    return [("mon", "tue", "wed", "thu", "fri", "sat", "sun")[(d - 1) % 7] for d in sorted(days)]


def _trigger(**fields: str) -> CronTrigger:
    return CronTrigger(timezone=UTC, end_date=_TRIGGER_END, **fields)


@dataclass(frozen=True)
class _CronSpec:
    times: tuple[timedelta, ...]  # wall-clock times of day it fires at, sorted
    day_triggers: tuple[CronTrigger, ...]  # matching days (each fires at midnight); union


def _fires_within(trigger: CronTrigger, start: datetime, span: timedelta) -> list[timedelta]:
    offsets: list[timedelta] = []
    moment = start
    while True:
        fire = trigger.get_next_fire_time(None, moment)
        if fire is None or fire >= start + span:
            return offsets
        offsets.append(fire - start)
        moment = fire + timedelta(seconds=1)


@lru_cache(maxsize=1024)
def _parse_cron(cron: str) -> _CronSpec:
    text = cron.strip()
    if not text:
        raise _CronError("empty cron expression")
    if text.startswith("@"):
        if text.lower() not in _MACROS:
            raise _CronError(f"unknown macro {text!r} (use one of {', '.join(_MACROS)})")
        text = _MACROS[text.lower()]
    values = text.split()
    if len(values) != 5:
        hint = "; seconds and years are not supported" if len(values) > 5 else ""
        raise _CronError(
            f"expected 5 fields (minute hour day-of-month month day-of-week), "
            f"got {len(values)}{hint}"
        )
    minute, hour, day, month, day_of_week = values
    for (name, label, allowed), value in zip(_FIELDS, values, strict=True):
        try:
            if name == "day_of_week":
                _trigger(day_of_week=",".join(_weekdays(value)))
            else:
                _trigger(**{name: value})
        except ValueError as exc:
            detail = str(exc)
            if detail.startswith("Unrecognized expression"):
                detail = "not a number, name, list, range (a-b) or step (*/n)"
            detail = re.sub(r"^Error validating expression '[^']*': ", "", detail)
            raise _CronError(f"{label} field {value!r}: {detail}; allowed: {allowed}") from None
    weekdays = ",".join(_weekdays(day_of_week))
    # Vixie cron: when both day fields are restricted, a day matching either fires.
    day_triggers: tuple[CronTrigger, ...]
    if not day.startswith("*") and not day_of_week.startswith("*"):
        day_triggers = (
            _trigger(month=month, day=day, hour="0", minute="0"),
            _trigger(month=month, day_of_week=weekdays, hour="0", minute="0"),
        )
    else:
        day_triggers = (_trigger(month=month, day=day, day_of_week=weekdays, hour="0", minute="0"),)
    origin = datetime(2001, 1, 1, tzinfo=UTC)
    firsts = [trigger.get_next_fire_time(None, origin) for trigger in day_triggers]
    if all(first is None or first > origin + timedelta(days=8 * 366) for first in firsts):
        raise _CronError("never fires: no day matches the day and month fields (e.g. 30 February)")
    hours = _fires_within(_trigger(hour=hour), origin, _DAY)
    minutes = _fires_within(_trigger(minute=minute), origin, timedelta(hours=1))
    times = tuple(h + m for h in hours for m in minutes)
    return _CronSpec(times=times, day_triggers=day_triggers)


def validate_cron(cron: str) -> str | None:
    """None if `cron` is a valid expression, else a short message saying what is wrong."""
    try:
        _parse_cron(cron)
    except _CronError as exc:
        return str(exc)
    return None


@lru_cache(maxsize=256)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def validate_timezone(name: str) -> str | None:
    """None if `name` is an IANA time zone known to this system, else a message."""
    try:
        _zone(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return f"unknown time zone {name!r}; use an IANA name such as Europe/Berlin or UTC"
    return None


# ---------------------------------------------------------------------------
# cron: windows


def _instant(wall: datetime, zone: ZoneInfo) -> datetime:
    """The instant a wall-clock time in `zone` starts at (see the module docstring)."""
    instant = wall.replace(tzinfo=zone).astimezone(UTC)  # fold=0: first of a repeated time
    if instant.astimezone(zone).replace(tzinfo=None) == wall:
        return instant
    # Skipped wall time. fold=0 read it with the offset before the transition, which
    # lands after the transition; fold=1 with the offset after it, which lands before.
    # The transition (a whole second in tzdata) lies between: find it by bisection.
    earlier = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    low, high = int(earlier.timestamp()), int(instant.timestamp())
    after = instant.astimezone(zone).utcoffset()
    while high - low > 1:
        middle = (low + high) // 2
        if datetime.fromtimestamp(middle, UTC).astimezone(zone).utcoffset() == after:
            high = middle
        else:
            low = middle
    return datetime.fromtimestamp(high, UTC)


_Run = tuple[datetime, datetime]  # merged windows of the fires of one wall-clock day


class _CronSchedule:
    def __init__(self, cron: str, spec: _CronSpec, zone: ZoneInfo, duration: timedelta) -> None:
        self._cron = cron
        self._spec = spec
        self._zone = zone
        self._duration = duration
        runs: list[list[timedelta]] = []
        for offset in spec.times:
            if runs and offset <= runs[-1][1]:
                runs[-1][1] = offset + duration
            else:
                runs.append([offset, offset + duration])
        self._day_runs = tuple((start, end) for start, end in runs)
        self._runs_cache: dict[date, tuple[_Run, ...]] = {}
        self._next_day_cache: dict[date, date | None] = {}
        # The last window `active_at` found, and the last span in which it found none
        # (until the next window starts). The daemon asks about every manifest on every
        # pass, at the instant of the pass (the planner) and at the start of the next
        # window (the overview, for an idle one); between boundaries the answers cannot
        # change, so each costs a comparison instead of a cron walk.
        self._window: Window | None = None
        self._gap: tuple[datetime, datetime] | None = None

    def __repr__(self) -> str:
        return f"cron_schedule(zone={self._zone.key!r}, duration={self._duration})"

    def __reduce__(self) -> tuple[Any, tuple[str, str, timedelta]]:
        """Pickled as its arguments, and unpickled through `cron_schedule`: what a worker
        or a snapshot sends is the very schedule of the process that reads it, with what
        it remembered (thousands of manifests share a few hundred schedules)."""
        return cron_schedule, (self._cron, self._zone.key, self._duration)

    # -- days

    def _next_matching_day(self, day: date) -> date | None:
        """The first wall-clock day >= `day` on which the cron fires."""
        if day in self._next_day_cache:
            return self._next_day_cache[day]
        if len(self._next_day_cache) > _CACHE_DAYS:
            self._next_day_cache.clear()
        midnight = datetime.combine(day, time(), UTC)
        found: date | None = None
        for trigger in self._spec.day_triggers:
            fire = trigger.get_next_fire_time(None, midnight)
            if fire is not None and fire < FAR_FUTURE and (found is None or fire.date() < found):
                found = fire.date()
        self._next_day_cache[day] = found
        return found

    def _runs(self, day: date) -> tuple[_Run, ...]:
        """Merged windows of the fires on wall-clock `day`, as instants."""
        cached = self._runs_cache.get(day)
        if cached is not None:
            return cached
        if len(self._runs_cache) > _CACHE_DAYS:
            self._runs_cache.clear()
        runs: tuple[_Run, ...] = ()
        if self._next_matching_day(day) == day:
            midnight = datetime.combine(day, time())
            first = _instant(midnight, self._zone)
            if _instant(midnight + _DAY, self._zone) - first == _DAY:
                # No offset change today: wall-clock offsets are elapsed offsets.
                runs = tuple((first + start, first + end) for start, end in self._day_runs)
            else:
                runs = self._transition_day_runs(midnight)
        self._runs_cache[day] = runs
        return runs

    def _transition_day_runs(self, midnight: datetime) -> tuple[_Run, ...]:
        merged: list[_Run] = []
        for offset in self._spec.times:
            start = _instant(midnight + offset, self._zone)
            end = start + self._duration
            if merged and start <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], end))
            else:
                merged.append((start, end))
        return tuple(merged)

    def _runs_from(self, day: date) -> Iterator[_Run]:
        """Runs in time order from wall-clock `day` on (ends grow with starts)."""
        while True:
            matching = self._next_matching_day(day)
            if matching is None:
                return
            yield from self._runs(matching)
            day = matching + _DAY

    def _wall_day(self, t: datetime) -> date:
        return t.astimezone(self._zone).date()

    def _extend_left(self, start: datetime, limit: datetime) -> datetime:
        """The start of the chain of windows touching one that starts at `start`."""
        day = self._wall_day(start) + _DAY
        while start >= limit and day >= self._wall_day(start - self._duration) - _DAY:
            for run_start, run_end in reversed(self._runs(day)):
                if run_start >= start:
                    continue
                if run_end < start:
                    return start  # ends grow with starts: nothing earlier touches
                start = run_start
            day -= _DAY
        return start

    # -- the Schedule protocol

    def windows_between(self, a: datetime, b: datetime) -> list[Window]:
        a, b = _utc(a), _utc(b)
        if b <= a:
            return []
        if b - a > MAX_CRON_RANGE:
            # The cost is proportional to the range: refuse rather than hang.
            raise ValueError(f"range longer than {MAX_CRON_RANGE.days} days for a cron schedule")
        result: list[Window] = []
        current: list[datetime] | None = None
        for run_start, run_end in self._runs_from(self._wall_day(a - self._duration) - _DAY):
            if current is not None and run_start <= current[1]:
                current[1] = max(current[1], run_end)
                if current[1] > b + MERGE_HORIZON:
                    break
                continue
            if current is not None and current[1] > a:
                result.append(Window(current[0], current[1]))
            current = None
            if run_start >= b:
                break
            current = [run_start, run_end]
        if current is not None and current[1] > a:
            result.append(Window(current[0], current[1]))
        if result:
            first = result[0]
            limit = a - MERGE_HORIZON
            start = self._extend_left(first.start, limit)
            if start != first.start:
                result[0] = Window(start, first.end, open_start=start < limit)
        return result

    def active_at(self, t: datetime) -> Window | None:
        t = _utc(t)
        window = self._window
        if window is not None and window.start <= t < window.end:
            return window
        gap = self._gap
        if gap is not None and gap[0] <= t < gap[1]:
            return None
        windows = self.windows_between(t, t + timedelta(microseconds=1))
        window = windows[0] if windows else None
        if window is not None:
            # A chain longer than MERGE_HORIZON is reported relative to the instant
            # asked about: remember only windows that are exact wherever asked.
            if window.end - window.start < MERGE_HORIZON:
                self._window = window
        else:
            self._gap = (t, self._next_start(t) or FAR_FUTURE)
        return window

    def next_boundary(self, t: datetime) -> datetime | None:
        t = _utc(t)
        window = self.active_at(t)
        if window is not None:
            return window.end if window.end < FAR_FUTURE else None
        gap = self._gap  # set by active_at: "none" until the next start
        if gap is not None and gap[0] <= t < gap[1]:
            return gap[1] if gap[1] < FAR_FUTURE else None
        return self._next_start(t)

    def steady_until(self, t: datetime) -> datetime:
        window = self.active_at(t)
        if window is None:
            return self.next_boundary(t) or FAR_FUTURE
        if window.end - window.start < MERGE_HORIZON:
            return window.end  # exact wherever asked (see `active_at`)
        return _utc(t)

    def _next_start(self, t: datetime) -> datetime | None:
        for run_start, _run_end in self._runs_from(self._wall_day(t) - _DAY):
            if run_start > t:
                return run_start if run_start < FAR_FUTURE else None
        return None


@lru_cache(maxsize=1024)
def cron_schedule(cron: str, timezone: str, duration: timedelta) -> Schedule:
    """Windows `[fire, fire + duration)` for a wall-clock cron in an IANA zone.

    Raises ValueError with a human message for an invalid cron, zone or duration.
    Schedules are immutable and shared between equal arguments.
    """
    problem = validate_cron(cron)
    if problem is not None:
        raise ValueError(f"invalid cron expression {cron!r}: {problem}")
    problem = validate_timezone(timezone)
    if problem is not None:
        raise ValueError(problem)
    if duration <= timedelta(0):
        raise ValueError(f"duration must be positive, got {duration}")
    return _CronSchedule(cron, _parse_cron(cron), _zone(timezone), duration)
