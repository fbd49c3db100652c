"""What the client hands to observers and logs, and how it shares an HTTP client.

Covers: `on_call` gets one `ApiCall` per HTTP attempt (retries, transport errors,
success) and a failing observer neither breaks nor changes the call; the
`api.call` event of a successful start carries the new sid; the rate-limiter slot
spans exactly the HTTP request, stamped when the answer (or the error) arrived; one
shared `httpx.AsyncClient` serves clients with different credentials, each request
authenticated as its own client, and closing a client leaves the shared one open.
"""

from __future__ import annotations

import base64
from collections.abc import Callable

import httpx
import pytest
from structlog.testing import capture_logs

from orchestrator.agora.client import AgoraClient, ApiCall, RateLimiter, RetryPolicy
from orchestrator.agora.errors import RetryableError

ACQUIRE_BODY = {"cname": "room", "uid": "1", "clientRequest": {}}
START_BODY = {"cname": "room", "uid": "1", "clientRequest": {"recordingConfig": {}}}
APP = "a" * 32


async def _no_sleep(_seconds: float) -> None:
    return None


def _client(
    handler: Callable[[httpx.Request], httpx.Response],
    *,
    on_call: Callable[[ApiCall], None] | None = None,
    limiter: RateLimiter | None = None,
) -> AgoraClient:
    return AgoraClient(
        customer_id="cid",
        customer_secret="csecret",
        base_url="https://api.agora.io",
        http=httpx.AsyncClient(transport=httpx.MockTransport(handler)),
        limiter=limiter or RateLimiter(per_second=1000),
        retry=RetryPolicy(max_attempts=4, sleep=_no_sleep),
        on_call=on_call,
    )


def _answers(
    *answers: httpx.Response | type[httpx.TransportError],
) -> Callable[[httpx.Request], httpx.Response]:
    queue = list(answers)

    def handler(request: httpx.Request) -> httpx.Response:
        answer = queue.pop(0)
        if isinstance(answer, httpx.Response):
            return answer
        raise answer("simulated", request=request)

    return handler


async def test_on_call_sees_every_attempt() -> None:
    seen: list[ApiCall] = []
    client = _client(
        _answers(
            httpx.ConnectError,
            httpx.Response(503, json={"message": "busy"}),
            httpx.Response(200, json={"resourceId": "rid"}),
        ),
        on_call=seen.append,
    )
    assert await client.acquire(APP, ACQUIRE_BODY) == "rid"
    assert [(c.endpoint, c.app_id, c.status, c.code, c.attempt, c.outcome) for c in seen] == [
        ("acquire", APP, None, None, 1, "retry"),
        ("acquire", APP, 503, None, 2, "retry"),
        ("acquire", APP, 200, None, 3, "ok"),
    ]
    assert all(c.latency >= 0 for c in seen)


async def test_on_call_sees_the_final_error_with_its_code() -> None:
    seen: list[ApiCall] = []
    client = _client(
        _answers(*[httpx.Response(400, json={"code": 65, "reason": "again"})] * 4),
        on_call=seen.append,
    )
    with pytest.raises(RetryableError):
        await client.acquire(APP, ACQUIRE_BODY)
    assert [(c.status, c.code, c.attempt, c.outcome) for c in seen] == [
        (400, 65, 1, "retry"),
        (400, 65, 2, "retry"),
        (400, 65, 3, "retry"),
        (400, 65, 4, "error"),
    ]


async def test_a_failing_on_call_is_logged_and_the_call_goes_on() -> None:
    def broken(_call: ApiCall) -> None:
        raise RuntimeError("metrics are down")

    client = _client(
        _answers(
            httpx.Response(500, json={"message": "oops"}),
            httpx.Response(200, json={"resourceId": "rid"}),
        ),
        on_call=broken,
    )
    with capture_logs() as logs:
        assert await client.acquire(APP, ACQUIRE_BODY) == "rid"
    assert [e["event"] for e in logs] == [
        "api.call",
        "api.hook_failed",
        "api.call",
        "api.hook_failed",
    ]
    failed = logs[1]
    assert (failed["hook"], failed["error"], failed["log_level"]) == (
        "on_call",
        "RuntimeError",
        "warning",
    )
    assert "metrics are down" not in str(logs)


async def test_the_api_call_event_of_a_start_carries_the_new_sid() -> None:
    client = _client(_answers(httpx.Response(200, json={"resourceId": "rid", "sid": "sid-42"})))
    with capture_logs() as logs:
        assert await client.start(APP, "rid", "mix", START_BODY) == "sid-42"
    (event,) = [e for e in logs if e["event"] == "api.call"]
    assert (event["endpoint"], event["sid"], event["channel"], event["uid"]) == (
        "start",
        "sid-42",
        "room",
        "1",
    )


class ManualClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize("fails", [False, True])
async def test_the_slot_spans_the_request_and_is_stamped_at_the_answer(fails: bool) -> None:
    clock = ManualClock()
    limiter = RateLimiter(per_second=1, window=1.0, clock=clock)
    during: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        during.append(limiter.in_use(APP))
        clock.now += 4.0  # the answer takes four seconds
        if fails:
            raise httpx.ReadTimeout("simulated", request=request)
        return httpx.Response(200, json={"resourceId": "rid"})

    client = AgoraClient(
        customer_id="cid",
        customer_secret="csecret",
        http=httpx.AsyncClient(transport=httpx.MockTransport(handler)),
        limiter=limiter,
        retry=RetryPolicy(max_attempts=1),
    )
    if fails:
        with pytest.raises(RetryableError):
            await client.acquire(APP, ACQUIRE_BODY)
    else:
        await client.acquire(APP, ACQUIRE_BODY)
    assert during == [1]  # in flight while the request was out
    clock.now = 104.999  # the answer came at 104.0: still in the window
    assert limiter.in_use(APP) == 1
    clock.now = 105.0
    assert limiter.in_use(APP) == 0


async def test_a_shared_http_client_authenticates_per_client_and_stays_open() -> None:
    authorizations: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        authorizations.append(request.headers.get("Authorization"))
        return httpx.Response(200, json={"resourceId": "rid"})

    shared = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    limiter = RateLimiter(per_second=1000)
    alice, bob = (
        AgoraClient(customer_id=who, customer_secret=f"{who}-secret", http=shared, limiter=limiter)
        for who in ("alice", "bob")
    )
    async with alice, bob:
        for client in (alice, bob, alice):
            await client.acquire(APP, ACQUIRE_BODY)
    assert not shared.is_closed  # neither client closed what it did not create
    assert (await shared.get("https://api.agora.io/")).status_code == 200
    await shared.aclose()
    assert authorizations == [
        *(
            "Basic " + base64.b64encode(f"{who}:{who}-secret".encode()).decode()
            for who in ("alice", "bob", "alice")
        ),
        None,  # the shared client itself carries no credentials
    ]
