"""The API errors as records: what their constructors keep, and how they compare.

Covers: `AgoraError` and `RetryableError` keep their fields (positional and by
keyword), their message and repr; `ambiguous` is keyword-only, defaults to True and is
not in the repr; errors compare by identity and are hashable (they are put in sets
and dicts by asyncio and logging); the subclasses with their own constructors
(`ForeignAnswerError`, `AmbiguousStartError`) keep theirs; a success (2xx) whose body
is not JSON is a `ForeignAnswerError` from `error_from_response`, never Agora's error,
even when the body looks like one.
"""

from __future__ import annotations

import pytest

from orchestrator.agora.errors import (
    AgoraError,
    AmbiguousStartError,
    ForeignAnswerError,
    RateLimitedError,
    RetryableError,
    error_from_response,
)


def test_an_error_keeps_its_fields_message_and_repr() -> None:
    error = AgoraError("start", 400, 2, "bad")
    assert (error.endpoint, error.status, error.code, error.reason) == ("start", 400, 2, "bad")
    assert str(error) == "start: HTTP 400, code 2, bad"
    assert error.args == ("start: HTTP 400, code 2, bad",)
    assert repr(error) == "AgoraError(endpoint='start', status=400, code=2, reason='bad')"
    bare = AgoraError(endpoint="acquire", status=0)
    assert (bare.code, bare.reason, str(bare)) == (None, "", "acquire")


def test_ambiguous_is_keyword_only_defaults_to_true_and_stays_out_of_the_repr() -> None:
    assert RetryableError("query", 503).ambiguous is True
    limited = RateLimitedError("acquire", 429, None, "slow down", ambiguous=False)
    assert limited.ambiguous is False
    assert repr(limited) == (
        "RateLimitedError(endpoint='acquire', status=429, code=None, reason='slow down')"
    )
    with pytest.raises(TypeError):
        RetryableError("query", 503, None, "", False)  # type: ignore[call-arg]


def test_errors_compare_by_identity_and_are_hashable() -> None:
    one, two = RetryableError("stop", 500, None, "x"), RetryableError("stop", 500, None, "x")
    assert one != two and one == one
    assert len({one, two}) == 2


def test_subclasses_with_their_own_constructors_keep_them() -> None:
    foreign = ForeignAnswerError("query", 404, "not Agora's", content_type="text/html")
    assert (foreign.code, foreign.ambiguous, foreign.content_type) == (None, True, "text/html")
    started = AmbiguousStartError("start", 400, 7, resource_id="r-1")
    assert (started.reason, started.resource_id) == ("started, sid unknown", "r-1")
    assert str(started) == "start: HTTP 400, code 7, started, sid unknown"


@pytest.mark.parametrize(
    "body", [b"<html>ok</html>", b"", b'{"code": 2, "reason": "\xff"}', "plain text"]
)
def test_a_success_whose_body_is_not_json_is_a_foreign_answer(body: bytes | str) -> None:
    """The client passes a 2xx here only when it could not read the body as JSON; even
    a body that looks like Agora's error (a code) chooses no class of Agora's."""
    error = error_from_response("start", 200, body, content_type="text/html")
    assert type(error) is ForeignAnswerError
    assert error.status == 200 and error.code is None and error.ambiguous is True
    assert error.reason.startswith("not Agora's answer (text/html, ")
