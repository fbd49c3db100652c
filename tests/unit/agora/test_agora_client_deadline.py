"""The per-attempt deadline, with an httpx.MockTransport that never answers.

Covers: an attempt that outlives its deadline is retried after the policy's backoff (the
injected sleep sees it); the deadline makes the attempt ambiguous, so a
start answered 7 after it is an AmbiguousStartError; a call that is cancelled from
outside is not turned into a timeout.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest

from orchestrator.agora.client import AgoraClient, RateLimiter, RetryPolicy
from orchestrator.agora.errors import AmbiguousStartError

START_BODY = {"cname": "room", "uid": "1", "clientRequest": {"recordingConfig": {}}}


def _client(handler: httpx.AsyncBaseTransport, sleeps: list[float]) -> AgoraClient:
    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    return AgoraClient(
        customer_id="cid",
        customer_secret="csecret",
        http=httpx.AsyncClient(transport=handler),
        limiter=RateLimiter(per_second=1000),
        retry=RetryPolicy(max_attempts=3, base_delay=1.0, sleep=sleep, random=lambda: 1.0),
        deadline=0.05,
    )


async def test_start_after_a_deadline_then_7_is_ambiguous() -> None:
    answers = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal answers
        answers += 1
        if answers == 1:
            await asyncio.sleep(60)  # never answers in time
        return httpx.Response(400, json={"code": 7, "reason": "started"})

    sleeps: list[float] = []
    client = _client(httpx.MockTransport(handler), sleeps)
    with pytest.raises(AmbiguousStartError) as raised:
        await asyncio.wait_for(client.start("app", "rid", "mix", START_BODY), timeout=10)
    assert raised.value.resource_id == "rid"
    assert answers == 2
    assert sleeps == [1.0]


async def test_a_cancelled_call_stays_cancelled() -> None:
    started = asyncio.Event()

    async def handler(request: httpx.Request) -> httpx.Response:
        started.set()
        await asyncio.sleep(60)
        raise AssertionError("not reached")

    client = AgoraClient(
        customer_id="cid",
        customer_secret="csecret",
        http=httpx.AsyncClient(transport=httpx.MockTransport(handler)),
        limiter=RateLimiter(per_second=1000),
        deadline=30.0,
    )
    call = asyncio.create_task(client.query("app", "rid", "sid", "mix"))
    await asyncio.wait_for(started.wait(), timeout=10)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
