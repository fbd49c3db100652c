"""The one exception hierarchy for Cloud Recording API failures.

Every answer that is not a success is turned into exactly one of these classes by
`error_from_response`, the only place that knows which HTTP status and which Agora
`code` mean what. Callers decide on the class, never on numbers (`AgoraError` hangs
under the package's one root, `orchestrator.errors.OrchestratorError`)::

    AgoraError                      endpoint, status, code, reason
    ├── PermanentError              2, 8, 432, 1013, 1028,
    │   │                           unknown route, 400 without code
    │   ├── AppError                401, 62, "invalid appid": the app profile is wrong
    │   ├── SessionUnknownError     1001, 1003: the resource ID or sid is not recognised
    │   └── InvalidRequestError     refused by the client before sending (status 0)
    ├── RetryableError              429, 5xx, timeouts, transport errors, 65
    │   └── RateLimitedError        429
    ├── NotFoundError               404 (the session has ended), 501
    │   └── StopAlreadyEndedError   49 on stop: an earlier stop took effect
    ├── ResourceExpiredError        433: acquire a new resource ID
    ├── ConflictError
    │   ├── RecordingExistsError    53: (app, channel, uid) is already recorded
    │   └── AlreadyStartedError     7: this resource ID has already started
    ├── NoFilesError                435: stopped, nothing was recorded
    └── AmbiguousStartError         a start may have taken effect; its sid is unknown

This module must never let response text reach an exception unscrubbed: reasons are
stripped of secret-looking JSON values and of any literal secret the caller names,
then trimmed to `REASON_LIMIT` characters.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

from orchestrator.contract import APP_CODES, PERMANENT_CODES, ErrorCode
from orchestrator.errors import OrchestratorError
from orchestrator.secrets import is_secret_key

REASON_LIMIT = 200

# A JSON `"key": "value"` pair; its value is masked when the key names a secret.
_JSON_STRING_PAIR = re.compile(r'("((?:[^"\\]|\\.)*)"\s*:\s*)"(?:[^"\\]|\\.)*"')
_BASIC_AUTH = re.compile(r"(Basic\s+)[A-Za-z0-9+/=]+", re.IGNORECASE)


def _masked_pair(match: re.Match[str]) -> str:
    return f'{match.group(1)}"***"' if is_secret_key(match.group(2)) else match.group(0)


def scrub(text: str, secrets: Iterable[str] = (), limit: int = REASON_LIMIT) -> str:
    """Mask secret-looking values and the given literal secrets, then trim."""
    cleaned = _JSON_STRING_PAIR.sub(_masked_pair, text)
    cleaned = _BASIC_AUTH.sub(r"\1***", cleaned)
    # Longest first, so a secret that contains another is masked whole.
    for secret in sorted({s for s in secrets if s and len(s) >= 3}, key=len, reverse=True):
        cleaned = cleaned.replace(secret, "***")
    cleaned = " ".join(cleaned.split())
    if len(cleaned) > limit:
        cleaned = cleaned[: limit - 1] + "…"
    return cleaned


class AgoraError(OrchestratorError):
    """A failed Cloud Recording API call; `reason` is trimmed and secret-free."""

    def __init__(
        self,
        endpoint: str,
        status: int,
        code: int | None = None,
        reason: str = "",
    ) -> None:
        self.endpoint = endpoint
        self.status = status
        self.code = code
        self.reason = reason
        super().__init__(self._message())

    def _message(self) -> str:
        parts = [f"{self.endpoint}: HTTP {self.status}" if self.status else self.endpoint]
        if self.code is not None:
            parts.append(f"code {self.code}")
        if self.reason:
            parts.append(self.reason)
        return ", ".join(parts)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(endpoint={self.endpoint!r}, status={self.status!r}, "
            f"code={self.code!r}, reason={self.reason!r})"
        )


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


class RetryableError(AgoraError):
    """A transient failure; the same request (same resource ID and sid) may be retried.

    `ambiguous` says whether the request may have taken effect despite the failure
    (timeouts, 5xx, code 65, a connection lost after sending).
    """

    def __init__(
        self,
        endpoint: str,
        status: int,
        code: int | None = None,
        reason: str = "",
        *,
        ambiguous: bool = True,
    ) -> None:
        self.ambiguous = ambiguous
        super().__init__(endpoint, status, code, reason)


class RateLimitedError(RetryableError):
    """HTTP 429: more than the App ID's requests per second reached Agora."""


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


def _parse_body(body: bytes | str | None) -> tuple[int | None, str]:
    """Return (code, raw reason text) from an error body, tolerating anything."""
    if body is None:
        return None, ""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    try:
        parsed: Any = json.loads(text)
    except ValueError:
        return None, text
    if not isinstance(parsed, dict):
        return None, text
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
    return code, reason


def error_from_response(
    endpoint: str,
    status: int,
    body: bytes | str | None,
    *,
    secrets: Iterable[str] = (),
) -> AgoraError:
    """Map an unsuccessful answer (HTTP status + Agora `code`) to its exception.

    `secrets` are literal values (keys, tokens) the request carried; they are masked
    if the server echoed them. The reason is trimmed before it is stored.
    """
    code, raw_reason = _parse_body(body)
    reason = scrub(raw_reason, secrets)
    lowered = raw_reason.lower()

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
    if _INVALID_APPID in lowered or status == 401:
        return AppError(endpoint, status, code, reason)
    if status == 429:
        return RateLimitedError(endpoint, status, code, reason, ambiguous=False)
    if status >= 500:
        return RetryableError(endpoint, status, code, reason, ambiguous=True)
    if status == 404:
        # The gateway's 404 for a wrong path or method is our bug, not an ended session.
        if _NO_ROUTE in lowered:
            return PermanentError(endpoint, status, code, reason)
        return NotFoundError(endpoint, status, code, reason)
    return PermanentError(endpoint, status, code, reason)
