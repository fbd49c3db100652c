"""The one checker every reliability scenario ends with.

It reads what the emulator recorded (every session it ever held, with exact start
and end times on its clock, which is real time here; every request it answered)
and what the daemon's store holds once the daemon has stopped, and checks:

1. **No duplicate**: at no instant two sessions live for one (app, channel, uid).
   The emulator itself answers 53 to a second start, so this can only fail through
   a bug in the emulator; the 53s and 7s the daemon met are counted beside it, and
   the store must hold at most one live session per manifest.
2. **No late stop**: no session stays live more than `late_stop` seconds after its
   window closed (one started after the end, as when an interrupted start is
   replayed to learn whether it took effect, counts from that end and is reported),
   and none starts before its window opens; sessions the daemon recorded as
   unmanageable (store phase, or a `session.unmanageable` log event) are exempt: it
   cannot stop them.
3. **Coverage**: every desired window is covered by live sessions for at least
   `min_coverage` of its length, counted from the daemon's first READY (the
   initial start latency is allowed) to the window's end or the last observation;
   or it misses at most `slack` seconds (a window that opens while no daemon serves
   leaves little time counted, and one start latency would be a large share of it).

   Two kinds of time are not held against the daemon, and both are reported:
   `downtime` (from a SIGKILL until the next incarnation is READY: no process
   exists that could act; it also does not count towards a late stop) and a
   scenario's `excused` intervals per manifest (what it inflicts on purpose, an
   injected exit say, up to the bound it gives the daemon to repair it, or the
   API refusing a start: see `refused`). The check is on the *net* figure; the
   *raw* one (everything counted) is beside it.
4. **Nothing forgotten**: every session live at the emulator at the end is in the
   store as live (by sid), as unmanageable (by resource ID), or is reported
   untracked; and every session the emulator ever held is accounted for in the
   store, by its sid or as unmanageable.
5. **No secret** in any output text or in the state files' bytes (db, WAL, shm).

`check()` returns a `Report`: the figures for docs/reliability.md and a list of
violations; `Report.assert_ok()` fails the test with all of them.
"""

from __future__ import annotations

import itertools
import math
import re
import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.state import Phase, SessionRecord

FOREVER = math.inf
EARLY_SLACK = 0.05  # seconds: the emulator and this process read one clock


@dataclass(frozen=True)
class Desired:
    """One manifest as the scenario wrote it: its target and windows (epoch seconds)."""

    name: str
    app_id: str
    channel: str
    uid: int
    windows: tuple[tuple[float, float], ...]  # [start, end); end FOREVER for `always`
    # Coverage is counted from here at the earliest (a manifest added by an edit
    # while the daemon runs: the write plus the reload latency the README promises).
    counted_from: float = 0.0

    @property
    def target(self) -> tuple[str, str, str]:
        return (self.app_id, self.channel, str(self.uid))


@dataclass(frozen=True)
class EmuSession:
    sid: str
    resource_id: str
    target: tuple[str, str, str]
    started_at: float
    ended_at: float | None
    end_reason: str | None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> EmuSession:
        return cls(
            sid=str(data["sid"]),
            resource_id=str(data["resource_id"]),
            target=(str(data["app_id"]), str(data["cname"]), str(data["uid"])),
            started_at=float(data["started_at"]),
            ended_at=None if data["ended_at"] is None else float(data["ended_at"]),
            end_reason=data.get("end_reason"),
        )

    def end(self, until: float) -> float:
        return until if self.ended_at is None else min(self.ended_at, until)

    def live_at(self, moment: float) -> bool:
        return self.started_at <= moment and (self.ended_at is None or self.ended_at > moment)


@dataclass
class Evidence:
    desired: Sequence[Desired]
    sessions: Sequence[EmuSession]
    requests: Sequence[Mapping[str, Any]]
    store: Sequence[SessionRecord]  # every row, read after the daemon stopped
    untracked: Sequence[str]  # manifests the store reports untracked
    logged_unmanageable: Iterable[int]  # store session ids from `session.unmanageable`
    first_ready: float
    observed_until: float  # when the emulator's sessions were read for the last time
    texts: Sequence[tuple[str, str]]
    state_files: Sequence[Path]
    secrets: Sequence[str]
    excused: Mapping[str, Sequence[tuple[float, float]]] = field(default_factory=dict)
    # When no daemon was serving (a kill until the next READY): excused for everyone.
    downtime: Sequence[tuple[float, float]] = ()


