"""The emulator's NCS notifications, received over real HTTP on loopback.

Covers: a start sends 40 recorder_started and a stop 41 recorder_leave, 4
cloud_recording_file_infos, 31 uploaded and 11 session_exit (both signatures valid,
one `noticeId` each, `sequence` counting from 0 per sid, `sendts` the event's instant
on the emulator clock); a stop without files sends no file lists; an abort through
the control API, an idle exit (noticed by the background tick, with no request
arriving), the resource's expiry and the token's expiry each send their exit; a
delivery answered 500 is resent with the same noticeId and body until answered 200;
one that cannot connect is resent, then given up; the delivery controls duplicate,
delay, reorder and drop; turning notifications off; the NCS secret in no control
answer, error or log line.
"""

from __future__ import annotations

import socket
import time
from typing import Any

import pytest
from structlog.testing import capture_logs

from orchestrator.agora.ncs import EventType, Notification
from orchestrator.agora.token import build_rtc_token
from tests.harness.waits import wait_until
from tests.integration.conftest import EmulatorHandle
from tests.integration.emulator.conftest import (
    CNAME,
    FAST_RETRY,
    NCS_SECRET,
    PUBLISHER,
    UID,
    Api,
)
from tests.integration.emulator.ncs_receiver import Receiver, ncs_receiver

pytestmark = pytest.mark.integration

EXIT_WITH_FILES = [
    EventType.RECORDER_LEAVE,
    EventType.CLOUD_RECORDING_FILE_INFOS,
    EventType.UPLOADED,
    EventType.SESSION_EXIT,
]
EXIT = [EventType.RECORDER_LEAVE, EventType.SESSION_EXIT]


def _details(notices: list[Notification], kind: int) -> dict[str, Any]:
    (notice,) = [n for n in notices if n.eventType == kind]
    return dict(notice.payload.details)


async def test_start_and_stop_notify_in_order(
    emulator: EmulatorHandle, api: Api, receiver: Receiver
) -> None:
    emulator.emu.join(emulator.app_id, CNAME, PUBLISHER)
    rec = await api.start()
    (started,) = await receiver.events(rec.sid, [EventType.RECORDER_STARTED])
    (session,) = emulator.emu.sessions()
    assert started.productId == 3
    payload = started.payload
    assert (payload.cname, payload.uid, payload.sid, payload.sequence) == (CNAME, UID, rec.sid, 0)
    assert payload.sendts == int(session["started_at"] * 1000)
    assert payload.details == {"msgName": "recorder_started", "status": 0}

    assert (await api.stop(rec)).status_code == 200
    got = await receiver.events(rec.sid, [EventType.RECORDER_STARTED, *EXIT_WITH_FILES])
    assert [n.eventType for n in got] == [EventType.RECORDER_STARTED, *EXIT_WITH_FILES]
    assert [n.payload.sequence for n in got] == [0, 1, 2, 3, 4]
    assert len({n.noticeId for n in got}) == 5
    assert all(p.verified for p in receiver.posts)
    ended_ms = int(emulator.emu.sessions()[0]["ended_at"] * 1000)
    assert {n.payload.sendts for n in got[1:]} == {ended_ms}
    assert _details(got, EventType.RECORDER_LEAVE) == {"msgName": "recorder_leave", "leaveCode": 16}
    assert _details(got, EventType.SESSION_EXIT) == {"msgName": "session_exit", "exitStatus": 0}
    files = _details(got, EventType.CLOUD_RECORDING_FILE_INFOS)["fileList"]
    assert [f["fileName"] for f in files] == [f"{rec.sid}_{CNAME}.m3u8"]
    uploaded = _details(got, EventType.UPLOADED)
    assert (uploaded["msgName"], uploaded["status"], uploaded["fileList"]) == ("uploaded", 0, files)
    log = emulator.emu.notified(rec.sid)
    assert [(d["state"], d["attempts"], d["status"]) for d in log] == [("delivered", 1, 200)] * 5


async def test_a_stop_without_files_lists_none(api: Api, receiver: Receiver) -> None:
    rec = await api.start()
    assert (await api.stop(rec)).json()["code"] == 435  # nobody sent streams
    got = await receiver.events(rec.sid, [EventType.RECORDER_STARTED, *EXIT])
    assert [n.eventType for n in got] == [EventType.RECORDER_STARTED, *EXIT]


