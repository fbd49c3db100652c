"""Which NCS notifications the emulator's session changes call for (`notices.py`),
and the rules of its failovers and delivery settings, without a server or a clock.

Covers: each change is announced once, in order, with `sequence` per sid from 0 and
`sendts` the change's own instant; the leave code and exit status of every way a
session ends; file lists only when it recorded something, with 31 or 32 following
`uploadingStatus`; a baseline keeps earlier changes untold; a failover's 12 (or
none when silent) and the new uid on later notices; a failover hides the session
from its sid routes for its seconds, takes either uid afterwards, and refuses a
uid that is taken; delivery controls and the notification target refuse bad values
without naming a secret.
"""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator.agora import ncs
from orchestrator.agora.ncs import EventType
from orchestrator.agora.token import build_rtc_token
from orchestrator.emulator import AppCertificates, DeliveryControls, NotifyTarget
from orchestrator.emulator.notices import Announcer
from orchestrator.emulator.state import EmulatorState

APP = "0123456789abcdef0123456789abcdef"
CNAME = "room"
UID = "42"
T0 = 1_800_000_000.0
CERTIFICATE = "5cfd2fd1755d40ecb72977518be15d3b"


def _start(state: EmulatorState, now: float = T0, max_idle: int = 30) -> str:
    acquired = state.acquire(APP, {"cname": CNAME, "uid": UID, "clientRequest": {}}, now)
    rid = acquired.body["resourceId"]
    body: dict[str, Any] = {
        "cname": CNAME,
        "uid": UID,
        "clientRequest": {"recordingConfig": {"maxIdleTime": max_idle}},
    }
    started = state.start(APP, rid, "mix", body, now)
    assert started.status == 200, started.body
    return str(started.body["sid"])


def _kinds(notices: list[ncs.Notification]) -> list[int]:
    return [n.eventType for n in notices]


def _stop(state: EmulatorState, sid: str, now: float, uid: str = UID) -> int:
    rid = state.sessions[sid].resource_id
    body = {"cname": CNAME, "uid": uid, "clientRequest": {}}
    return state.stop(APP, rid, sid, "mix", body, now).status


def test_each_change_is_told_once_in_order() -> None:
    state, announcer = EmulatorState(), Announcer()
    state.join(APP, CNAME, "7", "broadcaster", T0)
    sid = _start(state)
    first = announcer.announce(state.sessions.values(), T0 + 0.5)
    assert _kinds(first) == [EventType.RECORDER_STARTED]
    assert (first[0].payload.sendts, first[0].notifyMs) == (int(T0 * 1000), int(T0 * 1000) + 500)
    assert announcer.announce(state.sessions.values(), T0 + 1) == []
    assert _stop(state, sid, T0 + 10) == 200
    exits = announcer.announce(state.sessions.values(), T0 + 10)
    assert _kinds(exits) == [
        EventType.RECORDER_LEAVE,
        EventType.CLOUD_RECORDING_FILE_INFOS,
        EventType.UPLOADED,
        EventType.SESSION_EXIT,
    ]
    assert [n.payload.sequence for n in exits] == [1, 2, 3, 4]
    assert {n.payload.serviceType for n in exits} == {0, 1, 2}
    assert announcer.announce(state.sessions.values(), T0 + 11) == []


