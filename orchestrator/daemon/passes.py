"""When reconcile passes run, and how their actions are set going.

Passes are planned one at a time by one worker; requests that arrive while one
plans are merged into the next, and a reload asked for meanwhile runs first. A
pass plans at now and sets each manifest's actions going as a task of its own
(kind `actions`, keyed by the manifest), without waiting for them: a manifest
whose earlier actions are still out (a call retrying) is left alone and planned
again as soon as they finish, so no boundary waits behind another manifest's
calls. Triggers: `start` (the first pass, which queries every live session and so
adopts what a previous run left running; READY waits for its actions),
`boundary`, `backoff`, `resync` (queries live sessions in the background, then
plans with the answers), `reload`, `takeover` and `notice` (Agora's notifications
were kept: every pass first acts on those of the App IDs it owns).

The one owner of the pending triggers and reload, the manifests left for when
their actions finish, and what the last resync could not query. Every task it
starts is spawned in the daemon's `TaskRegistry`. It must never read the clock
but through the runtime's, and never let one failed pass end the daemon.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import structlog

from orchestrator.daemon.budget import QueryBudget
from orchestrator.daemon.health import Health
from orchestrator.daemon.metrics import Metrics
from orchestrator.daemon.reload import UNCHANGED, Reloader
from orchestrator.daemon.tasks import TaskRegistry
from orchestrator.daemon.timers import Timers
from orchestrator.reconcile.execute import ActionGroup, ActionResult, schedule
from orchestrator.reconcile.overview import Overview, OverviewMemo, overview
from orchestrator.reconcile.plan import ActualState, Plan
from orchestrator.reconcile.reconciler import Delta, PassResult, plan_once, untracked
from orchestrator.runtime import Runtime
from orchestrator.state import SessionNotFoundError, SessionRecord, StoreError

log = structlog.get_logger("orchestrator.daemon")

# A pass requested for several reasons at once is labelled by the first of these.
_TRIGGER_ORDER = ("start", "takeover", "reload", "notice", "boundary", "backoff", "resync")

ACTIONS = "actions"  # the task kind of one manifest's actions
#: How long notifications acted on are kept (a resend within it is recognised).
NOTICES_KEPT = timedelta(days=1)


class Passes:
    def __init__(
        self,
        runtime: Runtime,
        tasks: TaskRegistry,
        reloader: Reloader,
        timers: Timers,
        health: Health,
        *,
        owned: Callable[[], frozenset[str] | None],
        describe_owner: Callable[[], str],
        metrics: Metrics | None = None,
        on_reloaded: Callable[[str, bool], None] | None = None,
        budget: QueryBudget | None = None,
    ) -> None:
        self._rt = runtime
        self._pacer = budget
        self._tasks = tasks
        self._reloader = reloader
        self._timers = timers
        self._health = health
        self._owned = owned
        self._describe_owner = describe_owner
        self._metrics = metrics
        self._on_reloaded = on_reloaded
        self._wake = asyncio.Event()
        self._stopping = False
        self._triggers: set[str] = set()
        self._reload: str | None = None
        # Files the watch reported since the last reload; None: look at everything.
        self._reload_paths: set[str] | None = set()
        # Manifests a pass left for when their actions finish (with its trigger).
        self._deferred: dict[str, str] = {}
        self._query_problems: tuple[str, ...] = ()
        self._overviews = OverviewMemo()  # statuses kept while nothing of theirs changes

    # -- requests -----------------------------------------------------------------

    def request(self, trigger: str) -> None:
        """Plan again soon."""
        self._triggers.add(trigger)
        self._wake.set()

    def request_refresh(self, trigger: str, apps: frozenset[str] | None = None) -> None:
        """Query the live sessions (of `apps`; None: all) in the background, then plan
        with the answers; a resync already under way is not doubled."""
        if self._stopping:
            return
        if apps is None and self._tasks.running("refresh"):
            return
        self._tasks.spawn("refresh", self._refresh(trigger, apps))

    def request_reload(self, trigger: str, paths: set[str] | None = None) -> None:
        """Reload the manifests; `paths`: only these files changed (the watch's report),
        None: any may have (SIGHUP), so the tree is looked at again whole."""
        # SIGHUP wins the label: systemd waits for its RELOADING/READY pair.
        self._reload = trigger if trigger == "SIGHUP" else (self._reload or trigger)
        if paths is None or self._reload_paths is None:
            self._reload_paths = None
        else:
            self._reload_paths |= paths
        self._wake.set()

    def stop(self) -> None:
        """No new pass from now on; the worker ends at its next wake."""
        self._stopping = True
        self._wake.set()

    # -- running --------------------------------------------------------------------

    def busy(self) -> set[str]:
        """Manifests whose actions are out."""
        return {task.get_name().partition(":")[2] for task in self._tasks.of(ACTIONS)}

    def actions_of(self, app_id: str) -> list[asyncio.Task[Any]]:
        """The action tasks of manifests of `app_id`."""
        return [
            task
            for task in self._tasks.of(ACTIONS)
            if self._reloader.app_of(task.get_name().partition(":")[2]) == app_id
        ]

    async def reload(
        self, trigger: str, paths: set[str] | None = None, *, quiet: bool = False
    ) -> Delta | None:
        """Reload (see `Reloader.reload`): what changed; None when it could not be done,
        `UNCHANGED` when a `quiet` one found nothing changed (nothing else is done)."""
        delta = await self._reloader.reload(trigger, paths, quiet=quiet)
        if delta is UNCHANGED:
            return delta
        if self._metrics is not None:
            self._metrics.observe_reload(delta is not None)
        if delta is not None:
            if self._metrics is not None:
                self._metrics.set_manifests_loaded(len(self._reloader.desired.recordings))
            self._timers.recordings_changed(self._reloader.desired.recordings, delta)
        if self._on_reloaded is not None:
            self._on_reloaded(trigger, delta is not None)
        return delta

    async def work(self) -> None:
        """The worker: reloads and passes, one at a time, until `stop()`."""
        while not self._stopping:
            await self._wake.wait()
            self._wake.clear()
            if self._stopping:
                return
            reload, self._reload = self._reload, None
            if reload is not None:
                paths, self._reload_paths = self._reload_paths, set()
                await self.reload(reload, paths)
                self._triggers.add("reload")
            if self._triggers:
                triggers, self._triggers = self._triggers, set()
                await self.run_pass(triggers)

    async def run_pass(
        self, triggers: set[str], *, refresh: bool = False, wait: bool = False
    ) -> None:
        """Plan at now and set each manifest's actions going; returns without waiting for
        them unless `wait` (the passes before READY). `refresh`: query every live
        session first (the first pass)."""
        trigger = next((t for t in _TRIGGER_ORDER if t in triggers), sorted(triggers)[0])
        started = time.monotonic()
        now = self._rt.clock()
        self._timers.planned(now)  # also when the pass fails: its retry is the next resync
        outbox = self._rt.executor.outbox
        owned = self._owned()
        try:
            # What the API answered and the store refused so far goes in first.
            await outbox.flush()
            # Before observing: their rows are mid-change (actions out) or stale (kept).
            busy = self.busy() | set(outbox.unsettled.values())
            if await self._rt.store.restore_if_removed():
                log.error(
                    "store.restored",
                    path=self._rt.store.location,
                    detail="the state store was removed or replaced (or lost its -wal or "
                    "-shm file) while the daemon ran; it was written back from the "
                    "daemon's open copy, nothing was lost",
                )
            await self._act_on_notices(owned)
            if refresh:
                live = await self._to_query(owned)
                self._query_problems = tuple(await self._rt.executor.refresh(live))
            the_plan, actual = await plan_once(
                self._reloader.desired, self._rt.store, now, self._rt.policy, apps=owned
            )
            acting = Plan(
                tuple(a for a in the_plan.actions if a.manifest not in busy), the_plan.notes
            )
            # The last known good versions of what it acts on are stored before it acts
            # (a broken edit later finds them); with nothing to do, beside the pass, or
            # after READY for the passes before it (on a first start, a document for
            # each manifest: not on the way to READY, and not beside what leads there).
            if acting.actions:
                await self._reloader.remember()
            elif not wait:
                self.remember_soon()
            groups = await self._rt.executor.prepare(acting, self._reloader.by_name)
        except SessionNotFoundError as exc:  # gone since it was planned: plan again soon
            self._observe(trigger, started, ok=False)
            log.error("reconcile.pass_failed", trigger=trigger, error=str(exc))
            self._timers.retry_at(self._rt.clock() + self._rt.policy.restart_backoff_initial)
            return
        except StoreError as exc:
            self._health.store_failed()
            self._observe(trigger, started, ok=False)
            log.error("reconcile.pass_failed", trigger=trigger, error=str(exc))
            return
        except Exception:
            self._observe(trigger, started, ok=False)
            log.exception("reconcile.pass_failed", trigger=trigger)
            return
        self._health.store_answered()
        running = schedule(groups, self._spawn)
        kept = set(outbox.unsettled.values())  # planned again once the store takes them
        for name in {a.manifest for a in the_plan.actions if a.manifest in busy - kept}:
            if self._tasks.running(ACTIONS, name):
                self._deferred.setdefault(name, trigger)
            else:  # finished while this pass planned
                self.request(trigger)
        self._timers.backoff(the_plan.wake_at)
        finish = self._tasks.spawn(
            "finish", self._finish(the_plan, actual, running, trigger, started, now)
        )
        if wait:
            await finish

    def remember_soon(self) -> None:
        """Store the last known good versions that wait, in a task of their own."""
        if self._reloader.unremembered and not self._tasks.running("remember"):
            self._tasks.spawn("remember", self._reloader.remember())

    def _spawn(self, group: ActionGroup, after: Any) -> asyncio.Task[list[ActionResult]]:
        task = self._tasks.spawn(ACTIONS, self._rt.executor.run(group, after), key=group.manifest)
        task.add_done_callback(functools.partial(self._group_done, group.manifest))
        return task

    def _group_done(self, name: str, _task: asyncio.Task[list[ActionResult]]) -> None:
        trigger = self._deferred.pop(name, None)
        if trigger is not None and not self._stopping:
            self.request(trigger)

    async def _finish(
        self,
        the_plan: Plan,
        actual: ActualState,
        groups: dict[str, asyncio.Task[list[ActionResult]]],
        trigger: str,
        started: float,
        now: datetime,
    ) -> None:
        """Once a pass's actions have all finished: its log event, metrics and status
        (a pass that acted on nothing changed nothing: its own plan is the status)."""
        outcomes = await asyncio.gather(*groups.values(), return_exceptions=True)
        results = tuple(r for o in outcomes if isinstance(o, list) for r in o)
        problems = self._query_problems
        try:
            view = await self.look(None if groups else (the_plan, actual, now))
        except StoreError as exc:
            self._health.store_failed()
            self._observe(trigger, started, ok=False)
            log.error("reconcile.pass_failed", trigger=trigger, error=str(exc))
            return
        # Without actions the view was made of this pass's own state: its untracked too.
        desired = self._reloader.desired.recordings
        found = untracked(actual, desired, now) if groups else view.untracked
        result = PassResult(the_plan, results, problems, found)
        self._observe(trigger, started, ok=result.ok)
        owned = self._owned()
        self._health.after_pass(
            result,
            view,
            owns=self._describe_owner(),
            app_ids=self._rt.app_ids if owned is None else owned,
        )
        log.info(
            "reconcile.pass",
            trigger=trigger,
            duration_ms=round((time.monotonic() - started) * 1000, 1),
            actions=len(result.results),
            failed=sum(1 for r in result.results if not r.ok),
            query_failures=len(result.problems),
            untracked=[s.manifest for s in result.untracked],
            held=dict(Counter(n.kind.value for n in the_plan.notes)),
            live=len(view.tally.sessions) + len(view.orphans),
        )
        kept = bool(self._rt.executor.outbox.unsettled)
        if (kept or not all(r.ok for r in results)) and not self._stopping:
            # Plan again once the initial restart backoff has passed (not at once: an
            # action that fails without a call would loop), so that what failed gets
            # its retry or its backoff from the planner without waiting for a resync,
            # and what the store refused is written as soon as it takes writes.
            self._timers.retry_at(self._rt.clock() + self._rt.policy.restart_backoff_initial)
        else:
            self._timers.reschedule()

    async def look(self, planned: tuple[Plan, ActualState, datetime] | None = None) -> Overview:
        """What every recording is doing now: the store read again and planned at now
        (pure), so that what failed shows with its reason; `planned`: a plan just made,
        with what it saw and when, when nothing has changed since."""
        owned = self._owned()
        desired = self._reloader.desired
        if planned is None:
            now = self._rt.clock()
            the_plan, actual = await plan_once(
                desired, self._rt.store, now, self._rt.policy, apps=owned
            )
        else:
            the_plan, actual, now = planned
        recordings = desired.recordings
        if owned is not None:
            recordings = tuple(d for d in recordings if d.app_id in owned)
        problems = desired.problems
        if self._rt.config_error is not None:  # the config file a SIGHUP found broken
            problems = (self._rt.config_error, *problems)
        return overview(
            recordings,
            actual,
            the_plan,
            now,
            files_failing=(*self._reloader.file_errors, *desired.file_errors),
            problems=problems,
            untracked=untracked(actual, recordings, now),
            memo=self._overviews,
        )

    async def _act_on_notices(self, owned: frozenset[str] | None) -> None:
        """Act on the notifications kept for this replica's App IDs; one whose session
        an action is changing waits for that action to finish (then a pass runs)."""
        acted, waiting = await self._rt.executor.act_on_notices(owned)
        if acted and self._metrics is not None:
            self._metrics.observe_notices_acted(acted)
        for name in waiting:
            if self._tasks.running(ACTIONS, name):
                self._deferred.setdefault(name, "notice")
            else:  # its intent is a killed process's: the pass resumes it, then again
                self._timers.retry_at(self._rt.clock() + self._rt.policy.restart_backoff_initial)

    async def _refresh(self, trigger: str, apps: frozenset[str] | None) -> None:
        """Query every live session not being acted on (a resync; `apps`: of these App
        IDs only), then plan with what the answers say; runs beside passes, so
        boundaries never wait for queries, and a recording found ended has its pass
        at once, not when the round's last query (spread over the resync) is in."""
        try:
            store = self._rt.store
            live = await self._to_query(self._owned())
            if apps is not None:
                live = [s for s in live if s.app_id in apps]
            busy = self.busy()
            idle = [s for s in live if s.manifest not in busy]
            pace = self._pacer.pace(idle, still=self._still_mine) if self._pacer else None
            problems = await self._rt.executor.refresh(
                idle, pace=pace, on_exit=lambda _ended, _seen: self.request(trigger)
            )
            self._query_problems = tuple(problems)
            await store.prune_notices(self._rt.clock() - NOTICES_KEPT)
        except StoreError as exc:
            self._health.store_failed()
            log.error("reconcile.refresh_failed", trigger=trigger, error=str(exc))
            return
        except Exception:
            log.exception("reconcile.refresh_failed", trigger=trigger)
            return
        self.request(trigger)

    async def _to_query(self, owned: frozenset[str] | None) -> list[SessionRecord]:
        """This replica's sessions a refresh queries: the live ones, and the ended ones
        whose end is not confirmed yet."""
        store = self._rt.store
        sessions = await store.live_sessions() + await store.unconfirmed_sessions()
        return self._mine(sessions, owned)

    def next_boundary_of(self, app_id: str, now: datetime) -> datetime | None:
        """The first window boundary after `now` of the desired recordings of `app_id`
        (None: none ever), as the timers hold them."""
        return self._timers.next_boundary_of(app_id, now)

    def _still_mine(self, session: SessionRecord) -> bool:
        """Whether a session a round listed is still this replica's to query: a round
        waits (its queries are spread over the resync), and an App ID handed over
        meanwhile is the next owner's to query."""
        owned = self._owned()
        return owned is None or session.app_id in owned

    @staticmethod
    def _mine(sessions: list[SessionRecord], owned: frozenset[str] | None) -> list[SessionRecord]:
        """The sessions of the App IDs this replica owns."""
        return sessions if owned is None else [s for s in sessions if s.app_id in owned]

    def _observe(self, trigger: str, started: float, *, ok: bool) -> None:
        if self._metrics is not None:
            self._metrics.observe_pass(trigger, time.monotonic() - started, ok)
