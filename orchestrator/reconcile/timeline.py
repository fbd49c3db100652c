"""The coming starts and stops per manifest, as data and as a compact text chart.

Pure: takes `now`, the horizon and the plan made at `now`. Used by `orchestrator
plan`. A window the schedule wants is not always a window that will be recorded:
one that opened longer ago than `startingDeadline` is skipped, a manifest held as
failed or behind an unmanageable session records nothing new, and a restart waits
its backoff. The chart draws what will happen (`█`), and what is wanted but will
not be recorded (`x`), apart.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from orchestrator.reconcile.plan import DesiredRecording, NoteKind, Plan
from orchestrator.schedule import FAR_FUTURE, Schedule, Window

_ON = "█"
_OFF = "·"
_SUSPENDED = "░"
_NOT_RECORDED = "x"
LEGEND = "█ recorded   x wanted, not recorded   ░ suspended   · no window"

# Notes that mean the current window records nothing (until an operator acts, or the
# window is over), and the words for them.
_SKIPPING = {
    NoteKind.MISSED: "missed: it opened longer ago than startingDeadline",
    NoteKind.FAILED: "held as failed",
    NoteKind.UNMANAGEABLE: "an unmanageable session holds it",
}


@dataclass(frozen=True)
class Lane:
    manifest: str
    windows: tuple[Window, ...]  # every window that intersects [now, now + horizon), whole
    suspended: bool
    # Why the window open now will not be recorded (None: it will be, or none is open).
    skipped: str | None = None
    # A restart waits its backoff until then (the open window records from then on).
    waits_until: datetime | None = None
    # More windows than `windows` holds fall in the horizon (`lanes(limit=...)`).
    more: bool = False

    def events(self) -> list[tuple[datetime, str]]:
        """(instant, "start" | "stop") in order, `always` having no stop."""
        out: list[tuple[datetime, str]] = []
        for w in self.windows:
            out.append((w.start, "start"))
            if w.end < FAR_FUTURE:
                out.append((w.end, "stop"))
        return out


def lanes(
    desired: Sequence[DesiredRecording],
    now: datetime,
    horizon: timedelta,
    the_plan: Plan | None = None,
    *,
    limit: int | None = None,
) -> list[Lane]:
    """One lane per manifest; with `the_plan` (made at `now`), the open window says
    whether it will be recorded. `limit`: at most this many windows a lane (its first
    ones; `more` says there are others), found at a cost of about that many: an
    every-minute cron has 1,440 windows a day."""
    end = now + horizon
    skipped: dict[str, str] = {}
    waits: dict[str, datetime] = {}
    for note in the_plan.notes if the_plan is not None else ():
        if note.kind in _SKIPPING:
            skipped.setdefault(note.manifest, _SKIPPING[note.kind])
        elif note.kind is NoteKind.BACKOFF and note.until is not None:
            waits[note.manifest] = note.until
    result = []
    for d in sorted(desired, key=lambda d: d.name):
        windows, more = _first_windows(d.schedule, now, end, limit)
        lane = Lane(d.name, windows, d.suspend, skipped.get(d.name), waits.get(d.name), more)
        result.append(lane)
    return result


#: The first span `_first_windows` looks at; each next one is four times longer.
_FIRST_SPAN = timedelta(hours=1)


def _first_windows(
    schedule: Schedule, now: datetime, end: datetime, limit: int | None
) -> tuple[tuple[Window, ...], bool]:
    """The first `limit` windows of `[now, end)` (all: None), and whether there are
    more. A cron's cost is that of the span looked at, so the span grows from an hour
    until it holds more than `limit` windows or reaches `end`."""
    upto = end if limit is None else min(end, now + _FIRST_SPAN)
    while True:
        found = [w for w in schedule.windows_between(now, upto) if w.end > now and w.start < upto]
        if limit is not None and len(found) > limit:
            return tuple(found[:limit]), True
        if upto >= end:
            return tuple(found), False
        upto = min(end, now + (upto - now) * 4)


def render(lanes_: Sequence[Lane], now: datetime, horizon: timedelta, width: int = 48) -> str:
    """A chart: one row per manifest, `width` columns over the horizon (times in UTC)."""
    if not lanes_:
        return "(no manifests)"
    step = horizon / width
    name_width = min(max(len(lane.manifest) for lane in lanes_), 32)
    # Tick labels every quarter of the chart.
    ticks = [" "] * (width + 12)
    for quarter in range(4):
        column = quarter * width // 4
        label = (now + step * column).strftime("%H:%M")
        for i, ch in enumerate(label):
            if column + i < len(ticks):
                ticks[column + i] = ch
    lines = [f"{'':<{name_width}}  {''.join(ticks).rstrip()}   (UTC, {_span(horizon)})"]
    for lane in lanes_:
        cells = []
        for column in range(width):
            a = now + step * column
            b = a + step
            cells.append(_cell(lane, now, a, b))
        suffix = "  suspended" if lane.suspended else ""
        lines.append(f"{lane.manifest[:name_width]:<{name_width}}  {''.join(cells)}{suffix}")
    lines.append(f"{'':<{name_width}}  {LEGEND}")
    return "\n".join(lines)


def _cell(lane: Lane, now: datetime, a: datetime, b: datetime) -> str:
    """The glyph for [a, b): the window covering it, and whether it is recorded."""
    window = next((w for w in lane.windows if w.start < b and w.end > a), None)
    if window is None:
        return _OFF
    if lane.suspended:
        return _SUSPENDED
    if window.start <= now:  # the window open now
        if lane.skipped is not None:
            return _NOT_RECORDED
        if lane.waits_until is not None and a < lane.waits_until:
            return _NOT_RECORDED
    return _ON


def _iso(at: datetime) -> str:
    return at.isoformat(timespec="seconds")


def describe_next(lane: Lane, now: datetime, show: Callable[[datetime], str] = _iso) -> str:
    """A one-line summary: what happens next for this manifest (instants written by
    `show`: ISO 8601 to the second unless the caller writes them its way)."""
    if lane.suspended:
        return "suspended"
    if not lane.windows:
        return "no window in the horizon"
    first = lane.windows[0]
    if first.start <= now:
        until = "(always)" if first.end >= FAR_FUTURE else f"until {show(first.end)}"
        if lane.skipped is not None:
            return f"wanted {until}, not recorded: {lane.skipped}"
        if lane.waits_until is not None:
            # It may never have recorded (a start that failed): no "again".
            return f"wanted {until}; its next start waits until {show(lane.waits_until)} (backoff)"
        return f"recording {until}"
    return f"next start {show(first.start)}, stop {show(first.end)}"


def _span(horizon: timedelta) -> str:
    hours = horizon.total_seconds() / 3600
    return f"{hours:g}h" if hours < 48 else f"{hours / 24:g}d"
