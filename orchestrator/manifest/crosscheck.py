"""Checks across manifests: what no single file can know about itself.

- Names are unique (both positions are reported).
- A manifest occupies two uids: its `uid` and its `rolloverUid` (a rollover's
  successor session records beside its predecessor, and sessions alternate
  between the two). Each is checked against every uid of the other manifests of
  the same app and channel alike.
- A uid or rolloverUid `auto` that derives the same number as another manifest's
  uid or rolloverUid on the same app and channel is an error whatever the
  schedules: nobody chose it. (Two manifests of one name derive the same numbers:
  that is the duplicate name's error, not one more.)
- Two manifests that could record the same target (`Target`: an App ID's
  channel and uid) at the same time clash: the recorder can only be in a channel
  once with a given uid. The first clashing instant at or after `now` (searched
  over `HORIZON`) is reported, once for a pair that shares both of its uids.
  `always` clashes with everything. Suspended manifests count too: they can be
  unsuspended at any time, and a merge should not be able to arm a clash.

"The same app" is the same App ID when the caller knows the profiles' App IDs
(`app_ids`: the daemon, `plan`, `apply`): two profiles of one App ID are one
project to Agora, and their manifests clash like those of one profile. Without
them (`validate` runs without a config) it is the same profile name.

The clash search expands each schedule once over the horizon (not once per pair)
and sweeps the windows of each target's group in time order: forty
weekly classes in one classroom cost forty expansions and one sweep, not 780 pairs
of expansions.

Pure: the caller passes `now` (the CLI passes the current time). A caller that
checks the same manifests again and again (the daemon, at every reload) passes an
`OverlapMemo`: windows are then kept and only extended by the time that has
passed, and a group whose manifests did not change is not searched again. The
answers are the same as without it; only the work differs.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from heapq import heappop, heappush
from itertools import repeat
from typing import TYPE_CHECKING

from orchestrator.manifest.diagnostics import Diagnostic
from orchestrator.manifest.loaded import LoadedManifest, Target, targets_of
from orchestrator.schedule import Window

if TYPE_CHECKING:
    from orchestrator.schedule import Schedule

HORIZON = timedelta(days=366)
_AHEAD = timedelta(days=31)
"""How much further than asked an `OverlapMemo` expands a schedule and searches a
group, so that the reloads of the following weeks find the answer already there;
past it, each schedule is extended by the time passed, not expanded again."""


def _where(m: LoadedManifest, key: str) -> str:
    line, _ = m.position_of(key)
    return f"{m.file}:{line}"


def _error(m: LoadedManifest, key: str, message: str) -> Diagnostic:
    line, column = m.position_of(key)
    return Diagnostic(m.file, line, column, key, message)


def _app(m: LoadedManifest, other: LoadedManifest) -> str:
    """The app of a pair in words: the profile, and the other's when it differs (by
    name only: an App ID is not shown)."""
    mine, theirs = m.manifest.app, other.manifest.app
    return mine if mine == theirs else f"{mine} (the App ID of {theirs} too)"


def _as(key: str) -> str:
    """How another manifest uses a uid, in words: as its uid goes without saying."""
    return "" if key == "uid" else f" as its {key}"


def _roles(key: str, other: LoadedManifest, other_key: str) -> str:
    """Which uid of each manifest a clash is on, unless both are their `uid`."""
    if key == other_key == "uid":
        return ""
    return f" (as its {key}; '{other.manifest.name}' as its {other_key})"


def _build(m: LoadedManifest) -> Schedule:
    return m.manifest.build_schedule()


def first_overlap(
    a: Schedule, b: Schedule, start: datetime, horizon: timedelta = HORIZON
) -> datetime | None:
    """The first instant in [start, start + horizon) at which both schedules are active."""
    end = start + horizon
    both = [_spans(a.windows_between(start, end)), _spans(b.windows_between(start, end))]
    found = first_clashes(both, _micros(start), _micros(end)).get((0, 1))
    return None if found is None else _instant(found)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)

Spans = tuple[list[int], list[int]]
"""Merged windows as their starts and their ends, in microseconds since the epoch
(both ascending: merged windows do not overlap)."""


def _micros(t: datetime) -> int:
    """An aware instant as microseconds since the epoch: exact, and cheap to compare."""
    return (t - _EPOCH) // _MICROSECOND


def _instant(micros: int) -> datetime:
    return _EPOCH + timedelta(microseconds=micros)


def _spans(windows: Sequence[Window]) -> Spans:
    return [_micros(w.start) for w in windows], [_micros(w.end) for w in windows]


def first_clashes(members: Sequence[Spans], start: int, end: int) -> dict[tuple[int, int], int]:
    """For each pair (i, j), i < j, of members active together somewhere in [start, end),
    the first such instant (microseconds since the epoch, as `members`).

    One sweep over all the windows in order of their start: a window starting at
    `s` overlaps exactly the windows still open at `s` (windows that touch do not
    overlap), and since starts only grow, the first time a pair is met is its
    first common instant. A sort, then a heap of the open windows by their end:
    about a microsecond a window when nothing overlaps (a valid group).
    """
    events: list[tuple[int, int, int]] = []
    for owner, (lows, highs) in enumerate(members):
        first, stop = bisect_right(highs, start), bisect_left(lows, end)
        if first < stop:
            part = list(zip(lows[first:stop], highs[first:stop], repeat(owner), strict=False))
            if part[0][0] < start:
                part[0] = (start, part[0][1], owner)
            events += part
    events.sort()
    found: dict[tuple[int, int], int] = {}
    open_windows: list[tuple[int, int]] = []  # a heap of (end, owner)
    for at, until, owner in events:
        while open_windows and open_windows[0][0] <= at:
            heappop(open_windows)
        for _, other in open_windows:
            pair = (other, owner) if other < owner else (owner, other)
            if other != owner and pair not in found:
                found[pair] = at
        heappush(open_windows, (until, owner))
    return found


@dataclass(frozen=True, slots=True)
class _Expansion:
    """A schedule's windows, exact for every instant of [start, end)."""

    schedule: Schedule
    start: datetime
    end: datetime
    windows: list[Window]
    spans: Spans


