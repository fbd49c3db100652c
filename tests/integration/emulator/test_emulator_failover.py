"""A failover injected through the emulator's control API, over real HTTP.

Covers: `POST /_emulator/sessions/{sid}/failover` gives the recorder a new uid and
sends 12 session_failover (`details.newUid`, the old uid in the payload); during its
seconds `query`, `update`, `updateLayout` and `stop` answer the 404 of an ended
session, and a stop then does not stop the recording; the sessions list shows the
current uid and until when the failover lasts; after it (the clock moved) `query`
answers status 5 with the same files and `stop` works with the original uid or the
new one, the exit notifications naming the new uid; `notify: false` sends no 12;
an unknown sid and bad fields are refused.
"""

from __future__ import annotations

import pytest

from orchestrator.agora.ncs import EventType
from tests.integration.conftest import EmulatorHandle
from tests.integration.emulator.conftest import CNAME, PUBLISHER, UID, Api
from tests.integration.emulator.ncs_receiver import Receiver

pytestmark = pytest.mark.integration

NOT_FOUND = {"code": 404, "reason": "failed to find worker"}


async def test_a_failover_hides_the_session_but_it_records_on(
    emulator: EmulatorHandle, api: Api, receiver: Receiver
) -> None:
    emulator.emu.join(emulator.app_id, CNAME, PUBLISHER)
    rec = await api.start()
    emulator.emu.advance(2)  # past the warmup: recording
    files_before = (await api.query(rec)).json()["serverResponse"]["fileList"]
    async with emulator.control() as control:
        moved = await control.post(
            f"/sessions/{rec.sid}/failover", json={"seconds": 45, "notify": True}
        )
        assert moved.status_code == 200, moved.text
        new_uid = moved.json()["recorder_uid"]
        assert new_uid != UID and moved.json()["uid"] == UID
        now = (await control.get("/clock")).json()["now"]
        (listed,) = (await control.get("/sessions")).json()["sessions"]
    assert (listed["recorder_uid"], listed["in_failover"], listed["live"]) == (new_uid, True, True)
    assert now < listed["failover_until"] <= now + 45

    got = await receiver.events(rec.sid, [EventType.SESSION_FAILOVER])
    (failover,) = [n for n in got if n.eventType == EventType.SESSION_FAILOVER]
    assert failover.payload.details == {"msgName": "session_failover", "newUid": int(new_uid)}
    assert failover.payload.uid == UID

    for answer in (
        await api.query(rec),
        await api.update(rec),
        await api.update_layout(rec),
        await api.stop(rec),
        await api.stop(rec, uid=new_uid),
    ):
        assert (answer.status_code, answer.json()) == (404, NOT_FOUND)
    (listed,) = emulator.emu.sessions()
    assert listed["live"] is True  # the stops answered 404 stopped nothing
    assert len(emulator.emu.notified(rec.sid)) == 2  # 40 and 12: no exit

    emulator.emu.advance(45)
    after = await api.query(rec)
    assert after.status_code == 200
    assert after.json()["serverResponse"]["status"] == 5
    assert after.json()["serverResponse"]["fileList"] == files_before
    assert emulator.emu.sessions()[0]["in_failover"] is False


@pytest.mark.parametrize("which", ["original", "new"])
async def test_after_a_failover_stop_takes_either_uid(
    emulator: EmulatorHandle, api: Api, receiver: Receiver, which: str
) -> None:
    emulator.emu.join(emulator.app_id, CNAME, PUBLISHER)
    rec = await api.start()
    described = emulator.emu.failover(rec.sid, 10)
    assert described is not None
    new_uid = described["recorder_uid"]
    emulator.emu.advance(10)
    stopped = await api.stop(rec, uid=UID if which == "original" else new_uid)
    assert stopped.status_code == 200, stopped.text
    exits = [EventType.RECORDER_LEAVE, EventType.SESSION_EXIT]
    got = await receiver.events(rec.sid, exits)
    assert {n.payload.uid for n in got if n.eventType in exits} == {new_uid}
    assert (await api.stop(rec)).json()["code"] == 49  # stopped: a second stop is 49


async def test_a_silent_failover_sends_no_notice(
    emulator: EmulatorHandle, api: Api, receiver: Receiver
) -> None:
    rec = await api.start()
    async with emulator.control() as control:
        moved = await control.post(f"/sessions/{rec.sid}/failover", json={"notify": False})
        assert moved.json()["failover_until"] is not None  # the default length
    assert [d["eventType"] for d in emulator.emu.notified(rec.sid)] == [40]
    assert (await api.query(rec)).status_code == 404


async def test_failover_refuses_what_it_cannot_do(emulator: EmulatorHandle, api: Api) -> None:
    rec = await api.start()
    async with emulator.control() as control:
        unknown = await control.post("/sessions/nope/failover", json={"seconds": 5})
        assert unknown.status_code == 404
        for bad in ({"seconds": -1}, {"notify": "yes"}, {"new_uid": 7}, {"minutes": 1}):
            answer = await control.post(f"/sessions/{rec.sid}/failover", json=bad)
            assert answer.status_code == 400, bad
        taken = await control.post(f"/sessions/{rec.sid}/failover", json={"new_uid": UID})
        assert taken.status_code == 400
        chosen = await control.post(f"/sessions/{rec.sid}/failover", json={"new_uid": "77"})
        assert chosen.json()["recorder_uid"] == "77"
        await control.post(f"/sessions/{rec.sid}/abort")
        ended = await control.post(f"/sessions/{rec.sid}/failover", json={})
        assert ended.status_code == 404
