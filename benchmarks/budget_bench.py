"""Query-budget benchmark (issue 19): 50 windows opening at one instant on an App ID
that already has 1,000 live sessions to poll.

The issue's scenario: 1,000 live always-on sessions on one App ID (`rateLimit: 10`,
`resyncInterval: 60s`, `reconcile.queryShare` left at its default 0.5); 50 windows
open at one instant T. Targets: every `start` of the 50 reaches the API within 1.15 x
the bound that the share leaves (100 calls at 10 x (1 - 0.5) per second: 20 s, so
23 s after T), zero 429s, and at most 10 x 0.5 = 5 queries in any sliding second.

Each run, in a fresh temp dir:

1. the emulator in this process (`running_emulator`, port 0, its `rate_limit` the
   default 10/s for the App ID, so a 429 is real), a broadcaster in each of the 1,050
   channels (no idle exits);
2. 1,000 always-on manifests written (20 files of 50) and `orchestrator run` started
   as a process (tests/harness): its first pass starts them all, 2,000 calls at the
   real 10/s (about 200 s), and READY waits for them. Every session is the daemon's
   own, in its store, started through the rate limits that are then measured; a
   faster set-up (a higher limit first, then a restart at 10/s) would save nothing:
   the restart's first pass queries all 1,000 (200 s at the share);
3. the first resync is 60 s after READY; once 10 of its queries have reached the
   emulator, T = the next whole second + 10 s, and one file with the 50 windowed
   manifests (windows [T, T + 30 min]) is written; the watch loads it before T;
4. the benchmark waits for the 50 starts (bounded: T + 180 s), then 5 s more of
   queries, reads `orchestrator_query_cycle_seconds` from /metrics and the
   `budget.cycle_too_long` warning from the log, and sends SIGTERM (the sessions
   are left running, `stopOnShutdown: false`; the emulator ends with the run).

Measured at the emulator, from its request log (arrival times on its clock, which
is real time here): each windowed manifest's first `start` arrival minus T, the 429s
of the whole run, and the queries per sliding one-second window (the emulator's own
window) from the first resync query to the end. Both the query count while the 50
start and the mean query rate are reported too.

`--baseline-python PY` also runs the daemon with another interpreter (a virtualenv
with the code before issue 19 installed), the two alternating run by run (after,
before, after, ...), against the same emulator code; its config sets no key that
the old code lacks (no `queryShare`). `farm-bench` does not fit: what is timed is
arrivals inside one run, not a whole command.

Every process the benchmark starts is ended by its pid (the harness); every wait is
bounded, and each run has a hard budget.

Run: `.venv/bin/python benchmarks/budget_bench.py [--runs 3] [--baseline-python PY]
[--json FILE] [--keep]`; it prints a markdown section for benchmarks/results-budget.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import re
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the process harness lives in tests/harness

from benchmarks.daemon_bench import (  # noqa: E402
    CUSTOMER_ID,
    CUSTOMER_SECRET,
    MUTATING,
    PLACEHOLDER_ENV,
    manifest,
    max_in_window,
    quantile,
    windows,
)
from orchestrator.emulator import AppConfig, Emulator, EmulatorConfig, running_emulator  # noqa: E402
from orchestrator.logging import configure_logging  # noqa: E402
from tests.harness import (  # noqa: E402
    Daemon,
    Processes,
    config_data,
    event_time,
    wait_until,
    write_config,
)

APP_ID = f"{0xB19:032x}"
PROFILE = "main"
LIMIT = 10  # Agora's requests per second per App ID: the profile's and the emulator's
SHARE = 0.5  # reconcile.queryShare's default (not written into the config)
LIVE = 1000
WINDOWED = 50
PER_FILE = 50
BOUND = 2 * WINDOWED / (LIMIT * (1 - SHARE))  # 100 calls at 5/s: 20 s
TARGET = 1.15 * BOUND
MAX_QUERIES = math.floor(LIMIT * SHARE)  # per sliding second
LISTENER = {"9000": "broadcaster"}  # in every channel, so nothing idles out
FIRST_QUERIES = 10  # of the first resync, seen before T is chosen
LEAD = 10.0  # seconds from then to T (the watch loads the file well within it)
TAIL = 5.0  # seconds of queries observed after the last start
RUN_BUDGET = 900.0
#: Runs `orchestrator run` with another interpreter: argv is [PY, this interpreter,
#: -m, orchestrator, run, ...] as the harness builds it.
EXEC_WITH = "import os, sys\nos.execv(sys.argv[1], [sys.argv[1], *sys.argv[3:]])\n"
CYCLE_METRIC = re.compile(r"^orchestrator_query_cycle_seconds\{[^}]*\}\s+(\S+)$", re.MULTILINE)


def live_channel(i: int) -> str:
    return f"live-{i:04d}"


def windowed_channel(i: int) -> str:
    return f"win-{i:02d}"


def write_file(path: Path, documents: list[str]) -> None:
    """Whole or not at all, as git writes it."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("---\n".join(documents), encoding="utf-8")
    os.replace(tmp, path)


