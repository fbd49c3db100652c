"""Daemon benchmark: `orchestrator run` and the emulator as two processes on loopback.

Everything is measured at the API, from the emulator's recorded arrival times
(GET /_emulator/requests), or from the daemon's own JSON log and /proc.

Scenarios (each run gets a fresh temp dir: its own config, SQLite store, manifests
directory, JSON log file; placeholder secrets come from the environment):

- `burst`: N manifests whose single window opens at the same instant T, 9-10 s
  after the daemon is ready (the manifests are written once it is ready, and the
  watch loads them). Variant A: 100 manifests on one App ID (200 calls at 10/s:
  target: the last `start` within 1.15 x 20 s of T); variant B: 4 App IDs x 50
  (target 1.15 x 10 s). Zero 429s at the emulator (its own strict 1 s window,
  rate_limit 10), no request before T. After the last start the daemon gets
  SIGTERM and must exit 0.
- `lateness`: 20 manifests x 6 windows of 3 s with 5 s gaps, manifest i shifted
  by 0.4 s x i, so one start (acquire + start) and one stop happen every 0.4 s:
  7.5 mutating calls/s on one App ID, under the limit, so the rate limiter is not
  what is measured. 240 boundaries; lateness = arrival(start) - window start and
  arrival(stop) - window end. Target: p99 <= 1 s, none early.
- `edits`: what tests/e2e/test_daemon.py asserted as wall-clock bounds before it
  asserted behaviour only: a live layout edit to its `updateLayout`, a subscription
  edit to its `update`, a deleted manifest to its `stop` (target 2 s, the README's
  "an edit takes effect within 2 s", with the default 1 s debounce), and a window's
  start while the API holds another manifest's stop and a resync's query for 8 s
  (defect D2 of docs/reliability.md: target 1.5 s after it opens).
- `idle`: 10,000 manifests (daily cron windows in several time zones, at least
  7 h from now, distinct channels) with resyncInterval 5s. After ready and the
  manifest snapshot of the first start (written 10 s after the loads, start-up
  work): VmRSS and VmHWM, CPU (utime + stime) over 30 s, `reconcile.pass` durations of the
  `resync` passes, the `manifests.reloaded` duration at start (reload of all) and
  after editing one file (trigger `watch`). Targets: RSS <= 200 MB, CPU <= 2 % of
  a core, pass <= 200 ms, reload of all <= 15 s, reload of one file <= 100 ms.
  `--history DAYS` fills the store first with what DAYS days of these windows leave
  (a finished session a day per manifest): the same targets, in the steady state.

Every scenario has a hard time budget (SIGALRM); every process the benchmark
starts is ended by its pid (SIGTERM, then SIGKILL) whatever happens. The processes,
the config and the waits are the test suite's harness (tests/harness), imported
from the checkout.

Run: `.venv/bin/python benchmarks/daemon_bench.py [burst|lateness|edits|idle|all] [--runs N]
[--json FILE] [--history DAYS]`, and `... report FILE.json ... --write benchmarks/results-daemon.md`
to turn saved results into the markdown report.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import shutil
import signal
import sqlite3
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the process harness lives in tests/harness

from history_bench import copies_of_session_1, first_session  # noqa: E402

from orchestrator.state import open_store  # noqa: E402
from tests.harness import (  # noqa: E402
    Daemon,
    EmulatorProcess,
    Event,
    JsonLog,
    Processes,
    WaitTimeout,
    config_data,
    event_time,
    write_config,
)

APP_IDS = tuple(f"{n:032x}" for n in (0xD1, 0xD2, 0xD3, 0xD4))
CUSTOMER_ID = "bench-customer"
CUSTOMER_SECRET = "bench-customer-secret"  # noqa: S105  # the local emulator's throwaway credential
PLACEHOLDER_ENV = {
    "BENCH_CUSTOMER_ID": CUSTOMER_ID,
    "BENCH_CUSTOMER_SECRET": CUSTOMER_SECRET,
    "BENCH_S3_KEY": "bench-s3-access",
    "BENCH_S3_SECRET": "bench-s3-secret",
}
MUTATING = ("acquire", "start", "update", "updateLayout", "stop")
LIMIT = 10  # requests per second per App ID (the emulator's default and the client's)


class BudgetExceeded(Exception):
    """A scenario ran past its hard time budget."""


class Failed(Exception):
    """A run could not be measured (the daemon never got ready, died, ...)."""


@contextmanager
def budget(seconds: float, what: str) -> Iterator[None]:
    """A hard bound on a whole scenario: SIGALRM raises BudgetExceeded."""

    def expired(_signum: int, _frame: Any) -> None:
        raise BudgetExceeded(f"{what}: over its budget of {seconds:.0f} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(max(1, math.ceil(seconds)))
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


class Rig:
    """One temp dir, one emulator process, one daemon process (tests/harness: every
    child is ended by its pid when the rig closes)."""

    def __init__(self, apps: int, *, resync: str, keep: bool = False) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="daemon-bench-"))
        self.manifests = self.root / "recordings.d"
        self.manifests.mkdir()
        self.apps = {f"a{i}": APP_IDS[i] for i in range(apps)}
        self.resync = resync
        self.watch_interval = "300ms"
        self.keep = keep
        self.procs = Processes(self.root, PLACEHOLDER_ENV)
        self.emulator: EmulatorProcess | None = None
        self.daemon: Daemon | None = None
        self.clock_skew = 0.0

    def __enter__(self) -> Rig:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.procs.close_blocking()
        if not self.keep:
            shutil.rmtree(self.root, ignore_errors=True)

    @property
    def log(self) -> JsonLog:
        assert self.daemon is not None
        return self.daemon.log

    # the emulator

    def start_emulator(self) -> None:
        emulator = self.procs.emulator(
            list(self.apps.values()), customer_id=CUSTOMER_ID, customer_secret=CUSTOMER_SECRET
        )
        try:
            self.emulator = emulator.started_blocking(within=30)
        except WaitTimeout as exc:
            raise Failed(f"the emulator did not start: {exc}") from None
        # The emulator clock is real time plus an offset (0 here): check it agrees with ours.
        before = time.time()
        now = float(self.control("GET", "/clock")["now"])
        self.clock_skew = now - (before + time.time()) / 2

    def control(self, method: str, path: str, body: Any = None) -> Any:
        assert self.emulator is not None
        return self.emulator.control_blocking(method, path, body)

    def requests(self, endpoint: str | None = None) -> list[dict[str, Any]]:
        assert self.emulator is not None
        return self.emulator.requests_blocking(endpoint)

    # the daemon

    def write_config(self) -> Path:
        assert self.emulator is not None
        data = config_data(
            self.apps,
            self.emulator.base_url,
            resync=self.resync,
            watch_interval=self.watch_interval,
            metrics=False,
            drain="10s",
            customer=("BENCH_CUSTOMER_ID", "BENCH_CUSTOMER_SECRET"),
            changes={"apps": {name: {"rateLimit": LIMIT} for name in self.apps}},
        )
        return write_config(self.root / "config.yaml", data)

    def start_daemon(
        self, *, ready_within: float = 60, log: str = "daemon.log.json"
    ) -> dict[str, Any]:
        config = self.write_config()
        self.daemon = self.procs.daemon(config, notify=False, log=self.root / log)
        ready = self.wait_event("daemon.ready", within=ready_within)
        return {"launched": self.daemon.launched, "ready": ready, "ready_seen": time.time()}

    def wait_event(
        self,
        name: str,
        *,
        within: float,
        after: int = 0,
        **match: Any,
    ) -> Event:
        assert self.daemon is not None
        try:
            return self.daemon.wait_event_blocking(name, within=within, after=after, **match)
        except WaitTimeout as exc:
            raise Failed(str(exc).splitlines()[0]) from None

    def stop_daemon(self, *, within: float = 20) -> tuple[int | None, float]:
        """SIGTERM by pid; (exit code or None if it had to be killed, seconds to exit)."""
        assert self.daemon is not None
        sent = time.monotonic()
        try:
            code: int | None = self.daemon.stop_blocking(within)
        except AssertionError:  # killed after `within`
            code = None
        return code, time.monotonic() - sent

    def write_manifest(self, filename: str, text: str) -> None:
        """Atomically, as git does."""
        path = self.manifests / filename
        tmp = path.with_name(f".{filename}.tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)


def manifest(name: str, app: str, channel: str, uid: int, schedule: str) -> str:
    return (
        f"name: {name}\n"
        f"app: {app}\n"
        f"channel: {channel}\n"
        f"uid: {uid}\n"
        "mode: mix\n"
        f"schedule: {schedule}\n"
        "recording: {channelType: live, streams: audio+video, maxIdleTime: 300}\n"
        "storage:\n"
        "  vendor: aws-s3\n"
        "  region: us-east-1\n"
        "  bucket: bench\n"
        "  accessKey: {env: BENCH_S3_KEY}\n"
        "  secretKey: {env: BENCH_S3_SECRET}\n"
    )


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")


def windows(pairs: list[tuple[float, float]]) -> str:
    inner = ", ".join(f"{{start: '{iso(a)}', end: '{iso(b)}'}}" for a, b in pairs)
    return f"{{windows: [{inner}]}}"


def max_in_window(times: list[float], width: float = 1.0) -> int:
    times = sorted(times)
    best, lo = 0, 0
    for hi, t in enumerate(times):
        while t - times[lo] >= width:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def quantile(values: list[float], q: float) -> float:
    """Nearest-rank quantile (p99 of 240 values is the 238th smallest)."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[rank - 1]


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM in kB."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


