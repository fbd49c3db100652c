"""The daemon's policy for Python's cyclic garbage collector around manifest loads.

A process-wide setting has one owner: the collector is one per process, so this
module holds the one policy (`GC_POLICY`) and the daemon passes it to its
`ManifestCache` as its `LoadHooks`. The manifest loader itself never touches the
collector: `validate`, `plan` and the tests load with the collector as they found
it.

Pausing: a load allocates hundreds of thousands of long-lived objects, and the
collector, triggered by allocations, traverses the growing heap again and again
(about a quarter of a 10,000-manifest load). Parsing a valid file leaves no
cycles behind (the loader breaks its own), so little piles up meanwhile, and
young objects are collected every `COLLECT_EVERY` parses, so that the cycles a
broken file leaves behind (exceptions, the round-trip parser's objects) cannot
pile up over a bulk load of thousands of broken files. Nested or concurrent loads
pause once; the last one out restores the previous state.

Freezing: the daemon keeps what it loaded for days. `gc.freeze()` moves every
object alive into a permanent generation that collections skip, so the collector
stops rescanning 10,000 manifests. Before freezing, what is not frozen yet is
collected (cheap: what was made since the last freeze), so fresh garbage is not
frozen. Something frozen that later becomes cyclic garbage is not collected while
frozen, so everything is unfrozen and collected once (a few hundred ms at 10,000
manifests) after a bulk reload, or when the objects frozen since the last full
collection exceed a quarter of those frozen by it: Python's own rule for its
oldest generation. This is process-wide: other long-lived objects of the process
are frozen too, which spares them the same rescans.

It must never leave the collector disabled after a load, and never be used by a
short-lived command (freezing is for objects that live as long as the process).
"""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterator

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
        self._at_full = -1  # objects frozen by the last full collection; -1: none yet
        self._since_full = 0

    @contextlib.contextmanager
    def loading(self) -> Iterator[None]:
        """The collector paused for the block (as found again after the last block)."""
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
                if self._depth == 0 and self._was_enabled:
                    gc.enable()

    def parsed(self, count: int) -> None:
        """Collect the young objects every COLLECT_EVERY parses of a load."""
        if count % COLLECT_EVERY == 0:
            gc.collect(0)

    def loaded(self, stats: LoadStats) -> None:
        """Settle after a load: a full collection after a bulk reload (a tenth of the
        files or more parsed again), else only when one is due."""
        self.settle(bulk=stats.parsed * 10 > stats.files)

    def settle(self, *, bulk: bool) -> None:
        """Collect what is not frozen, then freeze it; a full collection when `bulk` or
        when one is due. The daemon calls `settle(bulk=True)` once its start-up is done:
        what start-up built lives as long as the process."""
        with self._lock:
            full = bulk or self._at_full < 0 or self._since_full > self._at_full // 4
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
