"""The async client of the Cloud Recording RESTful API: the only code that speaks HTTP to Agora.

It authenticates (HTTP Basic), sends the exact content type the reference requires,
keeps every App ID under its request rate (a process-wide `RateLimiter`), retries
transient failures with the same resource ID and sid (`RetryPolicy`; both live in
pacing.py and are importable from here), and maps every unsuccessful answer
through `errors.error_from_response`. It logs one `api.call`
event per HTTP attempt, naming the channel and uid wherever it knows them (at debug
level for a successful `query`: the resync polls every live recording, and the
executor logs what a query finds changed), and hands the same facts to an optional
`on_call` observer (metrics), which must not import anything here but `ApiCall`.

It must never log or raise with a secret in it: not the Authorization header, the
customer secret, storage keys, tokens, nor the decryption secret, in any form a
server may echo them (the client remembers its credential pair with
`orchestrator.secrets.remember_credentials`, so that the base64 of
`customerId:customerSecret` is masked wherever it shows up). It must never take an
answer that is not Agora's for Agora's (`errors.ForeignAnswerError`).
"""

from __future__ import annotations

import asyncio
import email.utils
import ipaddress
import json
import re
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
import structlog
from pydantic import BaseModel, ValidationError

from orchestrator.agora import wire
from orchestrator.agora.errors import (
    AgoraError,
    AlreadyStartedError,
    AmbiguousStartError,
    InvalidRequestError,
    RateLimitedError,
    RetryableError,
    StopAlreadyEndedError,
    error_from_response,
    scrub,
)
from orchestrator.agora.pacing import CLOCK_MARGIN, DEFAULT_WINDOW, RateLimiter, RetryPolicy
from orchestrator.aio import AsyncClosing
from orchestrator.contract import ErrorCode, channel_name_problem, mode_problem
from orchestrator.logging import shorten
from orchestrator.secrets import is_secret_key, remember_credentials

__all__ = [
    "CLOCK_MARGIN",
    "CONTENT_TYPE",
    "DEFAULT_BASE_URL",
    "DEFAULT_DEADLINE",
    "DEFAULT_TIMEOUT",
    "DEFAULT_WINDOW",
    "AgoraClient",
    "ApiCall",
    "RateLimiter",
    "RawBody",
    "RetryPolicy",
    "base_url_problem",
]

DEFAULT_BASE_URL = "https://api.agora.io"
CONTENT_TYPE = "application/json;charset=utf-8"
DEFAULT_TIMEOUT = httpx.Timeout(15.0, connect=5.0)
#: The longest one HTTP attempt may take, from the send to the answer's last byte. httpx's
#: read timeout restarts with every byte received, so a server that trickles its answer
#: would hold a call for ever without it. Twice the read timeout: an honest slow answer
#: (the reference's calls answer in well under a second) is never cut.
DEFAULT_DEADLINE = 30.0

log = structlog.get_logger("orchestrator.agora")

_M = TypeVar("_M", bound=BaseModel)

_URL_SHAPE = re.compile(r"https?://[^\s/?#]+(/[^\s?#]*)?")


def base_url_problem(url: str) -> str | None:
    """Why `url` cannot be the API's base URL, or None when it can.

    An https:// URL with a host and no query, fragment or user info (credentials go
    in the Authorization header, never in a URL that may be logged); plain http://
    only to a loopback address (127.0.0.0/8, ::1, localhost), that is to the local
    emulator: anywhere else it would send the customer secret in clear. The config
    checks its `baseUrl` with this same function, so a config that loads builds a client.
    """
    if not _URL_SHAPE.fullmatch(url):
        return "must be an http:// or https:// URL without query, e.g. https://api.agora.io"
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        return "must be a valid URL, e.g. https://api.agora.io"
    if parsed.userinfo:
        return "must not hold a user or password: the client sends customerId and customerSecret"
    if not parsed.host:
        return "must name a host, e.g. https://api.agora.io"
    if parsed.scheme == "https":
        return None
    host = parsed.host
    loopback = host == "localhost"
    if not loopback:
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
    if not loopback:
        return (
            "plain http:// is only allowed to a loopback address (the local emulator): use https://"
        )
    return None


def _check_base_url(base_url: str) -> str:
    problem = base_url_problem(base_url)
    if problem is not None:
        raise ValueError(f"base_url {problem}")
    return base_url.rstrip("/")


