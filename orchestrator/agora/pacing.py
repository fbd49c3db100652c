"""How fast the client may call: the per-App-ID rate limit, the query share, and the retry backoff.

`RateLimiter` keeps every App ID under Agora's request rate for the whole process
(one instance is shared by every client): it serves mutating calls (acquire,
start, update, updateLayout, stop) before queries, and lets queries take at most
a share of the rate, so that a resync polling hundreds of live sessions never
delays a window's start or stop. `query_slots`, `query_cycle_seconds` and
`query_spacing` are the same arithmetic for the daemon, which paces its resync
within that share. `RetryPolicy` says how long to wait between the attempts of
one call and how long the call may take in all. Clock, sleep and randomness are
parameters, so tests observe every wait without waiting.

It must never send a request or know what one holds: the caller says whether it
asks for a query slot; this module grants slots and computes delays, and
`client.py` sends. It must never grant a slot that would let more than
`per_second` requests of one App ID (or more than `query_slots` queries) reach the
server within one second, and never leave a slot taken or a queue stuck behind a
caller that gave up. `RateLimiter` and `RetryPolicy` are re-exported by
`orchestrator.agora.client` and `orchestrator.agora`.
"""

from __future__ import annotations

import asyncio
import bisect
import math
import os
import random
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from fractions import Fraction

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
#: Half the rate for queries: at 10/s a resync polls about 5 sessions a second (300
#: a minute) while start and stop calls still have every slot they need, since they
#: go first and may take all ten.
DEFAULT_QUERY_SHARE = 0.5


def launched_at() -> float:
    """The `time.monotonic()` instant this process was launched, at most one clock
    tick late (Linux: `/proc/self/stat`); where that cannot be read, now (later than
    the launch: a `quiet_until` computed from it errs on the quiet side)."""
    now = time.monotonic()
    try:
        with open("/proc/self/stat", encoding="ascii") as stat:
            fields = stat.read().rpartition(")")[2].split()
        tick = 1.0 / os.sysconf("SC_CLK_TCK")
        started = int(fields[19]) * tick  # starttime (field 22), in ticks since boot
        age = time.clock_gettime(time.CLOCK_BOOTTIME) - started
    except (OSError, ValueError, IndexError, AttributeError):
        return now
    # One tick later than the truncated start: never before the real launch.
    return min(now, now - age + tick)


def query_slots(per_second: int, query_share: float) -> int:
    """How many of an App ID's `per_second` slots queries may hold at once:
    max(1, floor(per_second x query_share)).

    The share is read as the decimal it was written as (0.3 is 3/10, not the binary
    float just below it), so 10 x 0.3 gives 3 slots and 100 x 0.29 gives 29.
    """
    if per_second < 1:
        raise ValueError("per_second must be at least 1")
    if not 0 < query_share <= 1:  # also refuses NaN
        raise ValueError("query_share must be greater than 0 and at most 1")
    return max(1, math.floor(per_second * Fraction(repr(query_share))))


def query_cycle_seconds(
    live_sessions: int,
    per_second: int,
    query_share: float,
    window: float = DEFAULT_WINDOW,
    latency: float = 0.0,
) -> float:
    """Seconds one round of queries over `live_sessions` takes at that query share.

    Each query slot is busy for `latency` + `window` (in flight, then counted for one
    window after its answer), so queries go at most at query_slots / (window +
    latency) per second, and a round takes live_sessions x (window + latency) /
    query_slots. That is the round at the share's full rate: mutating calls go
    first, and while they hold more than per_second - query_slots slots it takes longer.
    """
    if live_sessions < 0:
        raise ValueError("live_sessions must not be negative")
    if not window > 0:
        raise ValueError("window must be positive")
    if not latency >= 0:
        raise ValueError("latency must not be negative")
    slots = query_slots(per_second, query_share)
    return live_sessions * (window + latency) / slots