def cpu_seconds(pid: int) -> float:
    """utime + stime of the process (all its threads) in seconds."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state): utime is field 14, stime field 15
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- burst ------------------------------------------------------------------------------


def burst_run(apps: int, per_app: int, *, keep: bool) -> dict[str, Any]:
    total = apps * per_app
    expected = 2 * per_app / LIMIT  # acquire + start per manifest, at 10/s per App ID
    target = 1.15 * expected
    with Rig(apps, resync="10m", keep=keep) as rig:
        rig.start_emulator()
        started = rig.start_daemon()
        ready_at = started["ready_seen"]
        opens = float(math.ceil(ready_at + 9))  # 9-10 s after ready, on a whole second
        closes = opens + 60
        names = list(rig.apps)
        for i in range(total):
            app = names[i % apps]
            rig.write_manifest(
                f"b{i:03d}.yaml",
                manifest(
                    f"burst-{i:03d}", app, f"burst-{i:03d}", 10_000 + i, windows([(opens, closes)])
                ),
            )
        loaded = rig.wait_event("manifests.reloaded", within=15, trigger="watch")
        if loaded["manifests"] != total:  # written in more than one batch: wait for the rest
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                counts = [e["manifests"] for e in rig.log.named("manifests.reloaded")]
                if counts and counts[-1] == total:
                    break
                time.sleep(0.1)
        # Wait for every start (bounded well past the target), polling gently.
        deadline = opens + target + 20
        starts: list[dict[str, Any]] = []
        while time.time() < deadline:
            time.sleep(1.0)
            starts = [r for r in rig.requests("start") if r["status"] == 200]
            if len(starts) >= total:
                break
        code, exit_seconds = rig.stop_daemon()
        seen = rig.requests()
    starts_all = [r for r in seen if r["endpoint"] == "start"]
    ok_starts = [r for r in starts_all if r["status"] == 200]
    mutating = [r for r in seen if r["endpoint"] in MUTATING]
    by_app: dict[str, list[float]] = defaultdict(list)
    for r in mutating:
        by_app[r["path"].split("/")[3]].append(float(r["time"]))
    last = max((float(r["time"]) for r in ok_starts), default=float("nan")) - opens
    statuses: dict[str, int] = defaultdict(int)
    for r in seen:
        statuses[f"{r['endpoint']}:{r['status']}"] += 1
    return {
        "statuses": dict(statuses),
        "apps": apps,
        "per_app": per_app,
        "manifests": total,
        "ready_to_open": opens - ready_at,
        "loaded_ms": loaded["duration_ms"],
        "starts": len(ok_starts),
        "start_failures": len(starts_all) - len(ok_starts),
        "acquires": sum(1 for r in seen if r["endpoint"] == "acquire"),
        "rate_limited": sum(1 for r in seen if r["status"] == 429),
        "non_2xx": sum(1 for r in seen if not 200 <= int(r["status"]) < 300),
        "early": sum(1 for r in mutating if float(r["time"]) < opens),
        "first_start_late": min((float(r["time"]) for r in ok_starts), default=float("nan"))
        - opens,
        "first_acquire_late": min(
            (float(r["time"]) for r in seen if r["endpoint"] == "acquire"), default=float("nan")
        )
        - opens,
        "last_start": last,
        "target": target,
        "max_per_1s_per_app": max((max_in_window(t) for t in by_app.values()), default=0),
        "exit_code": code,
        "exit_seconds": exit_seconds,
        "clock_skew_ms": rig.clock_skew * 1000,
    }


def burst_passed(run: dict[str, Any]) -> bool:
    return bool(
        run["starts"] == run["manifests"]
        and run["last_start"] <= run["target"]
        and run["rate_limited"] == 0
        and run["early"] == 0
        and run["exit_code"] == 0
    )


# -- lateness ---------------------------------------------------------------------------

LATE_MANIFESTS = 20
LATE_WINDOWS = 6
LATE_LENGTH = 3.0
LATE_PERIOD = 8.0  # 3 s window + 5 s gap
LATE_STEP = 0.4  # manifest i is shifted by i x 0.4 s: a start and a stop every 0.4 s


def lateness_run(*, keep: bool) -> dict[str, Any]:
    with Rig(1, resync="10m", keep=keep) as rig:
        rig.start_emulator()
        started = rig.start_daemon()
        t0 = float(math.ceil(started["ready_seen"] + 6))
        plan: dict[str, list[tuple[float, float]]] = {}
        for i in range(LATE_MANIFESTS):
            channel = f"late-{i:02d}"
            pairs = [
                (
                    t0 + i * LATE_STEP + j * LATE_PERIOD,
                    t0 + i * LATE_STEP + j * LATE_PERIOD + LATE_LENGTH,
                )
                for j in range(LATE_WINDOWS)
            ]
            plan[channel] = pairs
            rig.write_manifest(
                f"{channel}.yaml", manifest(channel, "a0", channel, 20_000 + i, windows(pairs))
            )
        rig.wait_event("manifests.reloaded", within=5, trigger="watch")
        for channel in plan:  # a broadcaster in every channel: a stop then has files (200)
            rig.control(
                "POST", "/channel/join", {"app_id": APP_IDS[0], "cname": channel, "uid": "7"}
            )
        last_boundary = max(b for pairs in plan.values() for _, b in pairs)
        boundaries = 2 * LATE_MANIFESTS * LATE_WINDOWS
        time.sleep(max(0.0, last_boundary - time.time()))
        deadline = time.time() + 10
        while time.time() < deadline:
            if len(rig.requests("stop")) >= boundaries // 2:
                break
            time.sleep(0.5)
        passes = [e for e in rig.log.named("reconcile.pass") if e["trigger"] == "boundary"]
        code, exit_seconds = rig.stop_daemon()
        seen = rig.requests()
    late: list[float] = []
    missing = 0
    failures = 0
    for channel, pairs in plan.items():
        mine = [
            r for r in seen if isinstance(r["body"], dict) and r["body"].get("cname") == channel
        ]
        failures += sum(1 for r in mine if r["endpoint"] in MUTATING and r["status"] != 200)
        starts = sorted(float(r["time"]) for r in mine if r["endpoint"] == "start")
        stops = sorted(float(r["time"]) for r in mine if r["endpoint"] == "stop")
        for (opens, _), start in zip(pairs, starts, strict=False):
            late.append(start - opens)
        for (_, closes), stop in zip(pairs, stops, strict=False):
            late.append(stop - closes)
        missing += 2 * len(pairs) - min(len(starts), len(pairs)) - min(len(stops), len(pairs))
    mutating = [float(r["time"]) for r in seen if r["endpoint"] in MUTATING]
    statuses: dict[str, int] = defaultdict(int)
    for r in seen:
        statuses[f"{r['endpoint']}:{r['status']}"] += 1
    return {
        "boundaries": len(late),
        "statuses": dict(statuses),
        "missing": missing,
        "failures": failures,
        "early": sum(1 for x in late if x < 0),
        "min": min(late),
        "median": statistics.median(late),
        "p99": quantile(late, 0.99),
        "max": max(late),
        "over_1s": sum(1 for x in late if x > 1.0),
        "rate_limited": sum(1 for r in seen if r["status"] == 429),
        "max_per_1s": max_in_window(mutating),
        "boundary_pass_ms_median": statistics.median(e["duration_ms"] for e in passes)
        if passes
        else None,
        "boundary_pass_ms_max": max((e["duration_ms"] for e in passes), default=None),
        "exit_code": code,
        "exit_seconds": exit_seconds,
        "clock_skew_ms": rig.clock_skew * 1000,
    }


def lateness_passed(run: dict[str, Any]) -> bool:
    return bool(run["p99"] <= 1.0 and run["early"] == 0 and run["missing"] == 0)


# -- edits ------------------------------------------------------------------------------

EDIT_ROUNDS = 5
EDIT_TARGET = 2.0  # s: an edit or a deletion reaches the API within 2 s (README)
HELD_TARGET = 1.5  # s: a boundary while another manifest's answers are held (D2)
HOLD = 8.0  # s the emulator holds the answer to one stop and one query


def _arrivals(rig: Rig, endpoint: str, cname: str) -> list[float]:
    return sorted(
        float(r["time"])
        for r in rig.requests(endpoint)
        if isinstance(r["body"], dict) and r["body"].get("cname") == cname
    )


def _next_arrival(rig: Rig, endpoint: str, cname: str, seen: int, within: float = 15) -> float:
    """The arrival of the (`seen`+1)-th `endpoint` request for `cname`."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        found = _arrivals(rig, endpoint, cname)
        if len(found) > seen:
            return found[seen]
        time.sleep(0.05)
    raise Failed(f"no {endpoint} for {cname} within {within:g} s")


