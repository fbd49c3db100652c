"""RateLimiter with virtual time, RetryPolicy delays, and the base-URL rule, without
any network.

Covers: a burst of `per_second`, then one slot per window; a slot in flight never
leaves the window, and a released one leaves it one window after its release; FIFO
fairness between callers; App IDs kept apart; waiting without polling (only the
sleeps the window requires); the server-side bound for random latencies and
arrival instants (no group of arrivals less than a second apart is larger than the
limit); cancelled waiters; `on_wait` for every slot, and a failing observer.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest
from structlog.testing import capture_logs

from orchestrator.agora.client import (
    CLOCK_MARGIN,
    DEFAULT_WINDOW,
    AgoraClient,
    RateLimiter,
    RetryPolicy,
)
from tests.unit.agora.virtual_time import VirtualTime


def _limiter(vt: VirtualTime, per_second: int, **kwargs: Any) -> RateLimiter:
    return RateLimiter(per_second, window=1.0, clock=vt.clock, sleep=vt.sleep, **kwargs)


async def test_limiter_allows_a_burst_then_one_slot_per_window() -> None:
    vt = VirtualTime()
    limiter = _limiter(vt, 10)
    instants: list[float] = []

    async def calls() -> None:
        for _ in range(25):
            async with limiter.slot("app"):  # answered at once
                instants.append(vt.now)

    await vt.run(calls())
    assert instants[:10] == [1000.0] * 10
    assert instants[10:20] == [1001.0] * 10
    assert instants[20:] == [1002.0] * 5
    # It slept only when full, exactly until the oldest slot left the window: no polling.
    assert vt.sleeps == [1.0, 1.0]


async def test_a_slot_in_flight_never_leaves_the_window() -> None:
    vt = VirtualTime()
    limiter = _limiter(vt, 2)
    granted: list[tuple[str, float]] = []

    async def request(name: str, latency: float) -> None:
        async with limiter.slot("app"):
            granted.append((name, vt.now))
            await vt.sleep(latency)

    # Two slow requests hold both slots for 5 s; the third waits for an answer (no
    # timer of its own), then one window after that answer.
    await vt.run(request("slow-1", 5.0), request("slow-2", 7.0), request("third", 0.0))
    assert granted == [("slow-1", 1000.0), ("slow-2", 1000.0), ("third", 1006.0)]
    assert vt.sleeps == [5.0, 7.0, 1.0, 0.0]


async def test_release_is_stamped_when_the_answer_arrives() -> None:
    vt = VirtualTime()
    limiter = _limiter(vt, 3)
    slot = await limiter.acquire("app")
    vt.now += 2.5  # the answer takes 2.5 s
    assert limiter.in_use("app") == 1
    slot.release()
    slot.release()  # twice is harmless
    vt.now += 0.999
    assert limiter.in_use("app") == 1
    vt.now += 0.001
    assert limiter.in_use("app") == 0


async def test_a_failed_request_keeps_its_slot_until_one_window_after_the_failure() -> None:
    vt = VirtualTime()
    limiter = _limiter(vt, 1)
    with pytest.raises(OSError):
        async with limiter.slot("app"):
            vt.now += 3.0
            raise OSError("connection reset")
    assert limiter.in_use("app") == 1
    vt.now += 1.0
    assert limiter.in_use("app") == 0


async def test_limiter_is_fifo_fair_between_callers() -> None:
    vt = VirtualTime()
    limiter = _limiter(vt, 2)
    order: list[str] = []

    async def caller(name: str) -> None:
        for _ in range(3):
            async with limiter.slot("app"):
                order.append(name)
                await vt.sleep(0.1)  # the request itself

    await vt.run(caller("a"), caller("b"), caller("c"))
    # Served in arrival order: nobody gets a second turn before everyone had one.
    assert order == ["a", "b", "c"] * 3


async def test_limiter_keeps_app_ids_apart() -> None:
    vt = VirtualTime()
    limiter = _limiter(vt, 3)

    async def calls() -> None:
        for app in ("a", "b", "c", "d"):
            for _ in range(3):
                async with limiter.slot(app):
                    pass
        assert vt.sleeps == []
        async with limiter.slot("a"):
            pass

    await vt.run(calls())
    assert vt.sleeps == [1.0]


@pytest.mark.parametrize("seed", range(6))
async def test_arrivals_at_the_server_never_exceed_the_limit(seed: int) -> None:
    """40 callers, latencies from 0 to 1.5 s, each request reaching the server at a
    random instant between its send and its answer: no group of arrivals less than
    one second apart is larger than the limit, and the limiter keeps busy."""
    rng = random.Random(seed)
    vt = VirtualTime(start=0.0)
    limiter = _limiter(vt, 10)
    arrivals: list[float] = []

    async def caller() -> None:
        for _ in range(5):
            latency = rng.choice([0.0, 0.001, 0.05, 0.3, rng.uniform(0, 1.5)])
            before = rng.random() * latency
            async with limiter.slot("app"):
                await vt.sleep(before)
                arrivals.append(vt.now)
                await vt.sleep(latency - before)

    await vt.run(*(caller() for _ in range(40)))
    arrivals.sort()
    assert len(arrivals) == 200
    most = max(sum(1 for b in arrivals[i:] if b - a < 1.0) for i, a in enumerate(arrivals))
    assert most == 10  # the bound holds, and it is reached


async def test_a_cancelled_waiter_takes_no_slot() -> None:
    vt = VirtualTime()
    limiter = _limiter(vt, 1)
    granted: list[str] = []

    async def holder() -> None:
        async with limiter.slot("app"):
            granted.append("holder")
            await vt.sleep(2.0)

    async def impatient() -> None:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0):  # cancelled while it waits in the queue
                await limiter.acquire("app")
        granted.append("gave up")

    async def patient() -> None:
        async with limiter.slot("app"):
            granted.append(f"patient at {vt.now}")

    await vt.run(holder(), impatient(), patient())
    assert granted == ["holder", "gave up", "patient at 1003.0"]


async def test_on_wait_sees_every_slot_and_its_wait() -> None:
    vt = VirtualTime()
    waits: list[tuple[str, float]] = []
    limiter = _limiter(vt, 2, on_wait=lambda app, seconds: waits.append((app, seconds)))

    async def calls() -> None:
        for _ in range(3):
            async with limiter.slot("app"):
                pass

    await vt.run(calls())
    assert waits == [("app", 0.0), ("app", 0.0), ("app", 1.0)]


async def test_a_failing_on_wait_is_logged_and_the_slot_still_granted() -> None:
    vt = VirtualTime()

    def broken(app_id: str, seconds: float) -> None:
        raise RuntimeError("metrics are down")

    limiter = _limiter(vt, 2, on_wait=broken)
    with capture_logs() as logs:
        async with limiter.slot("app") as slot:
            assert slot.app_id == "app"
    assert [(e["event"], e["hook"], e["error"]) for e in logs] == [
        ("ratelimit.hook_failed", "on_wait", "RuntimeError")
    ]


def test_limiter_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        RateLimiter(per_second=0)
    with pytest.raises(ValueError):
        RateLimiter(window=0)


def test_default_window_is_one_second_plus_the_clock_margin() -> None:
    limiter = RateLimiter()
    assert limiter.per_second == 10
    assert limiter.window == DEFAULT_WINDOW == 1.0 + CLOCK_MARGIN
    assert 0.001 <= CLOCK_MARGIN <= 0.002  # a Linux monotonic clock: >= 9.98 requests/s


@pytest.mark.parametrize(
    ("attempt", "ceiling"), [(1, 0.1), (2, 0.2), (3, 0.4), (4, 0.8), (5, 1.6), (6, 3.2), (9, 4.0)]
)
def test_retry_delay_is_full_jitter_under_a_capped_exponential(
    attempt: int, ceiling: float
) -> None:
    assert RetryPolicy(random=lambda: 1.0).delay(attempt) == ceiling
    assert RetryPolicy(random=lambda: 0.0).delay(attempt) == 0.0
    assert RetryPolicy(random=lambda: 0.5).delay(attempt) == ceiling / 2


@pytest.mark.parametrize(
    "url",
    ["https://api.agora.io", "http://127.0.0.1:8080", "http://localhost:1", "http://[::1]:9"],
)
def test_base_url_accepted(url: str) -> None:
    client = AgoraClient(customer_id="c", customer_secret="s", base_url=url)
    assert client.base_url == url


@pytest.mark.parametrize(
    "url", ["http://api.agora.io", "http://10.0.0.1:80", "ftp://127.0.0.1", "api.agora.io"]
)
def test_plain_http_refused_off_loopback(url: str) -> None:
    with pytest.raises(ValueError):
        AgoraClient(customer_id="c", customer_secret="s", base_url=url)
