"""Checks across manifests: what no single file can know about itself.

- Names are unique (both positions are reported).
- A uid `auto` that derives the same number as another manifest's uid on the
  same app and channel is an error whatever the schedules: nobody chose it.
- Two manifests that could record the same (app, channel, uid) at the same time
  clash: the recorder can only be in a channel once with a given uid. The first
  clashing instant at or after `now` (searched over `HORIZON`) is reported.
  `always` clashes with everything. Suspended manifests count too: they can be
  unsuspended at any time, and a merge should not be able to arm a clash.

Pure: the caller passes `now` (the CLI passes the current time). A caller that
checks the same manifests again and again (the daemon, at every reload) passes an
`OverlapMemo`: schedules are then built once, and a clash search already done is
only extended by the time that has passed. The answers are the same as without
it; only the work differs.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from orchestrator.manifest.loader import Diagnostic, LoadedManifest

if TYPE_CHECKING:
    from orchestrator.schedule import Schedule

HORIZON = timedelta(days=366)
_CHUNK = timedelta(days=31)
_AHEAD = _CHUNK
"""How much further than asked an `OverlapMemo` search looks, so that the reloads of
the following weeks find the answer already there instead of searching a few minutes."""


def _where(m: LoadedManifest, key: str) -> str:
    line, _ = m.position_of(key)
    return f"{m.file}:{line}"


def _error(m: LoadedManifest, key: str, message: str) -> Diagnostic:
    line, column = m.position_of(key)
    return Diagnostic(m.file, line, column, key, message)


def _build(m: LoadedManifest) -> Schedule:
    return m.manifest.build_schedule()


Target = tuple[str, str, int]
"""(app, channel, uid): what one recorder occupies while it records."""


def target_of(m: LoadedManifest) -> Target:
    """The (app, channel, uid) a manifest records as, with `auto` resolved."""
    spec = m.manifest
    return (spec.app, spec.channel, spec.recording_uid)


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


@dataclass(frozen=True)
class _Searched:
    """The first instant in [start, end) at which a pair of schedules is active together."""

    start: datetime
    end: datetime
    clash: datetime | None


class OverlapMemo:
    """What `cross_check` learnt about pairs of manifests on one target, for its next call.

    Kept per manifest object: a manifest whose file changed is a new object and
    starts afresh, and whatever a call did not ask about is dropped at its end.

    A search answers "the first instant in [start, end) at which both are active",
    and that answer stays exact for a later `now`:
    - a clash c found from `start`: no instant of [start, c) clashes, so from any
      `now` in [start, c] the first clash is c again;
    - no clash in [start, end): from a later `now` only [end, now + horizon) is new,
      and the first clash there is the first clash from `now`.
    Anything else (an earlier `now`, or a clash already in the past) searches
    afresh. An extended search looks `_AHEAD` further than asked; a clash found
    there is kept and not reported until `now + horizon` reaches it. `first_overlap` finds
    the first common instant whatever its chunking, so a search in two parts
    gives the answer of a search in one.
    """

    def __init__(self) -> None:
        self._schedules: dict[int, tuple[LoadedManifest, Schedule]] = {}
        self._searches: dict[tuple[int, int], tuple[LoadedManifest, LoadedManifest, _Searched]] = {}
        self._used_schedules: dict[int, tuple[LoadedManifest, Schedule]] = {}
        self._used_searches: dict[
            tuple[int, int], tuple[LoadedManifest, LoadedManifest, _Searched]
        ] = {}

    def schedule(self, m: LoadedManifest) -> Schedule:
        """The manifest's schedule, built once (ValueError if it cannot be built)."""
        known = self._used_schedules.get(id(m)) or self._schedules.get(id(m))
        if known is None or known[0] is not m:
            known = (m, _build(m))
        self._used_schedules[id(m)] = known
        return known[1]

    def first_clash(
        self, a: LoadedManifest, b: LoadedManifest, now: datetime, horizon: timedelta
    ) -> datetime | None:
        """`first_overlap` of the two schedules from `now`, reusing earlier searches."""
        key = (id(a), id(b))
        known = self._searches.get(key)
        done = known[2] if known is not None and known[0] is a and known[1] is b else None
        sa, sb = self.schedule(a), self.schedule(b)
        end = now + horizon
        if done is not None and done.start <= now:
            if done.clash is not None and now <= done.clash:
                self._used_searches[key] = (a, b, done)
                return done.clash if done.clash < end else None
            if done.clash is None and now <= done.end:
                if done.end < end:  # search only what was not searched yet, and ahead
                    found = first_overlap(sa, sb, done.end, end + _AHEAD - done.end)
                    done = _Searched(done.start, end + _AHEAD, found)
                self._used_searches[key] = (a, b, done)
                return done.clash if done.clash is not None and done.clash < end else None
        found = first_overlap(sa, sb, now, horizon)
        self._used_searches[key] = (a, b, _Searched(now, end, found))
        return found

    def _begin(self) -> None:
        self._used_schedules, self._used_searches = {}, {}

    def _end(self) -> None:
        self._schedules, self._used_schedules = self._used_schedules, {}
        self._searches, self._used_searches = self._used_searches, {}


def cross_check(
    manifests: Sequence[LoadedManifest],
    *,
    now: datetime | None = None,
    horizon: timedelta = HORIZON,
    memo: OverlapMemo | None = None,
) -> list[Diagnostic]:
    """Diagnostics for duplicate names, colliding `auto` uids and clashing schedules.

    Without `now` the schedule clash search is skipped (it needs a starting point).
    Only groups of two or more manifests (by name, by target) can yield anything:
    checking just the manifests of such groups, in their order, gives the same list.
    """
    out: list[Diagnostic] = []
    memo = memo if memo is not None else OverlapMemo()

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

    by_target: dict[Target, list[LoadedManifest]] = defaultdict(list)
    for m in manifests:
        by_target[target_of(m)].append(m)
    memo._begin()
    try:
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
                        clash = memo.first_clash(a, b, now, horizon)
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
                                f"records app {app}, channel '{channel}', uid {uid} at the same "
                                f"time as '{other.manifest.name}' ({_where(other, 'schedule')}), "
                                f"first at {when}; change a schedule, the channel or the uid",
                            )
                        )
    finally:
        memo._end()
    return out
