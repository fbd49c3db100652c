"""The daemon: `orchestrator run` keeps live recordings equal to the manifests, by itself.

It owns the process's event loop and nothing below it does: it decides *when* a
reconcile pass runs, the reconcile package decides *what* it does. The jobs are
split so that each reads on its own:

- `tasks.TaskRegistry`: every task the daemon starts (passes' ends, action groups,
  resync queries, takeovers, timer runs, the claim loop), one drain, one cancel;
- `reload.Reloader`: the manifests and the desired recordings (reloaded on a
  change in the directory, `manifests.watch`, and on SIGHUP);
- `passes.Passes`: the worker that reloads and plans, one pass at a time, and sets
  each manifest's actions going;
- `timers.Timers`: window boundaries, backoffs and the resync (APScheduler);
- `ownership.Ownership`: the App IDs a replica acts on (PostgreSQL replicas);
- `health.Health`: readiness, the STATUS= line and the metrics of each pass;
- `receiver.NoticeReceiver`: Agora's notifications (`notifications.address`), kept
  in the store; the owner of their App ID acts on them in its next pass, woken at
  once in this process or, from another replica, by PostgreSQL's NOTIFY;
- `budget.QueryBudget`: the resync's queries spread within `reconcile.queryShare`.

This module composes them and runs the life cycle: start-up (the store's lock is
already held; the first reload and the first pass, which queries every live
session and adopts what a previous run left running, then READY=1), signals
(SIGTERM/SIGINT stop, SIGHUP reloads), systemd (READY, RELOADING, STOPPING,
WATCHDOG, STATUS), and shutdown: no new work, calls in flight finish or are
abandoned after `shutdown.drainTimeout` (their intent kept for the next start),
recordings keep running unless `reconcile.stopOnShutdown`.

It must never call `datetime.now()` (the clock is the runtime's), block the event
loop on disk or CPU-heavy work, or let one failed pass end the process.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import structlog

from orchestrator.config import (
    NOTIFICATIONS_SECRET,
    ConfigError,
    fingerprint,
    load_config,
    resolve_notifications_secret,
    secret_fingerprints,
)
from orchestrator.daemon.budget import QueryBudget
from orchestrator.daemon.gcpolicy import GC_POLICY
from orchestrator.daemon.health import Health
from orchestrator.daemon.metrics import HealthServer, Metrics, ReadinessReport
from orchestrator.daemon.notify import Notifier
from orchestrator.daemon.ownership import Ownership
from orchestrator.daemon.passes import Passes
from orchestrator.daemon.receiver import NoticeReceiver
from orchestrator.daemon.reconfigure import Reconfiguration, reconfigure
from orchestrator.daemon.reload import UNCHANGED, Reloader
from orchestrator.daemon.statuspage import AppView, StatusPage, TimelineCache, status_document
from orchestrator.daemon.tasks import TaskRegistry
from orchestrator.daemon.timers import Timers
from orchestrator.daemon.watch import ManifestWatcher
from orchestrator.errors import OrchestratorError
from orchestrator.logging import configure_logging
from orchestrator.manifest.helper import ParseHelper
from orchestrator.reconcile.plan import Plan, plan_shutdown
from orchestrator.runtime import Runtime, plan_policy, query_budget
from orchestrator.secrets import SecretError
from orchestrator.state import StoreError

log = structlog.get_logger("orchestrator.daemon")

# Cancelled at once at shutdown: they only read, or only wake the others (the
# snapshot's timer: shutdown writes the snapshot itself, last).
_READERS = ("refresh", "timer", "claims", "listen", "snapshot")
# Pings systemd's watchdog through the whole shutdown, and ends last.
_WATCHDOG = "watchdog"


class ReceiverError(OrchestratorError):
    """The notification receiver cannot start: its secret or its address."""


class Daemon:
    def __init__(
        self,
        runtime: Runtime,
        *,
        manifests: Path,
        notifier: Notifier,
        metrics: Metrics | None = None,
        config_path: Path | None = None,
        manifests_fixed: bool = False,
        helper: ParseHelper | None = None,
        hung_up: Callable[[], bool] = lambda: False,
    ) -> None:
        """`config_path`: the file a SIGHUP reads again (None: only the environment);
        `manifests_fixed`: `manifests` came from the command line, so a reload of the
        config does not move it; `helper`: the bulk loads' worker (`ParseHelper`), which
        the caller may have started ahead (None: a new one); `hung_up`: whether a SIGHUP
        came after the config was read and before `run` takes the signal over (it is
        then read again once the daemon is ready, as one during start-up is)."""
        self._rt = runtime
        self._hung_up = hung_up
        self._reload_when_ready = False  # a SIGHUP came before READY
        # One config reload at a time (each SIGHUP reads the file again, in turn), and
        # one watcher: reloads at once started a watcher each and stopped one.
        self._config_lock = asyncio.Lock()
        self._watch_lock = asyncio.Lock()
        self._config_path = config_path
        self._manifests_fixed = manifests_fixed
        self._manifests = manifests
        self._notifier = notifier
        self._metrics = metrics
        self._stop = asyncio.Event()
        self._exit = 0  # 1 once the stop found an answer the store never took
        self.tasks = TaskRegistry()
        outbox = runtime.executor.outbox
        self._health = Health(
            notifier, metrics, writable=lambda: outbox.writable, clock=runtime.clock
        )
        self._timeline = TimelineCache()
        self._reloader = Reloader(runtime, manifests, helper or ParseHelper())
        self._ownership = Ownership(
            runtime,
            self.tasks,
            metrics=metrics,
            ready=lambda: self._health.ready,
            answered=self._health.lock_answered,
        )
        self._timers = Timers(
            self.tasks,
            runtime.clock,
            resync_seconds=runtime.config.reconcile.resync_interval.total_seconds(),
            on_boundary=self._on_boundary,
            on_resync=lambda: self._passes.request_refresh("resync"),
            on_next=metrics.set_next_boundary if metrics is not None else None,
            on_late=metrics.observe_boundary_lateness if metrics is not None else None,
        )
        budget = QueryBudget(
            lambda: self._rt.config,
            on_cycle=metrics.set_query_cycle if metrics is not None else None,
        )
        self._passes = Passes(
            runtime,
            self.tasks,
            self._reloader,
            self._timers,
            self._health,
            owned=self._ownership.owned,
            describe_owner=self._ownership.describe,
            metrics=metrics,
            on_reloaded=self._reloaded,
            budget=budget,
        )
        self._ownership.attach(self._passes)
        self._watcher: ManifestWatcher | None = None
        self._health_server: HealthServer | None = None
        self._receiver: NoticeReceiver | None = None

    # -- public ------------------------------------------------------------------

    def readiness(self) -> ReadinessReport:
        return self._health.readiness()

    def status_document(self) -> dict[str, Any]:
        """What the status page shows (`/api/v1/status`), from memory: no store read."""
        now = self._rt.clock()
        ready, detail = self._health.verdict()
        view = self._health.overview
        live = [] if view is None else [*view.tally.sessions, *view.orphans]
        cycles = {b.app_id: b.cycle_s for b in query_budget(self._rt.config, live)}
        owned = self._ownership.owned()
        holders = self._ownership.holders
        apps = [
            AppView(
                app_id,
                (self._rt.config.replica.name if owned is None else holders.get(app_id)),
                limiter.per_second,
                limiter.in_use(app_id),
                cycles.get(app_id),
            )
            for app_id, limiter in sorted(self._rt.limiters.items())
        ]
        recordings = self._reloader.desired.recordings
        return status_document(
            view,
            now=now,
            replica=self._rt.config.replica.name,
            ready=ready,
            detail=detail,
            timeline=self._timeline.lanes(recordings, self._health.plan, now),
            actions=self._health.actions.newest_first(),
            apps=apps,
        )

    def request_pass(self, trigger: str) -> None:
        self._passes.request(trigger)

    def request_wake(self, at: datetime) -> None:
        """Plan again no later than `at`."""
        self._timers.retry_at(at)

    def request_reload(self, trigger: str, paths: set[str] | None = None) -> None:
        """Reload the manifests (`paths`: only these changed); a SIGHUP reads the config
        file again first."""
        if trigger != "SIGHUP":
            self._passes.request_reload(trigger, paths)
        elif not self._health.ready:  # start-up reads what it reads; then this
            self._reload_when_ready = True
        elif not self._stop.is_set():
            self._notifier.reloading()
            self.tasks.spawn("config", self._reread_config())

    async def _reread_config(self) -> None:
        """SIGHUP: the config file again; what can change live does, the rest waits for
        a restart (named in a warning), and a config that does not load changes nothing.
        Then the manifests are reloaded, whatever the config did. One at a time."""
        async with self._config_lock:
            if not self._stop.is_set():  # one queued behind others when a stop began
                await self._reread_config_now()

    async def _reread_config_now(self) -> None:
        try:
            loaded = await asyncio.to_thread(load_config, self._config_path)
        except ConfigError as exc:
            self._reload_failed(
                str(exc), f"the config file does not load (kept the running one): {exc}"
            )
        else:
            change = reconfigure(self._rt.config, loaded)
            secrets, unread = await asyncio.to_thread(secret_fingerprints, loaded)
            # One read at the start that cannot be now: a restart would go without it
            # (one that could not be read at the start either was said then).
            gone = [f"{key}: {why}" for key, why in unread.items() if key in self._rt.secrets]
            if gone:
                error = f"a secret read at the start cannot be read now: {'; '.join(gone)}"
                self._reload_failed(error, error, " (and the secrets read at the start)")
            elif change.refused:  # its live keys break a rule with the running values
                refused = "; ".join(change.refused)
                self._reload_failed(
                    f"with the keys that wait for a restart at their running values: {refused}",
                    f"the config file cannot be taken on live: {refused}",
                )
            else:
                self._rt.config_error = None
                held = self._rt.secrets
                rotated = sorted(
                    f"{key} (its value)"
                    for key in held.keys() & secrets.keys()
                    if secrets[key] != held[key]
                )
                await self._apply_config(change, rotated)
        self._passes.request_reload("SIGHUP")

    def _reload_failed(self, error: str, problem: str, kept: str = "") -> None:
        """A SIGHUP's config is not taken on: said in the log, counted as a failed
        reload, and a problem on the status page and `/api/v1/status` until a SIGHUP
        loads one (the next restart would refuse it, or go without what it lacks)."""
        log.error("config.reload_failed", error=error, detail=f"the running config{kept} is kept")
        self._rt.config_error = problem
        if self._metrics is not None:
            self._metrics.observe_reload(False)

    async def _apply_config(self, change: Reconfiguration, rotated: list[str]) -> None:
        """Take on what changes live; name what waits for a restart: the keys, and the
        secrets whose values changed (`rotated`: read at the start, held until then)."""
        before, after = self._rt.config, change.config
        self._rt.config = after
        self._rt.policy = plan_policy(after)
        if after.logging != before.logging:
            fmt = after.logging.format
            configure_logging(after.logging.level, json=None if fmt == "auto" else fmt == "json")
        if after.reconcile.resync_interval != before.reconcile.resync_interval:
            self._timers.set_resync(after.reconcile.resync_interval.total_seconds())
        if after.manifests != before.manifests:
            if not self._manifests_fixed and after.manifests.dir != self._manifests:
                self._manifests = after.manifests.dir
                self._reloader.move(after.manifests.dir)
            await self._start_watch()  # stops the running one first
        if change.restart_needed or rotated:
            log.warning(
                "config.restart_needed",
                keys=[*change.restart_needed, *rotated],
                detail="these keys keep their running values until the daemon restarts",
            )
        log.info("config.reloaded", changed=list(change.changed))

    def shutdown(self, reason: str = "signal") -> None:
        if not self._stop.is_set():
            log.info("daemon.stopping", reason=reason)
            self._notifier.stopping()
            self._health.stopping()
            self._rt.executor.drain()
            self._passes.stop()
            self._ownership.stop()
            self._stop.set()

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
        # One before the handler: read once ready, as one during start-up is.
        self._reload_when_ready = self._reload_when_ready or self._hung_up()
        self.tasks.spawn(_WATCHDOG, self._watchdog())
        try:
            await self._start_health()
            await self._start_receiver()
            log.info(
                "daemon.started",
                manifests=str(self._manifests),
                apps=sorted(self._rt.clients),
                watch=self._rt.config.manifests.watch,
            )
            for problem in self._rt.problems:
                log.error("config.credentials", problem=problem)
            # Start-up is a task like the others: a SIGTERM during the first pass drains
            # it within the drain timeout, as it would any pass.
            startup = self.tasks.spawn("startup", self._start_up())
            stopped = self.tasks.spawn("stopped", self._stop.wait())
            await asyncio.wait({startup, stopped}, return_when=asyncio.FIRST_COMPLETED)
            error = startup.exception() if startup.done() and not startup.cancelled() else None
            if error is not None:
                raise error  # the store failed at start-up, say: `run` reports it
            await self._stop.wait()
        finally:
            await self._close()
            await self.tasks.cancel(self.tasks.of(_WATCHDOG))  # it pinged until the end
            for signum in signals:  # `run` (the CLI) ignores them from its return on
                loop.remove_signal_handler(signum)
        log.info("daemon.stopped")
        return self._exit

    async def _start_up(self) -> None:
        """The first reload, ownership round and pass (which queries every live session
        and so adopts what a previous run left running), then READY=1 and the timers."""
        await self._reloader.start()
        await self._passes.reload("start")
        if self._stop.is_set():
            return
        # The watch starts once the first load has read every file: inotify reports
        # reads too, and each wakes the watch's thread, which made a first load of
        # 10,000 files a third slower. It is set up beside the first pass; an edit made
        # while loading is not missed: once it is set up, every file is looked at again
        # (a stat each; logged as a reload only when something changed), before READY.
        watching = self.tasks.spawn("startup", self._start_watch())
        await self._ownership.start()  # the first pass acts on what it claimed
        if self._stop.is_set():
            return
        if self._rt.ownership is not None:
            # Another replica may receive a notification of ours, whether or not this
            # one has a receiver of its own: its NOTIFY wakes us.
            self.tasks.spawn("listen", self._rt.ownership.listen(self._on_notice))
        await self._passes.run_pass({"start"}, refresh=True, wait=True)
        if self._stop.is_set():
            return
        if await watching:
            delta = await self._passes.reload("start", quiet=True)
            if delta is not None and delta is not UNCHANGED:
                await self._passes.run_pass({"reload"}, wait=True)
            if self._stop.is_set():
                return
        # What start-up built lives as long as the process: frozen, so that the
        # collector never rescans it.
        GC_POLICY.started()
        self._health.became_ready()
        if self._reload_when_ready:  # a SIGHUP during start-up: its reload now
            self.request_reload("SIGHUP")
        log.info("daemon.ready", summary=self._health.summary)
        self._timers.start()
        self._passes.remember_soon()  # what the passes before READY left to store
        self.tasks.spawn("worker", self._passes.work())
        self.tasks.spawn("snapshot", self._reloader.keep_snapshot())

    # -- callbacks ---------------------------------------------------------------

    def _on_boundary(self, trigger: str) -> None:
        self._passes.request(trigger)

    def _on_notice(self, app_id: str) -> None:
        """A notification was kept (here, or by another replica): act on it now if its
        App ID is ours (an empty one: any may be; the pass acts on ours only)."""
        owned = self._ownership.owned()
        if owned is None or not app_id or app_id in owned:
            self._passes.request("notice")

    def _reloaded(self, trigger: str, ok: bool) -> None:
        if trigger == "SIGHUP":  # systemd waits for READY after RELOADING, whatever came
            self._notifier.ready(self._health.summary)

    async def _watchdog(self) -> None:
        interval = self._notifier.watchdog_interval
        if interval is None:
            return
        while True:
            self._notifier.watchdog()
            await asyncio.sleep(interval)

    # -- start and stop ----------------------------------------------------------------

    async def _start_watch(self) -> bool:
        """Watch the manifests directory as the config says now, in place of the watcher
        running (start-up and a reload of the config may both ask); whether it does."""

        async def changed(paths: set[str]) -> None:
            log.debug("watch.changed", files=len(paths))
            self.request_reload("watch", paths)

        async with self._watch_lock:
            if self._watcher is not None:
                await self._watcher.stop()
                self._watcher = None
            if not self._rt.config.manifests.watch or self._stop.is_set():
                return False
            self._watcher = ManifestWatcher(
                self._manifests,
                changed,
                debounce=self._rt.config.manifests.watch_interval.total_seconds(),
            )
            await self._watcher.start()
            return True

    async def _start_health(self) -> None:
        metrics_cfg = self._rt.config.metrics
        if self._metrics is None or metrics_cfg.host is None or metrics_cfg.port is None:
            return
        page = StatusPage(self.status_document)
        self._health_server = HealthServer(self._metrics, self.readiness, pages=page.routes())
        await self._health_server.start(metrics_cfg.host, metrics_cfg.port)
        log.info("metrics.listening", address=f"{metrics_cfg.host}:{self._health_server.port}")

    async def _start_receiver(self) -> None:
        """Agora's notifications, on their own address (it faces Agora, through the
        operator's TLS proxy; the metrics address stays local)."""
        section = self._rt.config.notifications
        if section.host is None or section.port is None:
            return
        try:
            secret = resolve_notifications_secret(self._rt.config)
        except SecretError as exc:
            raise ReceiverError(f"notifications: {exc}") from None
        if secret is None:  # pragma: no cover (a config with an address has a secret)
            return
        self._rt.secrets[NOTIFICATIONS_SECRET] = fingerprint(secret)  # held until a restart
        metrics = self._metrics
        self._receiver = NoticeReceiver(
            self._rt.store,
            secret,
            path=section.path,
            max_body=section.max_body,
            spawn=lambda work: self.tasks.spawn("notice", work),
            wake=self._on_notice,
            clock=self._rt.clock,
            observe=metrics.observe_notification if metrics is not None else None,
        )
        try:
            port = await self._receiver.start(section.host, section.port)
        except OSError as exc:
            self._receiver = None
            raise ReceiverError(
                f"notifications.address {section.address}: cannot listen there "
                f"({exc.strerror or exc})"
            ) from None
        log.info("notifications.listening", address=f"{section.host}:{port}", path=section.path)

    async def _close(self) -> None:
        """No new work; what is in flight finishes within the drain timeout or is
        cancelled (its intent stays for the next start); then every task has ended."""
        self.shutdown("closing")
        async with self._watch_lock:  # none starts after this
            if self._watcher is not None:
                await self._watcher.stop()
        await self._timers.stop()
        drain = self._rt.config.shutdown.drain_timeout.total_seconds()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + drain
        late = await self.tasks.drain(drain, cancel_at_once=_READERS, keep=(_WATCHDOG,))
        if late:
            log.warning("daemon.drain_timeout", seconds=drain, unfinished=len(late))
        if self._rt.config.reconcile.stop_on_shutdown:
            await self._stop_all(max(1.0, deadline - loop.time()))
        if self._receiver is not None:
            # It took notices until now (those of the stops above among them): each is
            # kept before its 200, so what is still being kept finishes (or is cut,
            # unanswered: NCS sends it again) while the store is open.
            await self._receiver.stop()
            await self.tasks.drain(max(1.0, deadline - loop.time()), keep=(_WATCHDOG,))
        if self._health_server is not None:
            await self._health_server.stop()
        # What the API answered and the store refused: a last few tries within the
        # drain's time, else said (with its sid) and the exit is a failure, not a 0.
        outbox = self._rt.executor.outbox
        try:
            left = await asyncio.wait_for(outbox.settle_all(), max(1.0, deadline - loop.time()))
        except TimeoutError:
            left = outbox.left()
        for line in left:
            log.error("daemon.outcome_lost", detail=line)
            self._exit = 1
        await self._reloader.remember()  # what the drain cut short, if the store answers
        await self._reloader.write_snapshot()  # the next start parses only what changes

    async def _stop_all(self, budget: float) -> None:
        """reconcile.stopOnShutdown: stop every live session before exiting (replicas:
        of the App IDs this one owns)."""
        owned = self._ownership.owned()
        try:
            live = await self._rt.store.live_sessions()
            if owned is not None:
                live = [s for s in live if s.app_id in owned]
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