@dataclass
class WindowCoverage:
    manifest: str
    start: float
    end: float
    measured: float  # seconds counted
    raw: float  # fraction covered of the whole measured span
    net: float  # fraction covered outside the excused intervals


@dataclass
class Unmanageable:
    manifest: str
    resource_id: str
    started_at: float
    ended_at: float | None
    blocked: float | None  # its end -> the next session on its target (None: none needed)


@dataclass(frozen=True)
class Violation:
    """One broken invariant. `kind`: duplicate, rate_limit, stray, late, coverage,
    forgotten, unaccounted, unlogged, store, recovery, secret. `boundary`: for `late`
    and `coverage`, the window boundary the daemon was late for (its end, its start),
    when that lateness alone explains the violation; else None."""

    kind: str
    text: str
    manifest: str = ""
    boundary: float | None = None

    def __str__(self) -> str:
        return self.text


@dataclass
class Report:
    windows: list[WindowCoverage] = field(default_factory=list)
    violations: list[Violation] = field(default_factory=list)
    duplicates: int = 0
    late: list[str] = field(default_factory=list)
    early_or_stray: list[str] = field(default_factory=list)
    after_end: list[str] = field(default_factory=list)  # started after their window ended
    forgotten: list[str] = field(default_factory=list)
    leaks: list[str] = field(default_factory=list)
    store_duplicates: list[str] = field(default_factory=list)
    unmanageable: list[Unmanageable] = field(default_factory=list)
    answers: dict[str, int] = field(default_factory=dict)
    sessions: int = 0
    stop_lateness: list[tuple[float, float]] = field(default_factory=list)  # (raw, net) s
    start_latency: list[float] = field(default_factory=list)  # window open -> first session
    unaccounted: list[str] = field(default_factory=list)

    def coverage(self, attr: str = "net") -> tuple[float, float]:
        values = [getattr(w, attr) for w in self.windows]
        if not values:
            return (1.0, 1.0)
        return (min(values), statistics.median(values))

    def figures(self) -> dict[str, Any]:
        raw_min, raw_median = self.coverage("raw")
        net_min, net_median = self.coverage("net")
        return {
            "windows": len(self.windows),
            "sessions": self.sessions,
            "coverage_raw_min": round(raw_min, 4),
            "coverage_raw_median": round(raw_median, 4),
            "coverage_min": round(net_min, 4),
            "coverage_median": round(net_median, 4),
            "duplicates": self.duplicates,
            "late_stops": len(self.late),
            "early_or_stray_starts": len(self.early_or_stray),
            "starts_after_window_end": len(self.after_end),
            "forgotten": len(self.forgotten),
            "secret_leaks": len(self.leaks),
            "store_duplicates": len(self.store_duplicates),
            "unaccounted": len(self.unaccounted),
            "start_latency_s": quantiles(self.start_latency),
            "stop_lateness_max_raw_s": round(max((r for r, _ in self.stop_lateness), default=0), 2),
            "stop_lateness_max_net_s": round(max((n for _, n in self.stop_lateness), default=0), 2),
            "unmanageable": [
                {
                    "manifest": u.manifest,
                    "lived_s": None if u.ended_at is None else round(u.ended_at - u.started_at, 2),
                    "blocked_s": None if u.blocked is None else round(u.blocked, 2),
                }
                for u in self.unmanageable
            ],
            "answers_429": self.answers.get("429", 0),
            "answers_code53": self.answers.get("code53", 0),
            "answers_code7": self.answers.get("code7", 0),
            **{f"answers_{k}": v for k, v in sorted(self.answers.items())},
        }

    def assert_ok(self) -> None:
        if self.violations:
            shown = "\n  ".join(str(v) for v in self.violations[:60])
            more = len(self.violations) - 60
            raise AssertionError(
                f"{len(self.violations)} invariant violation(s):\n  {shown}"
                + (f"\n  ... and {more} more" if more > 0 else "")
            )


def _add(
    report: Report, kind: str, text: str, manifest: str = "", boundary: float | None = None
) -> None:
    report.violations.append(Violation(kind, text, manifest, boundary))


