"""The coming starts and stops per manifest, as data and as a compact text chart.

Pure: takes `now` and the horizon. Used by `orchestrator plan`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from orchestrator.reconcile.plan import DesiredRecording
from orchestrator.schedule import FAR_FUTURE, Window

_ON = "█"
_OFF = "·"
_SUSPENDED = "░"


@dataclass(frozen=True)
class Lane:
    manifest: str
    windows: tuple[Window, ...]  # every window that intersects [now, now + horizon), whole
    suspended: bool

    def events(self) -> list[tuple[datetime, str]]:
        """(instant, "start" | "stop") in order, `always` having no stop."""
        out: list[tuple[datetime, str]] = []
        for w in self.windows:
            out.append((w.start, "start"))
            if w.end < FAR_FUTURE:
                out.append((w.end, "stop"))
        return out


def lanes(desired: Sequence[DesiredRecording], now: datetime, horizon: timedelta) -> list[Lane]:
    end = now + horizon
    result = []
    for d in sorted(desired, key=lambda d: d.name):
        windows = tuple(
            w for w in d.schedule.windows_between(now, end) if w.end > now and w.start < end
        )
        result.append(Lane(d.name, windows, d.suspend))
    return result


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
            covered = any(w.start < b and w.end > a for w in lane.windows)
            cells.append((_SUSPENDED if lane.suspended else _ON) if covered else _OFF)
        suffix = "  suspended" if lane.suspended else ""
        lines.append(f"{lane.manifest[:name_width]:<{name_width}}  {''.join(cells)}{suffix}")
    return "\n".join(lines)


def describe_next(lane: Lane, now: datetime) -> str:
    """A one-line summary: what happens next for this manifest."""
    if lane.suspended:
        return "suspended"
    if not lane.windows:
        return "no window in the horizon"
    first = lane.windows[0]
    if first.start <= now:
        if first.end >= FAR_FUTURE:
            return "recording (always)"
        return f"recording until {first.end.isoformat()}"
    return f"next start {first.start.isoformat()}, stop {first.end.isoformat()}"


def _span(horizon: timedelta) -> str:
    hours = horizon.total_seconds() / 3600
    return f"{hours:g}h" if hours < 48 else f"{hours / 24:g}d"
