"""RateLimiter (sliding window, FIFO fairness, no busy waiting) with a fake clock,
RetryPolicy delays, and the base-URL rule, without any network."""

from __future__ import annotations

import asyncio

import pytest

from orchestrator.agora.client import AgoraClient, RateLimiter, RetryPolicy


class FakeTime:
    """A clock that moves only when someone sleeps; records every sleep."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


async def test_limiter_allows_a_burst_then_waits_for_the_window() -> None:
    fake = FakeTime()
    limiter = RateLimiter(per_second=10, window=1.0, clock=fake.clock, sleep=fake.sleep)
    instants = []
    for _ in range(25):
        await limiter.acquire("app")
        instants.append(fake.now)
    assert instants[:10] == [1000.0] * 10
    assert instants[10:20] == [1001.0] * 10
    assert instants[20:] == [1002.0] * 5
    # It slept only when full, exactly until the oldest send left the window: no polling.
    assert fake.sleeps == [1.0, 1.0]
    for i, t in enumerate(instants):
        assert sum(1 for u in instants if t <= u < t + 1.0) <= 10, i


async def test_limiter_is_fifo_fair_between_callers() -> None:
    fake = FakeTime()
    limiter = RateLimiter(per_second=2, window=1.0, clock=fake.clock, sleep=fake.sleep)
    order: list[str] = []

    async def caller(name: str) -> None:
        for _ in range(3):
            await limiter.acquire("app")
            order.append(name)
            await asyncio.sleep(0)  # the request itself

    await asyncio.gather(caller("a"), caller("b"), caller("c"))
    # Served in arrival order: nobody gets a second turn before everyone had one.
    assert order == ["a", "b", "c"] * 3


async def test_limiter_keeps_app_ids_apart() -> None:
    fake = FakeTime()
    limiter = RateLimiter(per_second=3, window=1.0, clock=fake.clock, sleep=fake.sleep)
    for app in ("a", "b", "c", "d"):
        for _ in range(3):
            await limiter.acquire(app)
    assert fake.sleeps == []
    await limiter.acquire("a")
    assert fake.sleeps == [1.0]


def test_limiter_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        RateLimiter(per_second=0)
    with pytest.raises(ValueError):
        RateLimiter(window=0)


def test_default_window_has_a_jitter_margin() -> None:
    limiter = RateLimiter()
    assert limiter.per_second == 10
    assert 1.0 < limiter.window <= 1.06  # still >= 9.5 requests per second


@pytest.mark.parametrize(
    ("attempt", "ceiling"), [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (5, 8.0), (9, 8.0)]
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