@pytest.mark.parametrize(
    ("end", "leave_code", "exit_status"),
    [
        ("stopped", 16, 0),
        ("idle", 4, 0),
        ("aborted", 2, 1),
        ("expired", 8, 0),
        ("token expired", 8, 0),
        ("token refused", 0, 1),
    ],
)
def test_every_end_has_its_leave_code(end: str, leave_code: int, exit_status: int) -> None:
    state, announcer = EmulatorState(), Announcer()
    if end.startswith("token"):
        state.certificates.set(CERTIFICATE)
    token_secret = CERTIFICATE if end == "token expired" else "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
    token = build_rtc_token(
        APP, token_secret, CNAME, int(UID), expires_in=60, issued_at=int(T0), salt=1
    )
    acquired = state.acquire(
        APP, {"cname": CNAME, "uid": UID, "clientRequest": {"resourceExpiredHour": 1}}, T0
    )
    rid = acquired.body["resourceId"]
    request = {"token": token, "recordingConfig": {"maxIdleTime": 5 if end == "idle" else 86400}}
    body = {"cname": CNAME, "uid": UID, "clientRequest": request}
    sid = str(state.start(APP, rid, "mix", body, T0).body["sid"])
    if end == "stopped":
        _stop(state, sid, T0 + 1)
    elif end == "aborted":
        state.abort(sid, T0 + 1)
    state.settle(T0 + 7200)
    assert (state.sessions[sid].end_reason or "").startswith(end)
    notices = announcer.announce(state.sessions.values(), T0 + 7200)
    assert _kinds(notices) == [
        EventType.RECORDER_STARTED,
        EventType.RECORDER_LEAVE,
        EventType.SESSION_EXIT,
    ]
    assert notices[1].payload.details == {"msgName": "recorder_leave", "leaveCode": leave_code}
    assert notices[2].payload.details == {"msgName": "session_exit", "exitStatus": exit_status}
    ended_at = state.sessions[sid].ended_at
    assert ended_at is not None and notices[2].payload.sendts == int(ended_at * 1000)


@pytest.mark.parametrize(
    ("uploading", "upload_event"),
    [("uploaded", EventType.UPLOADED), ("backuped", EventType.BACKUPED), ("unknown", None)],
)
def test_the_upload_event_follows_the_uploading_status(
    uploading: str, upload_event: EventType | None
) -> None:
    state, announcer = EmulatorState(), Announcer()
    state.join(APP, CNAME, "7", "broadcaster", T0)
    sid = _start(state)
    _stop(state, sid, T0 + 5)
    notices = announcer.announce(state.sessions.values(), T0 + 5, uploading_status=uploading)
    uploads = [n for n in notices if n.eventType in (EventType.UPLOADED, EventType.BACKUPED)]
    assert [n.eventType for n in uploads] == ([upload_event] if upload_event else [])
    (infos,) = [n for n in notices if n.eventType == EventType.CLOUD_RECORDING_FILE_INFOS]
    assert infos.payload.details["fileList"][0]["fileName"] == f"{sid}_{CNAME}.m3u8"


def test_a_baseline_keeps_earlier_changes_untold() -> None:
    state, announcer = EmulatorState(), Announcer()
    told = _start(state)
    state.abort(told, T0 + 1)
    live = _start(state, T0 + 2)
    state.fail_over(live, T0 + 3, 10)
    announcer.baseline(state.sessions.values())
    assert announcer.announce(state.sessions.values(), T0 + 4) == []
    state.abort(live, T0 + 5)
    exits = announcer.announce(state.sessions.values(), T0 + 5)
    assert _kinds(exits) == [EventType.RECORDER_LEAVE, EventType.SESSION_EXIT]
    assert exits[0].payload.sequence == 0


@pytest.mark.parametrize("notify", [True, False])
def test_a_failover_is_told_unless_silent(notify: bool) -> None:
    state, announcer = EmulatorState(), Announcer()
    sid = _start(state)
    session = state.fail_over(sid, T0 + 5, 30, notify=notify)
    assert session is not None
    new_uid = session.recorder_uid
    state.abort(sid, T0 + 6)
    notices = announcer.announce(state.sessions.values(), T0 + 6)
    expected = [EventType.RECORDER_STARTED]
    expected += [EventType.SESSION_FAILOVER] if notify else []
    assert _kinds(notices) == [*expected, EventType.RECORDER_LEAVE, EventType.SESSION_EXIT]
    if notify:
        assert notices[1].payload.details["newUid"] == int(new_uid)
        assert notices[1].payload.uid == UID
    assert notices[-1].payload.uid == new_uid