def write_live(manifests: Path, live: int) -> None:
    documents = [
        manifest(f"live-{i:04d}", PROFILE, live_channel(i), 20_000 + i, "always")
        for i in range(live)
    ]
    for n in range(0, live, PER_FILE):
        write_file(manifests / f"live-{n // PER_FILE:02d}.yaml", documents[n : n + PER_FILE])


def write_windowed(manifests: Path, opens: float) -> None:
    schedule = windows([(opens, opens + 1800.0)])
    write_file(
        manifests / "windowed.yaml",
        [
            manifest(f"win-{i:02d}", PROFILE, windowed_channel(i), 40_000 + i, schedule)
            for i in range(WINDOWED)
        ],
    )


def arrivals(emu: Emulator, endpoint: str, since: int = 0) -> list[float]:
    return [float(r["time"]) for r in emu.received[since:] if r["endpoint"] == endpoint]


def first_starts(records: list[dict[str, Any]]) -> dict[str, float]:
    """Windowed channel -> arrival of its first `start` answered 200."""
    out: dict[str, float] = {}
    for r in records:
        body = r.get("body")
        if r["endpoint"] == "start" and r["status"] == 200 and isinstance(body, dict):
            cname = str(body.get("cname"))
            if cname.startswith("win-"):
                out.setdefault(cname, float(r["time"]))
    return out


async def query_cycle(daemon: Daemon) -> float | None:
    """`orchestrator_query_cycle_seconds` of the App ID (None: the code has no such metric)."""
    url = await daemon.metrics_url(within=5)
    async with httpx.AsyncClient(timeout=10.0, trust_env=False) as http:
        text = (await http.get(f"{url}/metrics")).text
    found = CYCLE_METRIC.search(text)
    return float(found.group(1)) if found else None