def _secret_values(body: Any) -> Iterator[str]:
    """Literal secret values inside a request body (keys, tokens, decryption secret)."""
    if isinstance(body, dict):
        for key, value in body.items():
            if is_secret_key(key) and isinstance(value, str):
                yield value
            else:
                yield from _secret_values(value)
    elif isinstance(body, list):
        for item in body:
            yield from _secret_values(item)


@dataclass(frozen=True)
class ApiCall:
    """One HTTP attempt, as handed to an `on_call` observer (no secrets, no body).

    `status` is None when no answer came (a transport error or timeout); `code` is
    Agora's `code` of an error answer; `latency` is in seconds, from the send to the
    answer; `outcome` is the `api.call` log event's ("ok", "retry", "error",
    "ambiguous_start", "already_stopped").
    """

    endpoint: str
    app_id: str
    status: int | None
    code: int | None
    attempt: int
    latency: float
    outcome: str


RawBody = Mapping[str, Any]


@dataclass(frozen=True)
class _Body:
    """A JSON body ready to send, and the secret values in it (masked in any echo)."""

    body: dict[str, Any]
    secrets: tuple[str, ...]


@dataclass
class _Call:
    endpoint: str
    method: str
    app_id: str
    path: str
    sent: _Body | None
    channel: str | None = None
    uid: str | None = None
    resource_id: str | None = None
    sid: str | None = None
    # A query takes a query slot of the rate limiter (after every waiting mutating
    # call, within the query share); every other endpoint a mutating one.
    query: bool = False


