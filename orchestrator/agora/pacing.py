"""How fast the client may call: the per-App-ID rate limit and the retry backoff.

`RateLimiter` keeps every App ID under Agora's request rate for the whole process
(one instance is shared by every client), and `RetryPolicy` says how long to wait
between the attempts of one call and how long the call may take in all. Both take
their clock, sleep and randomness as parameters, so tests observe every wait
without waiting.

It must never send a request or know what one holds: it grants slots and computes
delays; `client.py` sends. Both are re-exported by `orchestrator.agora.client` and
`orchestrator.agora`.
"""

from __future__ import annotations

import asyncio
import bisect
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import structlog

log = structlog.get_logger("orchestrator.agora")

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

#: How far our clock may disagree with the server's over one window: the monotonic
#: clock's resolution (a stamp may be rounded by one tick) plus 1 ms for rate error
#: (NTP slews a Linux clock by at most 500 ppm, so two disciplined clocks differ by at
#: most 1 ms per second). On Linux this is 1.000001 ms: the window costs 0.1 % of the rate.
CLOCK_MARGIN = time.get_clock_info("monotonic").resolution + 0.001
DEFAULT_WINDOW = 1.0 + CLOCK_MARGIN


class Slot:
    """One granted request slot of a `RateLimiter`: in flight until `release()`.

    Release it the moment the answer (or the transport error) is received; releasing
    twice is harmless. `RateLimiter.slot()` does this for an `async with` block.
    """

    __slots__ = ("_limiter", "_released", "app_id")

    def __init__(self, limiter: RateLimiter, app_id: str) -> None:
        self._limiter = limiter
        self._released = False
        self.app_id = app_id

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._limiter._release(self.app_id)


@dataclass
class _AppWindow:
    """The slots of one App ID: a FIFO queue of callers, in-flight slots, and, sorted,
    the instants at which finished ones leave the window (receipt + window)."""

    queue: asyncio.Lock = field(default_factory=asyncio.Lock)
    in_flight: int = 0
    finished: list[float] = field(default_factory=list)
    released: asyncio.Future[None] | None = None

    def expire(self, now: float) -> None:
        # One comparison against a precomputed instant, so that sleeping until that
        # instant is always enough (no float rounding between two forms of it).
        drop = 0
        while drop < len(self.finished) and now >= self.finished[drop]:
            drop += 1
        del self.finished[:drop]

    @property
    def taken(self) -> int:
        return self.in_flight + len(self.finished)


