"""What the client's `api.call` events say, and at which level.

Covers: every endpoint's event names the channel and uid it acts on (from the body
for the five that send one, from `query`'s `channel` and `uid` arguments for the one
that does not; None when a query caller does not say); a successful query is logged
at debug level (the resync polls every live recording), while a query that fails or
is retried, and every other endpoint, stays at its level (warning, info).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs

from orchestrator.agora.client import AgoraClient, RateLimiter, RetryPolicy
from orchestrator.agora.errors import NotFoundError

APP = "a" * 32
ROOM = {"cname": "room-7", "uid": "527841"}
ANSWERS: dict[str, dict[str, Any]] = {
    "acquire": {"resourceId": "rid"},
    "start": {"resourceId": "rid", "sid": "sid-1"},
    "update": {"resourceId": "rid", "sid": "sid-1"},
    "updateLayout": {"resourceId": "rid", "sid": "sid-1"},
    "query": {"resourceId": "rid", "sid": "sid-1", "serverResponse": {"status": 5}},
    "stop": {"resourceId": "rid", "sid": "sid-1", "serverResponse": {}},
}


async def _no_sleep(_seconds: float) -> None:
    return None


def _client(handler: Callable[[httpx.Request], httpx.Response]) -> AgoraClient:
    return AgoraClient(
        customer_id="cid",
        customer_secret="csecret",
        http=httpx.AsyncClient(transport=httpx.MockTransport(handler)),
        limiter=RateLimiter(per_second=1000),
        retry=RetryPolicy(max_attempts=3, sleep=_no_sleep),
    )


def _by_endpoint(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json=ANSWERS[request.url.path.rsplit("/", 1)[-1]])


Call = Callable[[AgoraClient], Awaitable[object]]
CALLS: dict[str, Call] = {
    "acquire": lambda c: c.acquire(APP, {**ROOM, "clientRequest": {}}),
    "start": lambda c: c.start(
        APP, "rid", "mix", {**ROOM, "clientRequest": {"recordingConfig": {}}}
    ),
    "update": lambda c: c.update(
        APP,
        "rid",
        "sid-1",
        "mix",
        {
            **ROOM,
            "clientRequest": {"streamSubscribe": {"audioUidList": {"subscribeAudioUids": ["1"]}}},
        },
    ),
    "updateLayout": lambda c: c.update_layout(
        APP, "rid", "sid-1", "mix", {**ROOM, "clientRequest": {"mixedVideoLayout": 1}}
    ),
    "query": lambda c: c.query(APP, "rid", "sid-1", "mix", channel="room-7", uid=527841),
    "stop": lambda c: c.stop(APP, "rid", "sid-1", "mix", {**ROOM, "clientRequest": {}}),
}


@pytest.mark.parametrize("endpoint", list(CALLS))
async def test_every_endpoint_names_the_channel_and_uid(endpoint: str) -> None:
    with capture_logs() as logs:
        await CALLS[endpoint](_client(_by_endpoint))
    [event] = [e for e in logs if e["event"] == "api.call"]
    assert (event["endpoint"], event["channel"], event["uid"], event["outcome"]) == (
        endpoint,
        "room-7",
        "527841",
        "ok",
    )
    assert event["log_level"] == ("debug" if endpoint == "query" else "info")


async def test_a_query_without_channel_and_uid_logs_none() -> None:
    with capture_logs() as logs:
        await _client(_by_endpoint).query(APP, "rid", "sid-1", "mix")
    [event] = logs
    assert (event["channel"], event["uid"], event["sid"]) == (None, None, "sid-1")


async def test_a_query_that_fails_or_is_retried_stays_a_warning() -> None:
    answers = [
        httpx.Response(503, json={"message": "busy"}),
        httpx.Response(200, json=ANSWERS["query"]),
        httpx.Response(404, json={"code": 404, "reason": "not found"}),
    ]
    client = _client(lambda _request: answers.pop(0))
    with capture_logs() as logs:
        await client.query(APP, "rid", "sid-1", "mix", channel="room-7", uid=527841)
        with pytest.raises(NotFoundError):
            await client.query(APP, "rid", "sid-1", "mix", channel="room-7", uid=527841)
    assert [(e["log_level"], e["status"], e["outcome"], e["channel"]) for e in logs] == [
        ("warning", 503, "retry", "room-7"),
        ("debug", 200, "ok", "room-7"),
        ("warning", 404, "error", "room-7"),
    ]
