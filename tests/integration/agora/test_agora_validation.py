"""Every start/acquire/update rule of the reference: the emulator answers code 2, and the
client refuses the same body before sending (InvalidRequestError, same code).

One table of (mode, mutation of a valid body) drives both tests, so the client's and
the emulator's rules cannot drift apart.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import agora_bodies as bodies
import pytest

from orchestrator.agora.errors import InvalidRequestError, PermanentError

if TYPE_CHECKING:
    from conftest import EmulatorHandle

pytestmark = pytest.mark.integration

Body = dict[str, Any]


def _rc(body: Body) -> Body:
    return body["clientRequest"]["recordingConfig"]  # type: ignore[no-any-return]


def _set(path: str, value: Any) -> Callable[[Body], None]:
    def mutate(body: Body) -> None:
        node = body
        *parents, last = path.split(".")
        for part in parents:
            node = node[part]
        node[last] = value

    return mutate


def _delete(path: str) -> Callable[[Body], None]:
    def mutate(body: Body) -> None:
        node = body
        *parents, last = path.split(".")
        for part in parents:
            node = node[part]
        del node[last]

    return mutate


RC = "clientRequest.recordingConfig"
TC = RC + ".transcodingConfig"
SC = "clientRequest.storageConfig"

MIX = bodies.start_recording
IND = bodies.start_individual
SNAP = bodies.start_snapshot
VOD = bodies.start_vod

# (id, mode, base body, mutation)
START_CASES: list[tuple[str, str, Callable[[], Body], Callable[[Body], None]]] = [
    ("uid-zero", "mix", MIX, _set("uid", "0")),
    ("uid-too-big", "mix", MIX, _set("uid", str(2**32))),
    ("uid-number", "mix", MIX, _set("uid", 527841)),
    ("no-recordingConfig", "mix", MIX, _delete("clientRequest.recordingConfig")),
    ("unknown-field", "mix", MIX, _set(RC + ".maxIdleTme", 30)),
    ("channelType-2", "mix", MIX, _set(RC + ".channelType", 2)),
    ("channelType-string", "mix", MIX, _set(RC + ".channelType", "0")),
    ("streamTypes-3", "mix", MIX, _set(RC + ".streamTypes", 3)),
    ("maxIdleTime-4", "mix", MIX, _set(RC + ".maxIdleTime", 4)),
    ("maxIdleTime-huge", "mix", MIX, _set(RC + ".maxIdleTime", 2**32)),
    ("decryption-without-secret", "mix", MIX, _set(RC + ".decryptionMode", 1)),
    ("decryptionMode-4", "mix", MIX, _set(RC + ".decryptionMode", 4)),
    ("audioProfile-3", "mix", MIX, _set(RC + ".audioProfile", 3)),
    ("videoStreamType-2", "mix", MIX, _set(RC + ".videoStreamType", 2)),
    ("subscribeUidGroup-4", "mix", MIX, _set(RC + ".subscribeUidGroup", 4)),
    ("sub-and-unsub-audio", "mix", MIX, _set(RC + ".unSubscribeAudioUids", ["9"])),
    ("sub-and-unsub-video", "mix", MIX, _set(RC + ".unSubscribeVideoUids", ["9"])),
    ("uid-list-33", "mix", MIX, _set(RC + ".subscribeAudioUids", [str(i) for i in range(1, 34)])),
    ("uid-list-bad-uid", "mix", MIX, _set(RC + ".subscribeAudioUids", ["abc"])),
    ("width-1921", "mix", MIX, _set(TC + ".width", 1921)),
    ("height-1921", "mix", MIX, _set(TC + ".height", 1921)),
    (
        "area-too-big",
        "mix",
        MIX,
        _set(TC, {"width": 1920, "height": 1920, "fps": 15, "bitrate": 500}),
    ),
    ("transcoding-missing-fps", "mix", MIX, _delete(TC + ".fps")),
    ("layout-custom-without-regions", "mix", MIX, _set(TC + ".mixedVideoLayout", 3)),
    ("layout-4", "mix", MIX, _set(TC + ".mixedVideoLayout", 4)),
    ("background-color", "mix", MIX, _set(TC + ".backgroundColor", "red")),
    (
        "region-x-out-of-range",
        "mix",
        MIX,
        _set(TC + ".layoutConfig", [{"x_axis": 1.5, "y_axis": 0, "width": 1, "height": 1}]),
    ),
    (
        "eighteen-regions",
        "mix",
        MIX,
        _set(TC + ".layoutConfig", [{"x_axis": 0, "y_axis": 0, "width": 1, "height": 1}] * 18),
    ),
    ("avFileType-mp4", "mix", MIX, _set("clientRequest.recordingFileConfig.avFileType", ["mp4"])),
    (
        "avFileType-hls-twice",
        "mix",
        MIX,
        _set("clientRequest.recordingFileConfig.avFileType", ["hls", "mp4", "hls"]),
    ),
    (
        "avFileType-mp3",  # in Agora's newest docs, for no mode we can name: not adopted
        "mix",
        MIX,
        _set("clientRequest.recordingFileConfig.avFileType", ["hls", "mp3"]),
    ),
    (
        "avFileType-mp4-individual",
        "individual",
        IND,
        _set("clientRequest.recordingFileConfig.avFileType", ["hls", "mp4"]),
    ),
    ("vendor-9", "mix", MIX, _set(SC + ".vendor", 9)),
    ("vendor-11", "mix", MIX, _set(SC + ".vendor", 11)),  # S3-compatible: not adopted
    (
        "aws-region-23",
        "mix",
        MIX,
        _set(SC, {"vendor": 1, "region": 23, "bucket": "b", "accessKey": "a", "secretKey": "s"}),
    ),
    (
        "huawei-region-16",
        "mix",
        MIX,
        lambda b: b["clientRequest"]["storageConfig"].update(vendor=7, region=16),
    ),
    (
        "baidu-region-0",
        "mix",
        MIX,
        lambda b: b["clientRequest"]["storageConfig"].update(vendor=8, region=0),
    ),
    (
        "qiniu-region-5",
        "mix",
        MIX,
        lambda b: b["clientRequest"]["storageConfig"].update(vendor=0, region=5),
    ),
    ("prefix-underscore", "mix", MIX, _set(SC + ".fileNamePrefix", ["dir_1"])),
    ("prefix-slash", "mix", MIX, _set(SC + ".fileNamePrefix", ["a/b"])),
    ("prefix-too-long", "mix", MIX, _set(SC + ".fileNamePrefix", ["a" * 64, "b" * 64])),
    ("empty-bucket", "mix", MIX, _set(SC + ".bucket", "")),
    (
        "files-and-snapshots",
        "individual",
        SNAP,
        _set("clientRequest.recordingFileConfig", {"avFileType": ["hls"]}),
    ),
    ("snapshot-in-mix", "mix", SNAP, lambda b: None),
    ("snapshot-audio-only", "individual", SNAP, _set(RC + ".streamTypes", 0)),
    (
        "snapshot-audio-list-without-video",
        "individual",
        SNAP,
        _set(RC + ".subscribeAudioUids", ["1"]),
    ),
    (
        "snapshot-interval-4",
        "individual",
        SNAP,
        _set("clientRequest.snapshotConfig.captureInterval", 4),
    ),
    (
        "snapshot-interval-3601",
        "individual",
        SNAP,
        _set("clientRequest.snapshotConfig.captureInterval", 3601),
    ),
    ("snapshot-png", "individual", SNAP, _set("clientRequest.snapshotConfig.fileType", ["png"])),
    ("vod-in-individual", "individual", VOD, lambda b: None),
    (
        "vod-with-storage",
        "mix",
        VOD,
        _set(SC, {"vendor": 1, "region": 0, "bucket": "b", "accessKey": "a", "secretKey": "s"}),
    ),
    ("vod-with-snapshot", "mix", VOD, _set("clientRequest.snapshotConfig", {"fileType": ["jpg"]})),
    (
        "vod-wrong-service",
        "mix",
        VOD,
        _set(
            "clientRequest.extensionServiceConfig.extensionServices",
            [{"serviceName": "other", "serviceParam": {}}],
        ),
    ),
    (
        "vod-error-policy",
        "mix",
        VOD,
        _set("clientRequest.extensionServiceConfig.errorHandlePolicy", "ignore"),
    ),
    ("individual-without-uid-group", "individual", IND, _delete(RC + ".subscribeUidGroup")),
    ("individual-with-audioProfile", "individual", IND, _set(RC + ".audioProfile", 0)),
    ("individual-with-transcoding", "individual", MIX, lambda b: None),
]

# A start whose uid differs from the acquire's is answered 432 before any code-2 rule.
EMULATOR_CASES = [c for c in START_CASES if not c[0].startswith("uid-")]


@pytest.mark.parametrize(
    ("case", "mode", "base", "mutate"), EMULATOR_CASES, ids=[c[0] for c in EMULATOR_CASES]
)
async def test_emulator_answers_code_2(
    emulator: EmulatorHandle,
    case: str,
    mode: str,
    base: Callable[[], Body],
    mutate: Callable[[Body], None],
) -> None:
    body = base()
    mutate(body)
    client = emulator.client(validate=False)
    rid = await client.acquire(emulator.app_id, bodies.acquire())
    with pytest.raises(PermanentError) as caught:
        await client.start(emulator.app_id, rid, mode, body)
    assert caught.value.code == 2, caught.value
    assert emulator.emu.requests("start")[-1]["status"] == 400


@pytest.mark.parametrize(
    ("case", "mode", "base", "mutate"), START_CASES, ids=[c[0] for c in START_CASES]
)
async def test_client_refuses_before_sending(
    emulator: EmulatorHandle,
    case: str,
    mode: str,
    base: Callable[[], Body],
    mutate: Callable[[Body], None],
) -> None:
    body = base()
    mutate(body)
    with pytest.raises(InvalidRequestError) as caught:
        await emulator.client().start(emulator.app_id, "any-resource", mode, body)
    assert caught.value.code == 2
    assert caught.value.status == 0
    assert emulator.emu.requests() == []


@pytest.mark.parametrize("uid", ["0", str(2**32), "12a", "-1", ""])
async def test_acquire_uid_range(emulator: EmulatorHandle, uid: str) -> None:
    with pytest.raises(PermanentError) as caught:
        await emulator.client(validate=False).acquire(emulator.app_id, bodies.acquire(uid=uid))
    assert caught.value.code == 2
    with pytest.raises(InvalidRequestError):
        await emulator.client().acquire(emulator.app_id, bodies.acquire(uid=uid))


@pytest.mark.parametrize("hours", [0, 721, "24"])
async def test_acquire_resource_expired_hour_range(emulator: EmulatorHandle, hours: Any) -> None:
    body = bodies.acquire()
    body["clientRequest"]["resourceExpiredHour"] = hours
    with pytest.raises(PermanentError) as caught:
        await emulator.client(validate=False).acquire(emulator.app_id, body)
    assert caught.value.code == 2
    with pytest.raises(InvalidRequestError):
        await emulator.client().acquire(emulator.app_id, body)


@pytest.mark.parametrize(
    "stream_subscribe",
    [
        {"audioUidList": {"subscribeAudioUids": []}},
        {"videoUidList": {"unSubscribeVideoUids": [str(i) for i in range(1, 34)]}},
        {"audioUidList": {"subscribeAudioUids": ["1"], "unSubscribeAudioUids": ["2"]}},
        {"videoUidList": {"subscribeVideoUids": ["x"]}},
    ],
)
async def test_update_rules_are_code_2(
    emulator: EmulatorHandle, stream_subscribe: dict[str, Any]
) -> None:
    client = emulator.client(validate=False)
    rid = await client.acquire(emulator.app_id, bodies.acquire())
    sid = await client.start(emulator.app_id, rid, "mix", bodies.start_recording())
    body = bodies.update()
    body["clientRequest"]["streamSubscribe"] = stream_subscribe
    with pytest.raises(PermanentError) as caught:
        await client.update(emulator.app_id, rid, sid, "mix", body)
    assert caught.value.code == 2
    with pytest.raises(InvalidRequestError):
        await emulator.client().update(emulator.app_id, rid, sid, "mix", body)


async def test_update_respects_stream_types(emulator: EmulatorHandle) -> None:
    client = emulator.client()
    start = bodies.start_recording()
    start["clientRequest"]["recordingConfig"]["streamTypes"] = 0  # audio only
    del start["clientRequest"]["recordingConfig"]["subscribeVideoUids"]
    rid = await client.acquire(emulator.app_id, bodies.acquire())
    sid = await client.start(emulator.app_id, rid, "mix", start)
    with pytest.raises(PermanentError) as caught:
        await client.update(emulator.app_id, rid, sid, "mix", bodies.update())
    assert caught.value.code == 2


async def test_client_refuses_bad_channel_and_layout(emulator: EmulatorHandle) -> None:
    client = emulator.client()
    with pytest.raises(InvalidRequestError) as caught:
        await client.acquire(emulator.app_id, bodies.acquire(cname="bad/name"))
    assert caught.value.code == 1013
    body = bodies.update_layout()
    body["clientRequest"]["backgroundColor"] = "#12345"
    with pytest.raises(InvalidRequestError) as caught:
        await client.update_layout(emulator.app_id, "r", "s", "mix", body)
    assert caught.value.code == 1028
    assert emulator.emu.requests() == []


async def test_a_mode_of_neither_kind_is_refused_in_plain_words(
    emulator: EmulatorHandle,
) -> None:
    said = "mode must be one of mix, individual, not 'web'"
    rid = await emulator.client().acquire(emulator.app_id, bodies.acquire())
    with pytest.raises(InvalidRequestError, match=said) as refused:
        await emulator.client().start(emulator.app_id, rid, "web", bodies.start_recording())
    assert refused.value.code == 2 and emulator.emu.requests("start") == []
    url = f"{emulator.base_url}/v1/apps/{emulator.app_id}/cloud_recording/resourceid/{rid}"
    answer = await emulator.control().post(
        f"{url}/mode/web/start",
        content=json.dumps(bodies.start_recording()),
        headers={"Content-Type": "application/json;charset=utf-8"},
        auth=(emulator.customer_id, emulator.customer_secret),
    )
    assert (answer.status_code, answer.json()) == (400, {"code": 2, "reason": said})