async def one_run(side: str, python: str | None, live: int, keep: bool) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="budget-bench-"))
    manifests = root / "recordings.d"
    manifests.mkdir()
    processes = Processes(root, PLACEHOLDER_ENV)
    config = EmulatorConfig(
        customer_id=CUSTOMER_ID, customer_secret=CUSTOMER_SECRET, apps={APP_ID: AppConfig()}
    )
    try:
        async with running_emulator(config) as emu:
            assert emu.settings.rate_limit == LIMIT
            for i in range(live):
                emu.set_users(APP_ID, live_channel(i), LISTENER)
            for i in range(WINDOWED):
                emu.set_users(APP_ID, windowed_channel(i), LISTENER)
            write_live(manifests, live)
            data = config_data(
                {PROFILE: APP_ID},
                emu.base_url,
                resync="60s",
                watch_interval="300ms",
                drain="10s",
                customer=("BENCH_CUSTOMER_ID", "BENCH_CUSTOMER_SECRET"),
                changes={"apps": {PROFILE: {"rateLimit": LIMIT}}},
            )
            wrapper = () if python is None else (sys.executable, "-c", EXEC_WITH, python)
            daemon = processes.daemon(
                write_config(root / "config.yaml", data), wrapper=wrapper, notify=False
            )
            ready = await daemon.ready(within=600)
            setup_s = ready - daemon.launched
            live_at_ready = sum(1 for s in emu.sessions() if s["live"])
            mark = len(emu.received)  # the resync's queries come after READY

            await wait_until(
                lambda: len(arrivals(emu, "query", mark)) >= FIRST_QUERIES,
                within=120,
                what="the first resync's queries",
                alive=daemon,
                every=0.2,
            )
            resync_began = min(arrivals(emu, "query", mark))
            opens = float(math.ceil(time.time()) + LEAD)
            written = time.time()
            write_windowed(manifests, opens)
            loaded = await daemon.wait_event(
                "manifests.reloaded", within=LEAD - 1, trigger="watch", manifests=live + WINDOWED
            )
            await wait_until(
                lambda: len(first_starts(emu.received)) >= WINDOWED,
                within=opens + 180 - time.time(),
                what="the 50 starts",
                alive=daemon,
                every=0.25,
            )
            last_start = max(first_starts(emu.received).values())
            await asyncio.sleep(max(0.0, last_start + TAIL - time.time()))  # queries go on
            cycle_metric = await query_cycle(daemon)
            code = await daemon.stop(within=30)
            skew = emu.clock.now() - time.time()
            records = list(emu.received)
    finally:
        await processes.close()
        if keep:
            print(f"kept: {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)

    started = first_starts(records)
    late = sorted(t - opens for t in started.values())
    queries = sorted(
        float(r["time"])
        for r in records
        if r["endpoint"] == "query" and f"/apps/{APP_ID}/" in r["path"]
    )
    measured = [t for t in queries if t >= resync_began]
    during = [t for t in measured if opens <= t <= last_start]
    windowed_calls = [
        r
        for r in records
        if r["endpoint"] in MUTATING
        and isinstance(r.get("body"), dict)
        and str(r["body"].get("cname", "")).startswith("win-")
    ]
    warnings = daemon.named("budget.cycle_too_long")
    span = max(measured) - min(measured) if len(measured) > 1 else float("nan")
    return {
        "side": side,
        "live": live,
        "setup_s": round(setup_s, 1),
        "live_at_ready": live_at_ready,
        "ready_to_opens_s": round(opens - ready, 1),
        "resync_to_opens_s": round(opens - resync_began, 1),
        "loaded_before_opens_s": round(opens - event_time(loaded), 2),
        "load_after_write_s": round(event_time(loaded) - written, 2),
        "starts": len(late),
        "first_start_s": round(late[0], 3) if late else None,
        "median_start_s": round(statistics.median(late), 3) if late else None,
        "p95_start_s": round(quantile(late, 0.95), 3) if late else None,
        "last_start_s": round(late[-1], 3) if late else None,
        "early": sum(1 for r in windowed_calls if float(r["time"]) < opens),
        "rate_limited": sum(1 for r in records if r["status"] == 429),
        "non_2xx": sum(1 for r in records if not 200 <= int(r["status"]) < 300),
        "requests": len(records),
        "max_queries_per_s": max_in_window(measured),
        "max_queries_per_s_during_starts": max_in_window(during),
        "queries_during_starts": len(during),
        "mean_query_rate": round((len(measured) - 1) / span, 2) if len(measured) > 1 else None,
        "queries_measured": len(measured),
        "max_requests_per_s": max_in_window([float(r["time"]) for r in records]),
        "cycle_metric_s": cycle_metric,
        "cycle_warning": (
            {k: warnings[0].get(k) for k in ("live", "cycle_s", "resync_s")} if warnings else None
        ),
        "exit": code,
        "clock_skew_ms": round(skew * 1000, 1),
        "passed": bool(
            len(late) == WINDOWED
            and late[-1] <= TARGET
            and not any(r["status"] == 429 for r in records)
            and max_in_window(measured) <= MAX_QUERIES
        ),
    }


def cell(runs: list[dict[str, Any]], key: str) -> str:
    values = [r[key] for r in runs if r[key] is not None]
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:g}"
    return f"{statistics.median(values):g} ({min(values):g}-{max(values):g})"