def _editable(layout: str, audio: int) -> str:
    """The edited manifest: a layout (changed live by updateLayout) and a subscription
    (changed live by update)."""
    return (
        manifest("edit", "a0", "edit-room", 1, "always").replace(
            "maxIdleTime: 300}", f"maxIdleTime: 300, subscribe: {{audio: [{audio}]}}}}"
        )
        + f"layout: {{type: {layout}, background: '#000000'}}\n"
        + "transcoding: {width: 640, height: 360, fps: 15, bitrate: 500}\n"
    )


def edits_run(*, keep: bool) -> dict[str, Any]:
    """The figures tests/e2e/test_daemon.py used to assert: a live edit of the layout
    (updateLayout) and of the subscription (update), and a deletion (stop), from the
    write to the call's arrival, with the daemon's default watch debounce (1 s); and a
    window's start while the API holds the answers to another manifest's stop and to
    a resync's query for 8 s (defect D2: it must not wait behind them)."""
    with Rig(1, resync="2s", keep=keep) as rig:
        rig.watch_interval = "1s"
        rig.start_emulator()
        for channel in ("edit-room", "gone-room", "early-room", "late-room"):
            rig.control(
                "POST", "/channel/join", {"app_id": APP_IDS[0], "cname": channel, "uid": "7"}
            )
        rig.write_manifest("edit.yaml", _editable("adaptive", 7))
        rig.write_manifest("gone.yaml", manifest("gone", "a0", "gone-room", 2, "always"))
        started = rig.start_daemon()
        _next_arrival(rig, "start", "edit-room", 0)
        _next_arrival(rig, "start", "gone-room", 0)
        layout, update = [], []
        layouts = ("floating", "adaptive")
        for n in range(EDIT_ROUNDS):
            written = time.time()
            rig.write_manifest("edit.yaml", _editable(layouts[n % 2], 7))
            layout.append(_next_arrival(rig, "updateLayout", "edit-room", n) - written)
        for n in range(EDIT_ROUNDS):
            written = time.time()
            rig.write_manifest("edit.yaml", _editable(layouts[(EDIT_ROUNDS - 1) % 2], 8 + n))
            update.append(_next_arrival(rig, "update", "edit-room", n) - written)
        removed = time.time()
        (rig.manifests / "gone.yaml").unlink()
        deletion = _next_arrival(rig, "stop", "gone-room", 0) - removed
        # D2: a window closes while its stop's answer (and a resync's query) is held.
        t = float(math.ceil(time.time() + 4))
        rig.write_manifest(
            "early.yaml", manifest("early", "a0", "early-room", 3, windows([(t, t + 3)]))
        )
        rig.write_manifest(
            "late.yaml", manifest("late", "a0", "late-room", 4, windows([(t + 5, t + 35)]))
        )
        _next_arrival(rig, "start", "early-room", 0)
        for endpoint in ("stop", "query"):
            rig.control(
                "POST", "/faults/next", {"endpoint": endpoint, "kind": "hold", "seconds": HOLD}
            )
        held = _next_arrival(rig, "start", "late-room", 0, within=30) - (t + 5)
        code, exit_seconds = rig.stop_daemon()
    return {
        "launch_to_ready_s": event_time(started["ready"]) - started["launched"],
        "layout_s": layout,
        "update_s": update,
        "delete_s": deletion,
        "held_start_late_s": held,
        "exit_code": code,
        "exit_seconds": exit_seconds,
    }


