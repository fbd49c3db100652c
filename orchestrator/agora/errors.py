"""The one exception hierarchy for Cloud Recording API failures.

Every answer that is not a success is turned into exactly one of these classes by
`error_from_response`, the only place that knows which HTTP status and which Agora
`code` mean what. Callers decide on the class, never on numbers (`AgoraError` hangs
under the package's one root, `orchestrator.errors.OrchestratorError`)::

    AgoraError                      endpoint, status, code, reason
    ├── PermanentError              2, 8, 432, 1013, 1028,
    │   │                           unknown route, 4xx gateway message without code
    │   ├── AppError                401, 62, "invalid appid": the app profile is wrong
    │   ├── SessionUnknownError     1001, 1003: the resource ID or sid is not recognised
    │   └── InvalidRequestError     refused by the client before sending (status 0)
    ├── RetryableError              429, 5xx, timeouts, transport errors, 65
    │   ├── RateLimitedError        429
    │   └── ForeignAnswerError      an answer that is not Agora's (see below)
    ├── NotFoundError               code 404 (the session has ended), 501
    │   └── StopAlreadyEndedError   49 on stop: an earlier stop took effect
    ├── ResourceExpiredError        433: acquire a new resource ID
    ├── ConflictError
    │   ├── RecordingExistsError    53: (app, channel, uid) is already recorded
    │   └── AlreadyStartedError     7: this resource ID has already started
    ├── NoFilesError                435: stopped, nothing was recorded
    └── AmbiguousStartError         a start may have taken effect; its sid is unknown

Whose answer it is. Every class that changes what the executor believes about a
session (ended, already stopped, no files, conflict, expired, unrecognised, held as
failed) is chosen by Agora's JSON error body: a JSON object with Agora's `code`, or
the `{"message": ...}` of Agora's gateway. A bare HTTP status decides only what
cannot change a session: 401 (the app's credentials), 429 and 5xx (retry). Anything
else, a proxy's `404 <html>nginx</html>`, an empty 404, a text or a JSON list, a 404
without Agora's code 404, a success whose body is not JSON, is a `ForeignAnswerError`:
a failed call, retried like a 5xx, never "the session has ended".

This module must never let response text reach an exception unscrubbed: reasons are
stripped of every form of every known secret (`orchestrator.secrets.mask_secrets`:
JSON- and URL-escaped, the base64 of the credential pair), of secret-looking JSON
values and `Basic` credentials, then trimmed to `REASON_LIMIT` characters.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from orchestrator.contract import APP_CODES, PERMANENT_CODES, ErrorCode
from orchestrator.errors import OrchestratorError
from orchestrator.secrets import is_secret_key, mask_secrets

REASON_LIMIT = 200
#: How much of an answer's text is read at most to make a reason of it: far more than
#: a reason shows, so that a secret is masked whole before the text is trimmed.
SCRUB_WINDOW = 64 * 1024
#: What is dropped from the end of a text cut at the window after masking: a secret
#: cut in two there cannot be matched, and its first part must not show (every form
#: of a secret is taken to be shorter than this).
_CUT_MARGIN = 4 * 1024

# A JSON `"key": "value"` pair; its value is masked when the key names a secret.
_JSON_STRING_PAIR = re.compile(r'("((?:[^"\\]|\\.)*)"\s*:\s*)"(?:[^"\\]|\\.)*"')
# Standard and URL-safe base64 alike.
_BASIC_AUTH = re.compile(r"(Basic\s+)[A-Za-z0-9+/=_-]+", re.IGNORECASE)


def _masked_pair(match: re.Match[str]) -> str:
    return f'{match.group(1)}"***"' if is_secret_key(match.group(2)) else match.group(0)


def _masked_head(text: str, secrets: Iterable[str]) -> str:
    """`text` up to `SCRUB_WINDOW` characters, every secret masked; when it was cut,
    without its last `_CUT_MARGIN` characters (where a secret may have been cut in two)."""
    if len(text) <= SCRUB_WINDOW:
        return mask_secrets(text, secrets)
    return mask_secrets(text[:SCRUB_WINDOW], secrets)[:-_CUT_MARGIN]


def scrub(text: str, secrets: Iterable[str] = (), limit: int = REASON_LIMIT) -> str:
    """`text` as a reason: every known secret masked in every form, and `secrets` (the
    literal values of the request), secret-looking JSON values and `Basic`
    credentials masked, on one line, trimmed to `limit` characters."""
    cleaned = _masked_head(text, secrets)  # first: the patterns below only mask more
    cleaned = _JSON_STRING_PAIR.sub(_masked_pair, cleaned)
    cleaned = _BASIC_AUTH.sub(r"\1***", cleaned)
    cleaned = " ".join(cleaned.split())
    if len(cleaned) > limit:
        cleaned = cleaned[: limit - 1] + "…"
    return cleaned


# eq=False: an exception is equal only to itself (and stays hashable).
@dataclass(eq=False)
class AgoraError(OrchestratorError):
    """A failed Cloud Recording API call; `reason` is trimmed and secret-free."""

    endpoint: str
    status: int
    code: int | None = None
    reason: str = ""

    def __post_init__(self) -> None:
        super().__init__(self._message())

    def add_reason(self, more: str) -> None:
        """Say `more` after the reason (the call's own end after its last attempt's)."""
        self.reason = f"{self.reason}; {more}" if self.reason else more
        self.args = (self._message(),)

    def _message(self) -> str:
        parts = [f"{self.endpoint}: HTTP {self.status}" if self.status else self.endpoint]
        if self.code is not None:
            parts.append(f"code {self.code}")
        if self.reason:
            parts.append(self.reason)
        return ", ".join(parts)


class PermanentError(AgoraError):
    """Retrying the same request cannot succeed: fix the manifest, the app or the code."""


class AppError(PermanentError):
    """The app profile itself is refused (401 credentials, 62 recording not enabled,
    invalid App ID): no request of this app can succeed until its configuration
    changes. It belongs to the app, not to the manifest that met it."""


class SessionUnknownError(PermanentError):
    """Codes 1001 and 1003: the API does not recognise the resource ID (it cannot be
    decrypted: not issued here, or from a server that forgot it) or the sid does not
    belong to it. Nothing can be queried, updated or stopped through it: whether the
    recording still runs is unknown."""


class InvalidRequestError(PermanentError):
    """The client refused to send a body that breaks a rule of the reference."""


@dataclass(eq=False)
class RetryableError(AgoraError):
    """A transient failure; the same request (same resource ID and sid) may be retried.

    `ambiguous` says whether the request may have taken effect despite the failure
    (timeouts, 5xx, code 65, a connection lost after sending).
    """

    ambiguous: bool = field(default=True, kw_only=True, repr=False)


class RateLimitedError(RetryableError):
    """HTTP 429: more than the App ID's requests per second reached Agora."""


