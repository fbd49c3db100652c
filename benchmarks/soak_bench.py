"""Soak benchmark: the daemon's memory over an hour of steady work (issue 17, defect 8).

The daemon and the emulator as two processes (the suite's harness, tests/harness):
200 always-on recordings and 50 that cycle (10 s recording, 10 s idle, each of the
50 shifted by 0.4 s, so a start or a stop every 0.2 s), `resyncInterval: 60s`.
Every minute the daemon's VmRSS is sampled from /proc. The figure is the growth
after the first 10 minutes (the daemon's caches warm up in those), as the slope of
a least-squares line through the samples, in MB per hour. Target: at most 2 MB/h.

The rate limit is raised to 50 per second on the App ID (the emulator's too): 50
windows cycling every 20 s plus the resync's 250 queries a minute need about 12
calls a second, and a backlog behind Agora's 10 would grow without bound and be
measured instead of the daemon.

Run: `.venv/bin/python benchmarks/soak_bench.py [--minutes 60] [--resync 60s]
[--source DIR] [--json FILE]`; the report goes to stdout (benchmarks/results-soak.md
holds the recorded one). `--source DIR` runs the children (daemon and emulator) from
another checkout of the package (PYTHONPATH), for a baseline in the same session.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from daemon_bench import (  # the daemon benchmark's rig and helpers
    PLACEHOLDER_ENV,
    Failed,
    Rig,
    budget,
    machine,
    manifest,
    proc_status,
    windows,
)

ALWAYS, CYCLING = 200, 50
PERIOD, ON, SHIFT = 20.0, 10.0, 0.4
RATE = 50
WARMUP_MINUTES = 10


def slope_mb_per_hour(samples: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, MB) samples, in MB per hour."""
    xs, ys = [t for t, _ in samples], [m for _, m in samples]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    var = sum((x - mx) ** 2 for x in xs)
    if var == 0:
        return 0.0
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var * 3600


def soak(minutes: float, resync: str) -> dict[str, Any]:
    with Rig(1, resync=resync) as rig:
        rig.start_emulator()
        rig.control("PUT", "/settings", {"rate_limit": RATE})
        app = next(iter(rig.apps))
        app_id = rig.apps[app]
        t0 = time.time() + 30.0
        cycles = int(minutes * 60 / PERIOD) + 6
        for i in range(ALWAYS):
            rig.write_manifest(
                f"always-{i:03d}.yaml",
                manifest(f"always-{i:03d}", app, f"a-{i:03d}", 10_000 + i, "always"),
            )
        for i in range(CYCLING):
            pairs = [
                (t0 + i * SHIFT + k * PERIOD, t0 + i * SHIFT + k * PERIOD + ON)
                for k in range(cycles)
            ]
            rig.write_manifest(
                f"cycle-{i:03d}.yaml",
                manifest(f"cycle-{i:03d}", app, f"c-{i:03d}", 20_000 + i, windows(pairs)),
            )
        for cname in [f"a-{i:03d}" for i in range(ALWAYS)] + [f"c-{i:03d}" for i in range(CYCLING)]:
            rig.control("POST", "/channel/join", {"app_id": app_id, "cname": cname, "uid": "9"})
        # The daemon's config: the rig's, with the App ID's rate raised like the emulator's.
        rig.write_config = _with_rate(rig.write_config)  # type: ignore[method-assign]
        rig.start_daemon(ready_within=120)
        assert rig.daemon is not None
        pid = rig.daemon.pid
        started = time.monotonic()
        samples: list[tuple[float, float]] = []
        end = started + minutes * 60
        while time.monotonic() < end:
            if not rig.daemon.alive:
                raise Failed("the daemon exited during the soak")
            samples.append((time.monotonic() - started, proc_status(pid)["VmRSS"] / 1024))
            time.sleep(min(60.0, max(0.0, end - time.monotonic())) or 0.1)
        samples.append((time.monotonic() - started, proc_status(pid)["VmRSS"] / 1024))
        passes = len(rig.log.named("reconcile.pass"))
        resyncs = len([e for e in rig.log.named("reconcile.pass") if e.get("trigger") == "resync"])
        starts = len(rig.requests("start"))
        code, _ = rig.stop_daemon()
    late = [(t, m) for t, m in samples if t >= WARMUP_MINUTES * 60]
    return {
        "minutes": minutes,
        "resync": resync,
        "samples_mb": [[round(t), round(m, 2)] for t, m in samples],
        "rss_first_mb": round(samples[0][1], 1),
        "rss_at_warmup_mb": round(late[0][1], 1) if late else None,
        "rss_last_mb": round(samples[-1][1], 1),
        "growth_after_warmup_mb_per_h": round(slope_mb_per_hour(late), 2)
        if len(late) > 1
        else None,
        "passes": passes,
        "resync_passes": resyncs,
        "starts": starts,
        "exit": code,
    }


def _with_rate(write: Any) -> Any:
    def written() -> Path:
        path: Path = write()
        data = json.loads(path.read_text(encoding="utf-8"))
        for profile in data["apps"].values():
            profile["rateLimit"] = RATE
        path.write_text(json.dumps(data), encoding="utf-8")
        return path

    return written


def render(result: dict[str, Any], info: dict[str, Any]) -> str:
    growth = result["growth_after_warmup_mb_per_h"]
    verdict = "PASS" if growth is not None and growth <= 2.0 else "FAIL"
    lines = [
        f"- date: {datetime.now(UTC).isoformat(timespec='seconds')}; machine: {info}",
        f"- {ALWAYS} always-on + {CYCLING} cycling ({ON:g} s on / {PERIOD - ON:g} s off), "
        f"resyncInterval {result['resync']}, {result['minutes']:g} min; {result['passes']} passes "
        f"({result['resync_passes']} resync), {result['starts']} starts",
        f"- VmRSS: {result['rss_first_mb']} MB at ready, {result['rss_at_warmup_mb']} MB at "
        f"{WARMUP_MINUTES} min, {result['rss_last_mb']} MB at the end",
        f"- growth after {WARMUP_MINUTES} min: {growth} MB/h (target <= 2): {verdict}",
        f"- samples (s, MB): {result['samples_mb']}",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--resync", default="60s")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--source", type=Path, help="run the children from this checkout")
    args = parser.parse_args()
    if args.source is not None:
        PLACEHOLDER_ENV["PYTHONPATH"] = str(args.source.resolve())
    with budget(args.minutes * 60 + 600, "soak"):
        result = soak(args.minutes, args.resync)
    info = machine()
    if args.json:
        args.json.write_text(json.dumps({"machine": info, **result}, indent=2), encoding="utf-8")
    print(render(result, info))
    print(f"python {platform.python_version()}")
    growth = result["growth_after_warmup_mb_per_h"]
    return 0 if growth is not None and growth <= 2.0 else 1


if __name__ == "__main__":
    sys.exit(main())
