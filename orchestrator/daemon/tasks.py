"""The one owner of every task the daemon starts.

Passes, action groups, resync queries, takeovers, timers, the claim loop: each is
spawned here with a kind and, where it matters, a key (a manifest's name), and
leaves the registry when it ends. Shutdown has one path (`drain`: wait up to a
deadline, cancel what is left, await the cancellations) and a hand-over another
(`cancel` of some tasks, awaited), so no task outlives what started it and none is
left unawaited. Asyncio's `TaskGroup` gives a block this property; the daemon's
tasks start and end at unrelated moments, so they need a registry instead.

A task's failure is logged here once (a bug must not pass silently, nor end the
daemon); its result stays with whoever awaits the task.

This module must never decide what a task does, and never create a task anywhere
but in `spawn`.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Coroutine, Iterable
from typing import Any, TypeVar

import structlog

log = structlog.get_logger("orchestrator.daemon")

_T = TypeVar("_T")


class TaskRegistry:
    def __init__(self) -> None:
        self._tasks: dict[asyncio.Task[Any], tuple[str, str | None]] = {}
        #: How many tasks of each kind were ever spawned (for tests and debugging).
        self.spawned: Counter[str] = Counter()

    def spawn(
        self, kind: str, coroutine: Coroutine[Any, Any, _T], *, key: str | None = None
    ) -> asyncio.Task[_T]:
        """Run `coroutine` as a task this registry owns."""
        task = asyncio.create_task(coroutine, name=f"{kind}:{key}" if key else kind)
        self._tasks[task] = (kind, key)
        self.spawned[kind] += 1
        task.add_done_callback(self._ended)
        return task

    def _ended(self, task: asyncio.Task[Any]) -> None:
        kind, key = self._tasks.pop(task, ("?", None))
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            log.error(
                "daemon.task_failed",
                task=kind,
                key=key,
                error=f"{type(error).__name__}: {error}",
            )

    def of(self, kind: str | None = None, key: str | None = None) -> list[asyncio.Task[Any]]:
        """The running tasks of `kind` (and `key`), or all of them."""
        return [
            task
            for task, (k, name) in self._tasks.items()
            if (kind is None or k == kind) and (key is None or name == key)
        ]

    def running(self, kind: str, key: str | None = None) -> bool:
        return bool(self.of(kind, key))

    def __len__(self) -> int:
        return len(self._tasks)

    async def cancel(self, tasks: Iterable[asyncio.Task[Any]]) -> None:
        """Cancel `tasks` and wait until each has ended (a cancelled task may still run
        its cleanup)."""
        chosen = [task for task in tasks if not task.done()]
        for task in chosen:
            task.cancel()
        if chosen:
            await asyncio.gather(*chosen, return_exceptions=True)

    async def drain(
        self, within: float, *, cancel_at_once: Iterable[str] = (), keep: Iterable[str] = ()
    ) -> list[asyncio.Task[Any]]:
        """Shutdown: cancel the kinds in `cancel_at_once` now, let the others finish for
        up to `within` seconds, then cancel what is left and wait for every task to
        end. Returns the tasks that had to be cancelled at the deadline. Tasks spawned
        meanwhile (a task's own follow-up) are drained in the same way. The kinds in
        `keep` are left running (the caller ends them last)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(0.0, within)
        now_kinds = set(cancel_at_once)
        kept = set(keep)
        late: list[asyncio.Task[Any]] = []
        while drained := [t for t, (kind, _) in self._tasks.items() if kind not in kept]:
            await self.cancel(self.of_kinds(now_kinds))
            pending = [t for t in drained if not t.done()]
            if not pending:
                await asyncio.sleep(0)  # let the done callbacks run
                continue
            remaining = deadline - loop.time()
            if remaining > 0:
                await asyncio.wait(pending, timeout=remaining)
                continue
            late.extend(t for t in pending if not t.done())
            await self.cancel(pending)
        return late

    def of_kinds(self, kinds: set[str]) -> list[asyncio.Task[Any]]:
        return [task for task, (kind, _) in self._tasks.items() if kind in kinds]
