"""`status`'s lines for a live session with an intent: a call nothing answered (a
kill: "interrupted") is told apart from one an answer refused (its error beside it).
"""

from __future__ import annotations

from datetime import UTC, datetime

from orchestrator.cli.status import _status_text
from orchestrator.state import Intent, Phase
from tests.unit.reconcile.desired_recordings import session_record

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def test_a_refused_stop_is_no_interrupted_one() -> None:
    cut = session_record(T0, phase=Phase.STOPPING, intent=Intent.STOP)
    refused = session_record(
        T0, id=8, phase=Phase.STOPPING, intent=Intent.STOP, error="stop: HTTP 400, code 432"
    )
    lines = list(_status_text([cut, refused], [], {}, T0))
    (cut_line,) = [line for line in lines if line.startswith("  #7 ")]
    (refused_line,) = [line for line in lines if line.startswith("  #8 ")]
    assert "stopping (interrupted stop)" in cut_line
    assert "stopping (stop failed, tried again)" in refused_line
    assert "      last error: stop: HTTP 400, code 432" in lines
