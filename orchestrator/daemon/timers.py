"""When the daemon wakes: window boundaries, restart backoffs, the periodic resync.

APScheduler (`AsyncIOScheduler`) keeps the two jobs: `boundary`, at the next window
start or end of any manifest (or the next backoff expiry, if sooner), and `resync`,
every `reconcile.resyncInterval`. Its job runs are tasks of the daemon's
`TaskRegistry` (an executor of our own), so they are drained and cancelled at
shutdown like every other task, and none is left behind.

This component is the one owner of the next boundary of each manifest and of the
earliest backoff expiry; `next_wake(now)` only reads them. It must never plan
anything: it calls back (`on_boundary`, `on_resync`) and the passes decide.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from apscheduler.executors.asyncio import AsyncIOExecutor
from apscheduler.executors.base import run_coroutine_job
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from orchestrator.daemon.tasks import TaskRegistry
from orchestrator.reconcile.plan import DesiredRecording
from orchestrator.reconcile.reconciler import Delta

Clock = Callable[[], datetime]


class _OwnedExecutor(AsyncIOExecutor):  # type: ignore[misc]  # APScheduler has no types
    """APScheduler's asyncio executor, but every job run is a task of the registry."""

    def __init__(self, tasks: TaskRegistry) -> None:
        super().__init__()
        self._tasks = tasks

    def _do_submit_job(self, job: Any, run_times: Any) -> None:
        def done(f: asyncio.Task[Any]) -> None:
            self._pending_futures.discard(f)
            if f.cancelled():
                return
            error = f.exception()
            if error is not None:
                self._run_job_error(job.id, error, error.__traceback__)
            else:
                self._run_job_success(job.id, f.result())

        coroutine = run_coroutine_job(job, job._jobstore_alias, run_times, self._logger.name)
        task = self._tasks.spawn("timer", coroutine, key=job.id)
        task.add_done_callback(done)
        self._pending_futures.add(task)


