"""Rate-limit benchmark: the client's shared RateLimiter against the emulator's 10/s/App ID.

Scenario A: 300 `query` calls from 50 concurrent callers on one App ID.
Scenario B: the same 300 calls from 50 callers spread over 4 App IDs.
Targets: zero 429s; achieved rate (calls over wall time) and steady rate (at the
server, once the opening burst is over) >= 95 % of the limit (>= 9.5/s on one App
ID, >= 38/s over four). Retries are off, so a 429 would show up as a failed call.
Each scenario runs `--runs` times (default 5); the report gives medians, and the
worst of 429s, failures and arrivals per one-second window.

`--hogs N` runs N CPU-burning processes meanwhile (ended by pid at the end), to see
what load costs: the limiter keeps a slot busy for one window plus the request's
latency, so the rate falls as latency grows, while 429s must stay at zero.

Run: `.venv/bin/python benchmarks/ratelimit_bench.py [--runs 5] [--hogs 0]
[--write benchmarks/results-ratelimit.md]`
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from orchestrator.agora.client import AgoraClient, ApiCall, RateLimiter, RetryPolicy
from orchestrator.agora.errors import AgoraError
from orchestrator.emulator import AppConfig, EmulatorConfig, running_emulator
from orchestrator.logging import configure_logging

APPS = tuple(f"{n:032x}" for n in (0xB1, 0xB2, 0xB3, 0xB4))
CALLS = 300
CALLERS = 50
LIMIT = 10
CUSTOMER_ID = "bench"
CUSTOMER_SECRET = "bench-secret"  # noqa: S105  # a throwaway credential of the local emulator
#: Burns one CPU; ends itself after 15 minutes should the benchmark die first.
HOG = "import time\nend = time.monotonic() + 900\nwhile time.monotonic() < end:\n    pass\n"


@dataclass
class Run:
    calls: int
    failures: int
    rate_limited: int
    seconds: float
    max_in_window: int
    steady: float  # requests/s at the server once each App ID's opening burst is over
    latency: float  # median seconds from send to answer

    @property
    def rate(self) -> float:
        return self.calls / self.seconds


@dataclass
class Result:
    name: str
    apps: int
    runs: list[Run]

    @property
    def target(self) -> float:
        return 0.95 * LIMIT * self.apps

    def median(self, value: Callable[[Run], float]) -> float:
        return statistics.median(value(run) for run in self.runs)

    @property
    def passed(self) -> bool:
        clean = all(r.rate_limited == 0 and r.failures == 0 for r in self.runs)
        fast = min(self.median(lambda run: run.rate), self.median(lambda run: run.steady))
        return clean and fast >= self.target


def _steady_rate(times: list[float]) -> float:
    """Arrivals per second once the opening burst is over: LIMIT over the median
    time that LIMIT further arrivals take (one window plus a request's latency)."""
    spans = [times[i + LIMIT] - times[i] for i in range(len(times) - LIMIT)]
    return LIMIT / statistics.median(spans) if spans else 0.0


async def _scenario(apps: tuple[str, ...]) -> Run:
    config = EmulatorConfig(
        customer_id=CUSTOMER_ID,
        customer_secret=CUSTOMER_SECRET,
        apps={a: AppConfig() for a in apps},
    )
    latencies: list[float] = []

    def observe(call: ApiCall) -> None:
        if call.endpoint == "query":
            latencies.append(call.latency)

    async with running_emulator(config) as emu:
        limiter = RateLimiter(per_second=LIMIT)
        async with AgoraClient(
            customer_id=CUSTOMER_ID,
            customer_secret=CUSTOMER_SECRET,
            base_url=emu.base_url,
            limiter=limiter,
            retry=RetryPolicy(max_attempts=1),
            on_call=observe,
        ) as client:
            sessions = {}
            for app in apps:
                body = {"cname": "bench", "uid": "1", "clientRequest": {}}
                rid = await client.acquire(app, body)
                start = {**body, "clientRequest": {"recordingConfig": {}}}
                sessions[app] = (rid, await client.start(app, rid, "mix", start))
            await asyncio.sleep(1.2)  # let set-up calls leave both windows
            emu.received.clear()

            queue: asyncio.Queue[str] = asyncio.Queue()
            for i in range(CALLS):
                queue.put_nowait(apps[i % len(apps)])
            failures = 0

            async def caller() -> None:
                nonlocal failures
                while not queue.empty():
                    app = queue.get_nowait()
                    rid, sid = sessions[app]
                    try:
                        await client.query(app, rid, sid, "mix")
                    except AgoraError:
                        failures += 1

            started = time.monotonic()
            await asyncio.gather(*(caller() for _ in range(CALLERS)))
            seconds = time.monotonic() - started

        records = emu.requests("query")
        rate_limited = sum(1 for r in records if r["status"] == 429)
        max_in_window = 0
        steady = 0.0
        for app in apps:
            times = sorted(r["time"] for r in records if f"/apps/{app}/" in r["path"])
            steady += _steady_rate(times)
            for i, t in enumerate(times):
                count = sum(1 for u in times[i:] if u - t < 1.0)
                max_in_window = max(max_in_window, count)
    return Run(
        CALLS,
        failures,
        rate_limited,
        seconds,
        max_in_window,
        steady,
        statistics.median(latencies) if latencies else 0.0,
    )


@contextmanager
def _cpu_hogs(count: int) -> Iterator[None]:
    hogs = [subprocess.Popen([sys.executable, "-c", HOG]) for _ in range(count)]
    try:
        yield
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait(timeout=10)


def _machine() -> str:
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} CPUs (nproc), {cpu}, Python {platform.python_version()}"


