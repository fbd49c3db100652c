"""Benchmark: the overview a daemon's pass builds for the status page, the metrics and
STATUS=, made anew (`overview`) against kept status by status (`OverviewMemo`).

10,000 manifests (daemon_bench's `idle` manifests: daily cron windows in 8 time zones),
loaded and translated as the daemon does. Each scenario is a series of passes; at
each the plan is made (not timed), then the overview is made both ways, alternately
(which goes first alternates too), and both answers are checked equal:

- `idle`: passes 5 s apart, nothing changes (the idle daemon with a 5 s resync);
- `queried`: the same with 300 live sessions whose last query time changes at every
  pass (what a resync writes);
- `boundaries`: passes 5 minutes apart from 8 h on, when the windows begin: 80 to 170
  windows open and as many close between two passes, about 600 recording (each from
  the pass that finds its window open).

Figures: the median over the passes after the first of each series, then the median
of `--runs` series; the ratio is fresh over kept. The first pass of a series (it
makes every status either way, and kept it also asks each schedule until when it
answers alike) is shown apart.

    .venv/bin/python benchmarks/overview_bench.py [--runs 5] [--passes 12]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from daemon_bench import idle_manifest

from orchestrator.cli.context import load_once
from orchestrator.reconcile.overview import OverviewMemo, overview
from orchestrator.reconcile.plan import ActualState, DesiredRecording, plan
from orchestrator.reconcile.reconciler import desired_recordings
from orchestrator.state import Phase, SessionRecord

MANIFESTS = 10_000
APP_IDS = {"a0": "0" * 32}

State = Callable[[int, datetime], ActualState]


def desired(root: Path, now: datetime) -> tuple[DesiredRecording, ...]:
    for i in range(MANIFESTS):
        (root / f"idle-{i:05d}.yaml").write_text(idle_manifest(i, now), encoding="utf-8")
    loaded = load_once([root], now=now, app_ids=APP_IDS)
    wanted = desired_recordings(
        loaded.manifests, APP_IDS, loaded.failed_files, {}, unreadable=loaded.unreadable
    )
    assert len(wanted.recordings) == MANIFESTS, loaded.diagnostics[:3]
    return wanted.recordings


def live(recordings: Sequence[DesiredRecording], count: int, queried: datetime) -> ActualState:
    sessions = [
        SessionRecord(
            id=i + 1,
            manifest=d.name,
            app=d.app,
            app_id=d.app_id,
            channel=d.channel,
            uid=d.uid,
            mode=d.mode.value,
            phase=Phase.RUNNING,
            created_at=queried - timedelta(hours=1),
            updated_at=queried,
            resource_id=f"R{i}",
            sid=f"S{i}",
            started_at=queried - timedelta(hours=1),
            last_query_at=queried,
        )
        for i, d in enumerate(recordings[:count])
    ]
    return ActualState(live=sessions)


def boundaries(recordings: Sequence[DesiredRecording]) -> State:
    """What the passes of a day leave: a session for each manifest whose window is open
    (started at the pass after it opened), none after it closed."""
    started: dict[str, SessionRecord] = {}

    def state(_n: int, now: datetime) -> ActualState:
        for i, d in enumerate(recordings):
            window = d.schedule.active_at(now)
            if window is None:
                started.pop(d.name, None)
            elif d.name not in started:
                started[d.name] = replace(
                    live([d], 1, now).live[0], id=len(started) + i + 1, window_start=window.start
                )
        return ActualState(live=list(started.values()))

    return state


def series(
    recordings: tuple[DesiredRecording, ...],
    start: datetime,
    step: timedelta,
    passes: int,
    state: State,
    run: int,
) -> tuple[list[float], list[float]]:
    memo = OverviewMemo()
    fresh: list[float] = []
    kept: list[float] = []
    for n in range(passes):
        now = start + step * n
        actual = state(n, now)
        the_plan = plan(recordings, actual, now)
        order = ("fresh", "kept") if (n + run) % 2 == 0 else ("kept", "fresh")
        answers = {}
        for way in order:
            began = time.perf_counter()
            if way == "fresh":
                answers[way] = overview(recordings, actual, the_plan, now)
            else:
                answers[way] = overview(recordings, actual, the_plan, now, memo=memo)
            (fresh if way == "fresh" else kept).append(time.perf_counter() - began)
        assert answers["fresh"] == answers["kept"], f"pass {n}: the answers differ"
        assert answers["fresh"].as_dict() == answers["kept"].as_dict()
    return fresh, kept


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--passes", type=int, default=12)
    args = parser.parse_args()
    now = datetime.now(UTC).replace(microsecond=0)
    root = Path(tempfile.mkdtemp(prefix="orch-bench-overview-"))
    try:
        recordings = desired(root, now)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC; {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, load average {os.getloadavg()[0]:.2f}; "
        f"{MANIFESTS:,} manifests, {args.runs} series of {args.passes} passes"
    )
    print(
        "| scenario | made anew (median) | kept (median, min-max of series) | x "
        "| first pass: anew, kept (medians) |"
    )
    print("|---|---:|---:|---:|---:|")
    scenarios: list[tuple[str, datetime, timedelta, Callable[[], State]]] = [
        ("idle", now, timedelta(seconds=5), lambda: lambda _n, _now: ActualState()),
        (
            "queried (300 live sessions)",
            now,
            timedelta(seconds=5),
            lambda: lambda _n, t: live(recordings, 300, t),
        ),
        (
            "boundaries (5 min apart)",
            now + timedelta(hours=8),
            timedelta(minutes=5),
            lambda: boundaries(recordings),
        ),
    ]
    for name, start, step, make_state in scenarios:
        fresh_medians: list[float] = []
        kept_medians: list[float] = []
        firsts: list[tuple[float, float]] = []
        for run in range(args.runs):
            fresh, kept = series(recordings, start, step, args.passes, make_state(), run)
            fresh_medians.append(statistics.median(fresh[1:]))
            kept_medians.append(statistics.median(kept[1:]))
            firsts.append((fresh[0], kept[0]))
        a, b = statistics.median(fresh_medians), statistics.median(kept_medians)
        first_fresh = statistics.median(f for f, _ in firsts)
        first_kept = statistics.median(k for _, k in firsts)
        print(
            f"| {name} | {a * 1000:.1f} ms | {b * 1000:.1f} ms "
            f"({min(kept_medians) * 1000:.1f}-{max(kept_medians) * 1000:.1f}) | {a / b:.1f}x "
            f"| {first_fresh * 1000:.0f} ms, {first_kept * 1000:.0f} ms |",
            flush=True,
        )


if __name__ == "__main__":
    main()