class ForeignAnswerError(RetryableError):
    """An answer that is not Agora's: its body is not Agora's JSON error body (a proxy's
    or a load balancer's page, an empty body, text, a JSON list), or it is a 404
    without Agora's code 404, or a success that is not JSON.

    It says nothing about the session: the call failed, whatever the status. It is
    retried like a 5xx (the request may have reached Agora: `ambiguous`), counted and
    logged like every call, its reason the first bytes of its body (scrubbed, trimmed),
    and never taken as "ended" or "refused". `content_type` is the answer's own
    (scrubbed and trimmed; empty when it had none).
    """

    def __init__(self, endpoint: str, status: int, reason: str, *, content_type: str) -> None:
        self.content_type = content_type
        super().__init__(endpoint, status, None, reason, ambiguous=True)


class NotFoundError(AgoraError):
    """The session is gone (ended, exited on its own, or past resourceExpiredHour)."""


class StopAlreadyEndedError(NotFoundError):
    """Code 49 on stop: the recording was already stopped by an earlier stop."""


class ResourceExpiredError(AgoraError):
    """Code 433: the resource ID is older than its 5-minute lifetime."""


class ConflictError(AgoraError):
    """The recording cannot start because something already runs."""


class RecordingExistsError(ConflictError):
    """Code 53: another live recording holds this (app, channel, uid)."""


class AlreadyStartedError(ConflictError):
    """Code 7: this resource ID has already been used by a start."""


class NoFilesError(AgoraError):
    """Code 435 on stop: the recording stopped, but nobody sent streams, so no files."""


class AmbiguousStartError(AgoraError):
    """A start may have taken effect but its sid is unknown ("started, sid unknown").

    Raised when an earlier attempt of a start failed ambiguously (timeout, 5xx,
    lost connection) and the retry was answered code 7. The recording is probably
    live; do not start a duplicate.
    """

    def __init__(self, endpoint: str, status: int, code: int | None, *, resource_id: str) -> None:
        self.resource_id = resource_id
        super().__init__(endpoint, status, code, "started, sid unknown")


_INVALID_APPID = "invalid appid"
_NO_ROUTE = "no route matched"
_CONTENT_TYPE_LIMIT = 60