@dataclass(frozen=True, slots=True)
class _GroupSearch:
    """The first clash of every pair of one target's manifests in [start, end)."""

    members: tuple[LoadedManifest, ...]
    start: datetime
    end: datetime
    clashes: dict[tuple[int, int], datetime]
    broken: dict[int, str]  # member -> why its windows cannot be computed


class OverlapMemo:
    """Schedules' windows and the clashes of each target group, kept for the next call.

    Within one call, every schedule is expanded once over the search range, however
    many groups and pairs it is in. A caller that checks the same manifests again and
    again (the daemon, at every reload) keeps one memo: the windows are then expanded
    `_AHEAD` further than asked and only extended by the time passed, and a group's
    search is reused while its members are the same objects (a manifest whose file
    changed is a new object and starts afresh).

    A group search answers "the first instant in [start, end) at which each pair is
    active together", and stays exact for a later `now` while [now, now + horizon)
    lies within [start, end) and no clash found lies before `now`:
    - a clash c found from `start`: no instant of [start, c) clashes, so from any
      `now` in [start, c] the first clash is c again;
    - no clash in [start, end): none in [now, now + horizon) either.
    Otherwise the group is searched again from `now`, with the windows already held.
    A clash found ahead of the horizon is kept and not reported until
    `now + horizon` reaches it. Whatever a call did not use is dropped at its end.
    """

    def __init__(self, *, ahead: timedelta = _AHEAD) -> None:
        self._ahead = ahead
        self.expanded = 0
        """Schedules expanded (their windows computed, or extended) by the last check."""
        self._schedules: dict[int, tuple[LoadedManifest, Schedule | ValueError]] = {}
        self._expansions: dict[int, _Expansion] = {}
        self._groups: dict[tuple[int, ...], _GroupSearch] = {}
        self._used_schedules: dict[int, tuple[LoadedManifest, Schedule | ValueError]] = {}
        self._used_expansions: dict[int, _Expansion] = {}
        self._used_groups: dict[tuple[int, ...], _GroupSearch] = {}

    def clashes(
        self, group: Sequence[LoadedManifest], now: datetime, horizon: timedelta
    ) -> tuple[dict[tuple[int, int], datetime], dict[int, str]]:
        """The first clash in [now, now + horizon) of every pair (i, j), i < j, of the
        group that has one, and why a member's windows cannot be computed."""
        end = now + horizon
        key = tuple(id(m) for m in group)
        known = self._used_groups.get(key) or self._groups.get(key)
        if not (
            known is not None
            and all(a is b for a, b in zip(known.members, group, strict=True))
            and known.start <= now
            and end <= known.end
            and all(c >= now for c in known.clashes.values())
        ):
            known = self._search(tuple(group), now, end)
        self._used_groups[key] = known
        for m in group:  # keep what the group was built from
            self._keep(m)
        return {pair: c for pair, c in known.clashes.items() if c < end}, known.broken

    def _search(
        self, group: tuple[LoadedManifest, ...], now: datetime, end: datetime
    ) -> _GroupSearch:
        spans: list[Spans] = []
        broken: dict[int, str] = {}
        reach = end + self._ahead
        for i, m in enumerate(group):
            try:
                expansion = self._expand(self._schedule(m), now, end)
            except ValueError as exc:  # a schedule the model let through but cannot expand
                broken[i] = str(exc)
                spans.append(([], []))
                continue
            spans.append(expansion.spans)
            reach = min(reach, expansion.end)
        found = first_clashes(spans, _micros(now), _micros(reach))
        clashes = {pair: _instant(at) for pair, at in found.items()}
        return _GroupSearch(group, now, reach, clashes, broken)

    def _schedule(self, m: LoadedManifest) -> Schedule:
        """The manifest's schedule, built once (ValueError if it cannot be built)."""
        known = self._used_schedules.get(id(m)) or self._schedules.get(id(m))
        if known is None or known[0] is not m:
            try:
                known = (m, _build(m))
            except ValueError as exc:
                known = (m, exc)
        self._used_schedules[id(m)] = known
        if isinstance(known[1], ValueError):
            raise known[1]
        return known[1]

    def _keep(self, m: LoadedManifest) -> None:
        """Carry a member's schedule and windows over to the next call, used or not."""
        known = self._used_schedules.get(id(m)) or self._schedules.get(id(m))
        if known is None or known[0] is not m:
            return
        self._used_schedules[id(m)] = known
        if not isinstance(known[1], ValueError):
            key = id(known[1])
            expansion = self._used_expansions.get(key) or self._expansions.get(key)
            if expansion is not None and expansion.schedule is known[1]:
                self._used_expansions[key] = expansion

    def _expand(self, schedule: Schedule, now: datetime, end: datetime) -> _Expansion:
        """The schedule's windows, exact over at least [now, end): as held, extended by
        what is missing, or computed afresh (`_ahead` further than asked)."""
        key = id(schedule)
        known = self._used_expansions.get(key) or self._expansions.get(key)
        if known is None or known.schedule is not schedule or not known.start <= now <= known.end:
            reach = end + self._ahead
            windows = schedule.windows_between(now, reach)
            self.expanded += 1
            known = _Expansion(schedule, now, reach, windows, _spans(windows))
        elif known.end < end:
            reach = end + self._ahead
            kept = [w for w in known.windows if w.end > now]
            more = schedule.windows_between(known.end, reach)
            self.expanded += 1
            if kept and more and more[0].start <= kept[-1].end:
                # one chain across the old end: both parts are exact on their side of it
                joined = Window(min(kept[-1].start, more[0].start), max(kept[-1].end, more[0].end))
                kept[-1:] = [joined]
                more = more[1:]
            windows = kept + more
            known = _Expansion(schedule, now, reach, windows, _spans(windows))
        self._used_expansions[key] = known
        return known

    def held(self) -> list[tuple[datetime, datetime]]:
        """The range [start, end) over which each schedule's windows are held, as the
        last check left them (what the next check may use without expanding)."""
        return [(e.start, e.end) for e in self._expansions.values()]

    def _begin(self) -> None:
        self._used_schedules, self._used_expansions, self._used_groups = {}, {}, {}
        self.expanded = 0

    def _end(self) -> None:
        self._schedules, self._used_schedules = self._used_schedules, {}
        self._expansions, self._used_expansions = self._used_expansions, {}
        self._groups, self._used_groups = self._used_groups, {}


