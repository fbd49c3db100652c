"""The status page's document and HTML (daemon/statuspage.py), from a real overview.

Covers: the counts and verdict from an overview (a recording, one waiting, one failing
to start, a file that does not load, live sessions no manifest gives); each
recording's should/doing/why; every text
escaped in the HTML (a manifest name or an error holding markup never becomes markup);
the action log keeps the last 50, newest first; the page loads nothing but itself.
"""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime, timedelta

from orchestrator.daemon.statuspage import (
    ACTIONS_KEPT,
    FRESH_FOR,
    MAX_WINDOWS,
    ActionLog,
    AppView,
    StatusPage,
    TimelineCache,
    render_html,
    status_document,
)
from orchestrator.manifest.diagnostics import Diagnostic
from orchestrator.reconcile.execute import ActionResult
from orchestrator.reconcile.overview import Overview, Reason, RecordingStatus, Should
from orchestrator.reconcile.plan import Start
from orchestrator.schedule import FAR_FUTURE, Window, cron_schedule
from orchestrator.state import Phase, SessionRecord
from tests.unit.reconcile.desired_recordings import desired_recording

NOW = datetime(2026, 12, 6, 10, 0, tzinfo=UTC)
EVIL = "<script>alert(1)</script>"


def session(**changes: object) -> SessionRecord:
    base: dict[str, object] = {
        "id": 3,
        "manifest": "lobby",
        "app": "main",
        "app_id": "A",
        "channel": "lobby",
        "uid": 101,
        "mode": "mix",
        "phase": Phase.RUNNING,
        "created_at": NOW - timedelta(hours=1),
        "updated_at": NOW,
        "sid": "0123456789abcdef0123456789abcdef",
        "started_at": NOW - timedelta(hours=1),
    }
    return SessionRecord(**{**base, **changes})  # type: ignore[arg-type]


def view() -> Overview:
    always = Window(NOW - timedelta(days=1), FAR_FUTURE)
    later = Window(NOW + timedelta(hours=2), NOW + timedelta(hours=3))
    return Overview(
        at=NOW,
        recordings=(
            RecordingStatus(
                "lobby",
                "main",
                "A",
                "lobby",
                101,
                "r/lobby.yaml",
                Should.RECORD,
                always,
                session=session(),
            ),
            RecordingStatus(
                "standup", "main", "A", "standup", 7, "r/standup.yaml", Should.WAIT, later
            ),
            RecordingStatus(
                EVIL,
                "main",
                "A",
                "c",
                9,
                "r/evil.yaml",
                Should.RECORD,
                always,
                reason=Reason.FAILING,
                message="its last start failed",
                last_error=f"start: code 2 {EVIL}",
                next_attempt=NOW + timedelta(seconds=10),
            ),
        ),
        files_failing=(Diagnostic("r/broken.yaml", 4, 7, "schedule", f"unknown key {EVIL}"),),
        orphans=(
            session(id=5, manifest=EVIL, channel="lit", source_file="r/broken.yaml"),
            session(id=6, manifest="gone", phase=Phase.STOPPING, source_file="r/gone.yaml"),
        ),
    )


def document(actions: ActionLog | None = None) -> dict[str, object]:
    return status_document(
        view(),
        now=NOW,
        replica="host:1",
        ready=True,
        detail="3 wanted, 1 recording",
        timeline=[],
        actions=(actions or ActionLog(lambda: NOW)).newest_first(),
        apps=[AppView("A", "host:1", 10, 2, 0.4)],
    )


