"""Benchmark: the status page's 24-hour timeline, each lane's windows listed whole (the
code before: every window of the horizon) against its first `MAX_WINDOWS` (now).

300 manifests, as a probe had them: 200 every-minute crons of 20 s (1,440 windows a
day each) and 100 daily crons. Each run makes the timeline both ways, in alternating
order: the lanes (`reconcile.timeline.lanes`), their part of the document
(`statuspage._timeline`) and its JSON as `/api/v1/status` writes it; what the daemon
does on its event loop every `TIMELINE_EVERY` while a page is open. Figures: the
median (and min-max) of `--runs` runs, the ratio whole over limited, and the JSON's
size.

    .venv/bin/python benchmarks/statuspage_bench.py [--runs 7]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from orchestrator.daemon.statuspage import HORIZON, MAX_WINDOWS, _timeline
from orchestrator.reconcile.plan import DesiredRecording
from orchestrator.reconcile.timeline import lanes
from orchestrator.schedule import cron_schedule
from tests.unit.reconcile.desired_recordings import desired_recording


def recordings() -> list[DesiredRecording]:
    minute = cron_schedule("* * * * *", "UTC", timedelta(seconds=20))
    daily = cron_schedule("0 9 * * *", "Europe/Berlin", timedelta(hours=1))
    return [desired_recording(name=f"minute-{i:03d}", schedule=minute) for i in range(200)] + [
        desired_recording(name=f"daily-{i:03d}", schedule=daily) for i in range(100)
    ]


def once(desired: list[DesiredRecording], now: datetime, limit: int | None) -> tuple[float, int]:
    """Seconds to make the timeline's lanes and JSON, and the JSON's size in bytes."""
    started = time.perf_counter()
    made = lanes(desired, now, HORIZON, None, limit=limit)
    text = json.dumps({"lanes": _timeline(made, now)}, indent=1)
    return time.perf_counter() - started, len(text.encode())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    desired = recordings()
    now = datetime.now(UTC)
    times: dict[str, list[float]] = {"whole": [], "limited": []}
    sizes: dict[str, int] = {}
    for run in range(args.runs):
        order = [("whole", None), ("limited", MAX_WINDOWS)]
        for name, limit in order if run % 2 == 0 else reversed(order):
            seconds, size = once(desired, now, limit)
            times[name].append(seconds)
            sizes[name] = size
    load = os.getloadavg()[0]
    print(f"{platform.python_version()}, {os.cpu_count()} cores, load {load:.2f}, {args.runs} runs")
    for name in ("whole", "limited"):
        t = times[name]
        print(
            f"{name:8} median {statistics.median(t) * 1000:7.0f} ms "
            f"(min {min(t) * 1000:.0f}, max {max(t) * 1000:.0f}), JSON {sizes[name] / 1e6:.2f} MB"
        )
    ratio = statistics.median(times["whole"]) / statistics.median(times["limited"])
    print(f"whole / limited: {ratio:.1f}x")


if __name__ == "__main__":
    main()
