"""How the daemon is doing, as `/readyz`, systemd's STATUS= and the metrics say it.

The one owner of the facts that several tasks learn: whether the first pass has
finished, whether the store answers (passes, resyncs and the end of a pass report
whether it could be read; whether it takes writes is the executor's outbox's,
asked here), and what every recording is doing as of the last pass (the overview,
with its one-line summary, the plan and the last actions, which the status page
shows). Readers ask this object; nobody else keeps a copy.

This module must never decide anything about recordings, and `readiness()` must
stay cheap: it runs on the event loop for every probe.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime

from orchestrator.daemon.metrics import Metrics, ReadinessReport
from orchestrator.daemon.notify import Notifier
from orchestrator.daemon.statuspage import ActionLog
from orchestrator.reconcile.overview import Overview, counts_by_app, held_by_reason
from orchestrator.reconcile.plan import Plan
from orchestrator.reconcile.reconciler import PassResult


class Health:
    def __init__(
        self,
        notifier: Notifier,
        metrics: Metrics | None,
        writable: Callable[[], bool] = lambda: True,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._notifier = notifier
        self._metrics = metrics
        self._writable = writable
        self.ready = False
        self.leaving = False  # a shutdown began: no longer ready, whatever else holds
        self.store_ok = True  # the store could be read by the last pass
        self.lock_ok = True  # replicas: the lock connection answered its last round or check
        self.summary = ""
        self.overview: Overview | None = None
        self.plan: Plan | None = None  # the last pass's, for the status page's timeline
        self.actions = ActionLog(clock)  # the last actions, for the status page
        if metrics is not None:
            metrics.watch_readiness(lambda: self.verdict()[0])

    def store_failed(self) -> None:
        self.store_ok = False
        if self._metrics is not None:
            self._metrics.set_store_up(False)

    def lock_answered(self, ok: bool) -> None:
        """Replicas: whether the lock connection answered a round or a check."""
        self.lock_ok = ok

    def store_answered(self) -> None:
        self.store_ok = True
        if self._metrics is not None:
            self._metrics.set_store_up(self._writable())

    def stopping(self) -> None:
        """A shutdown began: not ready from now on (a load balancer or a probe stops
        sending work; the drain may last `shutdown.drainTimeout`)."""
        self.leaving = True

    def became_ready(self) -> None:
        self.ready = True
        self._notifier.ready(self.summary)

    def readiness(self) -> ReadinessReport:
        """Ready once the first pass has finished and while the store is writable; the
        facts say what is not recording and why, whatever the answer."""
        view = self.overview
        facts = view.as_dict(limit=50) if view is not None else {}
        ready, detail = self.verdict()
        return ReadinessReport(ready, detail, facts)

    def verdict(self) -> tuple[bool, str]:
        """(ready, why): what `/readyz` answers, without its facts (cheap)."""
        if self.leaving:
            return False, "shutting down: finishing what is in flight"
        if not self.ready:
            return False, "the first reconcile pass has not finished"
        if not self.store_ok:
            # A pass's store error (a lock, a damaged or lost file): the log says which.
            return False, "the state store failed the last pass (see reconcile.pass_failed)"
        if not self.lock_ok:
            # Replicas: owning nothing until the server answers (ownership.unavailable).
            return False, "the state store's server failed the last ownership check"
        if not self._writable():
            # Not ready until a write goes through again (not at the next read that
            # works: reads often work while writes fail), so readiness does not flap.
            return False, "the state store does not take writes"
        return True, self.summary

    def after_pass(
        self,
        result: PassResult,
        view: Overview,
        *,
        owns: str,
        app_ids: frozenset[str],
    ) -> None:
        """A pass has finished: the summary, STATUS= and the metrics of its outcome."""
        self.overview = view
        self.plan = result.plan
        self.actions.record(result.results)
        held = held_by_reason(result.plan, view)
        phases = Counter(s.phase.value for s in view.tally.sessions + view.orphans)
        self.summary = f"{owns}{view.summary()}" + (
            f", {len(result.problems)} not queryable" if result.problems else ""
        )
        self._notifier.status(self.summary)
        if self._metrics is not None:
            self._metrics.set_sessions(dict(phases))
            self._metrics.set_untracked(len(view.untracked))
            self._metrics.set_manifests(len(view.failing_files), dict(held))
            self._metrics.set_recordings(counts_by_app(view, app_ids))
            for r in result.results:
                self._metrics.observe_action(r.action.kind.value, r.ok)