def test_counts_verdict_and_rows() -> None:
    doc = document()
    assert doc["version"] == 1 and doc["ok"] is False  # a failing start, a broken file
    assert doc["counts"] == {
        "manifests": 3,
        "wanted": 2,
        "live": 1,
        "held": 0,
        "failing": 1,
        "starting": 0,
        "not_recording": 1,
        "files_failing": 1,
        "live_without_manifest": 2,
    }
    lobby, standup, evil = doc["recordings"]  # type: ignore[misc]
    assert lobby["should"]["text"] == "record (always)" and lobby["ok"] is True
    assert lobby["doing"]["state"] == "recording" and lobby["doing"]["owner"] == "host:1"
    assert lobby["doing"]["sid"] == "012345…cdef"  # shortened
    assert standup["should"]["state"] == "wait" and "12:00:00 UTC" in standup["should"]["text"]
    assert standup["doing"] == {"state": "idle"} and standup["ok"] is True
    assert evil["ok"] is False and evil["why"]["reason"] == "failing"
    # Live without a manifest: kept (its file does not load, nothing stored), or going.
    kept, gone = doc["live_without_manifest"]  # type: ignore[misc]
    assert (kept["manifest"], kept["file"], kept["state"], kept["session_id"]) == (
        EVIL,
        "r/broken.yaml",
        "recording",
        5,
    )
    assert "file does not load" in kept["why"] and kept["owner"] == "host:1"
    assert (gone["state"], gone["why"]) == ("stopping", "no manifest wants it: its stop is due")
    page = render_html(doc)
    assert "<h2>Live without a manifest</h2>" in page
    assert f'data-manifest="{html.escape(EVIL)}"' in page and EVIL not in page
    assert doc["apps"] == [
        {
            "app_id": "A",
            "owner": "host:1",
            "rate_limit": 10,
            "rate_in_use": 2,
            "query_cycle_seconds": 0.4,
        }
    ]


def test_every_text_is_escaped_and_the_page_loads_nothing_else() -> None:
    page = render_html(document())
    assert EVIL not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert 'data-file="r/broken.yaml"' in page and ">4:7<" in page
    # The only script is the page's own refresh; nothing is loaded from elsewhere.
    assert len(re.findall(r"<script", page)) == 1
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)
    assert 'data-manifest="lobby" data-doing="recording"' in page
    assert "Not all is well" in page


def test_the_action_log_keeps_the_last_50_newest_first() -> None:
    log = ActionLog(lambda: NOW)
    recording = desired_recording()
    window = Window(NOW, FAR_FUTURE)
    for n in range(ACTIONS_KEPT + 5):
        log.record(
            [
                ActionResult(
                    Start(f"m{n}", "window open", recording, window), n % 2 == 0, f"started {n}", n
                )
            ]
        )
    entries = log.newest_first()
    assert len(entries) == ACTIONS_KEPT
    assert {e.at for e in entries} == {NOW}  # a result that says no time: the record's
    assert entries[0].manifest == f"m{ACTIONS_KEPT + 4}" and entries[-1].manifest == "m5"
    doc = document(log)
    first = doc["actions"][0]  # type: ignore[index]
    assert first["action"] == "start" and first["outcome"] == "ok"
    ended = NOW - timedelta(seconds=3)
    log.record([ActionResult(Start("late", "w", recording, window), True, "ok", 1, at=ended)])
    assert log.newest_first()[0].at == ended  # when it ended, not when the pass did


def test_one_document_serves_every_request_for_half_a_refresh() -> None:
    """However many pages are open, the document is made (and each form rendered) at
    most once per FRESH_FOR: a route runs on the event loop."""
    made: list[int] = []
    now = [100.0]

    def source() -> dict[str, object]:
        made.append(1)
        return document()

    page = StatusPage(source, clock=lambda: now[0])
    first = page.html_page()
    assert page.html_page() is first and page.json_page().content_type == "application/json"
    assert len(made) == 1
    now[0] += FRESH_FOR
    assert page.html_page() is not first and len(made) == 2


def test_a_lane_lists_at_most_48_windows_and_says_there_are_more() -> None:
    """Defect: every window of 24 hours was listed: 200 every-minute crons made a 29 MB
    document, seconds of the event loop for each open page."""
    minute = desired_recording(
        name="minute", schedule=cron_schedule("* * * * *", "UTC", timedelta(seconds=20))
    )
    daily = desired_recording(
        name="daily", schedule=cron_schedule("0 9 * * *", "UTC", timedelta(hours=1))
    )
    timeline = TimelineCache().lanes([minute, daily], None, NOW)
    doc = status_document(
        view(),
        now=NOW,
        replica="host:1",
        ready=True,
        detail="",
        timeline=timeline,
        actions=[],
        apps=[],
    )
    by_name = {lane["manifest"]: lane for lane in doc["timeline"]["lanes"]}  # type: ignore[index]
    assert len(by_name["minute"]["windows"]) == MAX_WINDOWS and by_name["minute"]["more_windows"]
    assert len(by_name["daily"]["windows"]) == 1 and not by_name["daily"]["more_windows"]
    page = render_html(doc)
    assert f"(+{MAX_WINDOWS - 6}+)" in page  # 6 shown, 42 more listed, and more beyond
