"""What Agora's current documentation adds to the reference, client against emulator
over loopback HTTP (docs/contracts.md, "Where Agora's current documentation widens
the reference").

Covers: a mix start with `avFileType: ["hls", "mp4"]` accepted, its file list then
JSON (the M3U8 and `<sid>_<cname>_0.mp4`, all users, uid "0") in query and stop, and
the emulator remembering the types; the same start in individual mode refused with
code 2 by the emulator and before sending by the client; the vendors and regions
the current docs add accepted by number (Azure and Google Cloud with any region,
which Agora ignores); a manifest using them translated and run through start and
stop. The refusals around them (mp4 alone, mp3, vendor 9 and 11, regions outside the
tables) are rows of test_agora_validation's table.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import agora_bodies as bodies
import pytest

from orchestrator.agora.errors import InvalidRequestError, PermanentError
from orchestrator.manifest.model import Manifest
from orchestrator.reconcile.translate import stop_request, translate

if TYPE_CHECKING:
    from conftest import EmulatorHandle

pytestmark = pytest.mark.integration


def _with_mp4(body: dict[str, Any]) -> dict[str, Any]:
    body["clientRequest"]["recordingFileConfig"] = {"avFileType": ["hls", "mp4"]}
    return body


async def test_mix_recording_with_mp4_lists_the_mp4(emulator: EmulatorHandle) -> None:
    client = emulator.client()
    app = emulator.app_id
    rid = await client.acquire(app, bodies.acquire())
    sid = await client.start(app, rid, "mix", _with_mp4(bodies.start_recording()))
    (session,) = emulator.emu.sessions()
    assert session["file_types"] == ["hls", "mp4"]

    before = await client.query(app, rid, sid, "mix")
    assert before.serverResponse.fileListMode == "json"
    assert before.serverResponse.fileList == []  # nobody has sent anything yet

    emulator.emu.join(app, bodies.CNAME, "123")
    query = await client.query(app, rid, sid, "mix")
    assert query.serverResponse.fileListMode == "json"
    files = query.serverResponse.fileList
    assert isinstance(files, list)
    base = f"directory1/directory2/{sid}_{bodies.CNAME}"
    assert [f.filename for f in files] == [f"{base}.m3u8", f"{base}_0.mp4"]
    assert all(
        (f.uid, f.trackType, f.mixedAllUser, f.isPlayable) == ("0", "audio_and_video", True, True)
        for f in files
    )

    stopped = await client.stop(app, rid, sid, "mix", bodies.stop())
    assert stopped.serverResponse.fileListMode == "json"
    assert stopped.serverResponse.fileList == files


async def test_mp4_in_individual_mode_is_refused(emulator: EmulatorHandle) -> None:
    body = _with_mp4(bodies.start_individual())
    unchecked = emulator.client(validate=False)
    rid = await unchecked.acquire(emulator.app_id, bodies.acquire())
    with pytest.raises(PermanentError) as answered:
        await unchecked.start(emulator.app_id, rid, "individual", body)
    assert answered.value.code == 2
    assert "avFileType mp4 requires mode mix" in str(answered.value)
    assert emulator.emu.sessions() == []

    sent = len(emulator.emu.requests())
    with pytest.raises(InvalidRequestError) as refused:
        await emulator.client().start(emulator.app_id, rid, "individual", body)
    assert refused.value.code == 2
    assert len(emulator.emu.requests()) == sent  # nothing left the client


@pytest.mark.parametrize(
    ("vendor", "region"),
    [
        (5, 0),  # Microsoft Azure: region ignored
        (5, 9),
        (6, 0),  # Google Cloud: region ignored
        (7, 0),  # Huawei Cloud 0 .. 15
        (7, 15),
        (8, 1),  # Baidu AI Cloud 1 .. 7
        (8, 7),
        (1, 16),  # Amazon S3: CN_NORTHWEST_1
        (1, 25),  # EU_SOUTH_1
        (1, 17),  # US_GOV_WEST_1: the reference's, kept
        (2, 27),  # Alibaba Cloud: CN_Southeast_7
    ],
)
async def test_new_vendors_and_regions_are_accepted(
    emulator: EmulatorHandle, vendor: int, region: int
) -> None:
    body = bodies.start_recording()
    body["clientRequest"]["storageConfig"].update(vendor=vendor, region=region)
    client = emulator.client()
    rid = await client.acquire(emulator.app_id, bodies.acquire())
    sid = await client.start(emulator.app_id, rid, "mix", body)
    assert emulator.emu.requests("start")[-1]["status"] == 200
    assert [s["sid"] for s in emulator.emu.sessions()] == [sid]


async def test_a_manifest_using_them_runs(emulator: EmulatorHandle) -> None:
    m = Manifest.model_validate(
        {
            "name": "current-docs",
            "app": "main",
            "channel": bodies.CNAME,
            "uid": int(bodies.UID),
            "mode": "mix",
            "schedule": "always",
            "recordingFiles": {"fileTypes": ["mp4", "hls"]},
            "storage": {
                "vendor": "google-gcs",
                "bucket": "recordings",
                "accessKey": {"env": "GCS_KEY"},
                "secretKey": {"env": "GCS_SECRET"},
            },
        }
    )
    requests = translate(m)
    client = emulator.client()
    app = emulator.app_id
    rid = await client.acquire(app, requests.acquire)
    sid = await client.start(app, rid, requests.mode, requests.start.resolved(lambda ref: "x"))
    sent = emulator.emu.requests("start")[-1]["body"]["clientRequest"]
    assert sent["recordingFileConfig"] == {"avFileType": ["hls", "mp4"]}
    assert (sent["storageConfig"]["vendor"], sent["storageConfig"]["region"]) == (6, 0)
    emulator.emu.join(app, m.channel, "7")
    stopped = await client.stop(
        app, rid, sid, requests.mode, stop_request(m.channel, m.recording_uid)
    )
    assert stopped.serverResponse.fileListMode == "json"
    files = stopped.serverResponse.fileList
    assert isinstance(files, list)
    assert [f.filename.rsplit(".", 1)[-1] for f in files] == ["m3u8", "mp4"]
