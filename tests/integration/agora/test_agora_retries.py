"""Retries, ambiguity and the rate limiter, against injected emulator faults.

Covers: a lost start (action taken, 504) retried with the same resource ID ->
AmbiguousStartError carrying the resource ID; code 65 and 5xx on start retried to
success with the same resource ID; a timed-out start -> ambiguous; a lost acquire
is harmless; a lost stop retried -> 49 -> StopAlreadyEndedError; a lost update is
retried with the same sid; retries give up after max_attempts; one `api.call`
event per attempt; seeded random faults are reproducible; 20 concurrent callers
through the shared limiter -> zero 429s.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

import agora_bodies as bodies
import httpx
import pytest
from structlog.testing import capture_logs

from orchestrator.agora.client import AgoraClient, RateLimiter, RetryPolicy
from orchestrator.agora.errors import (
    AlreadyStartedError,
    AmbiguousStartError,
    RetryableError,
    StopAlreadyEndedError,
)
from orchestrator.emulator import AppConfig, EmulatorConfig, FaultConfig, running_emulator
from tests.integration.conftest import APP_IDS, CUSTOMER_ID, CUSTOMER_SECRET

if TYPE_CHECKING:
    from conftest import EmulatorHandle

pytestmark = pytest.mark.integration


async def test_lost_start_then_7_is_ambiguous(emulator: EmulatorHandle) -> None:
    client = emulator.client()
    app = emulator.app_id
    rid = await client.acquire(app, bodies.acquire())
    emulator.emu.fail_next("start", "lost")
    with capture_logs() as logs, pytest.raises(AmbiguousStartError) as caught:
        await client.start(app, rid, "mix", bodies.start_recording())
    assert caught.value.resource_id == rid
    assert "started, sid unknown" in str(caught.value)
    assert isinstance(caught.value.__cause__, AlreadyStartedError)
    starts = emulator.emu.requests("start")
    assert [r["status"] for r in starts] == [504, 400]
    assert starts[0]["path"] == starts[1]["path"]  # the same resource ID both times
    (session,) = emulator.emu.sessions()  # the first attempt did start it, once
    assert session["live"] and session["resource_id"] == rid
    calls = [e for e in logs if e["event"] == "api.call"]
    assert [(e["attempt"], e["status"], e["outcome"]) for e in calls] == [
        (1, 504, "retry"),
        (2, 400, "ambiguous_start"),
    ]


@pytest.mark.parametrize("kind", ["code65", "error"])
async def test_failed_start_is_retried_with_the_same_resource(
    emulator: EmulatorHandle, kind: str
) -> None:
    client = emulator.client()
    app = emulator.app_id
    rid = await client.acquire(app, bodies.acquire())
    emulator.emu.fail_next("start", kind, count=2, status=503)
    sid = await client.start(app, rid, "mix", bodies.start_recording())
    starts = emulator.emu.requests("start")
    assert len(starts) == 3
    assert len({r["path"] for r in starts}) == 1
    assert starts[-1]["status"] == 200
    assert emulator.emu.sessions()[0]["sid"] == sid


async def test_timed_out_start_is_ambiguous(emulator: EmulatorHandle) -> None:
    # The backoff (0.6 s asked for) is not slept: the injected sleep records it and
    # returns once the slow first attempt took effect, so the retry arrives after it.
    delays: list[float] = []

    async def backoff(seconds: float) -> None:
        delays.append(seconds)
        async with asyncio.timeout(10):  # bounded; the emulator acts 0.5 s after arrival
            while not emulator.emu.sessions():  # noqa: ASYNC110 (its state has no event)
                await asyncio.sleep(0.01)

    client = emulator.client(
        timeout=httpx.Timeout(0.2, connect=1.0),
        retry=RetryPolicy(
            max_attempts=3, base_delay=0.6, max_delay=0.6, sleep=backoff, random=lambda: 1.0
        ),
    )
    app = emulator.app_id
    rid = await client.acquire(app, bodies.acquire())
    emulator.emu.fail_next("start", "delay", seconds=0.5)
    with pytest.raises(AmbiguousStartError):
        await client.start(app, rid, "mix", bodies.start_recording())
    assert delays == [0.6]


async def test_lost_acquire_is_harmless(emulator: EmulatorHandle) -> None:
    client = emulator.client()
    emulator.emu.fail_next("acquire", "lost")
    rid = await client.acquire(emulator.app_id, bodies.acquire())
    assert [r["status"] for r in emulator.emu.requests("acquire")] == [504, 200]
    assert await client.start(emulator.app_id, rid, "mix", bodies.start_recording())


async def test_lost_stop_then_49_is_already_stopped(emulator: EmulatorHandle) -> None:
    client = emulator.client()
    app = emulator.app_id
    rid = await client.acquire(app, bodies.acquire())
    sid = await client.start(app, rid, "mix", bodies.start_recording())
    emulator.emu.join(app, bodies.CNAME, "123")
    emulator.emu.fail_next("stop", "lost")
    with capture_logs() as logs, pytest.raises(StopAlreadyEndedError) as caught:
        await client.stop(app, rid, sid, "mix", bodies.stop())
    assert caught.value.code == 49
    stops = emulator.emu.requests("stop")
    assert [r["status"] for r in stops] == [504, 400]
    assert stops[0]["path"] == stops[1]["path"]  # same resource ID and sid
    assert [e["outcome"] for e in logs if e["event"] == "api.call"] == [
        "retry",
        "already_stopped",
    ]


async def test_lost_update_is_retried_with_the_same_sid(emulator: EmulatorHandle) -> None:
    client = emulator.client()
    app = emulator.app_id
    rid = await client.acquire(app, bodies.acquire())
    sid = await client.start(app, rid, "mix", bodies.start_recording())
    emulator.emu.fail_next("update", "lost")
    await client.update(app, rid, sid, "mix", bodies.update())
    updates = emulator.emu.requests("update")
    assert [r["status"] for r in updates] == [504, 200]
    assert all(f"/sid/{sid}/" in r["path"] for r in updates)


async def test_retries_give_up_after_max_attempts(emulator: EmulatorHandle) -> None:
    client = emulator.client()  # FAST_RETRY: 4 attempts
    emulator.emu.fail_next("acquire", "error", count=10, status=502)
    with pytest.raises(RetryableError) as caught:
        await client.acquire(emulator.app_id, bodies.acquire())
    assert caught.value.status == 502
    assert len(emulator.emu.requests("acquire")) == 4


async def test_seeded_random_faults_are_reproducible(emulator: EmulatorHandle) -> None:
    emulator.emu.settings.update({"rate_limit": 1000})
    client = emulator.client(
        retry=RetryPolicy(max_attempts=1), limiter=RateLimiter(per_second=1000)
    )
    outcomes = []
    for _ in range(2):
        emulator.emu.set_faults(FaultConfig(error_rate=0.3, code65_rate=0.2, seed=42))
        emulator.emu.received.clear()
        for _ in range(20):
            with contextlib.suppress(RetryableError):
                await client.acquire(emulator.app_id, bodies.acquire())
        outcomes.append([(r["status"], r["code"]) for r in emulator.emu.requests()])
    assert outcomes[0] == outcomes[1]
    assert {status for status, _ in outcomes[0]} == {200, 400, 500}


@pytest.mark.slow  # 22 calls at 10 per second, in real time
async def test_twenty_concurrent_callers_get_no_429(emulator: EmulatorHandle) -> None:
    """Through one shared limiter, 20 concurrent callers stay under 10 requests/s.

    Not a matter of timing: a slot counts from its grant until one window after its
    answer, and the server's arrival instant lies in between, so however late the
    request reaches the emulator, no second of arrivals holds more than ten."""
    limiter = RateLimiter(per_second=10)
    client = emulator.client(limiter=limiter, retry=RetryPolicy(max_attempts=1))
    app = emulator.app_id
    rid = await client.acquire(app, bodies.acquire())
    sid = await client.start(app, rid, "mix", bodies.start_recording())

    async def caller() -> None:
        await client.query(app, rid, sid, "mix")

    await asyncio.gather(*(caller() for _ in range(20)))
    statuses = [r["status"] for r in emulator.emu.requests()]
    assert len(statuses) == 22
    assert 429 not in statuses
    times = [r["time"] for r in emulator.emu.requests()]
    # No one-second window holds more than ten arrivals.
    assert all(sum(1 for t in times if s <= t < s + 1.0) <= 10 for s in times)


async def test_clearing_the_faults_lets_a_held_answer_go(emulator: EmulatorHandle) -> None:
    """`hold` acts at once and holds the answer; clearing the faults sends it now (a
    test that ended the client it held does not wait out the hold at teardown)."""
    client = emulator.client(retry=RetryPolicy(max_attempts=1, base_delay=0.0, max_delay=0.0))
    emulator.emu.fail_next("acquire", "hold", seconds=120)
    call = asyncio.create_task(client.acquire(emulator.app_id, bodies.acquire()))
    try:
        for _ in range(600):  # bounded: at most 30 s
            if not emulator.emu.next_faults:  # the held acquire arrived
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the acquire never arrived")
        await asyncio.sleep(0)  # the call is held, not answered
        assert not call.done()
        emulator.emu.clear_faults()
        rid = await asyncio.wait_for(call, timeout=30)  # far less than the hold
    finally:
        call.cancel()
    assert rid  # the held answer: the client makes one attempt


async def test_an_emulator_that_stops_does_not_wait_out_a_hold() -> None:
    """Stopping the emulator sends what `hold` keeps (it used to wait up to 60 s)."""
    config = EmulatorConfig(
        customer_id=CUSTOMER_ID,
        customer_secret=CUSTOMER_SECRET,
        apps={APP_IDS[0]: AppConfig()},
    )
    async with asyncio.timeout(30):  # far less than the hold
        async with running_emulator(config, host="127.0.0.1", port=0) as emu:
            client = AgoraClient(
                customer_id=CUSTOMER_ID,
                customer_secret=CUSTOMER_SECRET,
                base_url=emu.base_url,
                limiter=RateLimiter(),
                retry=RetryPolicy(max_attempts=1, base_delay=0.0, max_delay=0.0),
            )
            emu.fail_next("acquire", "hold", seconds=120)
            call = asyncio.create_task(client.acquire(APP_IDS[0], bodies.acquire()))
            for _ in range(600):  # bounded: at most 30 s
                if not emu.next_faults:  # the held acquire arrived
                    break
                await asyncio.sleep(0.05)
            else:
                raise AssertionError("the acquire never arrived")
        rid = await call  # answered as the emulator stopped
        await client.aclose()
    assert rid
