"""Which App IDs this replica acts on (PostgreSQL replicas).

Every `replica.claimInterval` a balancing round checks that our locks stand, claims
App IDs nobody owns (up to our fair share, or any left unowned for two rounds), and
hands one over when we own more than our share while another replica owns less and
no App ID is free. Between rounds, every second, a cheap check of the lock
connection: a lost connection stops us acting within about a second.

The one owner of the set of App IDs this replica acts on (`owned`: None with SQLite,
whose single writer acts on all). Losing an App ID cancels its actions at once (the
next owner finishes them from their intents); handing one over lets its actions
finish for up to `shutdown.drainTimeout`, then cancels what still runs and waits
for it to end before the lock goes, so no outcome is written after the release
(and the store fences every write of an App ID we no longer own). Gaining one
queries its live sessions at once and adopts them.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections import Counter
from collections.abc import Callable
from datetime import timedelta

import structlog

from orchestrator.daemon.metrics import Metrics
from orchestrator.daemon.passes import Passes
from orchestrator.daemon.tasks import TaskRegistry
from orchestrator.runtime import Runtime
from orchestrator.state import StoreError

log = structlog.get_logger("orchestrator.daemon")

HANDOVER_QUIET = 2.0
"""Seconds, beyond one claim interval, before an App ID's next window boundary within
which balancing does not hand it over: from the release to the next owner's claim (up
to a claim interval) and adoption (a query and a pass) nobody acts for it, and a
window opening or closing then would start or stop late."""


class Ownership:
    def __init__(
        self,
        runtime: Runtime,
        tasks: TaskRegistry,
        *,
        metrics: Metrics | None = None,
        ready: Callable[[], bool],
        answered: Callable[[bool], None] = lambda _ok: None,
    ) -> None:
        self._rt = runtime
        self._answered = answered  # whether the lock connection answered a round or check
        self._own = runtime.ownership
        self._tasks = tasks
        self._metrics = metrics
        self._ready = ready
        self._passes: Passes | None = None
        self._owned: frozenset[str] | None = None if self._own is None else frozenset()
        self._releasing: set[str] = set()
        self._free_rounds: Counter[str] = Counter()
        self._handed: dict[str, int] = {}  # App IDs we released, rounds left alone
        self._twinned = False  # another running replica has our name (said once)
        self._stopping = asyncio.Event()
        # Replicas: each App ID's holder (a replica name, None: nobody) as of the last
        # round, for the status page. Empty with SQLite.
        self.holders: dict[str, str | None] = {}

    def attach(self, passes: Passes) -> None:
        self._passes = passes

    @property
    def replicated(self) -> bool:
        return self._own is not None

    def owned(self) -> frozenset[str] | None:
        """The App IDs this replica acts on now (None: all, SQLite)."""
        return self._owned

    def describe(self) -> str:
        if self._owned is None:
            return ""
        return f"owns {len(self._owned)} of {len(self._rt.app_ids)} App IDs, "

    async def start(self) -> None:
        """The first round (before the first pass, which acts on what it claimed)."""
        if self._own is None:
            if self._metrics is not None:  # the single writer owns every App ID
                self._metrics.set_owned_app_ids(len(self._rt.app_ids))
                self._metrics.set_unowned_app_ids(0)
            return
        await self._balance()
        self._tasks.spawn("claims", self._claim_loop())

    def stop(self) -> None:
        self._stopping.set()

    # -- rounds ------------------------------------------------------------------------

    async def _claim_loop(self) -> None:
        own = self._own
        assert own is not None
        interval = self._rt.config.replica.claim_interval.total_seconds()
        next_round = time.monotonic() + interval
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), min(1.0, interval))
            if self._stopping.is_set():
                return
            if time.monotonic() >= next_round:
                next_round = time.monotonic() + interval
                await self._balance()
                continue
            before = own.owned
            try:
                await own.check()
            except StoreError as exc:
                own.lost()
                log.error("ownership.unavailable", error=str(exc))
                self._answered(False)
            if own.owned != before:
                await self._changed(before, own.owned)

    async def _balance(self) -> None:
        """One round; a failure of the store's server leaves us owning nothing until
        it answers again."""
        own = self._own
        assert own is not None
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
            # Whatever a lock not ours holds is another replica's, by lock, not by name:
            # one that runs under our replica.name counted as us, and the two handed
            # App IDs back and forth every round.
            others = Counter(h for a, h in holders.items() if h is not None and a not in mine)
            self._say_if_twinned(
                sorted(a for a, h in holders.items() if h == own.name and a not in mine)
            )
            short = members - 1 > len(others) or min(others.values(), default=low) < low
            # While an App ID is free (one handed over and not yet claimed, say), the
            # replica that is short takes that one: handing over more would churn.
            still_free = any(a not in mine for a in free)
            self.holders = {a: own.name if a in mine else holders.get(a) for a in apps}
            if self._metrics is not None:
                self._metrics.set_unowned_app_ids(sum(1 for a in free if a not in mine))
            if len(mine) > max(low, 1) and short and not still_free and not self._releasing:
                quiet = self._quiet(mine)  # none: the next round tries again
                if quiet:
                    victim = max(quiet, key=lambda a: hashlib.sha256(a.encode()).digest())
                    await self._hand_over(victim)
                    before = before - {victim}  # released, not lost
        except StoreError as exc:
            own.lost()
            log.error("ownership.unavailable", error=str(exc))
            self._answered(False)
        else:
            self._answered(True)
        await self._changed(before, own.owned)

    def _say_if_twinned(self, theirs: list[str]) -> None:
        """Another running replica has our replica.name (it holds `theirs` under it):
        said once, as `status` and the page cannot tell the two apart."""
        if theirs and not self._twinned:
            assert self._own is not None
            log.error(
                "replica.name_taken",
                name=self._own.name,
                app_ids=theirs,
                detail="another running replica has this replica.name: give each its own",
            )
        self._twinned = bool(theirs)

    def _quiet(self, app_ids: set[str]) -> list[str]:
        """Those of `app_ids` with no window boundary before a hand-over is done with
        (a claim interval and `HANDOVER_QUIET`)."""
        assert self._passes is not None
        now = self._rt.clock()
        interval = self._rt.config.replica.claim_interval.total_seconds()
        until = now + timedelta(seconds=interval + HANDOVER_QUIET)
        out = []
        for app_id in app_ids:
            due = self._passes.next_boundary_of(app_id, now)
            if due is None or due > until:
                out.append(app_id)
        return out

    async def _hand_over(self, app_id: str) -> None:
        """Release `app_id` to another replica: no new action for it, the actions in
        flight finish within the drain timeout, what still runs then is cancelled (and
        ended) before the lock goes. Its recordings keep running; the next owner adopts
        them and finishes any call left half done from its intent."""
        own = self._own
        assert own is not None and self._passes is not None
        self._releasing.add(app_id)
        try:
            self._owned = (self._owned or frozenset()) - {app_id}
            busy = self._passes.actions_of(app_id)
            if busy:
                limit = self._rt.config.shutdown.drain_timeout.total_seconds()
                _, late = await asyncio.wait(busy, timeout=limit)
                if late:
                    log.warning(
                        "ownership.handover_cancelled",
                        app_id=app_id,
                        unfinished=len(late),
                        seconds=limit,
                    )
                    await self._tasks.cancel(late)
            await own.release(app_id)
            self._handed[app_id] = 2
            log.info("ownership.released", app_id=app_id, replica=own.name)
        finally:
            self._releasing.discard(app_id)

    async def _changed(self, before: frozenset[str], after: frozenset[str]) -> None:
        own = self._own
        assert own is not None and self._passes is not None
        gained, lost = after - before, before - after
        self._owned = after - self._releasing
        if lost:
            gone = sorted(lost)
            # Keep no work in flight for them: the new owner finishes it from the intents.
            for app_id in gone:
                await self._tasks.cancel(self._passes.actions_of(app_id))
            log.warning("ownership.lost", app_ids=gone, replica=own.name)
            if self._metrics is not None:
                self._metrics.observe_ownership_lost(len(gone))
        if gained:
            log.info("ownership.gained", app_ids=sorted(gained), replica=own.name)
            if self._ready():  # the first pass adopts what start-up claimed
                # Adopt at once: query the App IDs' live sessions, then plan.
                self._passes.request_refresh("takeover", frozenset(gained))
        if self._metrics is not None:
            self._metrics.set_owned_app_ids(len(self._owned))