def query_spacing(
    live_sessions: int,
    per_second: int,
    query_share: float,
    interval_seconds: float,
    *,
    window: float = DEFAULT_WINDOW,
) -> float:
    """Seconds between the starts of two consecutive queries of one App ID's resync.

    max(interval_seconds / live_sessions, window / query_slots): the round is spread
    evenly over the resync interval, but never started faster than the query share
    allows (query_slots per window); 0 when nothing is live. When the second term
    wins, the round outlasts the interval (see `query_cycle_seconds`). The limiter
    still guards every query: a latency or a burst of mutating calls only makes a
    query wait for its slot.
    """
    if live_sessions < 0:
        raise ValueError("live_sessions must not be negative")
    if not interval_seconds >= 0:
        raise ValueError("interval_seconds must not be negative")
    if not window > 0:
        raise ValueError("window must be positive")
    slots = query_slots(per_second, query_share)
    if live_sessions == 0:
        return 0.0
    return max(interval_seconds / live_sessions, window / slots)


class Slot:
    """One granted request slot of a `RateLimiter`: in flight until `release()`.

    Release it the moment the answer (or the transport error) is received; releasing
    twice is harmless. `RateLimiter.slot()` does this for an `async with` block.
    `query` says whether it is a query slot.
    """

    __slots__ = ("_limiter", "_released", "app_id", "query")

    def __init__(self, limiter: RateLimiter, app_id: str, query: bool) -> None:
        self._limiter = limiter
        self._released = False
        self.app_id = app_id
        self.query = query

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._limiter._release(self.app_id, self.query)


class _Waiter:
    """A caller waiting for a slot; `turn` is set while it sleeps until it is woken."""

    __slots__ = ("query", "turn")

    def __init__(self, query: bool) -> None:
        self.query = query
        self.turn: asyncio.Future[None] | None = None

    async def wait_turn(self) -> None:
        self.turn = asyncio.get_running_loop().create_future()
        try:
            await self.turn
        finally:
            self.turn = None


def _expire(leaving: list[float], now: float) -> None:
    # One comparison against a precomputed instant, so that sleeping until that
    # instant is always enough (no float rounding between two forms of it).
    drop = 0
    while drop < len(leaving) and now >= leaving[drop]:
        drop += 1
    del leaving[:drop]


@dataclass
class _AppWindow:
    """The slots of one App ID: in-flight slots and, sorted, the instants at which
    finished ones leave the window (receipt + window), of all slots and of query
    slots alone; and the callers waiting, one FIFO queue per class."""

    in_flight: int = 0
    queries_in_flight: int = 0
    finished: list[float] = field(default_factory=list)
    finished_queries: list[float] = field(default_factory=list)
    mutating: deque[_Waiter] = field(default_factory=deque)
    queries: deque[_Waiter] = field(default_factory=deque)

    def expire(self, now: float) -> None:
        _expire(self.finished, now)
        _expire(self.finished_queries, now)

    @property
    def taken(self) -> int:
        return self.in_flight + len(self.finished)

    @property
    def queries_taken(self) -> int:
        return self.queries_in_flight + len(self.finished_queries)

    def head(self) -> _Waiter | None:
        """The caller to serve next: the first mutating one, else the first query."""
        if self.mutating:
            return self.mutating[0]
        return self.queries[0] if self.queries else None

    def wake_head(self) -> None:
        head = self.head()
        if head is not None and head.turn is not None and not head.turn.done():
            head.turn.set_result(None)


