"""The daemon's policy for Python's cyclic garbage collector around manifest loads.

A process-wide setting has one owner: the collector is one per process, so this
module holds the one policy (`GC_POLICY`) and the daemon passes it to its
`ManifestCache` as its `LoadHooks`. The manifest loader itself never touches the
collector: a command that loads once and exits (`validate`, `plan`, ...) has its own,
simpler policy (`orchestrator.cli.context.OneLoad`, with the same `COLLECT_EVERY`),
and the tests load with the collector as they found it.

Pausing: a load allocates hundreds of thousands of long-lived objects, and the
collector, triggered by allocations, traverses the growing heap again and again
(about a quarter of a 10,000-manifest load). Parsing a valid file leaves no
cycles behind (the loader breaks its own), so little piles up meanwhile, and
young objects are collected every `COLLECT_EVERY` parses, so that the cycles a
broken file leaves behind (exceptions, the round-trip parser's objects) cannot
pile up over a bulk load of thousands of broken files. Nested or concurrent loads
pause once; the last one out restores the previous state.

Freezing: the daemon keeps what it loaded for days (and freezes what its start-up
built as it is, without a collection: `started`). `gc.freeze()` moves every
object alive into a permanent generation that collections skip, so the collector
stops rescanning 10,000 manifests. Before freezing, what is not frozen yet is
collected (cheap: what was made since the last freeze), so fresh garbage is not
frozen. Something frozen that later becomes cyclic garbage is not collected while
frozen, so everything is unfrozen and collected once (a few hundred ms at 10,000
manifests) after a bulk reload, or when the objects frozen since the last full
collection exceed a quarter of those frozen by it: Python's own rule for its
oldest generation. What each settle froze is summed (cheap), but most of it dies
again by reference counting (each pass's overview replaces the last one's), so when
the sum reaches a quarter the frozen objects are counted (`gc.get_freeze_count()`,
some 50 ms at 10,000 manifests) and only real growth makes the full collection due:
otherwise every few edits would pause the daemon for it. This is process-wide:
other long-lived objects of the process are frozen too, which spares them the same
rescans.

It must never leave the collector disabled after a load, and never be used by a
short-lived command (freezing is for objects that live as long as the process).
"""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # this module stays light: `validate` imports it for COLLECT_EVERY
    from orchestrator.manifest.loaded import LoadStats

__all__ = ["COLLECT_EVERY", "GC_POLICY", "GcPolicy"]

COLLECT_EVERY = 500
"""While the collector is paused, young objects are collected after this many parses."""


class GcPolicy:
    """The collector around loads (`LoadHooks`), and after the daemon's start-up."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._depth = 0
        self._was_enabled = False
        self._at_full = -1  # objects frozen at the last full collection (or start-up); -1: not yet
        self._since_full = 0
        self._due: bool | None = None  # a settle asked for inside a pause (bulk or not)

    @contextlib.contextmanager
    def loading(self) -> Iterator[None]:
        """The collector paused for the block (as found again after the last block).

        The settle a load asks for (`loaded`, called before its block ends) is made when
        the outermost block ends, before the collector runs again: inside the daemon's
        reload (the load, then the desired recordings' build) what the whole reload
        made is collected and frozen at once. Before the daemon's start-up is done
        (`started`), what a block made is frozen as it ends, without a collection:
        re-enabling the collector over a heap of new objects would make it traverse
        them all first.
        """
        with self._lock:
            if self._depth == 0:
                self._was_enabled = gc.isenabled()
                gc.disable()
            self._depth += 1
        try:
            yield
        finally:
            with self._lock:
                self._depth -= 1
                if self._depth == 0:
                    due, self._due = self._due, None
                    if due is not None:
                        self._settle(bulk=due)
                    elif self._at_full < 0:
                        gc.freeze()  # start-up's: frozen as it goes (see `started`)
                    if self._was_enabled:
                        gc.enable()

    def parsed(self, count: int) -> None:
        """Collect the young objects every COLLECT_EVERY parses of a load."""
        if count % COLLECT_EVERY == 0:
            gc.collect(0)

    def loaded(self, stats: LoadStats) -> None:
        """Settle when the load's pause ends (a load calls this inside it): a full
        collection after a bulk reload (a tenth of the files or more parsed again), else
        only when one is due. Not before the daemon's start-up is done (`started`)."""
        if self._at_full < 0:
            return
        with self._lock:
            if self._depth > 0:
                self._due = bool(self._due) or stats.parsed * 10 > stats.files
                return
        self.settle(bulk=stats.parsed * 10 > stats.files)

    def started(self) -> None:
        """The daemon's start-up is done: what it built lives as long as the process, so
        it is frozen as it is, without the full collection (a few hundred ms at 10,000
        manifests, most of a restart's budget): young collections ran during its loads,
        so the garbage it froze is bounded, and goes at the first full collection (a
        bulk reload, or growth by a quarter of what is frozen now)."""
        with self._lock:
            gc.collect(0)  # what is young now: not frozen yet
            gc.freeze()
            self._at_full, self._since_full = gc.get_freeze_count(), 0

    def settle(self, *, bulk: bool) -> None:
        """Collect what is not frozen, then freeze it; a full collection when `bulk` or
        when one is due."""
        with self._lock:
            self._settle(bulk=bulk)

    def _settle(self, *, bulk: bool) -> None:
        full = bulk or self._at_full < 0
        if not full and self._since_full > self._at_full // 4:
            # the sum counts objects frozen since that have died since: count again
            self._since_full = max(0, gc.get_freeze_count() - self._at_full)
            full = self._since_full > self._at_full // 4
        if full:
            gc.unfreeze()
        gc.collect()
        # after a collection of the oldest generation, every object not frozen is
        # in it (`gc.get_freeze_count()` would walk all the frozen ones)
        fresh = len(gc.get_objects(generation=2))
        gc.freeze()
        if full:
            self._at_full, self._since_full = fresh, 0
        else:
            self._since_full += fresh


GC_POLICY = GcPolicy()
"""The process's one policy: the collector is one per process."""