async def test_an_abort_notifies_its_exit_at_once(
    emulator: EmulatorHandle, api: Api, receiver: Receiver
) -> None:
    rec = await api.start()
    async with emulator.control() as control:
        assert (await control.post(f"/sessions/{rec.sid}/abort")).status_code == 200
    got = await receiver.events(rec.sid, [EventType.RECORDER_STARTED, *EXIT], within=2.0)
    assert _details(got, EventType.RECORDER_LEAVE)["leaveCode"] == 2
    assert _details(got, EventType.SESSION_EXIT)["exitStatus"] == 1  # abnormal


async def test_an_idle_exit_is_noticed_without_a_request(
    emulator: EmulatorHandle, api: Api, receiver: Receiver
) -> None:
    """The clock is moved to a second before the idle exit: the exit happens in real
    time afterwards, and only the background tick can notice it."""
    rec = await api.start(client_request={"recordingConfig": {"maxIdleTime": 5}})
    await receiver.events(rec.sid, [EventType.RECORDER_STARTED])
    (session,) = emulator.emu.sessions()
    idle_at = session["idle_since"] + 5
    async with emulator.control() as control:
        now = (await control.get("/clock")).json()["now"]
        await control.post("/clock/advance", json={"seconds": idle_at - now - 1.0})
    assert len(emulator.emu.notified(rec.sid)) == 1  # not idle yet: only the start told
    requests = len(emulator.emu.requests())
    got = await receiver.events(rec.sid, EXIT, within=3.0)
    assert len(emulator.emu.requests()) == requests  # no API request arrived meanwhile
    assert _details(got, EventType.RECORDER_LEAVE)["leaveCode"] == 4
    assert {n.payload.sendts for n in got[1:]} == {int(idle_at * 1000)}


async def test_the_resource_expiry_notifies_the_exit(
    emulator: EmulatorHandle, api: Api, receiver: Receiver
) -> None:
    emulator.emu.join(emulator.app_id, CNAME, PUBLISHER)
    rec = await api.start()
    await receiver.events(rec.sid, [EventType.RECORDER_STARTED])
    emulator.emu.advance(72 * 3600)  # resourceExpiredHour's default
    got = await receiver.events(rec.sid, EXIT_WITH_FILES, within=2.0)
    assert _details(got, EventType.RECORDER_LEAVE)["leaveCode"] == 8
    assert _details(got, EventType.SESSION_EXIT)["exitStatus"] == 0


async def test_the_token_expiry_notifies_the_exit(
    emulator: EmulatorHandle, api: Api, receiver: Receiver
) -> None:
    certificate = "5cfd2fd1755d40ecb72977518be15d3b"
    emulator.emu.set_app_certificate(certificate)
    emulator.emu.join(emulator.app_id, CNAME, PUBLISHER)  # not idle before the token expires
    issued = int(emulator.emu.clock.now())
    token = build_rtc_token(
        emulator.app_id, certificate, CNAME, int(UID), expires_in=60, issued_at=issued, salt=1
    )
    rec = await api.start(client_request={"token": token, "recordingConfig": {}})
    await receiver.events(rec.sid, [EventType.RECORDER_STARTED])
    emulator.emu.advance(61)
    got = await receiver.events(rec.sid, EXIT_WITH_FILES, within=2.0)
    assert emulator.emu.sessions()[0]["end_reason"] == "token expired"
    assert _details(got, EventType.RECORDER_LEAVE)["leaveCode"] == 8


async def test_a_failed_delivery_is_resent_with_the_same_notice(
    emulator: EmulatorHandle, api: Api
) -> None:
    async with ncs_receiver(NCS_SECRET, statuses=[500, 503]) as got:
        emulator.emu.notifications.controls.retry = tuple(FAST_RETRY)
        emulator.emu.set_notify(got.url, NCS_SECRET)
        rec = await api.start()
        await got.events(rec.sid, [EventType.RECORDER_STARTED])
    assert [p.status for p in got.posts] == [500, 503, 200]
    assert len({p.body for p in got.posts}) == 1  # the same body, so the same noticeId
    (delivery,) = emulator.emu.notified(rec.sid)
    assert delivery["noticeId"] == got.posts[0].notice.noticeId
    assert (delivery["state"], delivery["attempts"], delivery["status"]) == ("delivered", 3, 200)


async def test_a_delivery_that_cannot_connect_is_given_up(
    emulator: EmulatorHandle, api: Api
) -> None:
    with socket.socket() as closed:  # bound, never listening: connections are refused
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        emulator.emu.notifications.controls.retry = tuple(FAST_RETRY)
        emulator.emu.set_notify(f"http://127.0.0.1:{port}/ncs", NCS_SECRET)
        rec = await api.start()

        def given_up() -> dict[str, Any] | None:
            log = emulator.emu.notified(rec.sid)
            return log[0] if log and log[0]["state"] == "failed" else None

        delivery = await wait_until(given_up, within=5.0, what="the delivery given up")
    assert delivery["attempts"] == 1 + len(FAST_RETRY)
    assert (delivery["status"], delivery["error"]) == (None, "cannot connect")


