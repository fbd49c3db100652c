"""Flood benchmark: /healthz and window boundaries while 2,000 idle connections are
held open to the daemon's metrics address (issue 17, item 6).

`orchestrator emulator` and `orchestrator run` as processes on 127.0.0.1 (the test
harness, tests/harness), the daemon started with RLIMIT_NOFILE 1024:1024 (systemd's
default soft limit, with no hard limit above it: the worst case, where only the
listener's own bounds protect the API calls). Each run, in a fresh temp dir:

1. the daemon ready (metrics on port 0, resync every 10 minutes, so only boundaries
   wake it), a prober thread sending `GET /healthz` on a new connection every 100 ms
   (5 s timeout) and a sampler thread counting the daemon's descriptors
   (/proc/PID/fd) every 50 ms, both for the whole run;
2. 4 manifests written and loaded (`manifests.reloaded`), their windows opening 8.0,
   8.5, 9.0 and 9.5 s later and lasting 3 s;
3. `--flood` (2,000) TCP connections opened to the metrics address, all at once,
   each connect bounded (5 s), none ever sending a byte: the probes meanwhile are the
   `burst` figures, those from then on the `held` ones; the windows open and close
   with the flood held; lateness = arrival at the emulator of each `start` minus its
   window's start, of each `stop` minus its end;
4. if a stop has not arrived 15 s after its window's end, the flood is released and
   the wait goes on (30 s): the lateness then counts the flood's length, as in the
   issue's report ("8.9 s late, until the connections closed");
5. the flood closed, SIGTERM, the exit status; the daemon's log read for lines that
   are not JSON and for lines that say a descriptor ran out.

`--source DIR` runs the children from another checkout of the package (PYTHONPATH),
e.g. `git archive HEAD | tar -x -C /tmp/before` for the figures before a change.

Every process is ended by its pid (the harness) whatever happens; every wait is
bounded; each run has a hard budget.

Run: `.venv/bin/python benchmarks/flood_bench.py [--runs N] [--flood N] [--json FILE]
[--source DIR] [--keep]`; it prints a markdown section for benchmarks/results-flood.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import resource
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the process harness lives in tests/harness

from tests.harness import (  # noqa: E402
    Daemon,
    Processes,
    WaitTimeout,
    config_data,
    parse_event,
    wait_until,
    write_config,
)

APP_ID = f"{0xF1:032x}"
CUSTOMER_ID = "flood-customer"
CUSTOMER_SECRET = "flood-customer-secret"  # noqa: S105  # the local emulator's throwaway credential
ENV = {
    "FLOOD_CUSTOMER_ID": CUSTOMER_ID,
    "FLOOD_CUSTOMER_SECRET": CUSTOMER_SECRET,
    "FLOOD_S3_KEY": "flood-s3-access",
    "FLOOD_S3_SECRET": "flood-s3-secret",
}
LIMIT = (1024, 1024)  # the daemon's RLIMIT_NOFILE (soft, hard)
LISTENER_UID = "9000"  # a broadcaster in every channel, so nothing idles out
WINDOWS = 4
OUT_OF_DESCRIPTORS = ("Too many open files", "out of system resource", "EMFILE")
PROBE_EVERY = 0.1
# All connects at once, each bounded: the flood is in place (or given up on) within
# CONNECT_WITHIN, and the windows open FLOOD_LEAD after the manifests are written.
CONNECT_WITHIN = 5.0
FLOOD_LEAD = 8.0
PROBE_TIMEOUT = 5.0
RUN_BUDGET = 240.0


def limited(soft: int, hard: int) -> tuple[str, ...]:
    """A command prefix running the rest with RLIMIT_NOFILE soft:hard (then exec)."""
    code = (
        "import os, resource, sys\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (int(sys.argv[1]), int(sys.argv[2])))\n"
        "os.execv(sys.argv[3], sys.argv[3:])\n"
    )
    return (sys.executable, "-c", code, str(soft), str(hard))


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")


def manifest(name: str, channel: str, uid: int, opens: float, closes: float) -> str:
    return (
        f"name: {name}\n"
        "app: main\n"
        f"channel: {channel}\n"
        f"uid: {uid}\n"
        "mode: mix\n"
        f"schedule: {{windows: [{{start: '{iso(opens)}', end: '{iso(closes)}'}}]}}\n"
        "recording: {channelType: live, streams: audio+video, maxIdleTime: 300}\n"
        "storage:\n"
        "  vendor: aws-s3\n"
        "  region: us-east-1\n"
        "  bucket: flood\n"
        "  accessKey: {env: FLOOD_S3_KEY}\n"
        "  secretKey: {env: FLOOD_S3_SECRET}\n"
    )


@dataclass
class Probe:
    at: float  # epoch seconds it was sent
    seconds: float
    ok: bool  # a 200 within PROBE_TIMEOUT


@dataclass
class Background:
    """The prober and the descriptor sampler, each a thread until `stop`."""

    host: str
    port: int
    pid: int
    probes: list[Probe] = field(default_factory=list)
    descriptors: list[int] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        for target in (self._probe, self._sample):
            thread = threading.Thread(target=target, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(PROBE_TIMEOUT + 5)

    def _probe(self) -> None:
        while not self._stop.wait(PROBE_EVERY):
            at, began = time.time(), time.monotonic()
            self.probes.append(Probe(at, *self._healthz(began)))

    def _healthz(self, began: float) -> tuple[float, bool]:
        try:
            with socket.create_connection((self.host, self.port), timeout=PROBE_TIMEOUT) as sock:
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                answer = b""
                while chunk := sock.recv(65536):
                    answer += chunk
        except OSError:
            return time.monotonic() - began, False
        return time.monotonic() - began, answer.startswith(b"HTTP/1.1 200")

    def _sample(self) -> None:
        while not self._stop.wait(0.05):
            try:
                self.descriptors.append(len(os.listdir(f"/proc/{self.pid}/fd")))
            except OSError:
                return


async def open_flood(
    host: str, port: int, count: int, sockets: list[socket.socket]
) -> tuple[int, float]:
    """`count` idle connections (appended to `sockets`): (connected, seconds)."""
    loop = asyncio.get_running_loop()
    began = time.monotonic()

    async def one() -> bool:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sockets.append(sock)
        try:
            await asyncio.wait_for(loop.sock_connect(sock, (host, port)), CONNECT_WITHIN)
        except (TimeoutError, OSError):
            return False  # left half-open: the daemon's kernel still holds it
        return True

    done = await asyncio.gather(*(one() for _ in range(count)))
    return sum(done), time.monotonic() - began


def arrivals(requests: list[dict[str, Any]], endpoint: str) -> dict[str, float]:
    """Channel -> arrival time at the emulator of its first `endpoint` call."""
    out: dict[str, float] = {}
    for r in requests:
        if r["endpoint"] == endpoint and isinstance(r.get("body"), dict):
            out.setdefault(str(r["body"]["cname"]), float(r["time"]))
    return out


def summary(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"n": 0, "median": None, "p95": None, "max": None}
    ordered = sorted(values)
    return {
        "n": len(ordered),
        "median": round(statistics.median(ordered), 4),
        "p95": round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], 4),
        "max": round(ordered[-1], 4),
    }


async def one_run(flood: int, source: Path | None, keep: bool) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="flood-bench-"))
    env = dict(ENV)
    if source is not None:
        env["PYTHONPATH"] = str(source)
    processes = Processes(root, env)
    sockets: list[socket.socket] = []
    background: Background | None = None
    try:
        emulator = await processes.emulator(
            [APP_ID], customer_id=CUSTOMER_ID, customer_secret=CUSTOMER_SECRET
        ).started(within=30)
        (root / "recordings.d").mkdir()
        data = config_data(
            {"main": APP_ID},
            emulator.base_url,
            resync="10m",
            customer=("FLOOD_CUSTOMER_ID", "FLOOD_CUSTOMER_SECRET"),
        )
        config = write_config(root / "config.yaml", data)
        daemon: Daemon = processes.daemon(config, wrapper=limited(*LIMIT))
        await daemon.ready(within=60)
        host, _, port = (await daemon.metrics_url()).removeprefix("http://").rpartition(":")
        for i in range(WINDOWS):
            await emulator.set_users(APP_ID, f"flood-{i}", [LISTENER_UID])
        background = Background(host, int(port), daemon.pid)
        background.start()

        planned = []
        for i in range(WINDOWS):
            opens = time.time() + FLOOD_LEAD + 0.5 * i
            planned.append((opens, opens + 3.0))
        for i, (opens, closes) in enumerate(planned):
            path = root / "recordings.d" / f"flood-{i}.yaml"
            tmp = path.with_name(f".{path.name}.tmp")
            tmp.write_text(manifest(f"flood-{i}", f"flood-{i}", 100 + i, opens, closes))
            os.replace(tmp, path)  # whole, as git writes it
        await daemon.wait_event("manifests.reloaded", manifests=WINDOWS, within=30)

        burst_began = time.time()
        connected, opening = await open_flood(host, int(port), flood, sockets)
        held_began = time.time()

        async def stops() -> bool:
            return len(await emulator.requests("stop")) >= WINDOWS

        released_at = None
        last = max(c for _, c in planned)
        try:
            await wait_until(stops, within=last - time.time() + 15, what="the stops", every=0.1)
        except WaitTimeout:
            released_at = time.time()
            for sock in sockets:
                sock.close()
            with contextlib.suppress(WaitTimeout):  # what is missing is a figure
                await wait_until(stops, within=30, what="the stops after the flood", every=0.1)
        held_ended = time.time()
        for sock in sockets:
            sock.close()
        background.stop()
        code = await daemon.stop(within=30)

        requests = await emulator.requests()
        started, stopped = arrivals(requests, "start"), arrivals(requests, "stop")
        start_late = [
            started[f"flood-{i}"] - o for i, (o, _) in enumerate(planned) if f"flood-{i}" in started
        ]
        stop_late = [
            stopped[f"flood-{i}"] - c for i, (_, c) in enumerate(planned) if f"flood-{i}" in stopped
        ]
        lines = daemon.log.lines()
        burst = [p for p in background.probes if burst_began <= p.at < held_began]
        held = [p for p in background.probes if held_began <= p.at < (released_at or held_ended)]
        return {
            "connected": connected,
            "opening_s": round(opening, 2),
            "burst_healthz_s": summary([p.seconds for p in burst if p.ok]),
            "burst_failed": sum(1 for p in burst if not p.ok),
            "held_healthz_s": summary([p.seconds for p in held if p.ok]),
            "held_failed": sum(1 for p in held if not p.ok),
            "start_late_s": summary(start_late),
            "stop_late_s": summary(stop_late),
            "missing": 2 * WINDOWS - len(start_late) - len(stop_late),
            "released_flood": released_at is not None,
            "max_descriptors": max(background.descriptors, default=None),
            "not_json_lines": sum(1 for line in lines if parse_event(line) is None),
            "descriptor_error_lines": sum(
                1 for line in lines if any(s in line for s in OUT_OF_DESCRIPTORS)
            ),
            "exit": code,
        }
    finally:
        for sock in sockets:
            sock.close()
        if background is not None:
            background.stop()
        await processes.close()
        if keep:
            print(f"kept: {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)


def median_of(runs: list[dict[str, Any]], key: str, part: str | None = None) -> str:
    values = [r[key][part] if part else r[key] for r in runs]
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    return f"{statistics.median(values):g} ({min(values):g}-{max(values):g})"


def markdown(runs: list[dict[str, Any]], flood: int, source: Path | None) -> str:
    load = os.getloadavg()[0]
    rows = [
        ("connections opened (completed)", median_of(runs, "connected")),
        ("seconds to open them", median_of(runs, "opening_s")),
        ("/healthz while they open: median s", median_of(runs, "burst_healthz_s", "median")),
        ("/healthz while they open: max s", median_of(runs, "burst_healthz_s", "max")),
        ("/healthz while they open: failed (of ~n)", median_of(runs, "burst_failed")),
        ("/healthz with the flood held: median s", median_of(runs, "held_healthz_s", "median")),
        ("/healthz with the flood held: p95 s", median_of(runs, "held_healthz_s", "p95")),
        ("/healthz with the flood held: max s", median_of(runs, "held_healthz_s", "max")),
        ("/healthz with the flood held: failed", median_of(runs, "held_failed")),
        ("start lateness: median s", median_of(runs, "start_late_s", "median")),
        ("start lateness: max s", median_of(runs, "start_late_s", "max")),
        ("stop lateness: median s", median_of(runs, "stop_late_s", "median")),
        ("stop lateness: max s", median_of(runs, "stop_late_s", "max")),
        ("boundaries missing", median_of(runs, "missing")),
        ("flood released to let the stops through", str([r["released_flood"] for r in runs])),
        ("daemon's descriptors, peak (limit 1024)", median_of(runs, "max_descriptors")),
        ("log lines not JSON", median_of(runs, "not_json_lines")),
        ("log lines: out of descriptors", median_of(runs, "descriptor_error_lines")),
        ("SIGTERM exit", str([r["exit"] for r in runs])),
    ]
    out = [
        f"## {datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
        + (f" (children from {source})" if source else ""),
        "",
        f"Machine: {os.cpu_count()} CPUs, {platform.machine()}, {platform.system()} "
        f"{platform.release()}, Python {platform.python_version()}; 1-min load average "
        f"{load:.2f} at the end. {len(runs)} runs, flood {flood}, daemon RLIMIT_NOFILE "
        f"{LIMIT[0]}:{LIMIT[1]}. Cells: median (min-max) over the runs of each run's figure.",
        "",
        "| measure | figure |",
        "|---|---|",
        *(f"| {name} | {value} |" for name, value in rows),
    ]
    return "\n".join(out)


async def bench(runs: int, flood: int, source: Path | None, keep: bool) -> list[dict[str, Any]]:
    results = []
    for i in range(runs):
        async with asyncio.timeout(RUN_BUDGET):
            result = await one_run(flood, source, keep)
        print(f"run {i + 1}/{runs}: {json.dumps(result)}", file=sys.stderr)
        results.append(result)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--flood", type=int, default=2000)
    parser.add_argument("--json", type=Path, help="also write the runs' figures here")
    parser.add_argument("--source", type=Path, help="run the children from this checkout")
    parser.add_argument("--keep", action="store_true", help="keep each run's directory (logs)")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < args.flood + 512:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, args.flood + 512), hard))
    results = asyncio.run(bench(args.runs, args.flood, args.source, args.keep))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    print(markdown(results, args.flood, args.source))


if __name__ == "__main__":
    main()