def markdown(results: list[dict[str, Any]], baseline: str | None) -> str:
    sides = ["after"] + (["before"] if baseline else [])
    by_side = {s: [r for r in results if r["side"] == s] for s in sides}
    rows = [
        ("set-up: launch to READY, s (acquire + start of each)", "setup_s"),
        ("sessions live at READY", "live_at_ready"),
        ("T after READY, s", "ready_to_opens_s"),
        ("T after the first resync query, s", "resync_to_opens_s"),
        ("windowed file loaded before T, s", "loaded_before_opens_s"),
        ("starts (of 50)", "starts"),
        ("first start after T, s", "first_start_s"),
        ("median start after T, s", "median_start_s"),
        ("p95 start after T, s", "p95_start_s"),
        ("**last start after T, s**", "last_start_s"),
        ("windowed calls before T", "early"),
        ("429s (whole run)", "rate_limited"),
        ("answers not 2xx (whole run)", "non_2xx"),
        ("**max queries in a sliding second**", "max_queries_per_s"),
        ("max queries in a sliding second while the 50 start", "max_queries_per_s_during_starts"),
        ("queries between T and the last start", "queries_during_starts"),
        ("mean query rate from the first resync query, /s", "mean_query_rate"),
        ("max requests in a sliding second (all)", "max_requests_per_s"),
        ("`orchestrator_query_cycle_seconds`", "cycle_metric_s"),
        ("SIGTERM exit", "exit"),
    ]
    header = "| measure | " + " | ".join(sides) + " |"
    out = [
        f"## {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "",
        f"Machine: {os.cpu_count()} CPUs, {platform.machine()}, {platform.system()} "
        f"{platform.release()}, Python {platform.python_version()}; 1-min load average "
        f"{os.getloadavg()[0]:.2f} at the end. {results[0]['live']} always-on sessions, "
        f"{WINDOWED} windows; {len(by_side['after'])} runs a side"
        + (f"; before: the daemon run by {baseline}" if baseline else "")
        + ". Cells: median (min-max) over the runs.",
        "",
        header,
        "|---|" + "---|" * len(sides),
    ]
    for label, key in rows:
        out.append(f"| {label} | " + " | ".join(cell(by_side[s], key) for s in sides) + " |")
    last = {s: statistics.median(r["last_start_s"] or math.inf for r in by_side[s]) for s in sides}
    out += [
        "",
        f"Bound {BOUND:g} s (target {TARGET:g} s): after {last['after']:g} s = "
        f"{last['after'] / BOUND:.2f} x the bound"
        + (
            f"; before {last['before']:g} s = {last['before'] / BOUND:.2f} x the bound; "
            f"after/before {last['after'] / last['before']:.2f}"
            if baseline
            else ""
        )
        + ".",
        "",
        "Per run (last start s, max queries/s, 429s, passed): "
        + "; ".join(
            f"{r['side']} {r['last_start_s']} / {r['max_queries_per_s']} / "
            f"{r['rate_limited']} / {r['passed']}"
            for r in results
        )
        + ".",
    ]
    warnings = [r["cycle_warning"] for r in results if r["cycle_warning"]]
    if warnings:
        out += ["", f"`budget.cycle_too_long` (after, first run): `{json.dumps(warnings[0])}`."]
    return "\n".join(out) + "\n"


async def bench(runs: int, baseline: str | None, live: int, keep: bool) -> list[dict[str, Any]]:
    plan: list[tuple[str, str | None]] = []
    for _ in range(runs):
        plan.append(("after", None))
        if baseline:
            plan.append(("before", baseline))
    results = []
    for n, (side, python) in enumerate(plan, 1):
        async with asyncio.timeout(RUN_BUDGET):
            result = await one_run(side, python, live, keep)
        print(f"run {n}/{len(plan)}: {json.dumps(result)}", file=sys.stderr, flush=True)
        results.append(result)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="runs of each side")
    parser.add_argument(
        "--baseline-python",
        help="also run the daemon with this interpreter (the code before the change)",
    )
    parser.add_argument(
        "--live", type=int, default=LIVE, help="always-on sessions (1,000; fewer: a smoke run)"
    )
    parser.add_argument("--json", type=Path, help="also write the runs' figures here")
    parser.add_argument("--keep", action="store_true", help="keep each run's directory (logs)")
    args = parser.parse_args()
    configure_logging("warning")  # the emulator logs every request at info
    results = asyncio.run(bench(args.runs, args.baseline_python, args.live, args.keep))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    print(markdown(results, args.baseline_python))
    return 0 if all(r["passed"] for r in results if r["side"] == "after") else 1


if __name__ == "__main__":
    sys.exit(main())
