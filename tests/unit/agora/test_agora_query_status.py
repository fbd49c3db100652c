"""What a query's answer says of the recording: its `status`, or, for a recording with
an extension service (Aliyun VOD), which answers no status, its
`subServiceStatus.recordingService` (the reference's 服务状态 table).

Covers: each word of the table read as the status it stands for and, for those that
say the recording left, why; a `status` wins over the word; a word the reference does
not list concludes nothing.
"""

from __future__ import annotations

import pytest

from orchestrator.agora.wire import QueryServerResponse

WORDS = [
    ("serviceIdle", 0, None),
    ("serviceStarted", 2, None),
    ("serviceReady", 4, None),
    ("serviceInProgress", 5, None),
    ("serviceCompleted", 8, "idle exit or stopped (serviceCompleted)"),
    ("servicePartialCompleted", 8, "idle exit or stopped (servicePartialCompleted)"),
    ("serviceValidationFailed", 20, "abnormal exit (serviceValidationFailed)"),
    ("serviceAbnormal", 20, "abnormal exit (serviceAbnormal)"),
    ("serviceSomethingNew", None, None),
]


def vod(word: str, **more: object) -> QueryServerResponse:
    return QueryServerResponse.model_validate(
        {"subServiceStatus": {"recordingService": word}, **more}
    )


@pytest.mark.parametrize(("word", "status", "exited"), WORDS)
def test_a_recording_service_word_reads_as_the_status_it_stands_for(
    word: str, status: int | None, exited: str | None
) -> None:
    server = vod(word)
    assert (server.service_status, server.exited) == (status, exited)


def test_a_status_is_read_before_the_word_and_named_in_the_exit() -> None:
    assert vod("serviceInProgress", status=20).service_status == 20
    assert vod("serviceInProgress", status="20").exited == "abnormal exit (status 20)"
    plain = QueryServerResponse.model_validate({"status": 8})
    assert (plain.service_status, plain.exited) == (8, "idle exit or stopped (status 8)")
    assert QueryServerResponse().service_status is None
    assert QueryServerResponse.model_validate({"status": 13}).exited is None
