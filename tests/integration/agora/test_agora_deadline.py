"""Every HTTP attempt has an overall deadline, reading the body included.

Covers, against a real server on 127.0.0.1 that trickles its answer one byte at a
time (so httpx's read timeout, which restarts with every byte, never fires): an
attempt is given up at the deadline and retried; the call fails with an ambiguous,
retryable timeout within deadline x attempts plus slack; one `api.call` event per
attempt; every rate-limit slot is released and stamped when its attempt ends; a
slow answer that completes within the deadline still succeeds; a deadline that is
not positive is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx
import pytest
from structlog.testing import capture_logs

from orchestrator.agora.client import AgoraClient, RateLimiter, RetryPolicy
from orchestrator.agora.errors import RetryableError

pytestmark = pytest.mark.integration

APP_ID = "0123456789abcdef0123456789abcdef"
QUERY_ANSWER = json.dumps(
    {"resourceId": "rid", "sid": "sid", "serverResponse": {"status": 5}}
).encode()


async def _no_sleep(_seconds: float) -> None:
    return None


@dataclass
class Trickler:
    """An HTTP server that sends its answer's body one byte every `interval` seconds.

    With `endless`, it announces a body it never finishes; otherwise it sends `body`.
    """

    interval: float
    endless: bool
    body: bytes = QUERY_ANSWER
    requests: int = 0
    port: int = 0
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _stopping: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            self.requests += 1
            for line in head.decode("latin-1").split("\r\n"):
                name, _, value = line.partition(":")
                if name.lower() == "content-length":
                    await reader.readexactly(int(value))
            length = 10**9 if self.endless else len(self.body)
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n" % length
            )
            for index in range(length):
                if self._stopping.is_set():
                    break
                writer.write(b" " if self.endless else self.body[index : index + 1])
                await writer.drain()
                await asyncio.sleep(self.interval)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client gave up: what this server is for
        finally:
            self._tasks.discard(task)
            writer.close()

    async def stop(self) -> None:
        self._stopping.set()
        await asyncio.gather(*self._tasks)


@contextlib.asynccontextmanager
async def _serving(trickler: Trickler) -> AsyncIterator[Trickler]:
    server = await asyncio.start_server(trickler.handle, "127.0.0.1", 0)
    trickler.port = server.sockets[0].getsockname()[1]
    try:
        yield trickler
    finally:
        server.close()
        await trickler.stop()
        await server.wait_closed()


class Clock:
    """The limiter's clock, moved by hand: slots leave the window only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _client(port: int, limiter: RateLimiter, *, deadline: float, attempts: int) -> AgoraClient:
    return AgoraClient(
        customer_id="cid",
        customer_secret="csecret",
        base_url=f"http://127.0.0.1:{port}",
        limiter=limiter,
        retry=RetryPolicy(max_attempts=attempts, base_delay=0.0, max_delay=0.0, sleep=_no_sleep),
        # Far above the byte interval: only the deadline can end an attempt.
        timeout=httpx.Timeout(10.0),
        deadline=deadline,
    )


async def test_a_trickling_answer_is_cut_at_the_deadline() -> None:
    deadline, attempts = 0.5, 3
    clock = Clock()
    limiter = RateLimiter(per_second=10, clock=clock)
    async with _serving(Trickler(interval=0.05, endless=True)) as server:
        client = _client(server.port, limiter, deadline=deadline, attempts=attempts)
        started = time.monotonic()
        with capture_logs() as logs, pytest.raises(RetryableError) as raised:
            # Bounded even without a deadline in the client: this fails, it does not hang.
            await asyncio.wait_for(client.query(APP_ID, "rid", "sid", "mix"), timeout=40)
        elapsed = time.monotonic() - started
        await client.aclose()
    # bounded, not timed: a loaded machine adds seconds, a hang would add forever
    assert deadline * attempts * 0.9 <= elapsed < deadline * attempts + 20.0
    assert server.requests == attempts
    error = raised.value
    assert error.ambiguous  # the request may have arrived: like a read timeout
    assert error.status == 0
    assert error.reason == "timeout: no complete answer within the 0.5 s deadline"
    calls = [e for e in logs if e["event"] == "api.call"]
    assert [(e["attempt"], e["status"], e["outcome"]) for e in calls] == [
        (1, None, "retry"),
        (2, None, "retry"),
        (3, None, "error"),
    ]
    assert all(deadline * 0.9 <= e["latency_ms"] / 1000 < deadline + 1.0 for e in calls)
    # Each slot was released and stamped when its attempt was given up: all three
    # count for one window, then none is left in flight.
    assert limiter.in_use(APP_ID) == attempts
    clock.now += limiter.window
    assert limiter.in_use(APP_ID) == 0


async def test_a_slow_answer_within_the_deadline_succeeds() -> None:
    async with _serving(Trickler(interval=0.002, endless=False)) as server:
        client = _client(server.port, RateLimiter(), deadline=10.0, attempts=1)
        answer = await asyncio.wait_for(client.query(APP_ID, "rid", "sid", "mix"), timeout=40)
        await client.aclose()
    assert answer.sid == "sid"
    assert server.requests == 1


@pytest.mark.parametrize("deadline", [0.0, -1.0, float("nan")])
def test_deadline_must_be_positive(deadline: float) -> None:
    with pytest.raises(ValueError, match="deadline must be a positive number of seconds"):
        AgoraClient(customer_id="c", customer_secret="s", deadline=deadline)


async def test_one_call_ends_within_its_total_time_across_attempts() -> None:
    """Six attempts of 0.5 s each would take 3 s: the call's total (1.2 s) ends it after
    the attempts that fit, the last one cut short to what is left."""
    limiter = RateLimiter(per_second=10, clock=Clock())
    async with _serving(Trickler(interval=0.05, endless=True)) as server:
        client = AgoraClient(
            customer_id="cid",
            customer_secret="csecret",
            base_url=f"http://127.0.0.1:{server.port}",
            limiter=limiter,
            retry=RetryPolicy(
                max_attempts=6, base_delay=0.0, max_delay=0.0, total=1.2, sleep=_no_sleep
            ),
            timeout=httpx.Timeout(10.0),
            deadline=0.5,
        )
        with capture_logs() as logs, pytest.raises(RetryableError) as caught:
            await asyncio.wait_for(client.query(APP_ID, "rid", "sid", "mix"), timeout=40)
        await client.aclose()
    # The error says the call's time is spent, not only the last attempt's deadline.
    assert str(caught.value).endswith("deadline; the call's 1.2 s are spent"), caught.value
    calls = [e for e in logs if e["event"] == "api.call"]
    assert server.requests == 3 == len(calls)
    assert [e["outcome"] for e in calls] == ["retry", "retry", "error"]
    # The third attempt had only what was left of the 1.2 s: about 0.2 s.
    assert calls[2]["latency_ms"] < 500
    (ended,) = [e for e in logs if e["event"] == "api.call_deadline"]
    assert (ended["attempts"], ended["seconds"]) == (3, 1.2)