def _report(results: list[Result], runs: int, hogs: int) -> str:
    load = f"{hogs} CPU-burning processes running" if hogs else "no added load"
    lines = [
        f"## {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "",
        f"Machine: {_machine()}. {CALLS} `query` calls, {CALLERS} concurrent callers, "
        f"limit {LIMIT}/s per App ID, client window {RateLimiter().window:.6f} s, "
        f"{load}. Medians of {runs} runs; 429s, failures and the window maximum are "
        "the worst run's.",
        "",
        "| scenario | App IDs | calls | 429s | failures | seconds | achieved/s | steady/s "
        "| target/s | median latency ms | max per 1 s window per App ID | result |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        worst_429 = max(run.rate_limited for run in r.runs)
        worst_failures = max(run.failures for run in r.runs)
        worst_window = max(run.max_in_window for run in r.runs)
        lines.append(
            f"| {r.name} | {r.apps} | {CALLS} | {worst_429} | {worst_failures} | "
            f"{r.median(lambda run: run.seconds):.2f} | {r.median(lambda run: run.rate):.2f} | "
            f"{r.median(lambda run: run.steady):.2f} | {r.target:.1f} | "
            f"{r.median(lambda run: run.latency) * 1000:.1f} | {worst_window} | "
            f"{'pass' if r.passed else 'FAIL'} |"
        )
    rates = ", ".join(
        f"{r.name}: " + " ".join(f"{run.rate:.2f}" for run in r.runs) for r in results
    )
    lines += ["", f"Achieved/s of each run: {rates}."]
    return "\n".join(lines) + "\n"


async def _main(runs: int) -> list[Result]:
    one = Result("one App ID", 1, [])
    four = Result("four App IDs", 4, [])
    for _ in range(runs):
        one.runs.append(await _scenario(APPS[:1]))
        four.runs.append(await _scenario(APPS))
    return [one, four]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per scenario (median reported)")
    parser.add_argument("--hogs", type=int, default=0, help="CPU-burning processes meanwhile")
    parser.add_argument("--write", type=Path, help="append the results to this Markdown file")
    args = parser.parse_args()
    configure_logging("warning")  # one event per call would drown the report
    with _cpu_hogs(args.hogs):
        results = asyncio.run(_main(args.runs))
    report = _report(results, args.runs, args.hogs)
    print(report)
    if args.write:
        with args.write.open("a", encoding="utf-8") as out:
            out.write("\n" + report)
    return 0 if all(r.passed for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
