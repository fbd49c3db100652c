"""Benchmark: the daemon's manifest loads (`ManifestCache`) on 10,000 manifests, in one process.

Generates N valid manifests (one per file by default, 500 files per directory),
each on its own channel (so its own target): cron schedules in several time
zones for most (200 distinct expressions, or all distinct with
`--distinct-crons`), `always` for one in ten, explicit windows for one in ten. Then,
in this process, as the daemon does:

- the initial load of all of them, by a fresh cache (`--runs` times; the median);
- resident memory with all of them loaded (VmRSS after the first load) and the
  high-water mark of the whole run;
- a reload when nothing changed (`--reloads` times; the median);
- a reload after one file changed (a different file each time; the median).

Wall-clock medians are checked against the targets; the process CPU time of the
same loads is printed beside them, as on a shared machine it shows what the load
itself costs.

Files are made older than `loader.RACY_NS` before the first load, as in a tree
deployed a while ago: a file written within that window is read again at the
next reload (see `ManifestCache`).

Targets on a 2-core machine (10,000 manifests): full load <= 15 s, reload after
one change <= 100 ms, RSS with all loaded <= 200 MB.

    .venv/bin/python benchmarks/daemon_load_bench.py [--count 10000] [--per-file 1]
        [--distinct-crons] [--runs 3] [--reloads 15]
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from orchestrator.daemon.gcpolicy import GC_POLICY
from orchestrator.manifest import loader
from orchestrator.manifest.loader import LoadResult, ManifestCache

TARGETS = {"full load (s)": 15.0, "one file changed (ms)": 100.0, "RSS loaded (MB)": 200.0}
ZONES = ["UTC", "Europe/Berlin", "Asia/Shanghai", "America/New_York", "Australia/Sydney"]
DAYS = ["MON-FRI", "*", "SAT,SUN", "1-4", "MON"]
CRON_POOL = 200
"""Distinct cron expressions by default: a fleet repeats its schedules (09:00 on weekdays...).
Each distinct expression costs about a millisecond to validate (APScheduler triggers)."""


def schedule(i: int, crons: int) -> str:
    if i % 10 == 3:
        return "schedule: always\n"
    if i % 10 == 7:
        day = 1 + i % 28
        return (
            "schedule:\n  windows:\n"
            f"    - start: 2027-01-{day:02d}T09:00:00+01:00\n"
            f"      end: 2027-01-{day:02d}T10:30:00+01:00\n"
            f"    - start: 2027-02-{day:02d}T09:00:00Z\n"
            f"      end: 2027-02-{day:02d}T11:00:00Z\n"
        )
    k = i % crons  # which of `crons` distinct expressions
    return (
        f'schedule:\n  cron: "{k % 60} {(k // 60) % 24} * * {DAYS[k % len(DAYS)]}"\n'
        f"  timezone: {ZONES[i % len(ZONES)]}\n  duration: {15 + i % 120}m\n"
    )


def manifest(i: int, variant: int = 0, crons: int = 200) -> str:
    head = (
        f"# recording {i}\nname: rec-{i:05d}\napp: {'main' if i % 4 else 'backup'}\n"
        f"channel: room-{i:05d}\nuid: {'auto' if i % 5 == 0 else 100000 + i}\n"
        f"labels: {{team: t{i % 9}, revision: r{variant}}}\n"
    )
    storage = (
        f"storage:\n  vendor: aws-s3\n  region: us-east-1\n  bucket: rec-{i % 13}\n"
        "  accessKey: {env: S3_KEY}\n  secretKey: {credential: s3-secret}\n"
        f"  fileNamePrefix: [rec, team{i % 9}]\n"
    )
    if i % 2:
        body = (
            "mode: mix\nrecording:\n  channelType: live\n  streams: audio+video\n"
            "  maxIdleTime: 120\n"
            "transcoding: {width: 1280, height: 720, fps: 15, bitrate: 1130}\n"
            'layout: {type: adaptive, background: "#000000"}\nrecordingFiles: {fileTypes: [hls]}\n'
        )
    else:
        body = (
            "mode: individual\nrecording:\n  streams: audio+video\n"
            f"  subscribe:\n    audio: [{i % 50 + 1}, {i % 50 + 2}]\n    video: [{i % 50 + 1}]\n"
            "recordingFiles: {}\n"
        )
    return head + schedule(i, crons) + body + storage


def generate(root: Path, count: int, per_file: int, crons: int) -> list[Path]:
    files = []
    for start in range(0, count, per_file):
        directory = root / f"team-{start // 500:03d}"
        directory.mkdir(exist_ok=True)
        path = directory / f"rec-{start:05d}.yaml"
        docs = [manifest(i, crons=crons) for i in range(start, min(start + per_file, count))]
        path.write_text("---\n".join(docs), encoding="utf-8")
        files.append(path)
    return files


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


CPU: list[float] = []  # process CPU time of each timed load, beside its wall time


def timed_load(cache: ManifestCache) -> tuple[float, LoadResult]:
    started, cpu = time.perf_counter(), time.process_time()
    result = cache.load(now=datetime.now(UTC))
    CPU.append(time.process_time() - cpu)
    return time.perf_counter() - started, result


def initial_load(root: Path, count: int) -> tuple[float, float]:
    """The time of a fresh cache's first load, and the RSS with it loaded; the cache goes."""
    cache = ManifestCache([root], hooks=GC_POLICY)  # as the daemon loads
    seconds, result = timed_load(cache)
    check(result, count)
    return seconds, rss_mb()


