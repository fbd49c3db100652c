"""Bounded waits for an event, shared by the tests, the benchmarks and the demo.

A wait asks a question again and again (a log event, a message, an emulator
request, a process's exit) until it has an answer or its time is up; it never
sleeps for a fixed time instead of asking. `wait_until` is for asyncio code (the
tests, whose in-process emulator serves from the same loop: nothing here blocks
it); `wait_until_blocking` for plain scripts.

Must never: wait without a bound, or hide what it waited for when it gives up.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

T = TypeVar("T")

#: How often a wait asks again: short against the time any awaited thing takes.
EVERY = 0.05


class Living(Protocol):
    """Something whose death ends a wait early (a child process)."""

    @property
    def alive(self) -> bool: ...

    def describe(self) -> str: ...


class WaitTimeout(AssertionError):
    """A bounded wait ran out, or what it depended on died first."""


def _fail(what: str, within: float, alive: Living | None) -> WaitTimeout:
    if alive is not None and not alive.alive:
        return WaitTimeout(f"{what}: {alive.describe()} exited first")
    suffix = f"\n{alive.describe()}" if alive is not None else ""
    return WaitTimeout(f"{what}: not within {within:g} s{suffix}")


async def wait_until(
    check: Callable[[], T | Awaitable[T | None] | None],
    *,
    within: float,
    what: str,
    every: float = EVERY,
    alive: Living | None = None,
) -> T:
    """The first truthy answer of `check` (a function, or a coroutine function); a
    `WaitTimeout` after `within` seconds, or as soon as `alive` is no longer."""
    deadline = time.monotonic() + within
    while True:
        answer = check()
        if inspect.isawaitable(answer):
            answer = await answer
        if answer:
            return answer  # type: ignore[return-value]
        if (alive is not None and not alive.alive) or time.monotonic() >= deadline:
            raise _fail(what, within, alive)
        await asyncio.sleep(min(every, max(0.0, deadline - time.monotonic())))


def wait_until_blocking(
    check: Callable[[], T | None],
    *,
    within: float,
    what: str,
    every: float = EVERY,
    alive: Living | None = None,
) -> T:
    """`wait_until` for code without an event loop (the demo, a benchmark)."""
    deadline = time.monotonic() + within
    while True:
        answer = check()
        if answer:
            return answer
        if (alive is not None and not alive.alive) or time.monotonic() >= deadline:
            raise _fail(what, within, alive)
        time.sleep(min(every, max(0.0, deadline - time.monotonic())))
