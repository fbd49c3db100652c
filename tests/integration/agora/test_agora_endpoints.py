"""Every endpoint's happy path, client against emulator over loopback HTTP.

Covers: acquire/start/update/updateLayout/query/stop with the reference's example
bodies; the wire format actually sent (paths, method, exact Content-Type, Basic
auth, no Authorization in the emulator's record); status progression 4 -> 5;
file lists by mode (string in mix, JSON per uid and track in individual, none for
snapshots, extensionServiceState for aliyun VOD); uploadingStatus choices.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import agora_bodies as bodies
import pytest

if TYPE_CHECKING:
    from conftest import EmulatorHandle

pytestmark = pytest.mark.integration


async def test_mix_recording_lifecycle(emulator: EmulatorHandle) -> None:
    client = emulator.client()
    app = emulator.app_id
    rid = await client.acquire(app, bodies.acquire())
    sid = await client.start(app, rid, "mix", bodies.start_recording())
    assert len(sid) == 32

    first = await client.query(app, rid, sid, "mix")
    assert first.resourceId == rid and first.sid == sid
    assert first.serverResponse.status == 4
    assert first.serverResponse.fileListMode == "string"
    assert first.serverResponse.fileList == ""  # nobody has sent anything yet

    emulator.emu.join(app, bodies.CNAME, "123")
    emulator.emu.advance(2)
    running = await client.query(app, rid, sid, "mix")
    assert running.serverResponse.status == 5
    assert running.serverResponse.fileList == f"directory1/directory2/{sid}_{bodies.CNAME}.m3u8"

    await client.update(app, rid, sid, "mix", bodies.update())
    await client.update_layout(app, rid, sid, "mix", bodies.update_layout())
    (session,) = emulator.emu.sessions()
    assert session["subscription"]["unSubscribeVideoUids"] == ["444", "555", "666"]
    assert session["subscription"]["subscribeAudioUids"] == ["#allstream#"]
    assert session["layout"]["mixedVideoLayout"] == 3
    assert len(session["layout"]["layoutConfig"]) == 2

    stopped = await client.stop(app, rid, sid, "mix", bodies.stop())
    assert stopped.serverResponse.uploadingStatus == "uploaded"
    assert stopped.serverResponse.fileListMode == "string"
    assert stopped.serverResponse.fileList == running.serverResponse.fileList


async def test_requests_on_the_wire(emulator: EmulatorHandle) -> None:
    client = emulator.client()
    app = emulator.app_id
    rid = await client.acquire(app, bodies.acquire())
    sid = await client.start(app, rid, "mix", bodies.start_recording())
    await client.query(app, rid, sid, "mix")
    seen = emulator.emu.requests()
    assert [r["endpoint"] for r in seen] == ["acquire", "start", "query"]
    assert [r["method"] for r in seen] == ["POST", "POST", "GET"]
    assert seen[0]["path"] == f"/v1/apps/{app}/cloud_recording/acquire"
    assert seen[1]["path"] == f"/v1/apps/{app}/cloud_recording/resourceid/{rid}/mode/mix/start"
    assert seen[2]["path"] == (
        f"/v1/apps/{app}/cloud_recording/resourceid/{rid}/sid/{sid}/mode/mix/query"
    )
    for record in seen:
        assert record["headers"]["Content-Type"] == "application/json;charset=utf-8"
        assert all(name.lower() != "authorization" for name in record["headers"])
        assert record["status"] == 200
    assert seen[0]["body"] == bodies.acquire()
    assert seen[1]["body"] == bodies.start_recording()


async def test_individual_file_list_is_json_per_uid_and_track(emulator: EmulatorHandle) -> None:
    client = emulator.client()
    app = emulator.app_id
    rid = await client.acquire(app, bodies.acquire())
    sid = await client.start(app, rid, "individual", bodies.start_individual())
    emulator.emu.join(app, bodies.CNAME, "123")
    emulator.emu.join(app, bodies.CNAME, "456")
    emulator.emu.join(app, bodies.CNAME, "789")  # not in the subscription lists
    result = await client.query(app, rid, sid, "individual")
    server = result.serverResponse
    assert server.fileListMode == "json"
    assert isinstance(server.fileList, list)
    tracks = sorted((f.uid, f.trackType) for f in server.fileList)
    assert tracks == [("123", "audio"), ("123", "video"), ("456", "audio"), ("456", "video")]
    assert all(f.mixedAllUser is False and f.isPlayable for f in server.fileList)
    assert all(f.filename.endswith(".m3u8") for f in server.fileList)
    stopped = await client.stop(app, rid, sid, "individual", bodies.stop())
    assert stopped.serverResponse.fileListMode == "json"
    assert isinstance(stopped.serverResponse.fileList, list)
    assert len(stopped.serverResponse.fileList) == 4


async def test_snapshot_has_no_file_list(emulator: EmulatorHandle) -> None:
    client = emulator.client()
    app = emulator.app_id
    rid = await client.acquire(app, bodies.acquire())
    sid = await client.start(app, rid, "individual", bodies.start_snapshot())
    emulator.emu.join(app, bodies.CNAME, "123")
    server = (await client.query(app, rid, sid, "individual")).serverResponse
    assert server.status == 4
    assert server.fileListMode is None and server.fileList is None
    stopped = await client.stop(app, rid, sid, "individual", bodies.stop())
    assert stopped.serverResponse.fileList is None
    assert stopped.serverResponse.uploadingStatus == "uploaded"


async def test_aliyun_vod_reports_extension_state(emulator: EmulatorHandle) -> None:
    client = emulator.client()
    app = emulator.app_id
    rid = await client.acquire(app, bodies.acquire())
    sid = await client.start(app, rid, "mix", bodies.start_vod())
    emulator.emu.join(app, bodies.CNAME, "123")
    server = (await client.query(app, rid, sid, "mix")).serverResponse
    assert server.fileListMode is None
    assert server.extensionServiceState is not None
    (state,) = server.extensionServiceState
    assert state.serviceName == "aliyun_vod_service"
    assert state.payload is not None and state.payload.state == "inProgress"
    assert state.payload.videoInfo and state.payload.videoInfo[0].fileName.endswith(".m3u8")
    # No `status`: the sub-module's state says it, read as the status it stands for
    # (still warming up, like the snapshot above: 4).
    assert server.status is None and server.subServiceStatus is not None
    assert server.subServiceStatus.recordingService == "serviceReady"
    assert server.service_status == 4 and server.exited is None


@pytest.mark.parametrize("uploading", ["uploaded", "backuped", "unknown"])
async def test_uploading_status_is_selectable(emulator: EmulatorHandle, uploading: str) -> None:
    emulator.emu.settings.update({"uploading_status": uploading})
    client = emulator.client()
    app = emulator.app_id
    rid = await client.acquire(app, bodies.acquire())
    sid = await client.start(app, rid, "mix", bodies.start_recording())
    emulator.emu.join(app, bodies.CNAME, "123")
    stopped = await client.stop(app, rid, sid, "mix", bodies.stop())
    assert stopped.serverResponse.uploadingStatus == uploading


async def test_status_may_arrive_as_a_string(emulator: EmulatorHandle) -> None:
    emulator.emu.settings.update({"status_as_string": True})
    client = emulator.client()
    app = emulator.app_id
    rid = await client.acquire(app, bodies.acquire())
    sid = await client.start(app, rid, "mix", bodies.start_recording())
    emulator.emu.advance(5)
    assert (await client.query(app, rid, sid, "mix")).serverResponse.status == 5
    assert emulator.emu.requests("query")[0]["status"] == 200


async def test_live_channel_audience_does_not_keep_it_busy(emulator: EmulatorHandle) -> None:
    client = emulator.client()
    app = emulator.app_id
    body = bodies.start_recording()
    body["clientRequest"]["recordingConfig"]["channelType"] = 1
    body["clientRequest"]["recordingConfig"]["maxIdleTime"] = 10
    rid = await client.acquire(app, bodies.acquire())
    sid = await client.start(app, rid, "mix", body)
    emulator.emu.join(app, bodies.CNAME, "900", role="audience")
    emulator.emu.advance(11)
    server = (await client.query(app, rid, sid, "mix")).serverResponse
    assert server.status == 8  # exited: an audience alone is an idle live channel