def union(intervals: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
    merged: list[tuple[float, float]] = []
    for a, b in sorted(i for i in intervals if i[1] > i[0]):
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    return merged


def _overlap(intervals: Sequence[tuple[float, float]], lo: float, hi: float) -> float:
    return sum(max(0.0, min(b, hi) - max(a, lo)) for a, b in intervals)


def _intersect_len(
    xs: Sequence[tuple[float, float]], ys: Sequence[tuple[float, float]], lo: float, hi: float
) -> float:
    total = 0.0
    for a, b in xs:
        a, b = max(a, lo), min(b, hi)
        if b > a:
            total += _overlap(ys, a, b)
    return total


def check(
    evidence: Evidence,
    *,
    min_coverage: float = 0.95,
    late_stop: float = 5.0,
    min_span: float = 2.0,
    slack: float = 1.0,
    unmanageable_bound: float | None = None,
    excuse_recovery: float = 0.0,
) -> Report:
    """Every invariant over the evidence; `unmanageable_bound`: when set, an
    unmanageable session must be followed by a new session on its target within
    this many seconds of its end while the recording is wanted; `excuse_recovery`:
    that much of the time after an unmanageable session's end is excused from
    coverage (the recovery bound covers it)."""
    ev = evidence
    report = Report(sessions=len(ev.sessions))
    until = ev.observed_until
    by_target: dict[tuple[str, str, str], list[EmuSession]] = defaultdict(list)
    for s in ev.sessions:
        by_target[s.target].append(s)
    for group in by_target.values():
        group.sort(key=lambda s: s.started_at)
    desired_by_target = {d.target: d for d in ev.desired}
    downtime = union(ev.downtime)

    # what the daemon recorded as unmanageable, by resource ID
    logged = set(ev.logged_unmanageable)
    unmanageable_rids = {
        s.resource_id
        for s in ev.store
        if s.resource_id and (s.phase is Phase.UNMANAGEABLE or s.id in logged)
    }
    unlogged = [
        s.id
        for s in ev.store
        if (s.phase is Phase.UNMANAGEABLE or "superseded" in (s.end_reason or ""))
        and s.id not in logged
    ]
    if unlogged:
        _add(
            report,
            "unlogged",
            f"store sessions {unlogged} are or were unmanageable, without a "
            "session.unmanageable log event",
        )

    # 1. duplicates
    for target, group in by_target.items():
        for before, after in itertools.pairwise(group):
            if before.end(until) > after.started_at:
                report.duplicates += 1
                _add(
                    report,
                    "duplicate",
                    f"duplicate: {target} sessions {before.sid[:8]} and {after.sid[:8]} "
                    f"overlap by {before.end(until) - after.started_at:.2f}s",
                )
    live_rows: dict[str, list[SessionRecord]] = defaultdict(list)
    for row in ev.store:
        if row.is_live:
            live_rows[row.manifest].append(row)
    for name, rows in live_rows.items():
        managed = [r for r in rows if r.phase is not Phase.UNMANAGEABLE]
        if len(managed) > 1:
            report.store_duplicates.append(name)
            _add(
                report,
                "store",
                f"store: {len(managed)} live sessions for {name}: {[r.id for r in managed]}",
            )
    counts: dict[str, int] = defaultdict(int)
    for r in ev.requests:
        status, code = r.get("status"), r.get("code")
        if status == 429:
            counts["429"] += 1
        if code in (7, 53, 65, 49, 433, 435):
            counts[f"code{code}"] += 1
        if status == 504:
            counts["504"] += 1
        if isinstance(status, int) and status >= 500 and status != 504:
            counts["5xx"] += 1
        counts[f"{r.get('endpoint')}"] += 1
    report.answers = dict(counts)
    if counts.get("429"):
        _add(report, "rate_limit", f"{counts['429']} request(s) answered 429 (rate limit)")

    # 2. no start before its window opens; every session gone within `late_stop` of
    # its window's end (a session started after the end, as when an interrupted start
    # is replayed to learn whether it took effect, counts from that end)
    for target, group in by_target.items():
        d = desired_by_target.get(target)
        if d is None:
            _add(report, "stray", f"a session on {target}, which no manifest names")
            continue
        for s in group:
            exempt = s.resource_id in unmanageable_rids
            window = next((w for w in d.windows if w[0] - EARLY_SLACK <= s.started_at < w[1]), None)
            if window is None:
                before = [w for w in d.windows if w[1] <= s.started_at]
                if not before:
                    report.early_or_stray.append(f"{d.name} {s.sid[:8]}")
                    _add(
                        report,
                        "stray",
                        f"{d.name}: session {s.sid[:8]} started at {s.started_at:.2f}, "
                        f"before its windows {_windows(d.windows)}",
                    )
                    continue
                window = max(before, key=lambda w: w[1])
                report.after_end.append(f"{d.name} {s.sid[:8]}")
            if window[1] == FOREVER or exempt:
                continue
            end = s.ended_at if s.ended_at is not None else until
            if end <= window[1]:
                continue  # ended inside its window (an exit, a restart)
            raw = end - window[1]
            net = raw - _overlap(downtime, window[1], end)
            report.stop_lateness.append((raw, net))
            if net > late_stop:
                report.late.append(f"{d.name} {s.sid[:8]}")
                state = "still live" if s.ended_at is None else f"ended {raw:.2f}s"
                _add(
                    report,
                    "late",
                    f"{d.name}: session {s.sid[:8]} {state} after its window closed, "
                    f"{net:.2f}s of it while a daemon was serving (limit {late_stop:g}s)",
                    d.name,
                    window[1],
                )

    # 3. coverage (after an unmanageable session ends, the daemon can only learn it by
    # trying again: `excuse_recovery` seconds of that are the recovery bound's business)
    recovering: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for target, group in by_target.items():
        d = desired_by_target.get(target)
        for s in group:
            if d is not None and s.resource_id in unmanageable_rids and s.ended_at is not None:
                recovering[d.name].append((s.ended_at, s.ended_at + excuse_recovery))
    for d in ev.desired:
        covered = union((s.started_at, s.end(until)) for s in by_target.get(d.target, []))
        excused = union([*ev.excused.get(d.name, ()), *recovering[d.name], *downtime])
        for ws, we in d.windows:
            lo, hi = max(ws, ev.first_ready, d.counted_from), min(we, until)
            if hi - lo < min_span:
                continue
            span = hi - lo
            got = _overlap(covered, lo, hi)
            excused_len = _overlap(excused, lo, hi)
            got_excused = _intersect_len(covered, excused, lo, hi)
            net_span = span - excused_len
            net = (got - got_excused) / net_span if net_span > 0 else 1.0
            if ws >= ev.first_ready:
                first = next((a for a, b in covered if b > ws and a < we), None)
                if first is not None:
                    report.start_latency.append(max(0.0, first - ws))
            cov = WindowCoverage(d.name, ws, we, span, got / span, net)
            report.windows.append(cov)
            missed = net_span - (got - got_excused)  # seconds uncovered while served
            if net < min_coverage and missed > slack:
                # Lateness for the window's start alone explains it when the coverage
                # without the initial gap would be enough.
                gaps = _gap_list(covered, lo, hi)
                boundary = None
                if gaps and gaps[0][0] <= lo and net_span > 0:
                    first = gaps[0][1] - gaps[0][0] - _overlap(excused, *gaps[0])
                    if net + first / net_span >= min_coverage:
                        boundary = ws
                _add(
                    report,
                    "coverage",
                    f"{d.name}: window {_windows([(ws, we)])} covered {net:.1%} "
                    f"(raw {got / span:.1%}) of {span:.1f}s; gaps {_gaps(covered, lo, hi)}",
                    d.name,
                    boundary,
                )

    # 4. nothing forgotten
    store_live_sids = {r.sid for r in ev.store if r.is_live and r.sid}
    store_live_rids = {
        r.resource_id for r in ev.store if r.phase is Phase.UNMANAGEABLE and r.resource_id
    }
    name_of = {d.target: d.name for d in ev.desired}
    for s in ev.sessions:
        if s.ended_at is not None:
            continue
        name = name_of.get(s.target, "?")
        if s.sid in store_live_sids or s.resource_id in store_live_rids or name in ev.untracked:
            continue
        report.forgotten.append(f"{name} {s.sid[:8]}")
        _add(
            report,
            "forgotten",
            f"forgotten: {name}'s session {s.sid[:8]} is live at the emulator but the store "
            "has it neither live nor unmanageable, nor reports it untracked",
        )

    # every session the emulator ever held is the daemon's: known by sid, or recorded
    # as unmanageable (then by resource ID)
    store_sids = {r.sid for r in ev.store if r.sid}
    for s in ev.sessions:
        if s.sid not in store_sids and s.resource_id not in unmanageable_rids:
            name = name_of.get(s.target, "?")
            report.unaccounted.append(f"{name} {s.sid[:8]}")
            _add(
                report,
                "unaccounted",
                f"unaccounted: {name}'s session {s.sid[:8]} (resource {s.resource_id[:10]}) "
                "was started at the emulator, but the store knows neither its sid nor an "
                "unmanageable session on its resource ID",
            )

    # unmanageable sessions: how long each blocked its recording
    for target, group in by_target.items():
        d = desired_by_target.get(target)
        for i, s in enumerate(group):
            if s.resource_id not in unmanageable_rids or d is None:
                continue
            blocked: float | None = None
            if s.ended_at is not None:
                wanted_until = next((w[1] for w in d.windows if w[0] <= s.ended_at < w[1]), None)
                if wanted_until is not None:
                    following = group[i + 1] if i + 1 < len(group) else None
                    if following is not None:
                        blocked = following.started_at - s.ended_at
                    else:
                        blocked = min(wanted_until, until) - s.ended_at
                    if (
                        unmanageable_bound is not None
                        and blocked > unmanageable_bound
                        and (following is not None or min(wanted_until, until) > s.ended_at)
                    ):
                        _add(
                            report,
                            "recovery",
                            f"{d.name}: unmanageable session {s.resource_id[:10]} ended at "
                            f"{s.ended_at:.2f}; recording again only after {blocked:.2f}s "
                            f"(bound {unmanageable_bound:g}s)",
                        )
            report.unmanageable.append(
                Unmanageable(d.name, s.resource_id, s.started_at, s.ended_at, blocked)
            )

    # 5. secrets
    for name, text in ev.texts:
        for secret in ev.secrets:
            if secret and secret in text:
                report.leaks.append(name)
                _add(report, "secret", f"secret value found in {name}")
    for path in ev.state_files:
        data = path.read_bytes() if path.exists() else b""
        for secret in ev.secrets:
            if secret and secret.encode() in data:
                report.leaks.append(path.name)
                _add(report, "secret", f"secret value found in the bytes of {path.name}")
    return report


def _windows(windows: Iterable[tuple[float, float]]) -> str:
    return ", ".join(f"[{a:.2f}, {'forever' if b == FOREVER else f'{b:.2f}'})" for a, b in windows)


def _gaps(covered: Sequence[tuple[float, float]], lo: float, hi: float) -> str:
    gaps = _gap_list(covered, lo, hi)
    return ", ".join(f"{a:.2f}+{b - a:.2f}s" for a, b in gaps) or "none"


def _gap_list(
    covered: Sequence[tuple[float, float]], lo: float, hi: float
) -> list[tuple[float, float]]:
    gaps = []
    cursor = lo
    for a, b in covered:
        if b <= lo or a >= hi:
            continue
        if a > cursor:
            gaps.append((cursor, a))
        cursor = max(cursor, b)
    if cursor < hi:
        gaps.append((cursor, hi))
    return gaps


_APP_IN_PATH = re.compile(r"/apps/([^/]+)/")


def refused(
    requests: Iterable[Mapping[str, Any]],
    *,
    latency: float,
    base_delay: float,
    max_delay: float,
) -> dict[tuple[str, str, str], list[tuple[float, float]]]:
    """Per target, the time the API itself kept a recording from starting: from the
    arrival of an `acquire` or `start` it refused (any 5xx, code 65, or a lost 504)
    to the arrival of the next such request for the target, but never more than the
    answer's latency bound plus the client's backoff ceiling after that many
    consecutive refusals (`base_delay * 2**(n-1)` capped at `max_delay`): what the
    daemon itself adds (waiting, planning, a slow retry) stays counted."""
    by_target: dict[tuple[str, str, str], list[Mapping[str, Any]]] = defaultdict(list)
    for r in requests:
        body = r.get("body")
        found = _APP_IN_PATH.search(str(r.get("path", "")))
        if r.get("endpoint") not in ("acquire", "start") or not isinstance(body, dict) or not found:
            continue
        by_target[(found.group(1), str(body.get("cname")), str(body.get("uid")))].append(r)
    out: dict[tuple[str, str, str], list[tuple[float, float]]] = {}
    for target, seen in by_target.items():
        seen.sort(key=lambda r: float(r["time"]))
        streak = 0
        for r, after in itertools.pairwise(seen):
            status = int(r.get("status") or 0)
            if status < 500 and r.get("code") != 65:
                streak = 0
                continue
            streak += 1
            at = float(r["time"])
            cap = latency + min(max_delay, base_delay * 2 ** (streak - 1)) + EARLY_SLACK
            out.setdefault(target, []).append((at, min(float(after["time"]), at + cap)))
    return out


def assert_invariants(report: Report, figures: dict[str, Any] | None = None) -> None:
    """Fail on any violation; `figures` gets the violations (at most 10)."""
    if figures is not None:
        figures["violations"] = [str(v) for v in report.violations[:10]]
    report.assert_ok()


def quantiles(values: Sequence[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)

    def at(q: float) -> float:
        return ordered[max(0, math.ceil(q * len(ordered)) - 1)]

    return {
        "n": len(ordered),
        "min": round(ordered[0], 3),
        "median": round(statistics.median(ordered), 3),
        "p95": round(at(0.95), 3),
        "max": round(ordered[-1], 3),
    }
