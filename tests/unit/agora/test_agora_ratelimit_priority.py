"""The rate limiter's two classes of caller, with virtual time, and the query-pacing
arithmetic the daemon uses.

Covers: queries alone never hold more than `query_slots` slots per window, and
mutating calls alone use every slot; mutating callers arriving behind a backlog of
queries are all served before any further query, within ceil(n / per_second) + 1
windows; a query waits for as long as mutating callers keep coming (intended);
FIFO within each class; a query held back by both bounds sleeps once (no polling);
a waiting query and a waiting mutating caller cancelled,
as the one to serve next or behind it, leave no slot taken and nobody stuck;
`on_wait` sees every slot and `on_query_wait` the query slots; for random
arrivals, latencies, rates and shares, no second at the server sees more than
`per_second` requests or more than `query_slots` queries, no query is granted
while a mutating caller waits, and the limiter never holds more than its bounds;
the client asks for a query slot for `query` and a mutating one for every other
endpoint; `query_slots`, `query_cycle_seconds` and `query_spacing`, and a resync
paced by `query_spacing` that never waits for a slot; a short run on the real clock.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.agora import (
    DEFAULT_QUERY_SHARE,
    AgoraClient,
    RateLimiter,
    RetryPolicy,
    query_cycle_seconds,
    query_slots,
    query_spacing,
)
from tests.unit.agora.virtual_time import VirtualTime

APP = "a" * 32

# Adding the window (1.0) to any instant in [2048, 4096) is exact in binary floating
# point, so a run that starts there tests the bound itself, not float rounding (which
# the real window's CLOCK_MARGIN covers).
EXACT_START = 2048.0


def _limiter(vt: VirtualTime, per_second: int, **kwargs: Any) -> RateLimiter:
    return RateLimiter(per_second, window=1.0, clock=vt.clock, sleep=vt.sleep, **kwargs)


def _most_within_a_second(instants: list[float]) -> int:
    ordered = sorted(instants)
    return max(
        (sum(1 for b in ordered[i:] if b - a < 1.0) for i, a in enumerate(ordered)), default=0
    )


@pytest.mark.parametrize(
    ("per_second", "share", "slots"),
    [(10, 0.5, 5), (10, 0.3, 3), (10, 0.01, 1), (10, 1.0, 10), (3, 0.5, 1), (7, 0.5, 3)],
)
async def test_queries_alone_never_hold_more_than_their_slots(
    per_second: int, share: float, slots: int
) -> None:
    vt = VirtualTime()
    limiter = _limiter(vt, per_second, query_share=share)
    assert limiter.query_slots == slots
    instants: list[float] = []

    async def query() -> None:
        async with limiter.slot(APP, query=True):
            assert limiter.in_use(APP, query=True) <= slots
            instants.append(vt.now)
            await vt.sleep(0.25)  # the request itself

    await vt.run(*(query() for _ in range(3 * slots + 1)))
    # `slots` at once, then the next `slots` one window after those were answered.
    expected = [1000.0] * slots + [1001.25] * slots + [1002.5] * slots + [1003.75]
    assert instants == expected
    assert _most_within_a_second(instants) == slots


async def test_mutating_calls_alone_use_every_slot() -> None:
    vt = VirtualTime()
    limiter = _limiter(vt, 10, query_share=0.1)
    instants: list[float] = []

    async def calls() -> None:
        for _ in range(25):
            async with limiter.slot(APP):  # answered at once
                instants.append(vt.now)

    await vt.run(calls())
    assert instants == [1000.0] * 10 + [1001.0] * 10 + [1002.0] * 5
    assert vt.sleeps == [1.0, 1.0]  # no polling: only the waits the window requires


async def test_mutating_callers_overtake_a_backlog_of_queries() -> None:
    vt = VirtualTime()
    limiter = _limiter(vt, 10)  # 5 query slots
    grants: list[tuple[str, float]] = []

    async def call(kind: str, arrival: float) -> None:
        await vt.sleep(arrival)
        async with limiter.slot(APP, query=kind == "query"):
            grants.append((kind, vt.now))

    queries = [call("query", 0.0) for _ in range(50)]
    mutating = [call("mutating", 0.5) for _ in range(20)]
    await vt.run(*queries, *mutating)

    kinds = [kind for kind, _ in grants]
    # 5 queries before the mutating callers came, then all 20 of them, then the rest.
    assert kinds == ["query"] * 5 + ["mutating"] * 20 + ["query"] * 45
    granted = [at for kind, at in grants if kind == "mutating"]
    # 5 slots free at once; then 5 each time a window of earlier slots ends.
    assert granted == [1000.5] * 5 + [1001.0] * 5 + [1001.5] * 5 + [1002.0] * 5
    assert max(granted) - 1000.5 <= (math.ceil(20 / limiter.per_second) + 1) * limiter.window
    query_instants = [at for kind, at in grants if kind == "query"]
    assert _most_within_a_second(query_instants) == 5
    assert _most_within_a_second([at for _, at in grants]) == 10


async def test_a_query_waits_while_mutating_callers_keep_coming() -> None:
    """Intended: a query yields to every waiting mutating caller, however many come."""
    vt = VirtualTime()
    limiter = _limiter(vt, 2, query_share=1.0)
    grants: list[tuple[str, float]] = []

    async def mutating(caller: int) -> None:
        for _ in range(5):  # two callers asking again as soon as they are answered
            async with limiter.slot(APP):
                grants.append((f"m{caller}", vt.now))

    async def query() -> None:
        await vt.sleep(0.5)
        async with limiter.slot(APP, query=True):
            grants.append(("q", vt.now))

    await vt.run(mutating(1), mutating(2), query())
    assert grants[-1] == ("q", 1005.0)  # after all ten, at the first free slot
    assert [at for _, at in grants[:-1]] == [1000.0 + n // 2 for n in range(10)]


async def test_each_class_is_served_in_arrival_order() -> None:
    vt = VirtualTime()
    limiter = _limiter(vt, 2, query_share=0.5)
    order: list[str] = []

    async def caller(name: str, query: bool, arrival: float) -> None:
        await vt.sleep(arrival)
        async with limiter.slot(APP, query=query):
            order.append(name)

    await vt.run(
        *(caller(f"q{n}", True, n * 0.01) for n in range(4)),
        *(caller(f"m{n}", False, 0.1 + n * 0.01) for n in range(4)),
    )
    assert order == ["q0", "m0", "m1", "m2", "m3", "q1", "q2", "q3"]


async def test_a_query_held_back_by_both_bounds_sleeps_once() -> None:
    """Total and query cap both full: it sleeps until the query slot leaves the window
    (which frees one of the total too), not first until the earlier mutating one."""
    vt = VirtualTime()
    limiter = _limiter(vt, 2, query_share=0.5)  # one query slot
    granted: list[float] = []

    async def calls() -> None:
        async with limiter.slot(APP):  # leaves the window at 1001
            pass
        await vt.sleep(0.5)
        async with limiter.slot(APP, query=True):  # leaves it at 1001.5
            pass
        await vt.sleep(0.25)
        async with limiter.slot(APP, query=True):
            granted.append(vt.now)

    await vt.run(calls())
    assert granted == [1001.5]
    assert vt.sleeps == [0.5, 0.25, 0.75]


async def _cancelled_at(vt: VirtualTime, seconds: float, waiting: Awaitable[Any]) -> None:
    """Wait on `waiting` and cancel it `seconds` later (virtual), while it still waits."""
    task = asyncio.ensure_future(waiting)
    await vt.sleep(seconds)
    assert not task.done()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def _no_trace(vt: VirtualTime, limiter: RateLimiter) -> None:
    vt.now += limiter.window
    assert limiter.in_use(APP) == 0
    assert limiter.in_use(APP, query=True) == 0
    assert limiter.waiting(APP) == 0
    assert limiter.waiting(APP, query=True) == 0


@pytest.mark.parametrize("query", [True, False])
async def test_a_cancelled_caller_next_in_line_hands_the_turn_on(query: bool) -> None:
    """Every slot is in flight; the caller to serve next gives up at 1001 while it waits
    for a release. The query behind it is served as it would have been."""
    vt = VirtualTime()
    limiter = _limiter(vt, 1, query_share=1.0)
    granted: list[tuple[str, float]] = []

    async def holder() -> None:
        async with limiter.slot(APP):
            await vt.sleep(2.0)  # answered at 1002, so the slot is free at 1003

    async def impatient() -> None:
        await vt.sleep(0.5)
        await _cancelled_at(vt, 0.5, limiter.acquire(APP, query=query))
        granted.append(("gave up", vt.now))

    async def patient() -> None:
        await vt.sleep(0.7)
        async with limiter.slot(APP, query=True):
            granted.append(("patient", vt.now))

    await vt.run(holder(), impatient(), patient())
    assert granted == [("gave up", 1001.0), ("patient", 1003.0)]
    _no_trace(vt, limiter)


@pytest.mark.parametrize("query", [True, False])
async def test_a_caller_cancelled_while_watching_the_window_takes_no_slot(query: bool) -> None:
    """The caller to serve next sleeps until a finished slot leaves the window and gives
    up before; the caller behind it takes that slot on time, and nothing is left."""
    vt = VirtualTime()
    limiter = _limiter(vt, 2, query_share=0.5)
    granted: list[tuple[str, float]] = []

    async def fill() -> None:
        async with limiter.slot(APP, query=True):  # the only query slot, free at 1001
            pass
        async with limiter.slot(APP):  # the total, free at 1001
            pass

    async def impatient() -> None:
        await _cancelled_at(vt, 0.5, limiter.acquire(APP, query=query))
        granted.append(("gave up", vt.now))

    async def behind() -> None:
        await vt.sleep(0.1)
        async with limiter.slot(APP, query=query):
            granted.append(("behind", vt.now))

    await vt.run(fill(), impatient(), behind())
    assert granted == [("gave up", 1000.5), ("behind", 1001.0)]
    assert limiter.in_use(APP) == 1
    _no_trace(vt, limiter)


async def test_a_cancelled_query_behind_others_leaves_its_class_moving() -> None:
    vt = VirtualTime()
    limiter = _limiter(vt, 2, query_share=0.5)  # one query slot
    granted: list[tuple[str, float]] = []

    async def query(name: str, arrival: float) -> None:
        await vt.sleep(arrival)
        async with limiter.slot(APP, query=True):
            granted.append((name, vt.now))

    async def impatient() -> None:
        await vt.sleep(0.1)
        await _cancelled_at(vt, 0.2, limiter.acquire(APP, query=True))

    await vt.run(query("first", 0.0), query("second", 0.05), impatient(), query("third", 0.2))
    assert granted == [("first", 1000.0), ("second", 1001.0), ("third", 1002.0)]
    _no_trace(vt, limiter)


async def test_on_wait_sees_every_slot_and_on_query_wait_the_query_slots() -> None:
    vt = VirtualTime()
    waits: list[tuple[str, str, float]] = []
    limiter = _limiter(
        vt,
        2,
        query_share=0.5,
        on_wait=lambda app, seconds: waits.append(("any", app, seconds)),
        on_query_wait=lambda app, seconds: waits.append(("query", app, seconds)),
    )

    async def calls() -> None:
        for query in (True, True, False):
            async with limiter.slot(APP, query=query):
                pass

    await vt.run(calls())
    assert waits == [
        ("any", APP, 0.0),
        ("query", APP, 0.0),
        ("any", APP, 1.0),  # the second query waited for the one query slot
        ("query", APP, 1.0),
        ("any", APP, 0.0),
    ]


def test_limiter_rejects_a_share_out_of_range() -> None:
    for share in (0.0, -0.5, 1.5, float("nan")):
        with pytest.raises(ValueError, match="query_share"):
            RateLimiter(query_share=share)
    assert RateLimiter().query_share == DEFAULT_QUERY_SHARE == 0.5
    assert RateLimiter().query_slots == 5


_REQUEST = st.tuples(
    st.booleans(),  # a query?
    st.floats(0.0, 3.0),  # when it asks for a slot, after the start
    st.one_of(st.sampled_from([0.0, 1.0]), st.floats(0.0, 1.5)),  # its latency
    st.floats(0.0, 1.0),  # where in that latency it reaches the server
)


@settings(max_examples=150, deadline=None)
@given(
    per_second=st.integers(1, 6),
    share=st.one_of(st.sampled_from([0.1, 0.5, 1.0]), st.floats(0.01, 1.0)),
    requests=st.lists(_REQUEST, min_size=1, max_size=30),
)
def test_the_bounds_and_the_priority_hold_for_any_arrivals(
    per_second: int, share: float, requests: list[tuple[bool, float, float, float]]
) -> None:
    vt = VirtualTime(start=EXACT_START)
    limiter = _limiter(vt, per_second, query_share=share)
    slots = limiter.query_slots
    arrivals: list[tuple[bool, float]] = []
    waiting_mutating: set[int] = set()
    asked: dict[bool, list[int]] = {True: [], False: []}
    served: dict[bool, list[int]] = {True: [], False: []}

    async def request(n: int, query: bool, ask: float, latency: float, part: float) -> None:
        await vt.sleep(ask)
        asked[query].append(n)
        if not query:
            waiting_mutating.add(n)
        async with limiter.slot(APP, query=query):
            served[query].append(n)
            waiting_mutating.discard(n)
            assert limiter.in_use(APP) <= per_second
            assert limiter.in_use(APP, query=True) <= slots
            if query:
                assert not waiting_mutating, "a query was served while a mutating call waited"
            await vt.sleep(latency * part)
            arrivals.append((query, vt.now))
            await vt.sleep(latency - latency * part)

    asyncio.run(vt.run(*(request(n, *r) for n, r in enumerate(requests))))
    assert served == asked  # everyone served, each class in arrival order
    assert _most_within_a_second([at for _, at in arrivals]) <= per_second
    assert _most_within_a_second([at for query, at in arrivals if query]) <= slots
    _no_trace(vt, limiter)


async def test_the_client_asks_for_a_query_slot_only_for_query() -> None:
    limiter = RateLimiter(per_second=1000)
    seen: list[tuple[str, int, int]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        endpoint = request.url.path.rsplit("/", 1)[-1]
        seen.append((endpoint, limiter.in_use(APP), limiter.in_use(APP, query=True)))
        return httpx.Response(200, json={"resourceId": "rid", "sid": "sid"})

    async with AgoraClient(
        customer_id="cid",
        customer_secret="csecret",
        http=httpx.AsyncClient(transport=httpx.MockTransport(handler)),
        limiter=limiter,
        retry=RetryPolicy(max_attempts=1),
        validate=False,
    ) as client:
        await client.acquire(APP, {"cname": "room", "uid": "1", "clientRequest": {}})
        await client.start(APP, "rid", "mix", {"cname": "room", "uid": "1"})
        await client.update(APP, "rid", "sid", "mix", {"cname": "room", "uid": "1"})
        await client.update_layout(APP, "rid", "sid", "mix", {"cname": "room", "uid": "1"})
        await client.query(APP, "rid", "sid", "mix")
        # A query something waits on (the start-up adoption, a rollover's confirm):
        # an ordinary slot, outside the share.
        await client.query(APP, "rid", "sid", "mix", background=False)
        await client.stop(APP, "rid", "sid", "mix", {"cname": "room", "uid": "1"})
    assert seen == [
        ("acquire", 1, 0),
        ("start", 2, 0),
        ("update", 3, 0),
        ("updateLayout", 4, 0),
        ("query", 5, 1),
        ("query", 6, 1),
        ("stop", 7, 1),
    ]


@pytest.mark.parametrize(
    ("per_second", "share", "slots"),
    [(10, 0.5, 5), (10, 0.3, 3), (10, 0.7, 7), (100, 0.29, 29), (10, 0.05, 1), (1, 1.0, 1)],
)
def test_query_slots(per_second: int, share: float, slots: int) -> None:
    assert query_slots(per_second, share) == slots


@pytest.mark.parametrize(
    ("live", "per_second", "share", "latency", "seconds"),
    [
        (300, 10, 0.5, 0.0, 60.0),  # 5 queries a second
        (300, 10, 0.5, 0.25, 75.0),  # each slot busy 1.25 s
        (300, 10, 0.1, 0.0, 300.0),  # one query slot
        (300, 10, 1.0, 0.0, 30.0),
        (0, 10, 0.5, 0.5, 0.0),
    ],
)
def test_query_cycle_seconds(
    live: int, per_second: int, share: float, latency: float, seconds: float
) -> None:
    assert query_cycle_seconds(live, per_second, share, 1.0, latency) == pytest.approx(seconds)


def test_query_cycle_seconds_uses_the_real_window_by_default() -> None:
    limiter = RateLimiter()
    assert query_cycle_seconds(5, 10, 0.5) == pytest.approx(limiter.window)


@pytest.mark.parametrize(
    ("live", "interval", "spacing"),
    [
        (100, 60.0, 0.6),  # spread over the interval
        (300, 60.0, 0.2),  # both terms agree
        (1000, 60.0, 0.2),  # the share wins: the round takes 200 s, not 60
        (1, 60.0, 60.0),
        (0, 60.0, 0.0),
    ],
)
def test_query_spacing(live: int, interval: float, spacing: float) -> None:
    assert query_spacing(live, 10, 0.5, interval, window=1.0) == pytest.approx(spacing)


@settings(max_examples=200, deadline=None)
@given(
    live=st.integers(1, 5000),
    per_second=st.integers(1, 50),
    share=st.floats(0.01, 1.0),
    interval=st.floats(0.0, 3600.0),
)
def test_a_round_at_query_spacing_is_never_shorter_than_the_interval_or_the_cycle(
    live: int, per_second: int, share: float, interval: float
) -> None:
    spacing = query_spacing(live, per_second, share, interval, window=1.0)
    cycle = query_cycle_seconds(live, per_second, share, 1.0)
    assert spacing * live >= max(interval, cycle) * (1 - 1e-9)
    assert spacing * live <= max(interval, cycle) * (1 + 1e-9)


@pytest.mark.parametrize(
    "call",
    [
        lambda: query_cycle_seconds(-1, 10, 0.5),
        lambda: query_cycle_seconds(1, 0, 0.5),
        lambda: query_cycle_seconds(1, 10, 0.0),
        lambda: query_cycle_seconds(1, 10, 0.5, 0.0),
        lambda: query_cycle_seconds(1, 10, 0.5, 1.0, -0.1),
        lambda: query_spacing(-1, 10, 0.5, 60.0),
        lambda: query_spacing(1, 10, 1.01, 60.0),
        lambda: query_spacing(1, 10, 0.5, -1.0),
        lambda: query_spacing(1, 10, 0.5, float("nan")),
    ],
)
def test_the_pacing_helpers_refuse_nonsense(call: Callable[[], float]) -> None:
    with pytest.raises(ValueError):
        call()


async def test_a_resync_paced_by_query_spacing_never_waits_for_a_slot() -> None:
    vt = VirtualTime(start=EXACT_START)
    waits: list[float] = []
    limiter = _limiter(vt, 10, on_query_wait=lambda _app, seconds: waits.append(seconds))
    live = 40
    spacing = query_spacing(live, 10, limiter.query_share, 2.0, window=limiter.window)
    assert spacing == pytest.approx(0.2)  # the share, not the interval, sets the pace

    async def resync() -> None:
        for n in range(live):
            await vt.sleep(EXACT_START + n * spacing - vt.now)
            async with limiter.slot(APP, query=True):
                pass  # answered at once

    await vt.run(resync())
    assert len(waits) == live
    assert max(waits) < 1e-9


async def test_on_the_real_clock_a_mutating_call_overtakes_queued_queries() -> None:
    """A short run on the real clock (window 50 ms): queries keep to their slots per
    window, and a mutating call asked for behind them is served first."""
    limiter = RateLimiter(per_second=4, window=0.05, query_share=0.5)
    grants: list[tuple[str, float]] = []
    first_grant = asyncio.Event()

    async def query() -> None:
        async with limiter.slot(APP, query=True):
            grants.append(("query", time.monotonic()))
            first_grant.set()

    async def mutating() -> None:
        await first_grant.wait()
        async with limiter.slot(APP):
            grants.append(("mutating", time.monotonic()))

    async with asyncio.timeout(5.0):
        await asyncio.gather(*(query() for _ in range(6)), mutating())
    kinds = [kind for kind, _ in grants]
    assert kinds == ["query", "query", "mutating", "query", "query", "query", "query"]
    query_instants = [at for kind, at in grants if kind == "query"]
    # The third query waited for a query slot to leave the window: at least one window.
    for earlier, later in zip(query_instants, query_instants[2:], strict=False):
        assert later - earlier >= limiter.window