def edits_passed(run: dict[str, Any]) -> bool:
    worst = max([*run["layout_s"], *run["update_s"], run["delete_s"]])
    return bool(worst <= EDIT_TARGET and run["held_start_late_s"] <= HELD_TARGET)


# -- idle -------------------------------------------------------------------------------

IDLE_ZONES = (
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "Asia/Shanghai",
    "Asia/Kolkata",
    "Australia/Sydney",
    "America/Sao_Paulo",
    "Pacific/Auckland",
)
IDLE_SECONDS = 30.0
DEFAULT_RESYNC_WINDOW = 60.0


def idle_manifest(i: int, now: datetime) -> str:
    zone = IDLE_ZONES[i % len(IDLE_ZONES)]
    local = now.astimezone(ZoneInfo(zone))
    hour = (local.hour + 8 + i % 8) % 24  # opens 7 h 1 min to 16 h from now: never during a run
    days = "MON-FRI" if i % 3 == 0 else "*"
    schedule = f"{{cron: '{i % 60} {hour} * * {days}', timezone: {zone}, duration: 30m}}"
    return manifest(f"idle-{i:05d}", "a0", f"idle-{i:05d}", 30_000 + i, schedule)


def fill_history(root: Path, app_id: str, count: int, days: int) -> None:
    """The store as `days` days of the idle manifests' daily windows leave it: `days`
    finished sessions of each (stopped at its window's end), written before the
    daemon's first start."""
    path = root / "state" / "state.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    opened = datetime.now(UTC) - timedelta(days=days)
    closed = opened + timedelta(minutes=30)

    async def first() -> None:
        async with open_store(f"sqlite:///{path}", create=True) as store:
            await first_session(
                store,
                closed,
                manifest="idle-00000",
                app="a0",
                app_id=app_id,
                channel="idle-00000",
                uid=30_000,
                window_start=opened,
                window_end=closed,
                started_at=opened,
            )

    asyncio.run(first())
    name = f"printf('idle-%05d', i % {count})"  # SQLite's
    fill = copies_of_session_1(
        1, count * days - 1, {"manifest": name, "channel": name, "uid": f"30000 + i % {count}"}
    )
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute(fill)
        db.commit()


