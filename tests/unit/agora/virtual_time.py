"""Virtual time for the rate limiter's tests: asyncio tasks sleep on timers, and the
clock jumps to the next timer once every task is parked, so a test observes every
wait of the limiter without waiting.
"""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import Coroutine
from typing import Any


class VirtualTime:
    """Virtual time for asyncio tasks: `sleep` parks a task on a timer, and `run`
    moves the clock to the next timer once every task is parked. Records sleeps.

    "Parked" is judged by activity: when several loop turns pass without anyone
    reading the clock or going to sleep, every task is waiting.
    """

    def __init__(self, start: float = 1000.0) -> None:
        self._now = start
        self.sleeps: list[float] = []
        self._timers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._count = 0
        self._activity = 0

    @property
    def now(self) -> float:
        self._activity += 1
        return self._now

    @now.setter
    def now(self, value: float) -> None:
        self._now = value

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        timer = asyncio.get_running_loop().create_future()
        self._count += 1
        heapq.heappush(self._timers, (self._now + max(seconds, 0.0), self._count, timer))
        await timer

    async def run(self, *coroutines: Coroutine[Any, Any, None]) -> None:
        tasks = [asyncio.ensure_future(c) for c in coroutines]
        try:
            while True:
                await self._settle()
                if all(t.done() for t in tasks):
                    break
                assert self._timers, "every task is waiting and no timer is set"
                when, _, timer = heapq.heappop(self._timers)
                self._now = max(self._now, when)
                if not timer.done():
                    timer.set_result(None)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for task in tasks:
            task.result()

    async def _settle(self) -> None:
        quiet = 0
        while quiet < 10:
            seen = self._activity + self._count
            await asyncio.sleep(0)
            quiet = quiet + 1 if self._activity + self._count == seen else 0