def check(result: LoadResult, count: int) -> None:
    if not result.ok or len(result.manifests) != count or result.errors:
        raise SystemExit(f"unexpected result: {len(result.manifests)} valid, {result.errors[:3]}")


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores ({model}), Python {platform.python_version()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--per-file", type=int, default=1)
    parser.add_argument("--runs", type=int, default=3, help="initial loads (fresh caches)")
    parser.add_argument("--reloads", type=int, default=15, help="reloads of each kind")
    parser.add_argument(
        "--distinct-crons",
        action="store_true",
        help="a different cron expression in every manifest (the worst case for validation)",
    )
    args = parser.parse_args()
    print(f"machine: {machine()}; load average {os.getloadavg()[0]:.2f}")

    with tempfile.TemporaryDirectory(prefix="daemon-bench-") as tmp:
        root = Path(tmp)
        started = time.perf_counter()
        crons = args.count if args.distinct_crons else CRON_POOL
        files = generate(root, args.count, args.per_file, crons)
        print(
            f"{args.count} manifests in {len(files)} files ({min(crons, args.count)} distinct "
            f"cron expressions) generated in {time.perf_counter() - started:.1f} s"
        )
        time.sleep(loader.RACY_NS / 1e9 + 0.2)
        baseline = rss_mb()

        full: list[float] = []
        rss: list[float] = []  # with all loaded, after each run's load
        for _ in range(args.runs - 1):
            seconds, loaded = initial_load(root, args.count)
            full.append(seconds)
            rss.append(loaded)
            gc.unfreeze()  # let that cache's frozen objects go before the next run
            gc.collect()
        cache = ManifestCache([root], hooks=GC_POLICY)  # the last run's cache serves the reloads
        seconds, result = timed_load(cache)
        check(result, args.count)
        full.append(seconds)
        rss.append(rss_mb())
        del result

        unchanged: list[float] = []
        for _ in range(args.reloads):
            seconds, result = timed_load(cache)
            check(result, args.count)
            if result.changed:
                raise SystemExit(f"nothing changed, yet: {sorted(result.changed)[:3]}")
            unchanged.append(seconds)

        one: list[float] = []
        for n in range(args.reloads):
            path = files[(n * 7919) % len(files)]
            first = (n * 7919) % len(files) * args.per_file
            docs = [
                manifest(i, variant=n + 1, crons=crons)
                for i in range(first, min(first + args.per_file, args.count))
            ]
            path.write_text("---\n".join(docs), encoding="utf-8")
            seconds, result = timed_load(cache)
            check(result, min(args.count, len(files) * args.per_file))
            if result.changed != {str(path)} or cache.last is None or cache.last.parsed != 1:
                raise SystemExit(f"expected only {path} to change: {sorted(result.changed)[:3]}")
            one.append(seconds)

    figures = {
        "full load (s)": statistics.median(full),
        "reload, nothing changed (ms)": statistics.median(unchanged) * 1000,
        "one file changed (ms)": statistics.median(one) * 1000,
        "RSS loaded (MB)": rss[0],
    }
    print(
        f"RSS before loading {baseline:.0f} MB; with all loaded "
        f"{', '.join(f'{r:.0f}' for r in rss)} MB; high-water mark {peak_mb():.0f} MB"
    )
    print(
        f"full loads: {', '.join(f'{s:.2f}' for s in full)} s; "
        f"unchanged min/max {min(unchanged) * 1000:.0f}/{max(unchanged) * 1000:.0f} ms; "
        f"one change min/max {min(one) * 1000:.0f}/{max(one) * 1000:.0f} ms"
    )
    runs, reloads = len(full), len(unchanged)
    cpu_full, cpu_unchanged, cpu_one = CPU[:runs], CPU[runs : runs + reloads], CPU[runs + reloads :]
    print(
        f"CPU time (medians, less sensitive to other jobs): full load "
        f"{statistics.median(cpu_full):.2f} s, nothing changed "
        f"{statistics.median(cpu_unchanged) * 1000:.0f} ms, one file changed "
        f"{statistics.median(cpu_one) * 1000:.0f} ms; load average {os.getloadavg()[0]:.2f}"
    )
    failed = False
    for label, value in figures.items():
        target = TARGETS.get(label)
        verdict = "" if target is None else (" ok" if value <= target else " OVER")
        failed |= target is not None and value > target
        print(f"  {label:<30} {value:9.2f}{f'  (target {target:g})' if target else ''}{verdict}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