class RateLimiter:
    """At most `per_second` requests per App ID in any window of one second *at the server*.

    The server counts a request when it arrives, an instant we cannot observe; we only
    know it lies between our send and our receipt of the answer. So a slot is taken
    when granted (before the send), stays *in flight* while the request is out, and
    when the answer (or the transport error) is received it is stamped with that
    receipt instant and stays in the window until `window` seconds later. A request
    may be sent only while fewer than `per_second` slots are in flight or were
    released less than `window` ago.

    Why that bounds the server's count: take any requests whose arrivals lie within
    less than one second of each other, and let k be the one granted last, at s_k.
    Each other request j was granted before s_k. If j was still in flight at s_k it
    was counted. Otherwise its receipt r_j <= s_k, and r_j >= arrival_j >
    arrival_k - 1 >= s_k - 1, so s_k - r_j < 1 <= window: it was still counted. k was
    granted only because fewer than `per_second` were counted, so the group has at
    most `per_second` requests. This holds for a sliding window (Agora's and the
    emulator's) and for fixed calendar seconds alike, whatever the latency or the
    server's own processing delay, so no latency margin is needed. The window is one
    second plus `CLOCK_MARGIN`: clock resolution and the rate error between our clock
    and the server's. The price of the bound is that a slot is busy for one window
    plus the request's latency: 10 / (1.001 + latency) per second.

    What it cannot bound: a request that the server reads only after we gave up on
    it (a timeout, a cancelled call). Its slot is stamped when we gave up, so an
    arrival later than that is not covered.

    One instance is meant to be shared by everything in the process that calls the
    API. Callers for one App ID are served in arrival order (an `asyncio.Lock` is
    FIFO). The caller at the head of the queue waits without polling: it sleeps until
    the oldest finished slot leaves the window, or, when every slot is in flight,
    until one is released (a release alone frees nothing: the slot stays in the
    window). `clock` and `sleep` are injectable; `on_wait(app_id, seconds)` is called
    for every slot granted with the time the caller waited, and an exception it
    raises is logged, never passed on.
    """

    def __init__(
        self,
        per_second: int = 10,
        *,
        window: float = DEFAULT_WINDOW,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        on_wait: Callable[[str, float], None] | None = None,
    ) -> None:
        if per_second < 1:
            raise ValueError("per_second must be at least 1")
        if window <= 0:
            raise ValueError("window must be positive")
        self.per_second = per_second
        self.window = window
        self._clock = clock
        self._sleep = sleep
        self._on_wait = on_wait
        self._apps: dict[str, _AppWindow] = {}

    def in_use(self, app_id: str) -> int:
        """Slots of `app_id` that count now: in flight, or released less than `window` ago."""
        state = self._apps.get(app_id)
        if state is None:
            return 0
        state.expire(self._clock())
        return state.taken

    async def acquire(self, app_id: str) -> Slot:
        """Wait for a free slot for `app_id` and take it; `release()` it once answered."""
        state = self._apps.setdefault(app_id, _AppWindow())
        asked = self._clock()
        async with state.queue:
            while True:
                now = self._clock()
                state.expire(now)
                if state.taken < self.per_second:
                    state.in_flight += 1
                    break
                if state.finished:
                    await self._sleep(state.finished[0] - now)
                    continue
                state.released = asyncio.get_running_loop().create_future()
                try:
                    await state.released
                finally:
                    state.released = None
        self._waited(app_id, now - asked)
        return Slot(self, app_id)

    @asynccontextmanager
    async def slot(self, app_id: str) -> AsyncIterator[Slot]:
        """`async with limiter.slot(app_id): <send, read the answer>` (released on exit)."""
        granted = await self.acquire(app_id)
        try:
            yield granted
        finally:
            granted.release()

    def _release(self, app_id: str) -> None:
        state = self._apps[app_id]
        state.in_flight -= 1
        bisect.insort(state.finished, self._clock() + self.window)
        if state.released is not None and not state.released.done():
            state.released.set_result(None)

    def _waited(self, app_id: str, seconds: float) -> None:
        if self._on_wait is None:
            return
        try:
            self._on_wait(app_id, seconds)
        except Exception as exc:  # an observer (metrics) must never break a call
            log.warning("ratelimit.hook_failed", hook="on_wait", error=type(exc).__name__)


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter.

    After failed attempt n the client waits uniform(0, min(max_delay, base_delay * 2**(n-1))).
    `sleep` and `random` are injectable so tests can observe the delays without waiting.

    The defaults retry soon (0.1 s, 0.2 s, ... at most 3.1 s of sleeps over six
    attempts): a window's start or stop is late by whatever its retries sleep, and
    the per-App-ID rate limiter, not the backoff, keeps the load within what Agora
    allows, so an early retry never adds up to hammering.
    """

    max_attempts: int = 6
    base_delay: float = 0.1
    max_delay: float = 4.0
    # One call, its attempts and the waits between them, ends within this many
    # seconds (a wait for a rate-limit slot comes on top): without it a server that
    # drips its answers could hold one call for attempts x the per-attempt deadline.
    # 60 s: two attempts that each run into the 30 s deadline, or many quick ones.
    total: float = 60.0
    sleep: Sleep = field(default=asyncio.sleep, compare=False)
    random: Callable[[], float] = field(default=random.random, compare=False)

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        ceiling = min(self.max_delay, self.base_delay * (2.0 ** (attempt - 1)))
        return self.random() * ceiling
