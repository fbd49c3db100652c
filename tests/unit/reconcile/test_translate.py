"""Translation into request bodies and the fingerprints the planner compares.

Covers: field spelling and codes beyond the golden examples (decryption,
audioProfile, videoStreamType, vertical layout, render modes, regions by
vendor, the vendors, regions and mp4 file type Agora's current documentation
adds, a vendor without regions sending region 0), the layout-only start body
filling the reference's transcoding defaults, update's `#allstream#` and omitted
kinds, updateLayout always sending the whole layout, the resolver being the only
way secrets enter a body, and the fingerprints: each change moves exactly the
digests it should (subscription, layout, restart, spec), schedule-like fields
never force a restart, and secret values never influence or appear in a digest;
the digests of a manifest are those earlier versions computed (an upgrade restarts
nothing), and `rolloverUid` moves no digest a live session is compared by (`auto`,
written or not, moves none at all), for the examples in recordings.d too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from orchestrator.manifest.model import Manifest
from orchestrator.reconcile.translate import Requests, translate
from orchestrator.secrets import SecretRef
from tests.unit.manifest.manifest_docs import INDIVIDUAL, MIX, with_

STORAGE = {
    "vendor": "tencent-cos",
    "region": "eu-frankfurt",
    "bucket": "b",
    "accessKey": {"env": "AK"},
    "secretKey": {"credential": "sk"},
}


def _layout(requests: Requests) -> dict[str, Any]:
    """The updateLayout body (mix mode only)."""
    assert requests.update_layout is not None
    return requests.update_layout.to_wire()


def build(doc: dict[str, Any]) -> Manifest:
    return Manifest.model_validate(doc)


def placeholder(ref: SecretRef) -> str:
    return f"resolved({ref.describe()})"


def test_start_body_codes_and_spelling() -> None:
    m = build(
        with_(
            MIX,
            uid="auto",
            recording={
                "channelType": "live",
                "streams": "audio",
                "decryption": {"mode": "aes-256-xts", "secret": {"env": "KEY"}},
                "audioProfile": "mono-128kbps",
                "videoStreamType": "low",
                "maxIdleTime": "1h",
                "unsubscribe": {"audio": [7]},
            },
            layout={"type": "vertical", "maxResolutionUid": 42},
            storage=STORAGE,
            token={"file": "/run/token"},
        )
    )
    body = translate(m).start.resolved(placeholder).to_wire()
    assert body["uid"] == str(m.recording_uid)
    client = body["clientRequest"]
    assert client["token"] == "resolved(file:/run/token)"
    assert client["recordingConfig"] == {
        "channelType": 1,
        "streamTypes": 0,
        "maxIdleTime": 3600,
        "decryptionMode": 3,
        "secret": "resolved(env:KEY)",
        "audioProfile": 1,
        "videoStreamType": 1,
        # a layout without transcoding: the reference's defaults fill the required four
        "transcodingConfig": {
            "width": 360,
            "height": 640,
            "fps": 15,
            "bitrate": 500,
            "mixedVideoLayout": 2,
            "backgroundColor": "#000000",
            "maxResolutionUid": "42",
        },
        "unSubscribeAudioUids": ["7"],
    }
    assert client["storageConfig"] == {
        "vendor": 3,
        "region": 18,
        "bucket": "b",
        "accessKey": "resolved(env:AK)",
        "secretKey": "resolved(credential:sk)",
    }
    assert "recordingFileConfig" not in client
    assert str(translate(m).mode) == "mix"


def test_individual_start_body_derives_the_uid_group() -> None:
    m = build(
        with_(
            INDIVIDUAL,
            recording={"subscribe": {"audio": [1, 2, 3, 4], "video": [4, 5, 6, 7, 8]}},
            recordingFiles={},
        )
    )
    config = translate(m).start.resolved(placeholder).to_wire()["clientRequest"]["recordingConfig"]
    assert config["subscribeUidGroup"] == 2  # 8 distinct uids: 8-12
    assert config["subscribeAudioUids"] == ["1", "2", "3", "4"]
    assert "transcodingConfig" not in config
    assert str(translate(m).mode) == "individual"


@pytest.mark.parametrize(
    ("recording", "expected"),
    [
        (
            {},
            {
                "audioUidList": {"subscribeAudioUids": ["#allstream#"]},
                "videoUidList": {"subscribeVideoUids": ["#allstream#"]},
            },
        ),
        ({"streams": "video"}, {"videoUidList": {"subscribeVideoUids": ["#allstream#"]}}),
        # a list for audio only: video is not subscribed, which update cannot say
        ({"subscribe": {"audio": [1, 2]}}, {"audioUidList": {"subscribeAudioUids": ["1", "2"]}}),
        (
            {"subscribe": {"video": [3]}, "unsubscribe": {"audio": [4]}},
            {
                "audioUidList": {"unSubscribeAudioUids": ["4"]},
                "videoUidList": {"subscribeVideoUids": ["3"]},
            },
        ),
    ],
)
def test_update_body(recording: dict[str, Any], expected: dict[str, Any]) -> None:
    body = translate(build(with_(MIX, recording=recording))).update.to_wire()
    assert body["clientRequest"] == {"streamSubscribe": expected}


def test_update_layout_sends_the_whole_layout_even_the_defaults() -> None:
    default = _layout(translate(build(MIX)))["clientRequest"]
    assert default == {"mixedVideoLayout": 0, "backgroundColor": "#000000"}
    custom = build(
        with_(
            MIX,
            layout={
                "type": "custom",
                "regions": [{"x": 0, "y": 0, "width": 1, "height": 1, "renderMode": "crop"}],
            },
        )
    )
    regions = _layout(translate(custom))["clientRequest"]["layoutConfig"]
    assert regions == [
        {"x_axis": 0.0, "y_axis": 0.0, "width": 1.0, "height": 1.0, "render_mode": 0}
    ]


@pytest.mark.parametrize(
    ("file_types", "expected"),
    [(["hls"], ["hls"]), (["hls", "mp4"], ["hls", "mp4"]), (["mp4", "hls"], ["hls", "mp4"])],
)
def test_recording_files_become_av_file_type(file_types: list[str], expected: list[str]) -> None:
    m = build(with_(MIX, recordingFiles={"fileTypes": file_types}))
    requests = translate(m)
    client = requests.start.resolved(placeholder).to_wire()["clientRequest"]
    assert client["recordingFileConfig"] == {"avFileType": expected}
    plain = translate(build(with_(MIX, recordingFiles={"fileTypes": ["hls"]})))
    # mp4 changes what a live session records: only a restart applies it
    assert (requests.fingerprints.restart == plain.fingerprints.restart) == (expected == ["hls"])


@pytest.mark.parametrize(
    ("vendor", "region", "expected"),
    [
        ("azure-blob", None, (5, 0)),  # no regions: the wire's required field carries 0
        ("google-gcs", None, (6, 0)),
        ("huawei-obs", "sa-chile-1", (7, 15)),
        ("baidu-bos", "Shanghai", (8, 7)),
        ("aws-s3", "eu-south-1", (1, 25)),
        ("aws-s3", "us-gov-west-1", (1, 17)),  # the reference's, kept
        ("aliyun-oss", "cn-beijing", (2, 3)),  # the current docs' spelling of CN_Beijin
        ("aliyun-oss", "CN_Wulanchabu", (2, 25)),
    ],
)
def test_storage_vendor_and_region_codes(
    vendor: str, region: str | None, expected: tuple[int, int]
) -> None:
    storage = {**STORAGE, "vendor": vendor, "region": region}
    if region is None:
        del storage["region"]
    body = translate(build(with_(MIX, storage=storage))).start.resolved(placeholder).to_wire()
    config = body["clientRequest"]["storageConfig"]
    assert (config["vendor"], config["region"]) == expected


def test_vod_body_keeps_optional_video_data_and_policy() -> None:
    m = build(
        with_(
            MIX,
            aliyunVod={
                "accessKey": {"env": "A"},
                "secretKey": {"env": "B"},
                "regionId": "cn-beijing",
                "errorHandlePolicy": "error_abort",
                "videoData": {"title": "T", "cateId": 1000, "workflowId": "w"},
            },
        )
    )
    service = (
        translate(m)
        .start.resolved(placeholder)
        .to_wire()["clientRequest"]["extensionServiceConfig"]["extensionServices"][0]
    )
    assert service["serviceName"] == "aliyun_vod_service"
    assert service["errorHandlePolicy"] == "error_abort"
    assert service["serviceParam"]["apiData"] == {
        "videoData": {"title": "T", "cateId": "1000", "workflowId": "w"}
    }


BASE = with_(
    MIX,
    recording={"subscribe": {"audio": [1, 2], "video": [1, 2]}},
    transcoding={"width": 640, "height": 360, "fps": 15, "bitrate": 500},
    layout={"type": "adaptive", "background": "#000000"},
    storage=STORAGE,
    token={"env": "TOKEN"},
)


def _recording(**changes: Any) -> dict[str, Any]:
    return {**BASE["recording"], **changes}


@pytest.mark.parametrize(
    ("changes", "moved"),
    [
        ({"recording": _recording(subscribe={"audio": [1, 3], "video": [1, 2]})}, {"subscription"}),
        (
            {"recording": _recording(subscribe=None, unsubscribe={"audio": [9], "video": [9]})},
            {"subscription"},
        ),
        ({"layout": {"type": "adaptive", "background": "#FFFFFF"}}, {"layout"}),
        ({"layout": {"type": "vertical", "maxResolutionUid": 2}}, {"layout"}),
        ({"layout": None}, {"layout"}),
        ({"transcoding": {"width": 1280, "height": 720, "fps": 15, "bitrate": 500}}, {"restart"}),
        ({"storage": {**STORAGE, "bucket": "other"}}, {"restart"}),
        ({"storage": {**STORAGE, "accessKey": {"env": "OTHER"}}}, {"restart"}),
        ({"token": {"env": "OTHER"}}, {"restart"}),
        ({"token": None}, {"restart"}),
        ({"channel": "other"}, {"restart"}),
        ({"uid": 11}, {"restart"}),  # not a uid its lists name (a user's)
        ({"app": "backup"}, {"restart"}),
        ({"resourceExpiredHour": 48}, {"restart"}),
        ({"recording": _recording(maxIdleTime=60)}, {"restart"}),
        ({"recording": _recording(channelType="live")}, {"restart"}),
        ({"recording": _recording(subscribe={"audio": [1, 2]})}, {"subscription", "restart"}),
        ({"schedule": "always"}, set()),
        ({"suspend": True}, set()),
        ({"labels": {"team": "x"}}, set()),
        ({"updatePolicy": "defer"}, set()),
        ({"startingDeadline": "5m"}, set()),
    ],
)
def test_each_change_moves_exactly_its_fingerprints(
    changes: dict[str, Any], moved: set[str]
) -> None:
    before = translate(build(BASE)).fingerprints
    doc = dict(BASE)
    for key, value in changes.items():
        if value is None:
            doc.pop(key, None)
        else:
            doc[key] = value
    after = translate(build(doc)).fingerprints
    changed = {
        part
        for part in ("subscription", "layout", "restart")
        if getattr(before, part) != getattr(after, part)
    }
    assert changed == moved
    assert before.spec != after.spec


def test_fingerprints_are_stable_and_hash_references_not_values() -> None:
    a = translate(build(BASE)).fingerprints
    assert a == translate(build(dict(BASE))).fingerprints
    literal = with_(BASE, token="secret-one")
    other = with_(BASE, token="secret-two")
    fa, fb = translate(build(literal)).fingerprints, translate(build(other)).fingerprints
    # a literal's value is never hashed: changing it changes no digest
    assert fa == fb
    assert all(len(d) == 64 for d in (a.spec, a.subscription, a.layout, a.restart))


def test_individual_mode_has_no_layout_fingerprint_to_change() -> None:
    one = translate(build(INDIVIDUAL)).fingerprints
    two = translate(build(with_(INDIVIDUAL, name="other-name"))).fingerprints
    assert one.layout == two.layout
    # with an explicit uid the name does not reach the API: no restart, a new spec
    assert one.restart == two.restart
    assert one.spec != two.spec


# The digests of BASE and INDIVIDUAL as the versions before `rolloverUid` computed them.
# A live session's digests are stored with it and compared with the manifest's at every
# pass: a new digest for an unchanged manifest would restart every live recording at
# an upgrade. Change these only with a migration of the stored digests.
EARLIER = {
    "BASE": (
        "174f1d7f14149cbc6170f4aeac2e3cea9e5e9afdfd66a5b42a6ae8264650c5fe",
        "c79ebf8f0edcf597af1765a591f546d7cc804cf67dd1c2ce850ae9e27500c60d",
        "b816b0bb6a965cfa1b909f3fa1fd7f6b821f0e98c9e6c14a0024d50ef990cb04",
        "ac65ba269c6de82f35a95a049f4c8f388992d8bd0f3028ccdffc675fadc1bf46",
    ),
    "INDIVIDUAL": (
        "d8421229204873d1d19475db0d360462695ab4eed53b9da373632159e192b694",
        "ac0a72e4bd4833c233f033c114c61f28668dbefd55ccb0321b59391c2ff092fb",
        "74234e98afe7498fb5daf1f36ac2d78acc339464f950703b8c019892f982b90b",
        "efe0065db4200d98760633f15eb1bd1fc7df43028acc1366f921efa86a1c21ec",
    ),
}


@pytest.mark.parametrize("label", sorted(EARLIER))
@pytest.mark.parametrize("rollover", [None, "auto", "AUTO"])
def test_fingerprints_are_those_earlier_versions_computed(label: str, rollover: str | None) -> None:
    doc = with_({"BASE": BASE, "INDIVIDUAL": INDIVIDUAL}[label], rolloverUid=rollover)
    f = translate(build(doc)).fingerprints
    assert (f.spec, f.subscription, f.layout, f.restart) == EARLIER[label]


def test_an_explicit_rollover_uid_restarts_nothing() -> None:
    """The successor's uid matters at the next rollover only. The spec digest follows
    it (the version kept as last known good must keep it), no session digest does."""
    before = translate(build(BASE)).fingerprints
    for rollover in (42, "42", 4294967295):
        after = translate(build(with_(BASE, rolloverUid=rollover))).fingerprints
        assert (after.restart, after.subscription, after.layout) == (
            before.restart,
            before.subscription,
            before.layout,
        )
        assert after.spec != before.spec
    one = translate(build(with_(BASE, rolloverUid=42))).fingerprints
    two = translate(build(with_(BASE, rolloverUid=43))).fingerprints
    assert (one.restart, one.subscription, one.layout) == (
        two.restart,
        two.subscription,
        two.layout,
    )


EXAMPLES = sorted((Path(__file__).parents[3] / "recordings.d").glob("*.yaml"))


def _example_documents() -> list[dict[str, Any]]:
    yaml = YAML(typ="safe", pure=True)
    return [d for path in EXAMPLES for d in yaml.load_all(path.read_text("utf-8")) if d]


@pytest.mark.parametrize("doc", _example_documents(), ids=lambda d: str(d["name"]))
def test_the_examples_keep_their_fingerprints_whatever_their_rollover_uid(
    doc: dict[str, Any],
) -> None:
    """Written as `auto` (the default) the key changes no digest at all; a number
    changes none a live session is compared by."""
    plain = translate(build(doc)).fingerprints
    assert translate(build(with_(doc, rolloverUid="auto"))).fingerprints == plain
    other = 1 if build(doc).recording_uid != 1 else 2
    numbered = translate(build(with_(doc, rolloverUid=other))).fingerprints
    assert (numbered.restart, numbered.subscription, numbered.layout) == (
        plain.restart,
        plain.subscription,
        plain.layout,
    )
