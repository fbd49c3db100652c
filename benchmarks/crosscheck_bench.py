"""Benchmark: `validate` on 1,000 manifests that share recording targets (the clash check).

A school: weekly 45-minute classes on a timetable of 40 periods (Monday to Friday,
08:00 to 15:45, Europe/Berlin, so the year's search crosses both DST changes). No
two classes of one classroom overlap, so every manifest is valid and the clash
check has to search each pair over the whole 366-day horizon. Layouts of the same
1,000 manifests:

- `distinct`: every class on a channel of its own: no target is shared, no clash
  search runs (the baseline);
- `grouped-40`: 25 classrooms (channels) of 40 classes, one recorder uid per
  classroom: 25 groups of 40 on one (app, channel, uid);
- `grouped-10`: 100 classrooms of 10 classes.

Classrooms share the timetable, so equal periods are equal schedules (a schedule
is expanded once, however many manifests have it). `--unique-times` moves each
run of 40 classes to a minute of its own (`:00` to `:24`): no two manifests share
a schedule, so each of the 1,000 is expanded, which shows the cost of expanding a
schedule (the schedule module's cron walk) rather than that of the search.

Times `python -m orchestrator validate DIR --at 2026-03-02T00:00:00+00:00` as a whole
process (interpreter start and imports included), wall clock, median of `--runs`
runs after one warm-up; `--in-process` times `load_manifests` instead.

Target (2 cores): each grouped layout within 1.5 x distinct.

    .venv/bin/python benchmarks/crosscheck_bench.py [--runs 5] [--unique-times] [--in-process]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
AT = "2026-03-02T00:00:00+00:00"
DAYS = ["MON", "TUE", "WED", "THU", "FRI"]
PERIODS = 40  # 5 days x 8 periods
TARGET = 1.5


def manifest(i: int, *, group: int | None, unique_times: bool) -> str:
    """Class i: period i % 40; classroom i // group (or a channel of its own)."""
    period = i % PERIODS
    day, hour = DAYS[period // 8], 8 + period % 8
    # one minute per run of 40 (0 to 24 for 1,000): the classes of a room share it, so an
    # hour apart they never overlap, and no two manifests have the same schedule
    minute = i // PERIODS % 60 if unique_times else 0
    channel = f"room-{i // group}" if group else f"class-{i}"
    uid = 1000 + i // group if group else 1000 + i
    return (
        f"name: class-{i}\n"
        "app: main\n"
        f"channel: {channel}\n"
        f"uid: {uid}\n"
        "mode: mix\n"
        "schedule:\n"
        f'  cron: "{minute} {hour} * * {day}"\n'
        "  timezone: Europe/Berlin\n"
        "  duration: 45m\n"
        "storage: {vendor: aws-s3, region: eu-central-1, bucket: lessons,\n"
        "          accessKey: {env: S3_KEY}, secretKey: {credential: s3-secret}}\n"
    )


def generate(directory: Path, count: int, group: int | None, *, unique_times: bool) -> None:
    directory.mkdir(parents=True)
    for i in range(count):
        text = manifest(i, group=group, unique_times=unique_times)
        (directory / f"class-{i:04d}.yaml").write_text(text, encoding="utf-8")


def run_validate(directory: Path) -> float:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "orchestrator", "validate", "--at", AT, str(directory)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - started
    summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr
    if done.returncode != 0 or not summary.startswith("valid:"):
        raise SystemExit(f"validate failed on {directory} (exit {done.returncode}): {summary}")
    return seconds


def run_in_process(directory: Path) -> float:
    sys.path.insert(0, str(ROOT))
    from orchestrator.manifest.loader import load_manifests

    started = time.perf_counter()
    result = load_manifests([directory], now=datetime.fromisoformat(AT))
    seconds = time.perf_counter() - started
    if not result.ok or len(result.manifests) != len(result.files):
        raise SystemExit(f"not valid: {directory}: {result.errors[:3]}")
    return seconds


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--manifests", type=int, default=1000)
    parser.add_argument("--unique-times", action="store_true")
    parser.add_argument("--in-process", action="store_true")
    args = parser.parse_args()
    measure = run_in_process if args.in_process else run_validate
    layouts = {"distinct": None, "grouped-40": 40, "grouped-10": 10}

    print(f"# {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, {cpu_model()}")
    print(f"# Python {platform.python_version()}, {args.manifests} manifests, ", end="")
    print("unique times" if args.unique_times else "a shared timetable", end="")
    print(", in process" if args.in_process else ", validate as a process", end="")
    print(f", median of {args.runs}")
    with tempfile.TemporaryDirectory() as tmp:
        dirs = {}
        for name, group in layouts.items():
            dirs[name] = Path(tmp) / name
            generate(dirs[name], args.manifests, group, unique_times=args.unique_times)
        times: dict[str, list[float]] = {name: [] for name in layouts}
        for name in layouts:  # a warm-up run each (disk cache, .pyc)
            measure(dirs[name])
        for _ in range(args.runs):  # interleaved, so that drift hits every layout alike
            for name in layouts:
                times[name].append(measure(dirs[name]))
    base = statistics.median(times["distinct"])
    print(f"{'layout':<12} {'median s':>9} {'min s':>7} {'max s':>7} {'x distinct':>11}")
    for name, values in times.items():
        median = statistics.median(values)
        ratio = median / base
        mark = "" if name == "distinct" else ("  ok" if ratio <= TARGET else "  OVER TARGET")
        print(f"{name:<12} {median:9.2f} {min(values):7.2f} {max(values):7.2f} {ratio:11.2f}{mark}")


if __name__ == "__main__":
    main()