class Timers:
    def __init__(
        self,
        tasks: TaskRegistry,
        clock: Clock,
        *,
        resync_seconds: float,
        on_boundary: Callable[[str], None],
        on_resync: Callable[[], None],
        on_next: Callable[[datetime | None], None] | None = None,
        on_late: Callable[[float], None] | None = None,
    ) -> None:
        """`on_late(seconds)`: how late each wake-up for a boundary or a backoff's end
        came (metrics)."""
        self._tasks = tasks
        self._on_late = on_late
        self._now = clock
        self._resync_seconds = resync_seconds
        self._on_boundary = on_boundary
        self._on_resync = on_resync
        self._on_next = on_next
        self._scheduler = AsyncIOScheduler(
            timezone=UTC, executors={"default": _OwnedExecutor(tasks)}
        )
        # Per manifest: its recording and its next window boundary after the instant
        # last looked at; the earliest restart backoff expiry; the instant the last
        # pass planned for (boundaries up to it have been acted on).
        self._boundaries: dict[str, tuple[DesiredRecording, datetime | None]] = {}
        self._backoff_until: datetime | None = None
        self._planned_at: datetime | None = None
        # A wake-up that came early, waiting for its instant (see `_boundary`).
        self._waiting: tuple[datetime, asyncio.Task[None]] | None = None

    # -- the facts --------------------------------------------------------------

    def recordings_changed(self, recordings: Iterable[DesiredRecording], delta: Delta) -> None:
        """Next boundaries of the recordings a reload changed (all, after a full one)."""
        now = self._now()
        old = self._boundaries
        if delta.rebuilt is None:
            fresh: dict[str, tuple[DesiredRecording, datetime | None]] = {}
            for d in recordings:
                entry = old.get(d.name)
                if entry is None or entry[0] is not d:
                    entry = (d, d.schedule.next_boundary(now))
                fresh[d.name] = entry
            self._boundaries = fresh
        else:
            for name in delta.removed:
                old.pop(name, None)
            for d in delta.rebuilt:
                old[d.name] = (d, d.schedule.next_boundary(now))
        self.reschedule()

    def planned(self, at: datetime) -> None:
        """A pass planned at `at`: every boundary up to it is acted on."""
        self._planned_at = at
        for name, (d, boundary) in list(self._boundaries.items()):
            if boundary is not None and boundary <= at:
                self._boundaries[name] = (d, d.schedule.next_boundary(at))

    def backoff(self, until: datetime | None) -> None:
        """The earliest restart backoff expiry the last plan noted (None: none)."""
        self._backoff_until = until
        self.reschedule()

    def retry_at(self, at: datetime) -> None:
        """Wake no later than `at` (failed actions are planned again then)."""
        if self._backoff_until is None or at < self._backoff_until:
            self._backoff_until = at
        self.reschedule()

    def next_boundary_of(self, app_id: str, now: datetime) -> datetime | None:
        """The first window boundary after `now` of the recordings of `app_id` (None:
        none ever), from the boundaries held (one looked for again only if passed)."""
        dues = (
            at if at is None or at > now else d.schedule.next_boundary(now)
            for d, at in self._boundaries.values()
            if d.app_id == app_id
        )
        return min((at for at in dues if at is not None), default=None)

    def next_wake(self, now: datetime) -> datetime | None:
        """The next window boundary of any manifest, or the next backoff expiry; `now`
        when a boundary fell after the instant the last pass planned for (while that
        pass or a reload was running), so that it is acted on at once."""
        soonest: datetime | None = None
        for d, at in self._boundaries.values():
            if at is not None and at <= now:
                if self._planned_at is None or at > self._planned_at:
                    return now
                at = d.schedule.next_boundary(now)
            if at is not None and (soonest is None or at < soonest):
                soonest = at
        if self._backoff_until is not None and (soonest is None or self._backoff_until < soonest):
            soonest = self._backoff_until
        return soonest

    # -- the scheduler ----------------------------------------------------------

    def start(self) -> None:
        self._scheduler.start()
        self._scheduler.add_job(
            self._resync,
            "interval",
            seconds=self._resync_seconds,
            id="resync",
            coalesce=True,
            misfire_grace_time=None,
        )
        self.reschedule()

    def reschedule(self) -> None:
        """(Re)arm the boundary job at `next_wake`."""
        if not self._scheduler.running:
            return
        at = self.next_wake(self._now())
        if self._on_next is not None:
            self._on_next(at)
        if at is None:
            with contextlib.suppress(Exception):
                self._scheduler.remove_job("boundary")
            return
        self._scheduler.add_job(
            self._boundary,
            "date",
            run_date=at,
            args=[at],
            id="boundary",
            replace_existing=True,
            misfire_grace_time=None,
        )

    def set_resync(self, seconds: float) -> None:
        """A new `reconcile.resyncInterval` (a SIGHUP): the resync job takes it now."""
        self._resync_seconds = seconds
        if self._scheduler.running:
            self._scheduler.reschedule_job("resync", trigger="interval", seconds=seconds)

    async def stop(self) -> None:
        """No more wake-ups: the jobs go, and their runs in flight are cancelled."""
        if self._scheduler.running:
            self._scheduler.remove_all_jobs()
            self._scheduler.shutdown(wait=False)
        await self._tasks.cancel(self._tasks.of("timer"))

    async def _resync(self) -> None:
        # A coroutine, so that APScheduler runs it on the event loop, not in a thread.
        self._on_resync()

    async def _boundary(self, at: datetime) -> None:
        # A timer may fire a hair early: never send a window's start before it opens.
        # The wait is a task of its own and the job's run ends at once: a run still
        # waiting made APScheduler skip the job re-armed meanwhile (one instance). One
        # wait at a time: the pass it wakes re-arms the job for what comes after.
        if at <= self._now():
            self._wake(at)
            return
        waiting = self._waiting
        if waiting is not None and not waiting[1].done():
            if waiting[0] <= at:
                return
            waiting[1].cancel()
        self._waiting = (at, self._tasks.spawn("timer", self._woken(at), key="boundary"))

    async def _woken(self, at: datetime) -> None:
        await asyncio.sleep((at - self._now()).total_seconds())
        # The wall clock may have been slewed meanwhile: what is left of it, once more.
        await asyncio.sleep(max(0.0, (at - self._now()).total_seconds()))
        self._wake(at)

    def _wake(self, at: datetime) -> None:
        if self._on_late is not None:
            self._on_late(max(0.0, (self._now() - at).total_seconds()))
        self._on_boundary("backoff" if at == self._backoff_until else "boundary")