class RateLimiter:
    """At most `per_second` requests per App ID in any window of one second *at the server*,
    at most `query_slots` of them queries, and mutating calls served first.

    The server counts a request when it arrives, an instant we cannot observe; we only
    know it lies between our send and our receipt of the answer. So a slot is taken
    when granted (before the send), stays *in flight* while the request is out, and
    when the answer (or the transport error) is received it is stamped with that
    receipt instant and stays in the window until `window` seconds later. A request
    may be sent only while fewer than `per_second` slots are in flight or were
    released less than `window` ago; a query, only while also fewer than
    `query_slots` = max(1, floor(per_second x query_share)) query slots are, counted
    the same way. A query slot is a slot too: it counts towards `per_second`.

    Why that bounds the server's count: take any requests whose arrivals lie within
    less than one second of each other, and let k be the one granted last, at s_k.
    Each other request j was granted before s_k. If j was still in flight at s_k it
    was counted. Otherwise its receipt r_j <= s_k, and r_j >= arrival_j >
    arrival_k - 1 >= s_k - 1, so s_k - r_j < 1 <= window: it was still counted. k was
    granted only because fewer than `per_second` were counted, so the group has at
    most `per_second` requests. The same argument over query slots alone, with k the
    query granted last, bounds the queries of any such group by `query_slots`: each
    earlier query was counted among the query slots at s_k, and k was granted only
    because fewer than `query_slots` were. The two classes change only which callers
    may take a slot and in what order, never what is counted, so both bounds hold
    for a sliding window (Agora's and the emulator's) and for fixed calendar seconds
    alike, whatever the latency or the server's own processing delay, and no latency
    margin is needed. The window is one second plus `CLOCK_MARGIN`: clock resolution
    and the rate error between our clock and the server's. The price of the bound is
    that a slot is busy for one window plus the request's latency: 10 / (1.001 +
    latency) per second (`query_cycle_seconds` does this arithmetic for queries).

    What it cannot bound: a request that the server reads only after we gave up on
    it (a timeout, a cancelled call). Its slot is stamped when we gave up, so an
    arrival later than that is not covered.

    Nor can it see another process's requests. A process that calls right after
    another one ended (a restart, a crash and its restart, two CLI commands in a row)
    may find the App ID's second used up by its predecessor: `quiet_until` (an instant
    of `clock`) holds every App ID's slots as taken until then. The composition root
    passes one window after the process was launched (`launched_at`), so a process
    sends nothing in its first second: the predecessor had ended by then, and its
    requests left the server's window.

    One instance is meant to be shared by everything in the process that calls the
    API. A caller says which class it is: `acquire(app_id)` and `slot(app_id)` ask
    for a mutating slot (acquire, start, update, updateLayout, stop), which may use
    all `per_second` slots; `query=True` asks for a query slot. Each App ID has two
    FIFO queues: a waiting mutating caller is always granted before any waiting
    query, and within a class callers are served in arrival order. So a query waits
    for as long as mutating callers keep waiting, however long: that is intended. A
    start or stop is due at a window's boundary, a query only refreshes what we know
    and comes round again with the next resync; and mutating calls come in bursts
    at boundaries, bounded by the plan, after which queries go on. No slot is
    reserved for queries. The priority never leaves a slot idle: a mutating caller
    is held back only by the total, which holds back a query as well.

    Waiting does not poll. Only the caller to serve next (the first mutating one,
    else the first query) watches the window: it sleeps until the earliest finished
    slot that holds it back leaves the window (any slot for the total, a query slot
    for the query cap), or, when every such slot is in flight, until a slot is
    released (a release alone frees nothing: the slot stays in the window). The
    others sleep until the caller ahead of them is granted or gives up. A caller
    cancelled while it waits leaves its queue and hands the turn on: it takes no
    slot and holds nobody up. `clock` and `sleep` are injectable. `on_wait(app_id,
    seconds)` is called for every slot granted, of both classes, with the time the
    caller waited; `on_query_wait(app_id, seconds)` in addition for every query slot
    (so the mutating calls' waits are the difference). An exception a hook raises is
    logged, never passed on.
    """

    def __init__(
        self,
        per_second: int = 10,
        *,
        window: float = DEFAULT_WINDOW,
        query_share: float = DEFAULT_QUERY_SHARE,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        on_wait: Callable[[str, float], None] | None = None,
        on_query_wait: Callable[[str, float], None] | None = None,
        quiet_until: float | None = None,
    ) -> None:
        if not window > 0:
            raise ValueError("window must be positive")
        self.query_slots = query_slots(per_second, query_share)  # checks both
        self.per_second = per_second
        self.window = window
        self.query_share = query_share
        self._clock = clock
        self._sleep = sleep
        self._on_wait = on_wait
        self._on_query_wait = on_query_wait
        self._quiet_until = quiet_until
        self._apps: dict[str, _AppWindow] = {}

    def _window_of(self, app_id: str) -> _AppWindow:
        state = self._apps.get(app_id)
        if state is None:
            # Before `quiet_until`, every slot is taken by the predecessor it stands for.
            quiet = self._quiet_until
            held = [quiet] * self.per_second if quiet is not None else []
            state = self._apps[app_id] = _AppWindow(finished=held)
            state.expire(self._clock())
        return state

    def in_use(self, app_id: str, *, query: bool = False) -> int:
        """Slots of `app_id` that count now: in flight, or released less than `window`
        ago; with `query=True`, query slots alone."""
        state = self._window_of(app_id)
        state.expire(self._clock())
        return state.queries_taken if query else state.taken

    def waiting(self, app_id: str, *, query: bool = False) -> int:
        """Callers of `app_id` waiting for a mutating slot (or, `query=True`, a query slot)."""
        state = self._apps.get(app_id)
        if state is None:
            return 0
        return len(state.queries if query else state.mutating)

    async def acquire(self, app_id: str, *, query: bool = False) -> Slot:
        """Wait for a free slot for `app_id` and take it; `release()` it once answered.

        `query=True` for a query; every other endpoint asks for a mutating slot."""
        state = self._window_of(app_id)
        asked = self._clock()
        waiter = _Waiter(query)
        line = state.queries if query else state.mutating
        line.append(waiter)
        try:
            while True:
                now = self._clock()
                state.expire(now)
                if state.head() is waiter:
                    leaving = self._holding_back(state, query)
                    if leaving is None:
                        line.popleft()
                        state.in_flight += 1
                        if query:
                            state.queries_in_flight += 1
                        break
                    if leaving:
                        await self._sleep(leaving[0] - now)
                        continue
                # Someone is ahead, or every slot holding it back is in flight: sleep
                # until the one ahead is served or gone, or a slot is released.
                await waiter.wait_turn()
        except BaseException:
            line.remove(waiter)  # not granted: granting and leaving the loop are one step
            state.wake_head()
            raise
        state.wake_head()  # more may have left the window at once: the next one looks
        self._waited(app_id, now - asked, query)
        return Slot(self, app_id, query)

    @asynccontextmanager
    async def slot(self, app_id: str, *, query: bool = False) -> AsyncIterator[Slot]:
        """`async with limiter.slot(app_id): <send, read the answer>` (released on exit)."""
        granted = await self.acquire(app_id, query=query)
        try:
            yield granted
        finally:
            granted.release()

    def _holding_back(self, state: _AppWindow, query: bool) -> list[float] | None:
        """None when a slot of that class is free; otherwise the sorted instants at
        which the finished slots that hold it back leave the window (empty: all of
        them are in flight). The query cap first: a query slot leaving the window
        frees one of the total too."""
        if query and state.queries_taken >= self.query_slots:
            return state.finished_queries
        if state.taken >= self.per_second:
            return state.finished
        return None

    def _release(self, app_id: str, query: bool) -> None:
        state = self._apps[app_id]
        leaves = self._clock() + self.window
        state.in_flight -= 1
        bisect.insort(state.finished, leaves)
        if query:
            state.queries_in_flight -= 1
            bisect.insort(state.finished_queries, leaves)
        state.wake_head()

    def _waited(self, app_id: str, seconds: float, query: bool) -> None:
        self._call_hook("on_wait", self._on_wait, app_id, seconds)
        if query:
            self._call_hook("on_query_wait", self._on_query_wait, app_id, seconds)

    @staticmethod
    def _call_hook(
        name: str, hook: Callable[[str, float], None] | None, app_id: str, seconds: float
    ) -> None:
        if hook is None:
            return
        try:
            hook(app_id, seconds)
        except Exception as exc:  # an observer (metrics) must never break a call
            log.warning("ratelimit.hook_failed", hook=name, error=type(exc).__name__)


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