@dataclass(frozen=True)
class _Body:
    """What an answer's body says: its text, and whether it is Agora's JSON error body
    (an object carrying a `code`, or the gateway's `message`/`reason`)."""

    text: str
    agora: bool = False
    code: int | None = None
    reason: str = ""


def _read_body(body: bytes | str | None) -> _Body:
    """Read an error body, tolerating anything."""
    if body is None:
        return _Body("")
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    try:
        parsed: Any = json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: nested too deeply to read
        return _Body(text)
    if not isinstance(parsed, dict):
        return _Body(text)
    code: int | None = None
    raw_code = parsed.get("code")
    if isinstance(raw_code, bool):
        raw_code = None
    if isinstance(raw_code, int):
        code = raw_code
    elif isinstance(raw_code, str) and raw_code.strip().isdigit():
        code = int(raw_code)
    reason = parsed.get("reason") or parsed.get("message") or ""
    if not isinstance(reason, str):
        reason = json.dumps(reason)
    return _Body(text, agora=code is not None or bool(reason), code=code, reason=reason)


def error_from_response(
    endpoint: str,
    status: int,
    body: bytes | str | None,
    *,
    content_type: str | None = None,
    secrets: Iterable[str] = (),
) -> AgoraError:
    """Map an unsuccessful answer (HTTP status + Agora `code`) to its exception; a
    success (2xx) is unsuccessful here when its body is not JSON.

    Only Agora's JSON error body chooses a class that changes what is believed about a
    session; any other answer is a `ForeignAnswerError` (see the module's docstring).
    `content_type` is the answer's header, quoted in a foreign answer's reason;
    `secrets` are literal values (keys, tokens) the request carried: they are masked,
    in every form, if the server echoed them. The reason is trimmed before it is stored.
    """
    answer = _read_body(body)
    if 200 <= status < 300:  # a success whose body is not JSON is not Agora's answer
        answer = _Body(answer.text)
    reason = scrub(answer.reason if answer.agora else answer.text, secrets)
    lowered = answer.reason.lower()
    code = answer.code

    if code is not None:
        if code in APP_CODES:
            return AppError(endpoint, status, code, reason)
        if code in (ErrorCode.RESOURCE_DECRYPT_FAILED, ErrorCode.MISMATCHED_IDS):
            return SessionUnknownError(endpoint, status, code, reason)
        if code in PERMANENT_CODES:
            return PermanentError(endpoint, status, code, reason)
        if code == ErrorCode.NETWORK_JITTER:
            return RetryableError(endpoint, status, code, reason, ambiguous=True)
        if code == ErrorCode.ALREADY_STARTED:
            return AlreadyStartedError(endpoint, status, code, reason)
        if code == ErrorCode.RECORDING_EXISTS:
            return RecordingExistsError(endpoint, status, code, reason)
        if code == ErrorCode.STOP_REPEATED:
            if endpoint == "stop":
                return StopAlreadyEndedError(endpoint, status, code, reason)
            return NotFoundError(endpoint, status, code, reason)
        if code == ErrorCode.RESOURCE_EXPIRED:
            return ResourceExpiredError(endpoint, status, code, reason)
        if code == ErrorCode.NO_FILES:
            return NoFilesError(endpoint, status, code, reason)
        if code in (ErrorCode.NOT_FOUND, ErrorCode.EXITING):
            return NotFoundError(endpoint, status, code, reason)
    # The status alone decides only what cannot change a session.
    if _INVALID_APPID in lowered or status == 401:
        return AppError(endpoint, status, code, reason)
    if status == 429:
        return RateLimitedError(endpoint, status, code, reason, ambiguous=False)
    # Agora's answer for an ended session carries its code 404: without it, a 404 is
    # someone else's (a proxy's JSON page), not an end; but the gateway's 404 for a
    # wrong path or method is our bug (permanent), not an ended session. Any other
    # answer is foreign: its reason says so and quotes the first bytes of its body.
    if answer.agora and (status != 404 or _NO_ROUTE in lowered):
        if status >= 500:
            return RetryableError(endpoint, status, code, reason, ambiguous=True)
        return PermanentError(endpoint, status, code, reason)
    shown = scrub(content_type or "", secrets, _CONTENT_TYPE_LIMIT)
    kind = shown or "no content type"
    raw = body if isinstance(body, bytes) else (body or "").encode()
    if not raw:
        reason = f"not Agora's answer ({kind}, empty body)"
    else:
        reason = scrub(f"not Agora's answer ({kind}, {len(raw)} bytes): {answer.text}", secrets)
    return ForeignAnswerError(endpoint, status, reason, content_type=shown)
