"""Checks across manifests: what no single file can know about itself.

- Names are unique (both positions are reported).
- A uid `auto` that derives the same number as another manifest's uid on the
  same app and channel is an error whatever the schedules: nobody chose it.
- Two manifests that could record the same (app, channel, uid) at the same time
  clash: the recorder can only be in a channel once with a given uid. The first
  clashing instant at or after `now` (searched over `HORIZON`) is reported.
  `always` clashes with everything. Suspended manifests count too: they can be
  unsuspended at any time, and a merge should not be able to arm a clash.

Pure: the caller passes `now` (the CLI passes the current time).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from orchestrator.manifest.loader import Diagnostic, LoadedManifest

if TYPE_CHECKING:
    from orchestrator.schedule import Schedule

HORIZON = timedelta(days=366)
_CHUNK = timedelta(days=31)


def _where(m: LoadedManifest, key: str) -> str:
    line, _ = m.position_of(key)
    return f"{m.file}:{line}"


def _error(m: LoadedManifest, key: str, message: str) -> Diagnostic:
    line, column = m.position_of(key)
    return Diagnostic(m.file, line, column, key, message)


def _build(m: LoadedManifest) -> Schedule:
    return m.manifest.build_schedule()


def first_overlap(
    a: Schedule, b: Schedule, start: datetime, horizon: timedelta = HORIZON
) -> datetime | None:
    """The first instant in [start, start + horizon) at which both schedules are active."""
    end = start + horizon
    t = start
    while t < end:
        u = min(t + _CHUNK, end)
        wa, wb = a.windows_between(t, u), b.windows_between(t, u)
        i = j = 0
        while i < len(wa) and j < len(wb):
            low = max(wa[i].start, wb[j].start, t)
            high = min(wa[i].end, wb[j].end)
            if low < high and low < u:
                return low
            if wa[i].end <= wb[j].end:
                i += 1
            else:
                j += 1
        t = u
    return None


def cross_check(
    manifests: Sequence[LoadedManifest],
    *,
    now: datetime | None = None,
    horizon: timedelta = HORIZON,
) -> list[Diagnostic]:
    """Diagnostics for duplicate names, colliding `auto` uids and clashing schedules.

    Without `now` the schedule clash search is skipped (it needs a starting point).
    """
    out: list[Diagnostic] = []

    by_name: dict[str, list[LoadedManifest]] = defaultdict(list)
    for m in manifests:
        by_name[m.manifest.name].append(m)
    for name, group in by_name.items():
        if len(group) > 1:
            for m in group:
                others = ", ".join(_where(o, "name") for o in group if o is not m)
                out.append(
                    _error(m, "name", f"name '{name}' is used again at {others}; names are unique")
                )

    by_target: dict[tuple[str, str, int], list[LoadedManifest]] = defaultdict(list)
    for m in manifests:
        spec = m.manifest
        by_target[(spec.app, spec.channel, spec.recording_uid)].append(m)
    schedules: dict[int, Schedule] = {}
    for (app, channel, uid), group in by_target.items():
        if len(group) < 2:
            continue
        for i, a in enumerate(group):
            for b in group[i + 1 :]:
                autos = [m for m in (a, b) if m.manifest.uid == "auto"]
                if autos:
                    for m in autos:
                        other = b if m is a else a
                        out.append(
                            _error(
                                m,
                                "uid",
                                f"uid auto derives {uid}, which '{other.manifest.name}' "
                                f"({_where(other, 'uid')}) also uses on app {app}, channel "
                                f"'{channel}'; set an explicit uid",
                            )
                        )
                    continue
                if now is None:
                    continue
                try:
                    sa = schedules.get(id(a)) or schedules.setdefault(id(a), _build(a))
                    sb = schedules.get(id(b)) or schedules.setdefault(id(b), _build(b))
                    clash = first_overlap(sa, sb, now, horizon)
                except ValueError as exc:  # a schedule the model let through but cannot expand
                    out.append(_error(a, "schedule", f"cannot compute the windows: {exc}"))
                    continue
                if clash is None:
                    continue
                when = clash.strftime("%Y-%m-%dT%H:%M:%SZ")
                for m, other in ((a, b), (b, a)):
                    out.append(
                        _error(
                            m,
                            "schedule",
                            f"records app {app}, channel '{channel}', uid {uid} at the same time "
                            f"as '{other.manifest.name}' ({_where(other, 'schedule')}), first at "
                            f"{when}; change a schedule, the channel or the uid",
                        )
                    )
    return out
