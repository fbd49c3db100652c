"""`error_from_response`: the one table from HTTP status + Agora code to exception class.

Covers every code of the reference and DESIGN.md's error policy, gateway messages
(no route, credentials, invalid appid, rate limit), string codes, bodies that are
not JSON, the 404 of an unknown route (a bug, not an ended session), reason
trimming and scrubbing.
"""

from __future__ import annotations

import json

import pytest

from orchestrator.agora.errors import (
    REASON_LIMIT,
    AgoraError,
    AlreadyStartedError,
    AmbiguousStartError,
    AppError,
    NoFilesError,
    NotFoundError,
    PermanentError,
    RateLimitedError,
    RecordingExistsError,
    ResourceExpiredError,
    RetryableError,
    SessionUnknownError,
    StopAlreadyEndedError,
    error_from_response,
    scrub,
)


def _body(code: int | str, reason: str = "r") -> bytes:
    return json.dumps({"code": code, "reason": reason}).encode()


@pytest.mark.parametrize(
    ("endpoint", "status", "body", "expected"),
    [
        ("start", 400, _body(2), PermanentError),
        ("acquire", 400, _body(8), PermanentError),
        ("acquire", 400, _body(62), AppError),
        ("start", 400, _body(432), PermanentError),
        ("start", 400, _body(1001), SessionUnknownError),
        ("query", 400, _body(1003), SessionUnknownError),
        ("acquire", 400, _body(1013), PermanentError),
        ("updateLayout", 400, _body(1028), PermanentError),
        ("start", 400, _body(65), RetryableError),
        ("start", 400, _body(7), AlreadyStartedError),
        ("start", 400, _body(53), RecordingExistsError),
        ("stop", 400, _body(49), StopAlreadyEndedError),
        ("query", 400, _body(49), NotFoundError),
        ("start", 400, _body(433), ResourceExpiredError),
        ("stop", 400, _body(435), NoFilesError),
        ("query", 404, _body(404), NotFoundError),
        ("query", 400, _body(501), NotFoundError),
        ("stop", 400, _body("49"), StopAlreadyEndedError),
        ("acquire", 401, b'{"message": "Invalid authentication credentials"}', AppError),
        ("acquire", 400, b'{"message": "invalid appid"}', AppError),
        ("acquire", 404, b'{"message": "no Route matched with those values"}', PermanentError),
        ("query", 404, b"", NotFoundError),
        ("query", 429, b'{"message": "API rate limit exceeded"}', RateLimitedError),
        ("start", 500, b"", RetryableError),
        ("start", 502, b"<html>bad gateway</html>", RetryableError),
        ("start", 503, _body(999), RetryableError),
        ("stop", 504, b'{"message": "The upstream server is timing out"}', RetryableError),
        ("start", 400, b"not json", PermanentError),
        ("start", 400, b"[1, 2]", PermanentError),
        ("start", 400, None, PermanentError),
        ("start", 403, b"{}", PermanentError),
        ("start", 400, _body(999), PermanentError),
    ],
)
def test_mapping(endpoint: str, status: int, body: bytes | None, expected: type) -> None:
    error = error_from_response(endpoint, status, body)
    assert type(error) is expected
    assert error.endpoint == endpoint and error.status == status


def test_codes_and_reasons_are_kept() -> None:
    error = error_from_response("start", 400, _body(433, "resource expired"))
    assert error.code == 433 and error.reason == "resource expired"
    assert "code 433" in str(error) and "HTTP 400" in str(error)


def test_ambiguity_of_retryable_errors() -> None:
    rate = error_from_response("acquire", 429, b"")
    assert isinstance(rate, RetryableError) and rate.ambiguous is False
    server = error_from_response("start", 500, b"")
    assert isinstance(server, RetryableError) and server.ambiguous is True
    code65 = error_from_response("start", 400, _body(65))
    assert isinstance(code65, RetryableError) and code65.ambiguous is True


def test_hierarchy() -> None:
    assert issubclass(StopAlreadyEndedError, NotFoundError)
    assert issubclass(RateLimitedError, RetryableError)
    error = AmbiguousStartError("start", 400, 7, resource_id="rid")
    assert isinstance(error, AgoraError) and error.resource_id == "rid"
    assert "started, sid unknown" in str(error)


def test_reasons_are_trimmed() -> None:
    error = error_from_response("start", 400, _body(2, "x" * 5000))
    assert len(error.reason) == REASON_LIMIT
    assert error.reason.endswith("…")
    html = error_from_response("start", 502, b"<html>" + b"y" * 5000 + b"</html>")
    assert len(html.reason) <= REASON_LIMIT


def test_scrub_masks_secret_values_and_named_secrets() -> None:
    text = '{"secretKey": "s3cr3t-value", "accessKey":"AKIA123", "token": "tok"} Basic dXNlcjpwYXNz'
    cleaned = scrub(text, ["another-secret"])
    assert "s3cr3t-value" not in cleaned and "AKIA123" not in cleaned
    assert '"tok"' not in cleaned and "dXNlcjpwYXNz" not in cleaned
    assert scrub("prefix another-secret suffix", ["another-secret"]) == "prefix *** suffix"
    assert scrub("line\nbreaks\t and   spaces") == "line breaks and spaces"


@pytest.mark.parametrize(
    "key", ["secretKey", "access_key", "customerSecret", "X-Authorization", "TOKEN", "password"]
)
def test_scrub_masks_every_key_the_shared_list_names(key: str) -> None:
    """The keys come from `orchestrator.secrets.SECRET_KEYS`, in any spelling."""
    cleaned = scrub(f'{{"{key}": "hunter2-xyz", "cname": "room"}}')
    assert "hunter2" not in cleaned
    assert f'"{key}": "***"' in cleaned and '"cname": "room"' in cleaned
