"""A process's first second: the limiter holds every slot until `quiet_until`, since a
predecessor (a restart, a crash and its restart, the previous command) may have used
the App ID's whole second just before this process was launched.

Covers: no slot of either class is granted before `quiet_until`, all of them at it;
`in_use` counts the held slots until then; a `quiet_until` already past holds
nothing; `launched_at` is the process's launch on the monotonic clock (before its
first Python statement, not long before), and now where /proc cannot tell;
`build_limiters` holds each limiter until one window after the launch.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from orchestrator import runtime
from orchestrator.agora import RateLimiter, pacing
from orchestrator.agora.pacing import DEFAULT_WINDOW
from orchestrator.config import Config
from tests.unit.agora.virtual_time import VirtualTime

APP = "a" * 32
START = 2048.0


async def test_no_slot_is_granted_before_quiet_until() -> None:
    vt = VirtualTime(START)
    quiet = START + 0.6
    limiter = RateLimiter(10, window=1.0, clock=vt.clock, sleep=vt.sleep, quiet_until=quiet)
    assert limiter.in_use(APP) == 10
    granted: list[tuple[float, bool]] = []

    async def call(query: bool) -> None:
        async with limiter.slot(APP, query=query):
            granted.append((vt.now, query))
            await vt.sleep(0.1)

    await vt.run(*(call(i % 3 == 0) for i in range(12)))
    assert min(at for at, _ in granted) == quiet
    # The ten slots free at `quiet`; the other two wait for the first of them to be
    # answered (0.1 s) and leave the window (1 s).
    assert sorted(at for at, _ in granted)[:10] == [quiet] * 10
    assert all(at >= quiet + 1.1 for at, _ in sorted(granted)[10:])
    assert limiter.in_use(APP) == 2


async def test_a_quiet_until_already_past_holds_nothing() -> None:
    vt = VirtualTime(START)
    limiter = RateLimiter(10, window=1.0, clock=vt.clock, sleep=vt.sleep, quiet_until=START - 1)
    assert limiter.in_use(APP) == 0
    async with limiter.slot(APP):
        assert vt.now == START


def test_launched_at_is_the_process_launch() -> None:
    # The child reads the monotonic clock first thing, then asks when it was launched.
    code = (
        "import time; first = time.monotonic()\n"
        "from orchestrator.agora.pacing import launched_at\n"
        "print(first - launched_at())"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    before_first_statement = float(out.stdout)
    # Launched before its first statement (an interpreter's start-up), by less than
    # the child could have taken to get there; /proc counts in clock ticks, and the
    # launch is taken one tick late rather than early.
    tick = 1.0 / os.sysconf("SC_CLK_TCK")
    assert -tick < before_first_statement < 30


def test_launched_at_is_now_where_proc_cannot_tell(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_clock_ticks(name: str) -> int:
        raise ValueError(name)

    monkeypatch.setattr(os, "sysconf", no_clock_ticks)
    before = time.monotonic()
    assert before <= pacing.launched_at() <= time.monotonic()


def test_each_limiter_is_quiet_until_a_window_after_the_launch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    launched = [0.0]
    monkeypatch.setattr(runtime, "launched_at", lambda: launched[0])
    config = Config.model_validate(
        {
            "apps": {
                "a": {"appId": "A", "customerId": {"env": "X"}, "customerSecret": {"env": "Y"}},
                "b": {
                    "appId": "B",
                    "customerId": {"env": "X"},
                    "customerSecret": {"env": "Y"},
                    "rateLimit": 4,
                },
            }
        }
    )

    def in_use() -> dict[str, int]:
        return {app: limiter.in_use(app) for app, limiter in runtime.build_limiters(config).items()}

    # Launched a minute from now (however slow this machine is): every slot still held.
    launched[0] = time.monotonic() + 60
    assert in_use() == {"A": 10, "B": 4}
    # Launched just over a window ago: the quiet second is over.
    launched[0] = time.monotonic() - DEFAULT_WINDOW - 0.001
    assert in_use() == {"A": 0, "B": 0}
