"""Rate-limit benchmark: the client's shared RateLimiter against the emulator's 10/s/App ID.

Scenario A: 300 `query` calls from 50 concurrent callers on one App ID.
Scenario B: the same 300 calls from 50 callers spread over 4 App IDs.
Targets: zero 429s; achieved rate >= 95 % of the limit (>= 9.5/s on one App ID,
>= 38/s over four). Retries are off, so a 429 would show up as a failed call.

Run: `.venv/bin/python benchmarks/ratelimit_bench.py [--write benchmarks/results-ratelimit.md]`
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from orchestrator.agora.client import AgoraClient, RateLimiter, RetryPolicy
from orchestrator.agora.emulator import AppConfig, EmulatorConfig, running_emulator
from orchestrator.agora.errors import AgoraError
from orchestrator.logging import configure_logging

APPS = tuple(f"{n:032x}" for n in (0xB1, 0xB2, 0xB3, 0xB4))
CALLS = 300
CALLERS = 50
LIMIT = 10
CUSTOMER_ID = "bench"
CUSTOMER_SECRET = "bench-secret"  # noqa: S105  # a throwaway credential of the local emulator


@dataclass
class Result:
    name: str
    apps: int
    calls: int
    failures: int
    rate_limited: int
    seconds: float
    max_in_window: int

    @property
    def rate(self) -> float:
        return self.calls / self.seconds

    @property
    def target(self) -> float:
        return 0.95 * LIMIT * self.apps

    @property
    def passed(self) -> bool:
        return self.rate_limited == 0 and self.failures == 0 and self.rate >= self.target


async def _scenario(name: str, apps: tuple[str, ...]) -> Result:
    config = EmulatorConfig(
        customer_id=CUSTOMER_ID,
        customer_secret=CUSTOMER_SECRET,
        apps={a: AppConfig() for a in apps},
    )
    async with running_emulator(config) as emu:
        limiter = RateLimiter(per_second=LIMIT)
        async with AgoraClient(
            customer_id=CUSTOMER_ID,
            customer_secret=CUSTOMER_SECRET,
            base_url=emu.base_url,
            limiter=limiter,
            retry=RetryPolicy(max_attempts=1),
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
        for app in apps:
            times = sorted(r["time"] for r in records if f"/apps/{app}/" in r["path"])
            for i, t in enumerate(times):
                count = sum(1 for u in times[i:] if u < t + 1.0)
                max_in_window = max(max_in_window, count)
    return Result(name, len(apps), CALLS, failures, rate_limited, seconds, max_in_window)


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


def _report(results: list[Result]) -> str:
    lines = [
        f"## {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "",
        f"Machine: {_machine()}. {CALLS} `query` calls, {CALLERS} concurrent callers, "
        f"limit {LIMIT}/s per App ID, client window {RateLimiter().window} s.",
        "",
        "| scenario | App IDs | calls | 429s | failures | seconds | achieved/s | target/s "
        "| max per 1 s window per App ID | result |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r.name} | {r.apps} | {r.calls} | {r.rate_limited} | {r.failures} | "
            f"{r.seconds:.2f} | {r.rate:.2f} | {r.target:.1f} | {r.max_in_window} | "
            f"{'pass' if r.passed else 'FAIL'} |"
        )
    return "\n".join(lines) + "\n"


async def _main() -> list[Result]:
    return [
        await _scenario("one App ID", APPS[:1]),
        await _scenario("four App IDs", APPS),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", type=Path, help="append the results to this Markdown file")
    args = parser.parse_args()
    configure_logging("warning")  # one event per call would drown the report
    results = asyncio.run(_main())
    report = _report(results)
    print(report)
    if args.write:
        with args.write.open("a", encoding="utf-8") as out:
            out.write("\n" + report)
    return 0 if all(r.passed for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
