"""The client's retry decisions, with httpx.MockTransport standing in for Agora.

Covers: which earlier failures make a later code 7 ambiguous (timeouts, 5xx, 65,
read errors) and which do not (429, connection refused); the backoff delays passed
to the injected sleep; 206 on stop is a success; a 200 with an unexpected body;
the exact headers sent; response models tolerate extra fields and string numbers.
"""

from __future__ import annotations

import email.utils
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from orchestrator.agora.client import CONTENT_TYPE, AgoraClient, RateLimiter, RetryPolicy
from orchestrator.agora.errors import (
    AlreadyStartedError,
    AmbiguousStartError,
    ForeignAnswerError,
    RateLimitedError,
    RetryableError,
)
from orchestrator.agora.wire import QueryResponse

START_BODY = {"cname": "room", "uid": "1", "clientRequest": {"recordingConfig": {}}}
SEVEN = httpx.Response(400, json={"code": 7, "reason": "started"})
OK_START = httpx.Response(200, json={"resourceId": "rid", "sid": "sid1"})


def _client(
    answers: list[Callable[[httpx.Request], httpx.Response] | httpx.Response],
    sleeps: list[float],
    seen: list[httpx.Request] | None = None,
    total: float = 60.0,
) -> AgoraClient:
    queue = list(answers)

    def handler(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        answer = queue.pop(0)
        return answer(request) if callable(answer) else answer

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    return AgoraClient(
        customer_id="cid",
        customer_secret="csecret",
        base_url="https://api.agora.io",
        http=httpx.AsyncClient(transport=httpx.MockTransport(handler)),
        limiter=RateLimiter(per_second=1000),
        retry=RetryPolicy(
            max_attempts=4,
            base_delay=1.0,
            max_delay=8.0,
            total=total,
            sleep=sleep,
            random=lambda: 1.0,
        ),
    )


def _raise(exc: type[httpx.TransportError]) -> Callable[[httpx.Request], httpx.Response]:
    def answer(request: httpx.Request) -> httpx.Response:
        raise exc("simulated", request=request)

    return answer


@pytest.mark.parametrize(
    "first",
    [
        _raise(httpx.ReadTimeout),
        _raise(httpx.ReadError),
        _raise(httpx.RemoteProtocolError),
        httpx.Response(500),
        httpx.Response(504, json={"message": "The upstream server is timing out"}),
        httpx.Response(400, json={"code": 65, "reason": "retry"}),
    ],
)
async def test_seven_after_an_ambiguous_attempt_is_ambiguous_start(first: object) -> None:
    sleeps: list[float] = []
    client = _client([first, SEVEN], sleeps)  # type: ignore[list-item]
    with pytest.raises(AmbiguousStartError) as caught:
        await client.start("app", "rid-123", "mix", START_BODY)
    assert caught.value.resource_id == "rid-123"
    assert sleeps == [1.0]


@pytest.mark.parametrize(
    "first",
    [
        _raise(httpx.ConnectError),
        _raise(httpx.ConnectTimeout),
        httpx.Response(429, json={"message": "API rate limit exceeded"}),
    ],
)
async def test_seven_after_a_request_that_never_arrived_is_plain_conflict(first: object) -> None:
    client = _client([first, SEVEN], [])  # type: ignore[list-item]
    with pytest.raises(AlreadyStartedError) as caught:
        await client.start("app", "rid", "mix", START_BODY)
    assert not isinstance(caught.value, AmbiguousStartError)


async def test_backoff_grows_and_the_same_request_is_resent() -> None:
    sleeps: list[float] = []
    seen: list[httpx.Request] = []
    client = _client(
        [httpx.Response(503), httpx.Response(503), httpx.Response(503), OK_START], sleeps, seen
    )
    assert await client.start("app", "rid", "mix", START_BODY) == "sid1"
    assert sleeps == [1.0, 2.0, 4.0]
    assert len({(r.method, str(r.url), r.content) for r in seen}) == 1


async def test_gives_up_after_max_attempts() -> None:
    client = _client([httpx.Response(500)] * 4, [])
    with pytest.raises(RetryableError):
        await client.start("app", "rid", "mix", START_BODY)


async def test_headers_and_body_on_the_wire() -> None:
    seen: list[httpx.Request] = []
    client = _client([OK_START], [], seen)
    await client.start("app", "r/id", "mix", START_BODY)
    (request,) = seen
    assert request.headers["Content-Type"] == CONTENT_TYPE
    assert request.headers["Authorization"] == "Basic Y2lkOmNzZWNyZXQ="
    assert request.url.raw_path == b"/v1/apps/app/cloud_recording/resourceid/r%2Fid/mode/mix/start"
    assert json.loads(request.content) == START_BODY


async def test_206_on_stop_is_a_success() -> None:
    answer = httpx.Response(
        206,
        json={"resourceId": "r", "sid": "s", "serverResponse": {"uploadingStatus": "backuped"}},
    )
    client = _client([answer], [])
    stopped = await client.stop(
        "app", "r", "s", "mix", {"cname": "room", "uid": "1", "clientRequest": {}}
    )
    assert stopped.serverResponse.uploadingStatus == "backuped"


async def test_unexpected_success_body_is_retried_then_raised() -> None:
    client = _client([httpx.Response(200, json={"nothing": True})], [])
    with pytest.raises(RetryableError) as caught:
        await client.acquire("app", {"cname": "room", "uid": "1"})
    assert "unexpected response" in caught.value.reason


def test_query_response_tolerates_strings_and_extra_fields() -> None:
    parsed = QueryResponse.model_validate(
        {
            "resourceId": "r",
            "sid": "s",
            "code": 200,
            "serverResponse": {"status": "5", "sliceStartTime": "1562724971626", "new": 1},
        }
    )
    assert parsed.serverResponse.status == 5
    assert parsed.serverResponse.sliceStartTime == 1562724971626


def _limited(retry_after: str) -> httpx.Response:
    return httpx.Response(
        429, json={"message": "API rate limit exceeded"}, headers={"Retry-After": retry_after}
    )


async def test_a_429_waits_at_least_what_its_retry_after_asks() -> None:
    sleeps: list[float] = []
    client = _client([_limited("3"), _limited("junk"), OK_START], sleeps)
    assert await client.start("app", "rid", "mix", START_BODY) == "sid1"
    # Its own backoff (1 s, then 2 s) where the header asks less or cannot be read.
    assert sleeps == [3.0, 2.0]
    sleeps.clear()
    soon = email.utils.format_datetime(datetime.now(UTC) + timedelta(seconds=20), usegmt=True)
    client = _client([_limited(soon), OK_START], sleeps)
    assert await client.start("app", "rid", "mix", START_BODY) == "sid1"
    ((slept,),) = [sleeps]
    assert 15.0 <= slept <= 20.0


async def test_a_retry_after_past_the_calls_deadline_ends_the_call() -> None:
    sleeps: list[float] = []
    client = _client([_limited("600")], sleeps)  # the call's 60 s are not enough
    with pytest.raises(RateLimitedError) as caught:
        await client.start("app", "rid", "mix", START_BODY)
    assert sleeps == []
    assert str(caught.value).endswith("Retry-After asked 600 s, more than the call's 60 s had left")


@pytest.mark.parametrize(
    ("answer", "kind"),
    [
        (httpx.Response(502, text="<html>bad gateway</html>"), ForeignAnswerError),
        (httpx.Response(500, json={"code": 99, "reason": "busy"}), RetryableError),
    ],
    ids=["a-proxy-page", "agora-5xx"],
)
async def test_a_call_out_of_time_says_so_whatever_its_last_error(
    answer: httpx.Response, kind: type[RetryableError]
) -> None:
    sleeps: list[float] = []
    client = _client([answer] * 4, sleeps, total=2.5)
    with pytest.raises(kind) as caught:
        await client.start("app", "rid", "mix", START_BODY)
    assert type(caught.value) is kind
    assert str(caught.value).endswith("; the call's 2.5 s are spent"), caught.value
    assert sleeps == [1.0]  # the second backoff would have ended past the 2.5 s
