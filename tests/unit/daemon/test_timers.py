"""The daemon's wake-ups (`Timers`), on a real APScheduler and event loop.

Covers: a wake-up the scheduler fires a hair early (its clock ahead of the daemon's)
waits for its instant without holding the job back: the job re-armed meanwhile for
the next instant still runs (APScheduler skipped it while a run of the job waited).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from orchestrator.daemon.tasks import TaskRegistry
from orchestrator.daemon.timers import Timers
from tests.harness import wait_until

LAG = timedelta(seconds=5)  # the daemon's clock behind the scheduler's


def behind() -> datetime:
    return datetime.now(UTC) - LAG


async def test_an_early_wake_up_waits_without_holding_the_next_one_back() -> None:
    tasks = TaskRegistry()
    woken: list[datetime] = []
    both = asyncio.Event()

    def on_boundary(_trigger: str) -> None:
        woken.append(behind())
        if len(woken) == 2:
            both.set()

    timers = Timers(
        tasks, behind, resync_seconds=3600, on_boundary=on_boundary, on_resync=lambda: None
    )
    timers.start()
    try:
        # Past by the scheduler's clock, it fires at once: by ours that is 2 s early.
        first = behind() + timedelta(seconds=2)
        timers.backoff(first)
        await wait_until(lambda: tasks.of("timer"), within=10, what="the first wake-up")
        second = first + timedelta(seconds=0.1)
        timers.backoff(second)  # re-armed while the first one waits
        await asyncio.wait_for(both.wait(), timeout=10)
        assert woken[0] >= first and woken[1] >= second
    finally:
        await timers.stop()
        await tasks.cancel(list(tasks.of("timer")))