def test_a_failover_hides_the_sid_routes_for_its_seconds() -> None:
    state = EmulatorState()
    state.join(APP, CNAME, "7", "broadcaster", T0)
    sid = _start(state)
    rid = state.sessions[sid].resource_id
    session = state.fail_over(sid, T0 + 5, 30)
    assert session is not None and session.failover_until(T0 + 6) == T0 + 35
    assert state.query(APP, rid, sid, "mix", T0 + 34.9).status == 404
    assert _stop(state, sid, T0 + 20) == 404
    assert state.sessions[sid].ended_at is None
    assert session.failover_until(T0 + 35) is None
    assert state.query(APP, rid, sid, "mix", T0 + 35).status == 200
    assert _stop(state, sid, T0 + 36, uid="9") == 400  # 432: neither of its uids
    assert _stop(state, sid, T0 + 36, uid=session.recorder_uid) == 200


def test_a_failover_uid_must_be_free() -> None:
    state = EmulatorState()
    state.join(APP, CNAME, "7", "broadcaster", T0)
    sid = _start(state)
    with pytest.raises(ValueError, match="taken"):
        state.fail_over(sid, T0, 5, new_uid="7")
    with pytest.raises(ValueError, match="new_uid"):
        state.fail_over(sid, T0, 5, new_uid="0")
    first = state.fail_over(sid, T0, 5)
    assert first is not None
    uids = first.uids
    again = state.fail_over(sid, T0 + 6, 5)
    assert again is not None and len(set(again.uids)) == 3 and again.uids[:2] == uids
    assert state.fail_over("unknown", T0, 5) is None


def test_derived_uids_do_not_depend_on_when() -> None:
    one, other = EmulatorState(), EmulatorState()
    sid = _start(one)
    copy = _start(other)
    other.sessions[copy].sid = sid  # the same sid: the same derived uid
    a, b = one.fail_over(sid, T0, 5), other.fail_over(copy, T0 + 10, 5)
    assert a is not None and b is not None and a.recorder_uid == b.recorder_uid


@pytest.mark.parametrize(
    "data",
    [
        {"duplicate": 0},
        {"drop": -1},
        {"delay": "1"},
        {"reorder": True},
        {"retry": [1, -2]},
        {"retry": 3},
        {"timeout": 0},
        {"bogus": 1},
    ],
)
def test_bad_delivery_controls_are_refused(data: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=str(next(iter(data)))):
        DeliveryControls.from_json(data)


def test_delivery_controls_take_their_defaults() -> None:
    controls = DeliveryControls.from_json({"duplicate": 2, "retry": [0, 0.5]})
    assert controls.describe() == {
        "duplicate": 2,
        "delay": 0.0,
        "reorder": 0.0,
        "drop": 0,
        "retry": (0.0, 0.5),
        "timeout": 2.0,
    }


@pytest.mark.parametrize(
    ("url", "secret"), [("ftp://host/x", "s3cr3t-value"), ("http:///nohost", "s3cr3t-value")]
)
def test_a_bad_target_is_refused_without_its_secret(url: str, secret: str) -> None:
    with pytest.raises(ValueError, match="URL") as caught:
        NotifyTarget(url, secret)
    assert secret not in str(caught.value)


def test_a_target_hides_its_secret() -> None:
    target = NotifyTarget("http://127.0.0.1:9/ncs", "s3cr3t-value")
    assert "s3cr3t-value" not in repr(target) and "s3cr3t-value" not in str(target.describe())
    with pytest.raises(ValueError, match="secret"):
        NotifyTarget("http://127.0.0.1:9/ncs", "")


def test_certificates_stay_where_they_were() -> None:
    """`AppCertificates` moved to `tokens.py`; the package still exports it."""
    certificates = AppCertificates(CERTIFICATE)
    assert CERTIFICATE not in repr(certificates)
    assert certificates.describe() == {"default": True, "app_ids": []}