async def test_duplicate_sends_each_notice_twice(
    emulator: EmulatorHandle, api: Api, receiver: Receiver
) -> None:
    async with emulator.control() as control:
        await control.put("/notify/delivery", json={"duplicate": 2})
    rec = await api.start()
    got = await receiver.events(rec.sid, [EventType.RECORDER_STARTED] * 2)
    assert got[0].noticeId == got[1].noticeId
    assert receiver.posts[0].body == receiver.posts[1].body
    assert [d["copy"] for d in emulator.emu.notified(rec.sid)] == [0, 1]


async def test_delay_holds_each_notice(
    emulator: EmulatorHandle, api: Api, receiver: Receiver
) -> None:
    async with emulator.control() as control:
        await control.put("/notify/delivery", json={"delay": 0.5})
    before = time.monotonic()
    rec = await api.start()
    queued = await wait_until(lambda: emulator.emu.notified(rec.sid), within=2.0, what="queued")
    assert queued[0]["state"] == "pending"
    await receiver.events(rec.sid, [EventType.RECORDER_STARTED])
    assert receiver.posts[0].at - before >= 0.5


async def test_reorder_sends_a_batch_newest_first(
    emulator: EmulatorHandle, api: Api, receiver: Receiver
) -> None:
    emulator.emu.join(emulator.app_id, CNAME, PUBLISHER)
    rec = await api.start()
    await receiver.events(rec.sid, [EventType.RECORDER_STARTED])
    async with emulator.control() as control:
        await control.put("/notify/delivery", json={"reorder": 0.3})
    await api.stop(rec)
    got = await receiver.events(rec.sid, [EventType.RECORDER_STARTED, *EXIT_WITH_FILES])
    assert [n.eventType for n in got[1:]] == EXIT_WITH_FILES[::-1]
    assert [n.payload.sequence for n in got[1:]] == [4, 3, 2, 1]


async def test_drop_loses_the_next_notices(
    emulator: EmulatorHandle, api: Api, receiver: Receiver
) -> None:
    async with emulator.control() as control:
        shown = await control.put("/notify/delivery", json={"drop": 1, "retry": FAST_RETRY})
        assert shown.json()["drop"] == 1
    rec = await api.start()
    await api.stop(rec)
    got = await receiver.events(rec.sid, EXIT)
    assert [n.payload.sequence for n in got] == [1, 2]  # 0, the start, was lost
    log = emulator.emu.notified(rec.sid)
    assert (log[0]["eventType"], log[0]["state"], log[0]["attempts"]) == (40, "dropped", 0)
    assert emulator.emu.notifications.controls.drop == 0


async def test_turned_off_nothing_is_queued(
    emulator: EmulatorHandle, api: Api, receiver: Receiver
) -> None:
    async with emulator.control() as control:
        off = await control.put("/notify", content=b"null")
        assert off.json()["enabled"] is False and off.json()["url"] is None
    rec = await api.start()
    assert emulator.emu.notified(rec.sid) == []  # queued at once when on: nothing now
    async with emulator.control() as control:
        await control.put("/notify", json={"url": receiver.url, "secret": NCS_SECRET})
    await api.stop(rec)
    got = await receiver.events(rec.sid, EXIT)
    assert [n.eventType for n in got] == EXIT  # the start happened while off: never told


async def test_the_secret_is_never_shown(emulator: EmulatorHandle, api: Api) -> None:
    secret = "never-show-this-ncs-secret"
    with capture_logs() as logs:
        async with ncs_receiver(secret) as got, emulator.control() as control:
            answers = [await control.put("/notify", json={"url": got.url, "secret": secret})]
            answers.append(await control.put("/notify", json={"url": "ftp://x", "secret": secret}))
            answers.append(await control.put("/notify", json={"url": got.url, "secret": 5}))
            answers.append(await control.put("/notify", json={"secret": secret}))
            rec = await api.start()
            await got.events(rec.sid, [EventType.RECORDER_STARTED])
            for path in ("/notify", "/notify/delivery", "/notifications", "/sessions"):
                answers.append(await control.get(path))
    assert [a.status_code for a in answers[:4]] == [200, 400, 400, 400]
    assert answers[4].json()["secret_set"] is True
    assert all(secret not in a.text for a in answers)
    assert secret not in repr(emulator.emu.notifications.target)
    assert secret not in repr(emulator.emu.config)
    assert secret not in str(logs)
    assert rec.sid in str(logs)  # the delivery was logged