def idle_run(count: int, *, keep: bool, history: int = 0) -> dict[str, Any]:
    with Rig(1, resync="5s", keep=keep) as rig:
        now = datetime.now(UTC)
        for i in range(count):
            (rig.manifests / f"idle-{i:05d}.yaml").write_text(
                idle_manifest(i, now), encoding="utf-8"
            )
        if history:
            fill_history(rig.root, rig.apps["a0"], count, history)
        rig.start_emulator()
        started = rig.start_daemon(ready_within=240)
        assert rig.daemon is not None
        pid = rig.daemon.pid
        reload_all = rig.wait_event("manifests.reloaded", within=1, trigger="start")
        first_pass = rig.wait_event("reconcile.pass", within=1, trigger="start")
        mem_ready = proc_status(pid)
        # Let the start-up settle: the manifest snapshot a first start writes once the
        # loads have been quiet for SNAPSHOT_DELAY (10 s) is start-up work, not idling.
        try:
            snapshot: Event | None = rig.wait_event("manifests.snapshot_written", within=40)
        except Failed:
            snapshot = None
        time.sleep(2.0)
        passes_before = len(rig.log.named("reconcile.pass"))
        cpu0, wall0 = cpu_seconds(pid), time.monotonic()
        time.sleep(IDLE_SECONDS)
        cpu1, wall1 = cpu_seconds(pid), time.monotonic()
        mem_idle = proc_status(pid)
        idle_passes = rig.log.named("reconcile.pass")[passes_before:]
        resync = [e["duration_ms"] for e in rig.log.named("reconcile.pass", trigger="resync")]
        # Reload after one file changed: three edits (content), then one bare touch.
        edits: list[dict[str, Any]] = []
        for n in range(4):
            before = len(rig.log.named("manifests.reloaded", trigger="watch"))
            victim = rig.manifests / f"idle-{(n * 1237) % count:05d}.yaml"
            if n < 3:
                text = victim.read_text(encoding="utf-8").replace(
                    "mode: mix\n", f"mode: mix\nlabels: {{bench-edit: 'e{n}'}}\n"
                )
                written = time.time()
                rig.write_manifest(victim.name, text)
                kind = "edit"
            else:
                written = time.time()
                os.utime(victim)
                kind = "touch"
            try:
                event = rig.wait_event(
                    "manifests.reloaded", within=10, after=before, trigger="watch"
                )
            except Failed:
                edits.append({"kind": kind, "reloaded": False})
                continue
            edits.append(
                {
                    "kind": kind,
                    "reloaded": True,
                    "duration_ms": event["duration_ms"],
                    "files_changed": event["files_changed"],
                    "changed": event["changed"],
                    "after_write_s": event_time(event) - written,
                }
            )
            time.sleep(1.0)
        reload_passes = [
            e["duration_ms"] for e in rig.log.named("reconcile.pass", trigger="reload")
        ]
        mem_end = proc_status(pid)
        code, exit_seconds = rig.stop_daemon(within=30)
        # Phase B: the same tree and store, restarted with the default resyncInterval
        # (60 s); CPU over 60 s, which holds exactly one resync pass.
        rig.resync = "60s"
        restarted = rig.start_daemon(ready_within=240, log="daemon-60s.log.json")
        assert rig.daemon is not None
        pid = rig.daemon.pid
        restart_reload = rig.wait_event("manifests.reloaded", within=1, trigger="start")
        time.sleep(2.0)
        cpu2, wall2 = cpu_seconds(pid), time.monotonic()
        time.sleep(DEFAULT_RESYNC_WINDOW)
        cpu3, wall3 = cpu_seconds(pid), time.monotonic()
        mem_b = proc_status(pid)
        resync_b = [e["duration_ms"] for e in rig.log.named("reconcile.pass", trigger="resync")]
        code_b, exit_b = rig.stop_daemon(within=30)
        api_calls = len(rig.requests())
    edit_ms = [e["duration_ms"] for e in edits if e["kind"] == "edit" and e["reloaded"]]
    return {
        "manifests": count,
        "launch_to_ready_s": event_time(started["ready"]) - started["launched"],
        "reload_all_ms": reload_all["duration_ms"],
        "reload_all_files_changed": reload_all["files_changed"],
        "first_pass_ms": first_pass["duration_ms"],
        "rss_ready_mb": mem_ready["VmRSS"] / 1024,
        "rss_idle_mb": mem_idle["VmRSS"] / 1024,
        "rss_end_mb": mem_end["VmRSS"] / 1024,
        "hwm_mb": mem_end["VmHWM"] / 1024,
        "cpu_percent": 100 * (cpu1 - cpu0) / (wall1 - wall0),
        "snapshot_after_ready_s": (
            event_time(snapshot) - event_time(started["ready"]) if snapshot else None
        ),
        "idle_passes": len(idle_passes),
        "idle_pass_triggers": sorted({e["trigger"] for e in idle_passes}),
        "resync_ms": resync,
        "resync_ms_median": statistics.median(resync) if resync else None,
        "resync_ms_max": max(resync) if resync else None,
        "edits": edits,
        "edit_reload_ms_median": statistics.median(edit_ms) if edit_ms else None,
        "edit_reload_ms_max": max(edit_ms) if edit_ms else None,
        "reload_pass_ms": reload_passes,
        "api_calls": api_calls,
        "exit_code": code,
        "exit_seconds": exit_seconds,
        "b_launch_to_ready_s": event_time(restarted["ready"]) - restarted["launched"],
        "b_reload_all_ms": restart_reload["duration_ms"],
        "b_cpu_percent": 100 * (cpu3 - cpu2) / (wall3 - wall2),
        "b_resync_ms": resync_b,
        "b_rss_mb": mem_b["VmRSS"] / 1024,
        "b_hwm_mb": mem_b["VmHWM"] / 1024,
        "b_exit_code": code_b,
        "b_exit_seconds": exit_b,
    }


