"""The daemon: `orchestrator run` keeps live recordings equal to the manifests, by itself.

It owns the process's event loop and nothing below it does: it decides *when* a
reconcile pass runs, the reconcile package decides *what* it does.

- Passes are planned one at a time (one worker task); requests for a pass that
  arrive while one plans are merged into the next. A pass plans at now and sets
  each manifest's actions going as a task of its own, without waiting for them:
  a manifest whose earlier actions are still out (a call retrying) is left alone
  and planned again as soon as they finish, so no boundary waits behind another
  manifest's calls. Triggers: `start` (the first pass, which queries every live
  session and so adopts what a previous run left running; READY waits for its
  actions), `boundary` (APScheduler wakes it at the next window start or end),
  `backoff` (a restart backoff expired, or actions failed and are planned
  again), `resync` (every `reconcile.resyncInterval`: queries live sessions in
  the background to notice idle or abnormal exits, then plans with the answers,
  restarting a wanted recording), and `reload`.
- Manifests are reloaded when the directory changes (`manifests.watch`,
  debounced) and on SIGHUP; only what changed is parsed again. A file that fails
  to load keeps its last known good version; its errors are logged with file,
  line and column.
- systemd: READY=1 after the first pass, RELOADING=1/READY=1 around a SIGHUP
  reload, STOPPING=1 on shutdown, WATCHDOG=1 from the event loop, STATUS=.
- SIGTERM/SIGINT: no new work; calls in flight finish (or are abandoned after
  `shutdown.drainTimeout`, their intent kept for the next start); recordings
  keep running unless `reconcile.stopOnShutdown`.

It must never call `datetime.now()` below this module (the clock is passed in),
block the event loop on disk or CPU-heavy work (manifest loading runs in a
thread, the store has its own), or let one failed pass end the process.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import hashlib
import signal
import time
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from orchestrator.daemon.metrics import HealthServer, Metrics, ReadinessReport
from orchestrator.daemon.notify import Notifier
from orchestrator.daemon.watch import ManifestWatcher
from orchestrator.manifest.diagnostics import Diagnostic
from orchestrator.manifest.loader import LoadResult, ManifestCache
from orchestrator.reconcile.execute import ActionResult
from orchestrator.reconcile.overview import Overview, counts_by_app, overview
from orchestrator.reconcile.plan import (
    ActualState,
    DesiredRecording,
    NoteKind,
    Plan,
    plan_shutdown,
)
from orchestrator.reconcile.reconciler import (
    Delta,
    Desired,
    DesiredCache,
    PassResult,
    plan_once,
    remember_known_good,
    under,
    untracked,
)
from orchestrator.runtime import Runtime
from orchestrator.state import KnownGood, SessionRecord, StoreError

log = structlog.get_logger("orchestrator.daemon")

# A pass requested for several reasons at once is labelled by the first of these.
_TRIGGER_ORDER = ("start", "takeover", "reload", "boundary", "backoff", "resync")


def _few(names: Sequence[str], limit: int = 20) -> list[str]:
    """A log-sized list: the first `limit` names, then how many more."""
    shown = list(names[:limit])
    if len(names) > limit:
        shown.append(f"... and {len(names) - limit} more")
    return shown


def describe_diagnostic(file: str, line: int, column: int, field: str, message: str) -> str:
    return f"{file}:{line}:{column}: {field + ': ' if field else ''}{message}"


class Daemon:
    def __init__(
        self,
        runtime: Runtime,
        *,
        manifests: Path,
        notifier: Notifier,
        metrics: Metrics | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._rt = runtime
        self._config = runtime.config
        self._manifests = manifests
        self._notifier = notifier
        self._metrics = metrics
        self._now = clock or runtime.clock
        self._cache = ManifestCache([manifests])
        self._desired_cache = DesiredCache()
        self._known: dict[str, KnownGood] = {}
        self._desired = Desired((), frozenset())
        # Per manifest name: its recording and its next window boundary after now.
        self._boundaries: dict[str, tuple[DesiredRecording, datetime | None]] = {}
        self._backoff_until: datetime | None = None
        # The instant the last finished pass planned for: boundaries up to it are done.
        self._planned_at: datetime | None = None
        self._scheduler = AsyncIOScheduler(timezone=UTC)
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._triggers: set[str] = set()
        # Actions in flight, by manifest; manifests a pass left for when theirs finish
        # (with that pass's trigger); passes whose actions run; the resync's queries.
        self._groups: dict[str, asyncio.Task[list[ActionResult]]] = {}
        self._deferred: dict[str, str] = {}
        self._passes: set[asyncio.Task[None]] = set()
        self._refreshing: asyncio.Task[None] | None = None
        self._query_problems: tuple[str, ...] = ()
        self._by_name: dict[str, DesiredRecording] = {}
        # Reloads whose last known good versions the store has not taken yet.
        self._unremembered: list[Desired] = []
        # PostgreSQL replicas: the App IDs this replica acts on (None: all, SQLite).
        self._own = runtime.ownership
        self._owned: frozenset[str] | None = None if self._own is None else frozenset()
        self._releasing: set[str] = set()
        self._free_rounds: Counter[str] = Counter()
        self._handed: dict[str, int] = {}  # App IDs we released, rounds left alone
        self._claims: asyncio.Task[None] | None = None
        self._takeovers: set[asyncio.Task[None]] = set()  # adoption queries running
        self._reload: str | None = None
        # Files the watch reported since the last reload; None: look at everything.
        self._reload_paths: set[str] | None = set()
        self._ready = False
        self._store_ok = True
        self._last_summary = ""
        # Errors of the files that fail to load (as of the last reload), and what every
        # recording is doing as of the last pass (for /readyz, metrics and STATUS=).
        self._file_errors: tuple[Diagnostic, ...] = ()
        self._overview: Overview | None = None
        self._watcher: ManifestWatcher | None = None
        self._health: HealthServer | None = None

    # -- public ------------------------------------------------------------------

    def readiness(self) -> ReadinessReport:
        """Ready once the first pass has finished and while the store is writable; the
        facts say what is not recording and why, whatever the answer."""
        view = self._overview
        facts = view.as_dict(limit=50) if view is not None else {}
        if not self._ready:
            return ReadinessReport(False, "the first reconcile pass has not finished", facts)
        if not self._store_ok:
            return ReadinessReport(False, "the state store is not writable", facts)
        return ReadinessReport(True, self._last_summary, facts)

    def request_pass(self, trigger: str, *, refresh: bool = False) -> None:
        """Plan again soon; `refresh`: query the live sessions first (in the background:
        the pass follows their answers)."""
        if not refresh:
            self._triggers.add(trigger)
            self._wake.set()
        elif not self._stop.is_set() and (self._refreshing is None or self._refreshing.done()):
            self._refreshing = asyncio.create_task(self._refresh(trigger), name="refresh")

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

    def shutdown(self, reason: str = "signal") -> None:
        if not self._stop.is_set():
            log.info("daemon.stopping", reason=reason)
            self._notifier.stopping()
            self._rt.executor.drain()
            self._stop.set()
            self._wake.set()

    async def run(self) -> int:
        """Serve until SIGTERM/SIGINT (or `shutdown()`); returns the exit status."""
        loop = asyncio.get_running_loop()
        signals = {
            signal.SIGTERM: lambda: self.shutdown("SIGTERM"),
            signal.SIGINT: lambda: self.shutdown("SIGINT"),
            signal.SIGHUP: lambda: self.request_reload("SIGHUP"),
        }
        for signum, handler in signals.items():
            loop.add_signal_handler(signum, handler)
        watchdog = asyncio.create_task(self._watchdog(), name="watchdog")
        worker: asyncio.Task[None] | None = None
        try:
            await self._start_health()
            log.info(
                "daemon.started",
                manifests=str(self._manifests),
                apps=sorted(self._rt.clients),
                watch=self._config.manifests.watch,
            )
            for problem in self._rt.problems:
                log.error("config.credentials", problem=problem)
            self._known = await self._rt.store.known_good(documents=False)
            # Watch before the first load: an edit made while loading is not missed
            # (at worst it costs one more reload).
            await self._start_watch()
            await self._do_reload("start")
            if self._own is not None and not self._stop.is_set():
                await self._balance()  # the first pass acts on what this replica owns
            elif self._metrics is not None:  # SQLite: the single writer owns every App ID
                self._metrics.set_owned_app_ids(len(self._rt.app_ids))
            if not self._stop.is_set():
                await self._do_pass({"start"}, refresh=True)  # waits for its actions
            # What start-up built (manifests, recordings, indexes) lives as long as
            # the process: collect once and freeze it, so that the collector never
            # rescans it and the first reloads do not pay for it.
            gc.collect()
            gc.freeze()
            self._ready = True
            self._notifier.ready(self._last_summary)
            log.info("daemon.ready", summary=self._last_summary)
            self._scheduler.start()
            self._scheduler.add_job(
                self._on_resync,
                "interval",
                seconds=self._config.reconcile.resync_interval.total_seconds(),
                id="resync",
                coalesce=True,
                misfire_grace_time=None,
            )
            self._schedule_boundary()
            if self._own is not None:
                self._claims = asyncio.create_task(self._claim_loop(), name="claims")
            worker = asyncio.create_task(self._work(), name="reconcile")
            await self._stop.wait()
        finally:
            await self._close(worker)
            watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watchdog
            for signum in signals:
                loop.remove_signal_handler(signum)
        log.info("daemon.stopped")
        return 0

    # -- the worker ----------------------------------------------------------------

    async def _work(self) -> None:
        while not self._stop.is_set():
            await self._wake.wait()
            self._wake.clear()
            if self._stop.is_set():
                return
            reload, self._reload = self._reload, None
            if reload is not None:
                paths, self._reload_paths = self._reload_paths, set()
                await self._do_reload(reload, paths)
                self._triggers.add("reload")
            if self._triggers:
                triggers, self._triggers = self._triggers, set()
                await self._do_pass(triggers)

    async def _do_pass(self, triggers: set[str], *, refresh: bool = False) -> None:
        """Plan at now and set each manifest's actions going; returns without waiting for
        them, except for the first pass (`refresh`: it queries every live session first,
        and READY waits for its actions).

        A manifest whose actions from an earlier pass are still out (a call retrying) is
        left alone: it is planned again as soon as they finish, so a boundary never waits
        behind another manifest's calls."""
        trigger = next((t for t in _TRIGGER_ORDER if t in triggers), sorted(triggers)[0])
        started = time.monotonic()
        now = self._now()
        self._planned_at = now  # also when the pass fails: its retry is the next resync
        busy = set(self._groups)  # before observing: their rows are mid-change
        try:
            if await self._rt.store.restore_if_removed():
                log.error(
                    "store.restored",
                    path=self._rt.store.location,
                    detail="the state store was removed or replaced while the daemon ran; "
                    "it was written back from the daemon's open copy, nothing was lost",
                )
            await self._remember()
            if refresh:
                live = self._mine(await self._rt.store.live_sessions())
                self._query_problems = tuple(await self._rt.executor.refresh(live))
            the_plan, actual = await plan_once(
                self._desired, self._rt.store, now, self._rt.policy, apps=self._owned
            )
            acting = Plan(
                tuple(a for a in the_plan.actions if a.manifest not in busy), the_plan.notes
            )
            groups = await self._rt.executor.launch(acting, self._by_name)
        except StoreError as exc:
            self._store_ok = False
            self._observe_pass(trigger, started, ok=False)
            log.error("reconcile.pass_failed", trigger=trigger, error=str(exc))
            return
        except Exception:
            self._observe_pass(trigger, started, ok=False)
            log.exception("reconcile.pass_failed", trigger=trigger)
            return
        self._store_ok = True
        for name, task in groups.items():
            self._groups[name] = task
            task.add_done_callback(functools.partial(self._group_done, name))
        for name in {a.manifest for a in the_plan.actions if a.manifest in busy}:
            if name in self._groups:
                self._deferred.setdefault(name, trigger)
            else:  # finished while this pass planned
                self.request_pass(trigger)
        self._backoff_until = min(
            (n.until for n in the_plan.notes if n.kind is NoteKind.BACKOFF and n.until),
            default=None,
        )
        self._schedule_boundary()
        finish = asyncio.create_task(self._finish_pass(the_plan, actual, groups, trigger, started))
        self._passes.add(finish)
        finish.add_done_callback(self._passes.discard)
        if refresh:
            await finish

    def _group_done(self, name: str, task: asyncio.Task[list[ActionResult]]) -> None:
        if self._groups.get(name) is task:
            del self._groups[name]
        trigger = self._deferred.pop(name, None)
        if trigger is not None and not self._stop.is_set():
            self.request_pass(trigger)

    async def _finish_pass(
        self,
        the_plan: Plan,
        actual: ActualState,
        groups: dict[str, asyncio.Task[list[ActionResult]]],
        trigger: str,
        started: float,
    ) -> None:
        """Once a pass's actions have all finished: its log event, metrics and status."""
        outcomes = await asyncio.gather(*groups.values(), return_exceptions=True)
        results = tuple(r for o in outcomes if isinstance(o, list) for r in o)
        result = PassResult(
            the_plan, results, self._query_problems, untracked(actual.latest_ended, actual.live)
        )
        try:
            view = await self._look()
        except StoreError as exc:
            self._store_ok = False
            self._observe_pass(trigger, started, ok=False)
            log.error("reconcile.pass_failed", trigger=trigger, error=str(exc))
            return
        self._observe_pass(trigger, started, ok=result.ok)
        self._after_pass(result, view, trigger, started)
        if not all(r.ok for r in results) and not self._stop.is_set():
            # Plan again once the initial restart backoff has passed (not at once: an
            # action that fails without a call would loop), so that what failed gets
            # its retry or its backoff from the planner without waiting for a resync.
            again = self._now() + self._rt.policy.restart_backoff_initial
            if self._backoff_until is None or again < self._backoff_until:
                self._backoff_until = again
            self._schedule_boundary()

    async def _look(self) -> Overview:
        """What every recording is doing now, after the pass's actions: the store read
        again and planned at now (pure), so that what failed shows with its reason."""
        now = self._now()
        the_plan, actual = await plan_once(
            self._desired, self._rt.store, now, self._rt.policy, apps=self._owned
        )
        recordings = self._desired.recordings
        if self._owned is not None:
            recordings = tuple(d for d in recordings if d.app_id in self._owned)
        view = overview(
            recordings,
            actual,
            the_plan,
            now,
            files_failing=self._file_errors,
            problems=self._desired.problems,
            untracked=untracked(actual.latest_ended, actual.live),
        )
        self._overview = view
        return view

    def _mine(self, sessions: list[SessionRecord]) -> list[SessionRecord]:
        """The sessions of the App IDs this replica owns."""
        owned = self._owned
        return sessions if owned is None else [s for s in sessions if s.app_id in owned]

    async def _refresh(self, trigger: str, apps: frozenset[str] | None = None) -> None:
        """Query every live session not being acted on (a resync; `apps`: of these App
        IDs only), then plan with what the answers say; runs beside passes, so
        boundaries never wait for queries."""
        try:
            live = self._mine(await self._rt.store.live_sessions())
            if apps is not None:
                live = [s for s in live if s.app_id in apps]
            idle = [s for s in live if s.manifest not in self._groups]
            self._query_problems = tuple(await self._rt.executor.refresh(idle))
        except StoreError as exc:
            self._store_ok = False
            log.error("reconcile.refresh_failed", trigger=trigger, error=str(exc))
            return
        except Exception:
            log.exception("reconcile.refresh_failed", trigger=trigger)
            return
        self.request_pass(trigger)

    def _after_pass(self, result: PassResult, view: Overview, trigger: str, started: float) -> None:
        held = Counter(n.kind.value for n in result.plan.notes)
        failed = sum(1 for r in result.results if not r.ok)
        live = [s for r in view.recordings if (s := r.session) is not None]
        live.extend(view.orphans)
        phases = Counter(s.phase.value for s in live)
        owns = (
            ""
            if self._owned is None
            else f"owns {len(self._owned)} of {len(self._rt.app_ids)} App IDs, "
        )
        self._last_summary = f"{owns}{view.summary()}" + (
            f", {len(result.problems)} not queryable" if result.problems else ""
        )
        self._notifier.status(self._last_summary)
        if self._metrics is not None:
            self._metrics.set_sessions(dict(phases))
            self._metrics.set_untracked(len(view.untracked))
            self._metrics.set_manifests(len(self._desired.invalid_files), dict(held))
            apps = self._rt.app_ids if self._owned is None else self._owned
            self._metrics.set_recordings(counts_by_app(view, apps))
            for r in result.results:
                self._metrics.observe_action(r.action.kind.value, r.ok)
        log.info(
            "reconcile.pass",
            trigger=trigger,
            duration_ms=round((time.monotonic() - started) * 1000, 1),
            actions=len(result.results),
            failed=failed,
            query_failures=len(result.problems),
            untracked=[s.manifest for s in result.untracked],
            held=dict(held),
            live=len(live),
        )
        self._schedule_boundary()

    def _observe_pass(self, trigger: str, started: float, *, ok: bool) -> None:
        if self._metrics is not None:
            self._metrics.observe_pass(trigger, time.monotonic() - started, ok)

    # -- ownership (PostgreSQL replicas) ---------------------------------------------

    async def _claim_loop(self) -> None:
        """A balancing round every `replica.claimInterval`; in between, every second,
        a check that our locks still stand, so that a lost connection stops us acting
        within about a second (or the check's timeout, when the network is cut)."""
        interval = self._config.replica.claim_interval.total_seconds()
        next_round = time.monotonic() + interval
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), min(1.0, interval))
            if self._stop.is_set():
                return
            if time.monotonic() >= next_round:
                next_round = time.monotonic() + interval
                await self._balance()
                continue
            own = self._own
            assert own is not None
            before = own.owned
            try:
                await own.check()
            except StoreError as exc:
                own.lost()
                log.error("ownership.unavailable", error=str(exc))
            if own.owned != before:
                self._owned_changed(before, own.owned)

    async def _balance(self) -> None:
        """One ownership round: check that our locks stand, claim App IDs nobody owns
        (up to our share, or any left unowned for a round), and hand one over when we
        own more than our share while another replica owns less. A failure of the
        store's server leaves us owning nothing until it answers again."""
        own = self._own
        if own is None:
            return
        before = own.owned
        try:
            members, holders = await own.survey()
            apps = sorted(self._rt.app_ids)
            mine = set(own.owned)
            low, high = len(apps) // members, -(-len(apps) // members)  # the fair share
            free = [a for a in apps if holders.get(a) is None and a not in mine]
            for app_id in list(self._free_rounds):
                if app_id not in free:
                    del self._free_rounds[app_id]
            # Replicas try free App IDs in different orders, so that they spread.
            free.sort(key=lambda a: hashlib.sha256(f"{own.name}/{a}".encode()).digest())
            for app_id in free:
                self._free_rounds[app_id] += 1
                # Up to our share; beyond it only what nobody took for a round; what we
                # just handed over is left to the others for two rounds.
                wanted = len(mine) < high and app_id not in self._handed
                if (wanted or self._free_rounds[app_id] > 2) and await own.claim(app_id):
                    mine.add(app_id)
            for app_id in list(self._handed):
                self._handed[app_id] -= 1
                if self._handed[app_id] <= 0:
                    del self._handed[app_id]
            others = Counter(h for h in holders.values() if h is not None and h != own.name)
            short = members - 1 > len(others) or min(others.values(), default=low) < low
            # While an App ID is free (one handed over and not yet claimed, say), the
            # replica that is short takes that one: handing over more would churn.
            still_free = any(a not in mine for a in free)
            if len(mine) > max(low, 1) and short and not still_free and not self._releasing:
                victim = max(mine, key=lambda a: hashlib.sha256(a.encode()).digest())
                await self._hand_over(victim)
                before = before - {victim}  # released, not lost
        except StoreError as exc:
            own.lost()
            log.error("ownership.unavailable", error=str(exc))
        self._owned_changed(before, own.owned)

    async def _hand_over(self, app_id: str) -> None:
        """Release `app_id` to another replica: no new action for it, the actions in
        flight finish (within the drain timeout), then its lock goes. Its recordings
        keep running; the next owner adopts them."""
        own = self._own
        assert own is not None
        self._releasing.add(app_id)
        try:
            self._owned = (self._owned or frozenset()) - {app_id}
            busy = [t for n, t in self._groups.items() if self._app_of(n) == app_id]
            if busy:
                await asyncio.wait(
                    busy, timeout=self._config.shutdown.drain_timeout.total_seconds()
                )
            await own.release(app_id)
            log.info("ownership.released", app_id=app_id, replica=own.name)
        finally:
            self._releasing.discard(app_id)

    def _app_of(self, manifest: str) -> str | None:
        d = self._by_name.get(manifest)
        return d.app_id if d is not None else None

    def _owned_changed(self, before: frozenset[str], after: frozenset[str]) -> None:
        own = self._own
        assert own is not None
        gained, lost = after - before, before - after
        self._owned = after - self._releasing
        if lost:
            gone = sorted(lost)
            # Keep no work in flight for them: the new owner finishes it from the intents.
            for name, task in list(self._groups.items()):
                if self._app_of(name) in gone:
                    task.cancel()
            log.warning("ownership.lost", app_ids=gone, replica=own.name)
            if self._metrics is not None:
                self._metrics.observe_ownership_lost(len(gone))
        if gained:
            log.info("ownership.gained", app_ids=sorted(gained), replica=own.name)
            if self._ready:  # the first pass adopts what start-up claimed
                # Adopt at once: query the App IDs' live sessions, then plan.
                adopt = asyncio.create_task(
                    self._refresh("takeover", frozenset(gained)), name="takeover"
                )
                self._takeovers.add(adopt)
                adopt.add_done_callback(self._takeovers.discard)
        if self._metrics is not None:
            self._metrics.set_owned_app_ids(len(self._owned))

    # -- manifests -----------------------------------------------------------------

    async def _do_reload(self, trigger: str, paths: set[str] | None = None) -> None:
        signalled = trigger == "SIGHUP"
        if signalled:
            self._notifier.reloading()
        started = time.monotonic()
        now = self._now()
        try:
            loaded = await asyncio.to_thread(self._cache.load, now=now, hint=paths)
            app_ids = {name: p.app_id for name, p in self._config.apps.items()}
            # The stored documents of what fails to load stand in for it; the index in
            # memory has none, so they are read for those files only.
            known = await self._with_documents(loaded.failed_files, loaded.unreadable)
            desired, delta = self._desired_cache.build(loaded, app_ids, known)
            if desired.invalid_files - loaded.failed_files:  # an unknown app profile
                known = await self._with_documents(desired.invalid_files, loaded.unreadable)
                desired, delta = self._desired_cache.build(loaded, app_ids, known)
        except StoreError as exc:
            log.error("manifests.reload_failed", trigger=trigger, error=str(exc))
            self._reload_failed(signalled)
            return
        except Exception:
            log.exception("manifests.reload_failed", trigger=trigger)
            self._reload_failed(signalled)
            return
        self._unremembered.append(desired)
        await self._remember()
        for entry in desired.remember:  # the index only: documents stay in the store
            self._known[entry.name] = KnownGood(entry.name, entry.source_file, entry.spec_hash, {})
        for name in desired.forget:
            self._known.pop(name, None)
        self._desired = desired
        self._by_name = {d.name: d for d in desired.recordings}
        self._file_errors = tuple(loaded.errors)
        self._log_diagnostics(loaded, first=trigger == "start")
        for problem in desired.problems:
            log.warning("manifests.problem", problem=problem)
        log.info(
            "manifests.reloaded",
            trigger=trigger,
            manifests=len(desired.recordings),
            added=_few(delta.added),
            changed=_few(delta.changed),
            removed=_few(delta.removed),
            files_changed=len(loaded.changed),
            failing=_few(sorted(desired.invalid_files)),
            duration_ms=round((time.monotonic() - started) * 1000, 1),
        )
        if self._metrics is not None:
            self._metrics.observe_reload(True)
            self._metrics.set_manifests_loaded(len(desired.recordings))
        self._update_boundaries(delta)
        if signalled:
            self._notifier.ready(self._last_summary)

    def _reload_failed(self, signalled: bool) -> None:
        if self._metrics is not None:
            self._metrics.observe_reload(False)
        if signalled:
            self._notifier.ready(self._last_summary)

    async def _remember(self) -> None:
        """Store the reloads' new last known good versions, in order; when the store
        does not answer, they stay in effect and are stored at a later pass."""
        while self._unremembered:
            try:
                await remember_known_good(self._rt.store, self._unremembered[0])
            except StoreError as exc:
                log.error(
                    "manifests.remember_failed",
                    error=str(exc),
                    detail="the reloaded manifests are in effect; their last known good "
                    "versions are stored once the store answers",
                )
                return
            self._unremembered.pop(0)

    async def _with_documents(
        self, files: frozenset[str], unreadable: frozenset[str]
    ) -> dict[str, KnownGood]:
        known = self._known
        if not files and not unreadable:
            return known
        wanted = [
            name
            for name, entry in known.items()
            if entry.source_file in files or under(entry.source_file, unreadable)
        ]
        return {**known, **await self._rt.store.known_good(wanted)}

    def _log_diagnostics(self, loaded: LoadResult, *, first: bool) -> None:
        for d in loaded.diagnostics:
            if not first and d.file not in loaded.changed:
                continue  # reported when its file last changed
            event = "manifest.invalid" if d.severity == "error" else "manifest.warning"
            emit = log.error if d.severity == "error" else log.warning
            emit(
                event,
                file=d.file,
                line=d.line,
                column=d.column,
                field=d.field,
                message=d.message,
                detail=describe_diagnostic(d.file, d.line, d.column, d.field, d.message),
            )

    async def _start_watch(self) -> None:
        if not self._config.manifests.watch:
            return

        async def changed(paths: set[str]) -> None:
            log.debug("watch.changed", files=len(paths))
            self.request_reload("watch", paths)

        self._watcher = ManifestWatcher(
            self._manifests,
            changed,
            debounce=self._config.manifests.watch_interval.total_seconds(),
        )
        await self._watcher.start()

    # -- timing ----------------------------------------------------------------------

    def _update_boundaries(self, delta: Delta) -> None:
        """Next boundaries of the recordings a reload changed (all, after a full one)."""
        now = self._now()
        old = self._boundaries
        if delta.rebuilt is None:
            fresh: dict[str, tuple[DesiredRecording, datetime | None]] = {}
            for d in self._desired.recordings:
                entry = old.get(d.name)
                if entry is None or entry[0] is not d:
                    entry = (d, d.schedule.next_boundary(now))
                fresh[d.name] = entry
            self._boundaries = fresh
            return
        for name in delta.removed:
            old.pop(name, None)
        for d in delta.rebuilt:
            old[d.name] = (d, d.schedule.next_boundary(now))

    def next_wake(self) -> datetime | None:
        """The next window boundary of any manifest, or the next backoff expiry.

        A boundary that fell after the instant the last pass planned for (while that
        pass was still running, or a reload was) has not been acted on: the answer is
        then "now", so it is handled right away instead of at the next boundary."""
        now = self._now()
        soonest: datetime | None = None
        planned = self._planned_at
        missed = False
        for name, (d, at) in self._boundaries.items():
            if at is not None and at <= now:
                missed = missed or planned is None or at > planned
                at = d.schedule.next_boundary(now)
                self._boundaries[name] = (d, at)
            if at is not None and (soonest is None or at < soonest):
                soonest = at
        if missed:
            return now
        if self._backoff_until is not None and (soonest is None or self._backoff_until < soonest):
            soonest = self._backoff_until
        return soonest

    def _schedule_boundary(self) -> None:
        if not self._scheduler.running or self._stop.is_set():
            return
        at = self.next_wake()
        if self._metrics is not None:
            self._metrics.set_next_boundary(at)
        if at is None:
            with contextlib.suppress(Exception):
                self._scheduler.remove_job("boundary")
            return
        self._scheduler.add_job(
            self._on_boundary,
            "date",
            run_date=at,
            args=[at],
            id="boundary",
            replace_existing=True,
            misfire_grace_time=None,
        )

    async def _on_resync(self) -> None:
        # A coroutine, so that APScheduler runs it on the event loop, not in a thread.
        self.request_pass("resync", refresh=True)

    async def _on_boundary(self, at: datetime) -> None:
        # A timer may fire a hair early: never send a window's start before it opens.
        early = (at - self._now()).total_seconds()
        if early > 0:
            await asyncio.sleep(early)
        self.request_pass("backoff" if at == self._backoff_until else "boundary")

    async def _watchdog(self) -> None:
        interval = self._notifier.watchdog_interval
        if interval is None:
            return
        while True:
            self._notifier.watchdog()
            await asyncio.sleep(interval)

    # -- start and stop ----------------------------------------------------------------

    async def _start_health(self) -> None:
        metrics_cfg = self._config.metrics
        if self._metrics is None or metrics_cfg.host is None or metrics_cfg.port is None:
            return
        self._health = HealthServer(self._metrics, self.readiness)
        await self._health.start(metrics_cfg.host, metrics_cfg.port)
        log.info("metrics.listening", address=f"{metrics_cfg.host}:{self._health.port}")

    async def _close(self, worker: asyncio.Task[None] | None) -> None:
        self._rt.executor.drain()
        if self._watcher is not None:
            await self._watcher.stop()
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)
        drain = self._config.shutdown.drain_timeout.total_seconds()
        deadline = time.monotonic() + drain
        if self._refreshing is not None:
            self._refreshing.cancel()  # queries only: nothing to finish
        if self._claims is not None:
            self._claims.cancel()
        takeovers = list(self._takeovers)
        for adopt in takeovers:
            adopt.cancel()
        if worker is not None:
            done, _ = await asyncio.wait({worker}, timeout=drain)
            if not done:
                worker.cancel()
            elif worker.exception() is not None:
                log.error("daemon.worker_failed", error=repr(worker.exception()))
        # Calls already sent finish and record their outcome (the executor drains:
        # nothing new begins), within the drain timeout.
        pending = {*self._groups.values(), *self._passes}
        if pending:
            _, late = await asyncio.wait(pending, timeout=max(0.0, deadline - time.monotonic()))
            if late:
                log.warning("daemon.drain_timeout", seconds=drain, unfinished=len(late))
                for task in late:
                    task.cancel()
        leftovers = [
            t
            for t in (worker, self._refreshing, self._claims, *takeovers, *pending)
            if t is not None
        ]
        await asyncio.gather(*leftovers, return_exceptions=True)
        if self._config.reconcile.stop_on_shutdown:
            await self._stop_all(max(1.0, deadline - time.monotonic()))
        if self._health is not None:
            await self._health.stop()

    async def _stop_all(self, budget: float) -> None:
        """reconcile.stopOnShutdown: stop every live session before exiting (replicas:
        of the App IDs this one owns)."""
        try:
            live = self._mine(await self._rt.store.live_sessions())
            the_plan: Plan = plan_shutdown(live)
            self._rt.executor.resume()
            results = await asyncio.wait_for(self._rt.executor.execute(the_plan, {}), budget)
        except (TimeoutError, StoreError) as exc:
            log.error("daemon.stop_on_shutdown_incomplete", error=str(exc) or type(exc).__name__)
            return
        log.info(
            "daemon.stopped_recordings",
            stopped=sum(1 for r in results if r.ok),
            failed=sum(1 for r in results if not r.ok),
        )