class AgoraClient(AsyncClosing):
    """Async client of the six endpoints; use as `async with AgoraClient(...) as client:`.

    Every HTTP attempt is bounded twice: by `timeout`, httpx's per-phase limits (by
    default 5 s to connect, 15 s for each read or write, restarting with every byte),
    and by `deadline` (30 s by default), the longest the whole attempt may take from
    the send to the answer's last byte, whatever the server trickles. An attempt that
    reaches its deadline is abandoned and reported like a read timeout: a retryable,
    ambiguous `RetryableError` (the request may have arrived), so it is retried with
    the same resource ID and sid; its rate-limit slot is stamped when it is abandoned.
    So one call takes at most `retry.max_attempts` x `deadline` plus the backoff
    sleeps between attempts (defaults: 6 x 30 s + at most 3.1 s = 183.1 s), plus the
    time spent waiting for rate-limit slots, which no deadline covers.
    """

    def __init__(
        self,
        *,
        customer_id: str,
        customer_secret: str,
        base_url: str = DEFAULT_BASE_URL,
        limiter: RateLimiter | None = None,
        http: httpx.AsyncClient | None = None,
        retry: RetryPolicy | None = None,
        timeout: httpx.Timeout | None = None,
        deadline: float = DEFAULT_DEADLINE,
        validate: bool = True,
        on_call: Callable[[ApiCall], None] | None = None,
    ) -> None:
        """`http` may be shared by many clients (each authenticates its own requests,
        and `aclose()` closes only a client it created itself); `on_call` observes
        every HTTP attempt, and an exception it raises is logged, never passed on."""
        self._base_url = _check_base_url(base_url)
        if not deadline > 0:  # also refuses NaN
            raise ValueError("deadline must be a positive number of seconds")
        self._deadline = deadline
        self._auth = httpx.BasicAuth(customer_id, customer_secret)
        self._customer_secret = customer_secret
        remember_credentials(customer_id, customer_secret)  # masked wherever it is echoed
        self._limiter = limiter if limiter is not None else RateLimiter()
        self._retry = retry if retry is not None else RetryPolicy()
        self._timeout = timeout if timeout is not None else DEFAULT_TIMEOUT
        self._own_http = http is None
        self._http = http if http is not None else httpx.AsyncClient(timeout=self._timeout)
        self._validate = validate
        self._on_call = on_call

    @property
    def base_url(self) -> str:
        return self._base_url

    async def aclose(self) -> None:
        if self._own_http:
            await self._http.aclose()

    # ------------------------------------------------------------ endpoints

    async def acquire(self, app_id: str, request: wire.AcquireRequest | RawBody) -> str:
        """Acquire a resource ID (valid 5 minutes, for one start). Returns resourceId."""
        sent = self._checked("acquire", wire.AcquireRequest, request)
        call = _Call(
            "acquire",
            "POST",
            app_id,
            f"/v1/apps/{_seg(app_id)}/cloud_recording/acquire",
            sent,
            channel=_str(sent.body.get("cname")),
            uid=_str(sent.body.get("uid")),
        )
        data, status = await self._call(call)
        return self._parse("acquire", wire.AcquireResponse, data, status).resourceId

    async def start(
        self, app_id: str, resource_id: str, mode: str, request: wire.StartRequest | RawBody
    ) -> str:
        """Start a recording on `resource_id`; returns the sid.

        Raises AmbiguousStartError when an earlier attempt may have started the
        recording and the retry was answered code 7.
        """
        sent = self._checked("start", wire.StartRequest, request, mode=mode)
        call = _Call(
            "start",
            "POST",
            app_id,
            f"/v1/apps/{_seg(app_id)}/cloud_recording/resourceid/{_seg(resource_id)}"
            f"/mode/{_seg(mode)}/start",
            sent,
            channel=_str(sent.body.get("cname")),
            uid=_str(sent.body.get("uid")),
            resource_id=resource_id,
        )
        data, status = await self._call(call)
        return self._parse("start", wire.StartResponse, data, status).sid

    async def update(
        self,
        app_id: str,
        resource_id: str,
        sid: str,
        mode: str,
        request: wire.UpdateRequest | RawBody,
    ) -> None:
        """Replace the subscription lists (`streamSubscribe`) of a live recording."""
        sent = self._checked("update", wire.UpdateRequest, request, mode=mode)
        await self._call(self._sid_call("update", "POST", app_id, resource_id, sid, mode, sent))

    async def update_layout(
        self,
        app_id: str,
        resource_id: str,
        sid: str,
        mode: str,
        request: wire.UpdateLayoutRequest | RawBody,
    ) -> None:
        """Replace the whole mix layout of a live recording."""
        sent = self._checked("updateLayout", wire.UpdateLayoutRequest, request, mode=mode)
        await self._call(
            self._sid_call("updateLayout", "POST", app_id, resource_id, sid, mode, sent)
        )

    async def query(
        self,
        app_id: str,
        resource_id: str,
        sid: str,
        mode: str,
        *,
        channel: str | None = None,
        uid: int | None = None,
        background: bool = True,
    ) -> wire.QueryResponse:
        """Status and file list of a live recording (404 once it has ended).

        A query sends no body, so `channel` and `uid` are only for its `api.call`
        events: the caller that knows the session names it there. `background`: a
        query slot (within the query share, behind mutating calls), as the resync's
        polling is; False: an ordinary slot, for a query something waits on (the
        start-up adoption of live sessions, `apply`, a rollover's confirmation)."""
        call = self._sid_call("query", "GET", app_id, resource_id, sid, mode, None)
        call.query = background
        call.channel = channel
        call.uid = None if uid is None else str(uid)  # as the other endpoints log it
        data, status = await self._call(call)
        return self._parse("query", wire.QueryResponse, data, status)

    async def stop(
        self,
        app_id: str,
        resource_id: str,
        sid: str,
        mode: str,
        request: wire.StopRequest | RawBody,
    ) -> wire.StopResponse:
        """Stop a recording; returns the final file list and uploadingStatus.

        Raises StopAlreadyEndedError (49) when it was already stopped, NotFoundError
        when it had already ended, NoFilesError (435) when it stopped with nothing.
        """
        sent = self._checked("stop", wire.StopRequest, request, mode=mode)
        data, status = await self._call(
            self._sid_call("stop", "POST", app_id, resource_id, sid, mode, sent)
        )
        return self._parse("stop", wire.StopResponse, data, status).answered(status)

    # ------------------------------------------------------------ internals

    def _sid_call(
        self,
        endpoint: str,
        method: str,
        app_id: str,
        resource_id: str,
        sid: str,
        mode: str,
        sent: _Body | None,
    ) -> _Call:
        path = (
            f"/v1/apps/{_seg(app_id)}/cloud_recording/resourceid/{_seg(resource_id)}"
            f"/sid/{_seg(sid)}/mode/{_seg(mode)}/{endpoint}"
        )
        return _Call(
            endpoint,
            method,
            app_id,
            path,
            sent,
            channel=_str(sent.body.get("cname")) if sent else None,
            uid=_str(sent.body.get("uid")) if sent else None,
            resource_id=resource_id,
            sid=sid,
        )

    def _checked(
        self,
        endpoint: str,
        model: type[wire.Request],
        request: wire.Request | RawBody,
        *,
        mode: str | None = None,
    ) -> _Body:
        """The body to send and the secret values it carries.

        A typed request (what the reconciler sends) was checked when it was built:
        it is sent as it is. A raw body (scripts, and tests probing the emulator) is
        checked the way Agora would, and refused before sending; `validate=False`
        sends it unchecked.
        """
        wrong = None if mode is None else mode_problem(mode)
        if wrong is not None:
            raise InvalidRequestError(endpoint, 0, 2, wrong)
        if isinstance(request, wire.Request):
            return _Body(request.to_wire(), tuple(request.secret_values()))
        body = dict(request)
        if not self._validate:
            return _Body(body, tuple(_secret_values(body)))
        cname = body.get("cname")
        if isinstance(cname, str):
            problem = channel_name_problem(cname)
            if problem:
                raise InvalidRequestError(endpoint, 0, ErrorCode.INVALID_CHANNEL, problem)
        try:
            parsed = model.model_validate(body, context={"mode": mode})
        except ValidationError as exc:
            code = (
                ErrorCode.INVALID_UID if endpoint == "updateLayout" else ErrorCode.INVALID_PARAMETER
            )
            reason = scrub(wire.validation_reason(exc), _secret_values(body))
            raise InvalidRequestError(endpoint, 0, code, reason) from None
        return _Body(parsed.to_wire(), tuple(parsed.secret_values()))

    def _parse(self, endpoint: str, model: type[_M], data: Any, status: int) -> _M:
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            reason = scrub("unexpected response: " + wire.validation_reason(exc))
            raise RetryableError(endpoint, status, None, reason) from None

    async def _call(self, call: _Call) -> tuple[Any, int]:
        """Send `call`, retrying transient failures; returns (parsed JSON, status)."""
        body = call.sent
        secrets = [self._customer_secret, *(body.secrets if body else ())]
        content = json.dumps(body.body).encode() if body is not None else None
        headers = {"Content-Type": CONTENT_TYPE, "Accept": "application/json"}
        url = self._base_url + call.path
        ambiguous = False
        attempt = 0
        spent = 0.0  # in attempts and backoff sleeps: bounded by the policy's total
        while True:
            attempt += 1
            status: int | None = None
            deadline = min(self._deadline, self._retry.total - spent)
            error: AgoraError
            answer: httpx.Response | httpx.TransportError | TimeoutError
            # The slot covers exactly the request: it leaves the window one window
            # after the answer arrived, or after the attempt was abandoned at its
            # deadline (see RateLimiter).
            async with self._limiter.slot(call.app_id, query=call.query):
                started = time.monotonic()
                try:
                    # `request` reads the whole body before it returns: the deadline
                    # covers the answer's last byte.
                    async with asyncio.timeout(deadline):
                        answer = await self._http.request(
                            call.method,
                            url,
                            content=content,
                            headers=headers,
                            auth=self._auth,
                            timeout=self._timeout,
                        )
                except httpx.TransportError as exc:
                    answer = exc
                except TimeoutError as exc:  # raised by asyncio.timeout alone
                    answer = exc
                latency = time.monotonic() - started
            if isinstance(answer, TimeoutError):
                error = RetryableError(
                    call.endpoint,
                    0,
                    None,
                    f"timeout: no complete answer within the {deadline:g} s deadline",
                    ambiguous=True,  # like a read timeout: the request may have arrived
                )
                error.__cause__ = answer
            elif isinstance(answer, httpx.TransportError):
                error = self._transport_error(call.endpoint, answer)
                error.__cause__ = answer
            else:
                status = answer.status_code
                if 200 <= status < 300:
                    try:
                        data = answer.json()
                    except (ValueError, RecursionError):  # not JSON, or nested past the
                        pass  # parser's depth: not Agora's answer, mapped below
                    else:
                        if call.sid is None and isinstance(data, dict):
                            call.sid = _str(data.get("sid"))  # start: log the new sid
                        self._log(call, attempt, latency, status, None, "ok")
                        return data, status
                error = error_from_response(
                    call.endpoint,
                    status,
                    answer.content,
                    content_type=answer.headers.get("content-type"),
                    secrets=secrets,
                )
            if call.endpoint == "start" and ambiguous and isinstance(error, AlreadyStartedError):
                final = AmbiguousStartError(
                    "start", error.status, error.code, resource_id=call.resource_id or ""
                )
                final.__cause__ = error
                self._log(call, attempt, latency, status, error.code, "ambiguous_start")
                raise final
            retryable = error if isinstance(error, RetryableError) else None
            pause = self._retry.delay(attempt) if retryable is not None else 0.0
            asked = 0.0  # what a 429's Retry-After asks for
            if isinstance(error, RateLimitedError) and isinstance(answer, httpx.Response):
                asked = _retry_after(answer)
                pause = max(pause, asked)
            # Another attempt only if it can begin before the call's total time is up.
            in_time = spent + latency + pause < self._retry.total
            retry = retryable is not None and attempt < self._retry.max_attempts and in_time
            if isinstance(error, StopAlreadyEndedError) and ambiguous:
                outcome = "already_stopped"
            else:
                outcome = "retry" if retry else "error"
            self._log(call, attempt, latency, status, error.code, outcome, error)
            if retryable is None or not retry:
                if retryable is not None and not in_time:
                    log.warning(
                        "api.call_deadline",
                        endpoint=call.endpoint,
                        app_id=call.app_id,
                        attempts=attempt,
                        seconds=self._retry.total,
                    )
                    # Its reason speaks of the last attempt: the call's own end too.
                    total = f"{self._retry.total:g} s"
                    retryable.add_reason(
                        f"Retry-After asked {asked:g} s, more than the call's {total} had left"
                        if asked > 0 and asked == pause
                        else f"the call's {total} are spent"
                    )
                raise error
            ambiguous = ambiguous or retryable.ambiguous
            spent += latency + pause
            await self._retry.sleep(pause)

    @staticmethod
    def _transport_error(endpoint: str, exc: httpx.TransportError) -> RetryableError:
        # A request that never left (no connection, pool exhausted) cannot have arrived.
        never_sent = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)
        kind = "timeout" if isinstance(exc, httpx.TimeoutException) else "transport error"
        return RetryableError(
            endpoint, 0, None, f"{kind}: {type(exc).__name__}", ambiguous=not never_sent
        )

    def _log(
        self,
        call: _Call,
        attempt: int,
        latency: float,
        status: int | None,
        code: int | None,
        outcome: str,
        error: AgoraError | None = None,
    ) -> None:
        fields: dict[str, Any] = {
            "endpoint": call.endpoint,
            "app_id": call.app_id,
            "channel": call.channel,
            "uid": call.uid,
            "sid": call.sid,
            "resource_id": shorten(call.resource_id),
            "status": status,
            "code": code,
            "attempt": attempt,
            "latency_ms": round(latency * 1000, 1),
            "outcome": outcome,
        }
        if error is not None:
            fields["error"] = type(error).__name__
            fields["reason"] = error.reason
            log.warning("api.call", **fields)
        elif call.endpoint == "query":
            log.debug("api.call", **fields)  # a resync's poll: news only when it failed
        else:
            log.info("api.call", **fields)
        if self._on_call is None:
            return
        observed = ApiCall(call.endpoint, call.app_id, status, code, attempt, latency, outcome)
        try:
            self._on_call(observed)
        except Exception as exc:  # an observer (metrics) must never break a call
            log.warning("api.hook_failed", hook="on_call", error=type(exc).__name__)


def _seg(value: str) -> str:
    """One URL path segment, percent-encoded."""
    return quote(value, safe="")


_SECONDS = re.compile(r"[0-9]{1,9}")


def _retry_after(answer: httpx.Response) -> float:
    """The wait an answer's `Retry-After` asks for (RFC 9110: seconds, or an HTTP
    date), in seconds; 0 when it has none or none that can be read."""
    value = answer.headers.get("retry-after", "").strip()
    if _SECONDS.fullmatch(value):
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return 0.0
    if when.tzinfo is None:  # not an HTTP date (those are GMT)
        return 0.0
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None