# -- running and reporting --------------------------------------------------------------


def machine() -> dict[str, Any]:
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu": model,
        "python": platform.python_version(),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "loadavg": os.getloadavg(),
    }


def run_scenario(name: str, runs: int, args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {"scenario": name, "machine": machine(), "runs": {}, "errors": []}
    variants: dict[str, Callable[[], dict[str, Any]]]
    if name == "burst":
        variants = {
            "1x100": lambda: burst_run(1, 100, keep=args.keep),
            "4x50": lambda: burst_run(4, 50, keep=args.keep),
        }
        per_run = 120.0
    elif name == "lateness":
        variants = {"20x6": lambda: lateness_run(keep=args.keep)}
        per_run = 120.0
    elif name == "edits":
        variants = {"edits": lambda: edits_run(keep=args.keep)}
        per_run = 120.0
    else:
        days = f", {args.history} days of history" if args.history else ""
        variant = f"{args.manifests}{days}"
        variants = {variant: lambda: idle_run(args.manifests, keep=args.keep, history=args.history)}
        per_run = 420.0
    with budget(per_run * runs * len(variants) + 30, name):
        for i in range(runs):
            for variant, fn in variants.items():
                print(f"[{name} {variant}] run {i + 1}/{runs} ...", file=sys.stderr, flush=True)
                try:
                    result = fn()
                except Failed as exc:
                    out["errors"].append(f"{variant} run {i + 1}: {exc}")
                    print(f"  failed: {exc}", file=sys.stderr, flush=True)
                    continue
                out["runs"].setdefault(variant, []).append(result)
                shown = {k: v for k, v in result.items() if not isinstance(v, list)}
                print("  " + json.dumps(shown, default=str), file=sys.stderr, flush=True)
    return out


def _stats(values: list[float], fmt: str = "{:.2f}") -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    med = statistics.median(values)
    if len(values) == 1:
        return fmt.format(med)
    return f"{fmt.format(med)} ({fmt.format(min(values))}-{fmt.format(max(values))})"


def render(results: list[dict[str, Any]], command: str) -> str:
    first = results[0]["machine"]
    lines = [
        "# Daemon benchmark results",
        "",
        "`benchmarks/daemon_bench.py`: `orchestrator run` and `orchestrator emulator` as two",
        "processes on 127.0.0.1, each run in a fresh temp dir (own config, SQLite store,",
        "JSON log file, placeholder secrets via `{env: ...}`, metrics off). Figures are",
        "taken at the API (the emulator's recorded arrival times), from the daemon's JSON",
        "log (`duration_ms`) and from /proc. Cells read `median (min-max)` over the runs.",
        "",
        f"Machine: {first['nproc']} CPUs (nproc), {first['cpu']}, Python {first['python']}; "
        f"1-min load average when the first scenario began {first['loadavg'][0]:.2f} "
        "(the machine is shared with other work).",
        "",
        f"Command: `{command}`",
        "",
    ]
    for result in results:
        name = result["scenario"]
        m = result["machine"]
        lines += [f"## {name} ({m['date']})", ""]
        if result["errors"]:
            lines += ["Runs that could not be measured:", ""]
            lines += [f"- {e}" for e in result["errors"]] + [""]
        if name == "burst":
            lines += _render_burst(result)
        elif name == "lateness":
            lines += _render_lateness(result)
        elif name == "edits":
            lines += _render_edits(result)
        else:
            lines += _render_idle(result)
        lines.append("")
    return "\n".join(lines)


def _verdict(ok: bool) -> str:
    return "**pass**" if ok else "**MISS**"


def _render_burst(result: dict[str, Any]) -> list[str]:
    lines = [
        "One window opening at T (9-10 s after ready) for every manifest; `last start` is",
        "the arrival of the last `start` minus T; the target is 1.15 x (2 calls x",
        "manifests per App ID / 10 per s).",
        "",
        "| variant | runs | starts | last start s | target s | first start late s | "
        "first acquire late s | 429s | early | max calls/1 s/App ID | SIGTERM exit | exit s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    verdicts = []
    for variant, runs in result["runs"].items():
        lines.append(
            f"| {runs[0]['apps']} App ID(s) x {runs[0]['per_app']} manifests | {len(runs)} "
            f"| {_stats([r['starts'] for r in runs], '{:.0f}')} "
            f"| {_stats([r['last_start'] for r in runs])} | {runs[0]['target']:.1f} "
            f"| {_stats([r['first_start_late'] for r in runs], '{:.3f}')} "
            f"| {_stats([r['first_acquire_late'] for r in runs], '{:.3f}')} "
            f"| {sum(r['rate_limited'] for r in runs)} | {sum(r['early'] for r in runs)} "
            f"| {max(r['max_per_1s_per_app'] for r in runs)} "
            f"| {sorted({r['exit_code'] for r in runs}, key=str)} "
            f"| {_stats([r['exit_seconds'] for r in runs])} |"
        )
        worst = max(r["last_start"] for r in runs)
        verdicts.append(
            f"- {variant}: all starts within {runs[0]['target']:.1f} s of T (worst "
            f"{worst:.2f} s): {_verdict(worst <= runs[0]['target'])}; 429s "
            f"{sum(r['rate_limited'] for r in runs)}: "
            f"{_verdict(all(r['rate_limited'] == 0 for r in runs))}; "
            f"SIGTERM exit 0 in every run: {_verdict(all(r['exit_code'] == 0 for r in runs))}; "
            f"all {runs[0]['manifests']} started in every run: "
            f"{_verdict(all(r['starts'] == r['manifests'] for r in runs))}."
        )
    return [*lines, "", *verdicts]


def _render_lateness(result: dict[str, Any]) -> list[str]:
    runs = result["runs"].get("20x6", [])
    lines = [
        f"{LATE_MANIFESTS} manifests x {LATE_WINDOWS} windows of {LATE_LENGTH:.0f} s, "
        f"{LATE_PERIOD - LATE_LENGTH:.0f} s gaps, manifest i shifted by {LATE_STEP} s x i "
        f"(7.5 mutating calls/s on one App ID): {2 * LATE_MANIFESTS * LATE_WINDOWS} boundaries "
        "a run. Lateness = arrival(start) - window start, arrival(stop) - window end.",
        "",
        "| runs | boundaries | min s | median s | p99 s | max s | early (< 0) | > 1 s | missing "
        "| 429s | max calls/1 s | boundary pass ms (median, max) | SIGTERM exit |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    if not runs:
        return [*lines, "", "- no run could be measured: **MISS**"]
    lines.append(
        f"| {len(runs)} | {_stats([r['boundaries'] for r in runs], '{:.0f}')} "
        f"| {_stats([r['min'] for r in runs], '{:.3f}')} "
        f"| {_stats([r['median'] for r in runs], '{:.3f}')} "
        f"| {_stats([r['p99'] for r in runs], '{:.3f}')} "
        f"| {_stats([r['max'] for r in runs], '{:.3f}')} "
        f"| {sum(r['early'] for r in runs)} | {sum(r['over_1s'] for r in runs)} "
        f"| {sum(r['missing'] for r in runs)} | {sum(r['rate_limited'] for r in runs)} "
        f"| {max(r['max_per_1s'] for r in runs)} "
        f"| {_stats([r['boundary_pass_ms_median'] for r in runs], '{:.0f}')}, "
        f"{_stats([r['boundary_pass_ms_max'] for r in runs], '{:.0f}')} "
        f"| {sorted({r['exit_code'] for r in runs}, key=str)} |"
    )
    worst = max(r["p99"] for r in runs)
    return [
        *lines,
        "",
        f"- p99 lateness <= 1 s (worst run {worst:.3f} s): {_verdict(worst <= 1.0)}",
        f"- no boundary early ({sum(r['early'] for r in runs)} early): "
        f"{_verdict(all(r['early'] == 0 for r in runs))}",
        f"- every boundary reached the API ({sum(r['missing'] for r in runs)} missing): "
        f"{_verdict(all(r['missing'] == 0 for r in runs))}",
    ]


def _render_edits(result: dict[str, Any]) -> list[str]:
    runs = result["runs"].get("edits", [])
    if not runs:
        return ["- no run could be measured: **MISS**"]
    layout = [v for r in runs for v in r["layout_s"]]
    update = [v for r in runs for v in r["update_s"]]
    delete = [r["delete_s"] for r in runs]
    held = [r["held_start_late_s"] for r in runs]
    rows = [
        ("layout edit -> `updateLayout` arrives", layout, EDIT_TARGET),
        ("subscription edit -> `update` arrives", update, EDIT_TARGET),
        ("manifest deleted -> `stop` arrives", delete, EDIT_TARGET),
        ("window start while another stop and a query are held 8 s (D2)", held, HELD_TARGET),
    ]
    lines = [
        f"One always-on recording edited {EDIT_ROUNDS} times (layout), {EDIT_ROUNDS} times "
        "(subscription), one deleted; watchInterval 1s (the default), resyncInterval 2s. "
        "Seconds from the write (or the unlink) to the call's arrival at the emulator.",
        "",
        "| measure | target | n | measured | verdict |",
        "|---|---|---|---|---|",
    ]
    for what, values, target in rows:
        lines.append(
            f"| {what} | <= {target:g} s | {len(values)} | {_stats(values)} "
            f"| {_verdict(max(values) <= target)} |"
        )
    return lines


def _render_idle(result: dict[str, Any]) -> list[str]:
    (variant, runs), *_ = result["runs"].items() or [("-", [])]
    if not runs:
        return ["- no run could be measured: **MISS**"]
    resync_all = [v for r in runs for v in r["resync_ms"]]
    edits = [e for r in runs for e in r["edits"] if e["kind"] == "edit" and e["reloaded"]]
    touches = [e for r in runs for e in r["edits"] if e["kind"] == "touch"]
    rows = [
        (
            "RSS after 30 s idle (VmRSS)",
            "<= 200 MB",
            _stats([r["rss_idle_mb"] for r in runs], "{:.0f} MB"),
            max(r["rss_idle_mb"] for r in runs) <= 200,
        ),
        (
            "peak RSS (VmHWM, whole run)",
            "(<= 200 MB)",
            _stats([r["hwm_mb"] for r in runs], "{:.0f} MB"),
            max(r["hwm_mb"] for r in runs) <= 200,
        ),
        (
            "RSS after 60 s idle on a restart (phase B: same tree, store already filled)",
            "<= 200 MB",
            _stats([r["b_rss_mb"] for r in runs], "{:.1f} MB"),
            max(r["b_rss_mb"] for r in runs) <= 200,
        ),
        (
            "peak RSS on a restart (VmHWM, phase B)",
            "(<= 200 MB)",
            _stats([r["b_hwm_mb"] for r in runs], "{:.1f} MB"),
            max(r["b_hwm_mb"] for r in runs) <= 200,
        ),
        (
            "CPU over 30 s idle (resync every 5 s)",
            "<= 2 % of a core",
            _stats([r["cpu_percent"] for r in runs], "{:.2f} %"),
            max(r["cpu_percent"] for r in runs) <= 2,
        ),
        (
            "CPU over 60 s idle, default resyncInterval 60s (restart, phase B: "
            f"{sum(len(r['b_resync_ms']) for r in runs)} resync passes in all)",
            "(<= 2 %)",
            _stats([r["b_cpu_percent"] for r in runs], "{:.2f} %"),
            max(r["b_cpu_percent"] for r in runs) <= 2,
        ),
        (
            f"pass with nothing due (`resync`, {len(resync_all)} passes)",
            "<= 200 ms",
            _stats(resync_all, "{:.0f} ms"),
            max(resync_all, default=math.inf) <= 200,
        ),
        (
            "first pass (`start`, queries nothing)",
            "-",
            _stats([r["first_pass_ms"] for r in runs], "{:.0f} ms"),
            None,
        ),
        (
            "reload of all (`manifests.reloaded`, trigger start)",
            "<= 15 s",
            _stats([r["reload_all_ms"] / 1000 for r in runs], "{:.2f} s"),
            max(r["reload_all_ms"] for r in runs) <= 15_000,
        ),
        (
            "launch to `daemon.ready`",
            "-",
            _stats([r["launch_to_ready_s"] for r in runs], "{:.2f} s"),
            None,
        ),
        (
            "launch to `daemon.ready` on a restart (phase B)",
            "-",
            _stats([r["b_launch_to_ready_s"] for r in runs], "{:.2f} s"),
            None,
        ),
        (
            "reload of all on a restart (store holds the known-good rows)",
            "(<= 15 s)",
            _stats([r["b_reload_all_ms"] / 1000 for r in runs], "{:.2f} s"),
            max(r["b_reload_all_ms"] for r in runs) <= 15_000,
        ),
        (
            f"reload after one file edited (trigger watch, {len(edits)} edits)",
            "<= 100 ms",
            _stats([e["duration_ms"] for e in edits], "{:.0f} ms"),
            bool(edits) and max(e["duration_ms"] for e in edits) <= 100,
        ),
        (
            "  edit to `manifests.reloaded` logged (incl. 300 ms debounce)",
            "-",
            _stats([e["after_write_s"] * 1000 for e in edits], "{:.0f} ms"),
            None,
        ),
        (
            "reload after a bare touch (mtime only)",
            "-",
            _stats([e["duration_ms"] for e in touches if e["reloaded"]], "{:.0f} ms")
            + f" ({sum(1 for e in touches if e['reloaded'])}/{len(touches)} reloaded)",
            None,
        ),
        (
            "pass after an edit (`reload`)",
            "-",
            _stats([v for r in runs for v in r["reload_pass_ms"]], "{:.0f} ms"),
            None,
        ),
        (
            "API calls during the run",
            "0",
            str(sum(r["api_calls"] for r in runs)),
            all(r["api_calls"] == 0 for r in runs),
        ),
        (
            "SIGTERM (both phases): exit codes, seconds",
            "0",
            f"{sorted({r[k] for r in runs for k in ('exit_code', 'b_exit_code')}, key=str)}, "
            + _stats([r[k] for r in runs for k in ("exit_seconds", "b_exit_seconds")]),
            all(r["exit_code"] == 0 and r["b_exit_code"] == 0 for r in runs),
        ),
    ]
    lines = [
        f"{variant} manifests (one per file; daily cron windows in 8 time zones, all >= 7 h "
        f"away), {len(runs)} runs; resyncInterval 5s, watchInterval 300ms.",
        "",
        "| measure | target | measured | verdict |",
        "|---|---|---|---|",
    ]
    for what, target, measured, ok in rows:
        lines.append(f"| {what} | {target} | {measured} | {'-' if ok is None else _verdict(ok)} |")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "scenario",
        nargs="?",
        default="all",
        choices=["burst", "lateness", "edits", "idle", "all", "report"],
    )
    parser.add_argument("files", nargs="*", type=Path, help="report: saved JSON results")
    parser.add_argument("--runs", type=int, default=None, help="runs (default 3)")
    parser.add_argument("--manifests", type=int, default=10_000, help="idle: manifests")
    parser.add_argument(
        "--history",
        type=int,
        default=0,
        help="idle: days of history in the store (a finished session a day per manifest)",
    )
    parser.add_argument("--json", type=Path, default=None, help="save the results here")
    parser.add_argument("--write", type=Path, default=None, help="write the markdown report")
    parser.add_argument("--keep", action="store_true", help="keep the temp dirs")
    args = parser.parse_args()

    def interrupted(_signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)
    command = "benchmarks/daemon_bench.py " + " ".join(sys.argv[1:])
    if args.scenario == "report":
        results = [json.loads(p.read_text(encoding="utf-8")) for p in args.files]
        results = [r for group in results for r in (group if isinstance(group, list) else [group])]
        command = " && ".join(dict.fromkeys(r.get("command", "?") for r in results))
    else:
        names = (
            ["burst", "lateness", "edits", "idle"] if args.scenario == "all" else [args.scenario]
        )
        results = []
        for name in names:
            result = run_scenario(name, args.runs or 3, args)
            result["command"] = f".venv/bin/python {command}"
            results.append(result)
        if args.json:
            args.json.write_text(json.dumps(results, indent=1, default=str), encoding="utf-8")
    report = render(results, command)
    print(report)
    if args.write:
        args.write.write_text(report, encoding="utf-8")
    ok = True
    for r in results:
        runs = [x for group in r["runs"].values() for x in group]
        check = {
            "burst": burst_passed,
            "lateness": lateness_passed,
            "edits": edits_passed,
        }.get(r["scenario"])
        ok &= not r["errors"] and bool(runs) and (check is None or all(check(x) for x in runs))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