def cross_check(
    manifests: Sequence[LoadedManifest],
    *,
    now: datetime | None = None,
    horizon: timedelta = HORIZON,
    memo: OverlapMemo | None = None,
    app_ids: Mapping[str, str] | None = None,
) -> list[Diagnostic]:
    """Diagnostics for duplicate names, colliding `auto` uids and clashing schedules.

    Without `now` the schedule clash search is skipped (it needs a starting point).
    `app_ids` (profile name -> App ID): manifests of two profiles with one App ID
    share targets; without it, or for a profile it does not name, the profile name
    is the app (see `Target`). Only groups of two or more manifests (by name, by
    target) can yield anything: checking just the manifests of such groups, in
    their order, gives the same list.
    """
    out: list[Diagnostic] = []
    memo = memo if memo is not None else OverlapMemo(ahead=timedelta(0))

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

    # Each manifest occupies two targets, its uid's and its rolloverUid's; a member of a
    # target's group comes with the key that names the uid there.
    by_target: dict[Target, list[tuple[LoadedManifest, str, bool]]] = defaultdict(list)
    for m in manifests:
        for target, (key, _, derived) in zip(
            targets_of(m, app_ids), m.manifest.uids(), strict=True
        ):
            by_target[target].append((m, key, derived))
    # Two manifests may share both of their uids: their schedules are reported once.
    reported: set[tuple[int, int]] = set()
    memo._begin()
    try:
        for target, members in by_target.items():
            if len(members) < 2:
                continue
            group = [m for m, _, _ in members]
            channel, uid = target.channel, target.uid
            clashes, broken = memo.clashes(group, now, horizon) if now is not None else ({}, {})
            # Only pairs with an `auto` uid, a schedule that cannot be expanded or a clash
            # can yield anything: those, in the order of all pairs (i < j), not 780 pairs
            # for a valid group of 40 at every reload.
            pairs = set(clashes)
            for k in [k for k, (_, _, derived) in enumerate(members) if derived] + [*broken]:
                pairs.update((min(k, o), max(k, o)) for o in range(len(group)) if o != k)
            for i, j in sorted(pairs):
                (a, key_a, derived_a), (b, key_b, derived_b) = members[i], members[j]
                sides = ((a, key_a, b, key_b), (b, key_b, a, key_a))
                autos = [
                    side
                    for side, derived in zip(sides, (derived_a, derived_b), strict=True)
                    if derived
                ]
                if len(autos) == 2 and key_a == key_b and a.manifest.name == b.manifest.name:
                    autos = []  # one name derives one number: the duplicate name says it
                if autos:
                    for m, key, other, other_key in autos:
                        out.append(
                            _error(
                                m,
                                key,
                                f"{key} auto derives {uid}, which '{other.manifest.name}' "
                                f"({_where(other, other_key)}) also uses{_as(other_key)} on app "
                                f"{_app(m, other)}, channel '{channel}'; set an explicit {key}",
                            )
                        )
                    continue
                if now is None:
                    continue
                pair = (id(a), id(b)) if id(a) < id(b) else (id(b), id(a))
                if pair in reported:
                    continue
                problem = broken.get(i) or broken.get(j)
                if problem is not None:  # reported on the pair's first, as ever
                    reported.add(pair)
                    out.append(_error(a, "schedule", f"cannot compute the windows: {problem}"))
                    continue
                clash = clashes.get((i, j))
                if clash is None:
                    continue
                reported.add(pair)
                when = clash.strftime("%Y-%m-%dT%H:%M:%SZ")
                for m, key, other, other_key in sides:
                    out.append(
                        _error(
                            m,
                            "schedule",
                            f"records app {_app(m, other)}, channel '{channel}', uid {uid}"
                            f"{_roles(key, other, other_key)} at the same time as "
                            f"'{other.manifest.name}' ({_where(other, 'schedule')}), first at "
                            f"{when}; change a schedule, the channel or the "
                            f"{'uid' if key == other_key == 'uid' else 'uids'}",
                        )
                    )
    finally:
        memo._end()
    return out
