"""The daemon's wake-ups (`Timers`), on a real APScheduler and event loop.

Covers: a wake-up the scheduler fires a hair early (its clock ahead of the daemon's)
waits for its instant without holding the job back: the job re-armed meanwhile for
an earlier instant still runs (APScheduler skipped it while a run of the job
waited); one re-armed for the same instant or a later one wakes nothing more (the
pass of the one that waits re-arms the job for it).
"""

from __future__ import annotations

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
    # Past by the scheduler's clock, each fires at once: by ours that is early.
    first = behind() + timedelta(seconds=3)
    sooner = first - timedelta(seconds=2)

    def on_boundary(_trigger: str) -> None:
        woken.append(behind())
        if len(woken) == 1:
            timers.backoff(first)  # as a pass re-arms for what is still to come

    timers = Timers(
        tasks, behind, resync_seconds=3600, on_boundary=on_boundary, on_resync=lambda: None
    )
    timers.start()
    try:
        timers.backoff(first)
        await wait_until(lambda: tasks.of("timer"), within=10, what="the first wake-up")
        timers.backoff(first)  # the same instant again, and a later one: no more waits
        timers.backoff(first + timedelta(seconds=1))
        timers.backoff(sooner)  # re-armed while it waits, for sooner: that one wakes
        await wait_until(lambda: len(woken) == 2, within=10, what="two wake-ups")
        await wait_until(lambda: not tasks.of("timer"), within=10, what="no wait left")
        assert len(woken) == 2 and woken[0] >= sooner and woken[1] >= first
    finally:
        await timers.stop()
        await tasks.cancel(list(tasks.of("timer")))
