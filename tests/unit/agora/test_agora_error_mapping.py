"""`error_from_response`: the one table from HTTP status + Agora code to exception class.

Covers every code of the reference and DESIGN.md's error policy, gateway messages
(no route, credentials, invalid appid, rate limit), string codes, bodies that are
not JSON, the 404 of an unknown route (a bug, not an ended session), reason
trimming and scrubbing (every form a server may echo a secret in: the base64 of the
credential pair, JSON- and URL-escaped values); the 404 rule: only Agora's JSON body
with code 404 means "ended", while a proxy's HTML 404, an empty 404 or a JSON 404
without Agora's code is a `ForeignAnswerError` (retryable, ambiguous, its reason the
first bytes of the body, scrubbed and bounded), like any answer whose body is not
Agora's, whatever its status (401 and 429 aside, which the status alone decides).
"""

from __future__ import annotations

import base64
import html
import json
import re
from collections.abc import Callable
from urllib.parse import quote, quote_plus

import pytest

from orchestrator.agora.errors import (
    REASON_LIMIT,
    SCRUB_WINDOW,
    AgoraError,
    AlreadyStartedError,
    AmbiguousStartError,
    AppError,
    ForeignAnswerError,
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
from orchestrator.secrets import remember_credentials


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
        ("query", 429, b'{"message": "API rate limit exceeded"}', RateLimitedError),
        ("query", 429, b"", RateLimitedError),
        ("start", 500, _body(999), RetryableError),
        ("start", 503, b'{"message": "An unexpected error occurred"}', RetryableError),
        ("stop", 504, b'{"message": "The upstream server is timing out"}', RetryableError),
        ("start", 400, b'{"message": "bad request"}', PermanentError),
        ("start", 400, _body(999), PermanentError),
        # The 404 rule: Agora's own answer for an ended session carries code 404.
        ("query", 404, _body(404, "failed to find worker"), NotFoundError),
        ("stop", 404, _body("404"), NotFoundError),
        ("updateLayout", 404, _body(404), NotFoundError),
        ("query", 404, b"", ForeignAnswerError),
        ("query", 404, None, ForeignAnswerError),
        ("stop", 404, b"<html>nginx</html>", ForeignAnswerError),
        ("update", 404, b"Not Found", ForeignAnswerError),
        ("updateLayout", 404, b'{"message": "Not Found"}', ForeignAnswerError),
        ("query", 404, b"{}", ForeignAnswerError),
        ("query", 404, b"[404]", ForeignAnswerError),
        ("stop", 404, _body(999), ForeignAnswerError),
        # The same for the other codes: none is read from a body that is not Agora's.
        ("stop", 400, b"<html>49 435 already stopped</html>", ForeignAnswerError),
        ("start", 400, b"code 53", ForeignAnswerError),
        ("start", 400, b"not json", ForeignAnswerError),
        ("start", 400, b"[1, 2]", ForeignAnswerError),
        ("start", 400, None, ForeignAnswerError),
        ("start", 403, b"{}", ForeignAnswerError),
        ("acquire", 400, b"<p>invalid appid</p>", ForeignAnswerError),
        ("start", 500, b"", ForeignAnswerError),
        ("start", 502, b"<html>bad gateway</html>", ForeignAnswerError),
        ("query", 302, b"", ForeignAnswerError),
        # A status that changes no session decides alone: the app's credentials.
        ("acquire", 401, b"<html>401 Authorization Required</html>", AppError),
        ("stop", 401, b"", AppError),
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


def test_a_foreign_answer_is_retryable_and_ambiguous_and_says_whose_it_is() -> None:
    """Retried like a 5xx (the request may have reached Agora), never an end."""
    error = error_from_response(
        "stop", 404, b"<html>\n<center>nginx</center>\n</html>", content_type="text/html"
    )
    assert isinstance(error, ForeignAnswerError) and isinstance(error, RetryableError)
    assert not isinstance(error, NotFoundError)
    assert error.ambiguous is True and error.code is None and error.status == 404
    assert error.content_type == "text/html"
    assert error.reason == (
        "not Agora's answer (text/html, 37 bytes): <html> <center>nginx</center> </html>"
    )
    assert "HTTP 404" in str(error) and "nginx" in str(error)
    empty = error_from_response("query", 404, b"")
    assert empty.reason == "not Agora's answer (no content type, empty body)"
    assert isinstance(empty, ForeignAnswerError) and empty.content_type == ""


def test_a_foreign_answer_quotes_the_first_bytes_bounded() -> None:
    page = b"<html>" + b"z" * 100_000 + b"</html>"
    error = error_from_response("query", 404, page, content_type="text/html; charset=utf-8")
    assert len(error.reason) == REASON_LIMIT and error.reason.endswith("…")
    assert error.reason.startswith("not Agora's answer (text/html; charset=utf-8, 100013 bytes):")
    long_type = error_from_response("query", 404, b"x", content_type="text/" + "y" * 500)
    assert len(long_type.reason) < REASON_LIMIT


def test_a_secret_cut_by_the_read_window_is_not_shown_in_part() -> None:
    """A body is read up to SCRUB_WINDOW characters; a secret that straddles the edge
    cannot be matched whole, so the end of the window is dropped, even when the text
    before it collapses to almost nothing."""
    secret = "edge-secret-value-42"
    text = "head" + " " * (SCRUB_WINDOW - 14) + secret + " tail"
    assert scrub(text, [secret]) == "head"
    assert scrub("short " + secret, [secret]) == "short ***"


# -- what a server may echo: every form of a secret is masked in a reason ----------

CUSTOMER_ID = "mapping-test-customer"
CUSTOMER_SECRET = "mapping/test+secret?é"  # `/`, `+`, `?` and non-ASCII: its forms differ


def _pair(encode: Callable[[bytes], bytes], *, padded: bool = True) -> str:
    text = encode(f"{CUSTOMER_ID}:{CUSTOMER_SECRET}".encode()).decode()
    return text if padded else text.rstrip("=")


PAIR_FORMS = {
    "standard": _pair(base64.b64encode),
    "standard unpadded": _pair(base64.b64encode, padded=False),
    "url-safe": _pair(base64.urlsafe_b64encode),
    "url-safe unpadded": _pair(base64.urlsafe_b64encode, padded=False),
}


@pytest.mark.parametrize("form", PAIR_FORMS.values(), ids=PAIR_FORMS.keys())
@pytest.mark.parametrize(
    "body",
    [
        '{{"message": "Invalid authentication credentials for {form}"}}',
        '{{"message": "Invalid authentication credentials: Basic {form}"}}',
        "<html>401: bad header Basic {form}</html>",
        "<html>401: bad credentials {form}</html>",
        "bad%20credentials%20{quoted}",
    ],
    ids=["json-bare", "json-basic", "html-basic", "html-bare", "url-encoded"],
)
def test_a_401_echoing_the_credential_pair_shows_none_of_it(body: str, form: str) -> None:
    remember_credentials(CUSTOMER_ID, CUSTOMER_SECRET)  # as every AgoraClient does
    echoed = body.format(form=form, quoted=quote(form, safe=""))
    error = error_from_response("acquire", 401, echoed.encode())
    assert isinstance(error, AppError)
    for text in (str(error), repr(error), error.reason):
        assert form not in text and form.rstrip("=") not in text
        assert quote(form, safe="") not in text
    assert "***" in error.reason


STORAGE_SECRET = 'stor/age"Sécret+key 9'


@pytest.mark.parametrize(
    "echo",
    [
        json.dumps(STORAGE_SECRET)[1:-1],
        json.dumps(STORAGE_SECRET, ensure_ascii=False)[1:-1],
        json.dumps(STORAGE_SECRET)[1:-1].replace("/", "\\/"),
        quote(STORAGE_SECRET),
        quote(STORAGE_SECRET, safe=""),
        quote_plus(STORAGE_SECRET),
        re.sub("%[0-9A-F]{2}", lambda m: m.group(0).lower(), quote_plus(STORAGE_SECRET)),
        html.escape(STORAGE_SECRET),
    ],
    ids=[
        "json-ascii",
        "json-unicode",
        "json-slash",
        "quote",
        "quote-safe-none",
        "quote-plus",
        "quote-plus-lower",
        "html",
    ],
)
def test_a_400_echoing_a_request_secret_in_another_form_shows_none_of_it(echo: str) -> None:
    """The reason holds the echo as the server wrote it (a JSON document or a URL quoted
    in its text), so the literal secret alone would not match it."""
    body = json.dumps({"code": 2, "reason": f"invalid storageConfig: {echo}"})
    error = error_from_response("start", 400, body.encode(), secrets=[STORAGE_SECRET])
    assert type(error) is PermanentError and error.code == 2
    assert echo not in error.reason and "Sécret" not in error.reason
    assert "stor" not in error.reason.replace("storageConfig", "")
    assert error.reason.startswith("invalid storageConfig: ")


def test_a_secret_that_contains_another_is_masked_whole_in_every_form() -> None:
    short, long = "nested/inner", "nested/inner/outer"
    text = f"{quote(long, safe='')} and {json.dumps(long)[1:-1]} and {short}"
    assert scrub(text, [short, long]) == "*** and *** and ***"
