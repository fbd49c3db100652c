"""The manifest model: every rule of the reference, human words and numeric codes.

Covers: identity fields (name, app, channel charset and length, uid range and
`auto`), words and codes for every enumerated field (case-insensitive, regions by
vendor), durations in fields (their grammar: test_manifest_scalars), recording
lists (size, `#allstream#`, subscribe xor unsubscribe, lists vs streams),
subscribeUidGroup (required in individual mode, derived when certain, checked
when explicit), transcoding limits, layout kinds, and the reference's exclusions
and mode restrictions (recording files xor snapshots, snapshots only individual
with video, aliyun VOD only mix without storage or snapshots,
transcoding/layout/audioProfile only mix), schedule forms, resourceExpiredHour,
secrets; and what Agora's current documentation adds (docs/contracts.md): mp4
beside hls in mix mode only, the vendors 5 .. 8 (Azure and Google Cloud without
regions) and the regions the current tables add.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from manifest_docs import INDIVIDUAL, MIX, errors_of, with_
from pydantic import ValidationError

from orchestrator import contract
from orchestrator.manifest.model import MAX_UID, Manifest, Mode, derive_uid
from orchestrator.secrets import CredentialSecret, EnvSecret, LiteralSecret

STORAGE = {
    "vendor": "aws-s3",
    "region": "us-east-1",
    "bucket": "b",
    "accessKey": {"env": "AK"},
    "secretKey": {"credential": "sk"},
}
VOD = {
    "accessKey": {"env": "AK"},
    "secretKey": {"env": "SK"},
    "regionId": "cn-shanghai",
    "videoData": {"title": "t"},
}


def build(doc: dict[str, Any]) -> Manifest:
    return Manifest.model_validate(doc)


def test_minimal_documents_are_valid() -> None:
    m = build(MIX)
    assert m.mode is Mode.MIX
    assert m.recording.streams == "audio+video"
    assert m.recording.max_idle_time == 30
    assert build(INDIVIDUAL).subscribe_uid_group == "1-2"


def test_model_is_frozen() -> None:
    m = build(MIX)
    with pytest.raises(ValidationError):
        m.name = "other"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("name", "-bad", "letters, digits"),
        ("name", "x" * 129, "letters, digits"),
        ("app", "", "profile name"),
        ("channel", "a/b", "'/'"),
        ("channel", "x" * 65, "65 characters"),
        ("channel", "", "1 to 64"),
        ("uid", 0, "1 to 4294967295"),
        ("uid", MAX_UID + 1, "1 to 4294967295"),
        ("uid", True, "not a uid"),
        ("uid", "abc", "or auto"),
        ("mode", "composite", "mix or individual"),
        ("updatePolicy", "later", "restart or defer"),
        ("resourceExpiredHour", 0, "at least 1"),
        ("resourceExpiredHour", 721, "at most 720"),
        # true is not 1 (YAML's booleans were read as numbers: resources of an hour)
        ("resourceExpiredHour", True, "whole number (got true)"),
        ("startingDeadline", "soon", "30m"),
        ("suspend", "perhaps", "true or false"),
    ],
)
def test_identity_and_top_level_errors(field: str, value: Any, fragment: str) -> None:
    found = errors_of(with_(MIX, **{field: value}))
    assert [f for f, _ in found] == [field]
    assert fragment in found[0][1]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"token": ""}, "token"),
        ({"recording": {"decryption": {"mode": 1, "secret": ""}}}, "recording.decryption.secret"),
        ({"storage": {**STORAGE, "accessKey": ""}}, "storage.accessKey"),
    ],
)
def test_an_empty_literal_secret_is_an_error_where_it_is_written(
    changes: dict[str, Any], field: str
) -> None:
    """Defect: it was a warning (a literal), `validate` passed, and every start failed
    ("cannot resolve a secret": Agora refuses an empty one)."""
    found = errors_of(with_(MIX, **changes))
    assert found == [(field, "a secret cannot be empty: write its value, or a reference")]


def test_the_recorders_own_uid_is_no_user_it_subscribes_to_or_shows() -> None:
    """Defect: `subscribe: {audio: [<its uid>]}` or `maxResolutionUid: <its uid>` passed:
    the reference forbids the recorder's uid to be any user's in the channel, so either
    the user clashed with the recorder or the only subscribed uid could never be there.
    Both its uids count (a rollover's successor records on the other)."""
    uid, rollover = MIX["uid"], 900001
    doc = with_(
        MIX,
        rolloverUid=rollover,
        recording={"subscribe": {"audio": [7, uid], "video": [rollover]}},
        layout={"type": "vertical", "maxResolutionUid": uid},
    )
    found = errors_of(doc)
    assert [f for f, _ in found] == [
        "recording.subscribe.audio[1]",
        "recording.subscribe.video[0]",
        "layout.maxResolutionUid",
    ]
    assert found[0][1].startswith(f"{uid} is the recorder's own uid (`uid`)")
    assert found[1][1].startswith(f"{rollover} is the recorder's own uid (`rolloverUid`)")
    custom = {"type": "custom", "regions": [{**REGION, "uid": uid}]}
    assert [f for f, _ in errors_of(with_(MIX, layout=custom))] == ["layout.regions[0].uid"]
    # Unsubscribing it is harmless (it is not a user): allowed.
    assert errors_of(with_(MIX, recording={"unsubscribe": {"audio": [uid]}})) == []


def test_channel_allows_the_whole_reference_charset() -> None:
    channel = "aZ09 !#$%&()+-:;<=.>?@[]^_{}|~,"
    assert build(with_(MIX, channel=channel)).channel == channel
    assert build(with_(MIX, channel="c" * 64)).channel == "c" * 64


@pytest.mark.parametrize("missing", ["name", "app", "channel", "uid", "mode", "schedule"])
def test_required_top_level_keys(missing: str) -> None:
    found = errors_of(with_(MIX, **{missing: None}))
    assert [f for f, _ in found] == [missing]
    assert found[0][1].startswith(f"'{missing}' is required: ")


def test_uid_forms() -> None:
    assert build(with_(MIX, uid="527841")).recording_uid == 527841
    assert build(with_(MIX, uid=MAX_UID)).recording_uid == MAX_UID
    auto = build(with_(MIX, uid="auto"))
    assert auto.recording_uid == derive_uid("standup")
    assert 1 <= auto.recording_uid <= MAX_UID


def test_derived_uid_is_stable_and_documented() -> None:
    import hashlib

    digest = hashlib.sha256(b"orchestrator-uid:weekly-standup").digest()
    assert derive_uid("weekly-standup") == 1 + int.from_bytes(digest[:8], "big") % MAX_UID
    assert derive_uid("a") != derive_uid("b")
    assert all(1 <= derive_uid(f"n{i}") <= MAX_UID for i in range(2000))


@pytest.mark.parametrize(
    ("section", "key", "value", "expected"),
    [
        ("recording", "channelType", "LIVE", "live"),
        ("recording", "channelType", 1, "live"),
        ("recording", "channelType", "0", "communication"),
        ("recording", "streams", 0, "audio"),
        ("recording", "streams", "Audio+Video", "audio+video"),
        ("recording", "videoStreamType", 1, "low"),
        ("recording", "audioProfile", 2, "stereo-192kbps"),
        ("recording", "audioProfile", "MONO_128KBPS", "mono-128kbps"),
        ("recording", "subscribeUidGroup", 3, "13-17"),
        ("recording", "maxIdleTime", "2m", 120),
        ("recording", "maxIdleTime", 5, 5),
        ("recording", "maxIdleTime", MAX_UID, MAX_UID),
    ],
)
def test_words_and_codes(section: str, key: str, value: Any, expected: Any) -> None:
    m = build(with_(MIX, **{section: {key: value}}))
    attr = {
        "channelType": "channel_type",
        "videoStreamType": "video_stream_type",
        "audioProfile": "audio_profile",
        "subscribeUidGroup": "subscribe_uid_group",
        "maxIdleTime": "max_idle_time",
    }.get(key, key)
    assert getattr(m.recording, attr) == expected


def test_unknown_word_lists_valid_words_and_suggests() -> None:
    found = errors_of(with_(MIX, recording={"channelType": "livee"}))
    assert found == [
        (
            "recording.channelType",
            "'livee' is not a valid channelType: use one of communication, live "
            "(or the code 0, 1); did you mean 'live'?",
        )
    ]


@pytest.mark.parametrize(
    ("vendor", "region", "canonical"),
    [
        ("aws-s3", "us-east-1", "US_EAST_1"),
        ("aws-s3", "US_EAST_1", "US_EAST_1"),
        ("aws-s3", 17, "US_GOV_WEST_1"),
        (1, "ap-south-1", "AP_SOUTH_1"),
        ("qiniu", "huadong", "Huadong"),
        ("aliyun-oss", "cn-beijin", "CN_Beijin"),
        ("aliyun-oss", 18, "EU_East_1"),
        ("tencent-cos", "ap_beijing_1", "AP_Beijing_1"),
        ("tencent-cos", "AP_Beijing", "AP_Beijing"),
        ("tencent-cos", 19, "EU_Moscow"),
        ("kingsoft-ks3", "cn_beijing", "CN_Beijing"),
        ("Kingsoft-KS3", "9", "NA_Singapore_1"),
        # widened by Agora's current documentation (docs/contracts.md)
        ("aws-s3", 16, "CN_NORTHWEST_1"),
        ("aws-s3", "eu-south-1", "EU_SOUTH_1"),
        ("aliyun-oss", "CN_Beijing", "CN_Beijin"),  # the current spelling of 3
        ("aliyun-oss", "cn-southeast-7", "CN_Southeast_7"),
        ("aliyun-oss", 27, "CN_Southeast_7"),
        ("huawei-obs", "cn-north-4", "CN_North_4"),
        ("HUAWEI_OBS", 15, "SA_Chile_1"),
        (7, "la_south_2", "LA_South_2"),
        ("baidu-bos", "wuhan", "Wuhan"),
        ("Baidu BOS", "7", "Shanghai"),
    ],
)
def test_storage_regions_by_name_or_number(vendor: Any, region: Any, canonical: str) -> None:
    m = build(with_(MIX, storage={**STORAGE, "vendor": vendor, "region": region}))
    assert m.storage is not None
    assert m.storage.region == canonical


@pytest.mark.parametrize(
    ("vendor", "region", "fragment"),
    [
        ("aws-s3", 23, "not a region of aws-s3"),  # in neither the reference nor Agora's table
        ("aws-s3", "us-gov-east-1", "EU_SOUTH_1 (25)"),
        ("qiniu", 5, "Dongnanya (4)"),
        ("aliyun-oss", "CN_Bejing", "did you mean 'CN_Beijin'?"),
        ("aliyun-oss", 28, "CN_Southeast_7 (27)"),
        ("kingsoft-ks3", "us-east-1", "NA_Russia_1 (8)"),
        ("huawei-obs", 16, "SA_Chile_1 (15)"),
        ("baidu-bos", 0, "use one of Baoding (1),"),  # the current table starts at 1
        ("baidu-bos", "beijing", "not a region of baidu-bos"),
        ("azure-blob", "us-east-1", "azure-blob has no regions (Agora ignores region for it)"),
        ("google-gcs", 0, "remove region"),
        # digits of another script: not Agora's numbers (one was read as region 1, one
        # was Python's own "invalid literal for int()")
        ("aws-s3", "\u0661", "not a region of aws-s3"),
        ("aws-s3", "\u00b2", "not a region of aws-s3"),
    ],
)
def test_storage_region_errors_list_the_vendor_table(
    vendor: str, region: Any, fragment: str
) -> None:
    found = errors_of(with_(MIX, storage={**STORAGE, "vendor": vendor, "region": region}))
    assert [f for f, _ in found] == ["storage.region"]
    assert fragment in found[0][1]


def test_storage_vendor_words() -> None:
    found = errors_of(with_(MIX, storage={**STORAGE, "vendor": "s3"}))
    assert found[0][0] == "storage.vendor"
    assert (
        "qiniu, aws-s3, aliyun-oss, tencent-cos, kingsoft-ks3, "
        "azure-blob, google-gcs, huawei-obs, baidu-bos (or the code 0, 1, 2, 3, 4, 5, 6, 7, 8)"
    ) in found[0][1]


@pytest.mark.parametrize(
    ("vendor", "code"),
    [("azure-blob", 5), ("Azure_Blob", 5), (5, 5), ("google-gcs", 6), ("6", 6)],
)
def test_vendors_without_regions_take_none(vendor: Any, code: int) -> None:
    storage = {key: value for key, value in STORAGE.items() if key != "region"}
    m = build(with_(MIX, storage={**storage, "vendor": vendor}))
    assert m.storage is not None
    assert m.storage.region is None
    assert contract.VENDORS[m.storage.vendor] == code


@pytest.mark.parametrize("vendor", ["aws-s3", "huawei-obs", "baidu-bos", "qiniu"])
def test_a_vendor_with_regions_needs_one(vendor: str) -> None:
    storage = {key: value for key, value in STORAGE.items() if key != "region"}
    found = errors_of(with_(MIX, storage={**storage, "vendor": vendor}))
    assert [f for f, _ in found] == ["storage.region"]
    first = next(iter(contract.REGIONS[vendor]))
    assert found[0][1].startswith(f"required for {vendor}: use one of {first} (")


@pytest.mark.parametrize(
    ("prefix", "ok"),
    [
        (["a", "B9"], True),
        (["a_b"], False),
        (["a/b"], False),
        (["x" * 127], True),  # 127 + its slash = 128
        (["x" * 128], False),
        (["x" * 60, "y" * 66], True),  # 60 + 1 + 66 + 1 = 128
        (["x" * 60, "y" * 67], False),
        ([], False),
    ],
)
def test_file_name_prefix(prefix: list[str], ok: bool) -> None:
    found = errors_of(with_(MIX, storage={**STORAGE, "fileNamePrefix": prefix}))
    assert (found == []) is ok, found
    assert all(f.startswith("storage.fileNamePrefix") for f, _ in found)


@pytest.mark.parametrize(
    ("recording", "field", "fragment"),
    [
        ({"subscribe": {"audio": list(range(1, 34))}}, "recording.subscribe.audio", "at most 32"),
        ({"subscribe": {"audio": []}}, "recording.subscribe.audio", "at least 1"),
        ({"subscribe": {"audio": ["#allstream#", 5]}}, "recording.subscribe.audio", "alone"),
        ({"subscribe": {"video": [5, 5]}}, "recording.subscribe.video[1]", "listed twice"),
        (
            {"subscribe": {"audio": [1]}, "unsubscribe": {"audio": [2]}},
            "recording.unsubscribe.audio",
            "not both",
        ),
        (
            {"unsubscribe": {"video": ["#allstream#"]}},
            "recording.unsubscribe.video",
            "subscribe list",
        ),
        (
            {"streams": "audio", "subscribe": {"video": [1]}},
            "recording.subscribe.video",
            "no video list",
        ),
        (
            {"streams": "video", "unsubscribe": {"audio": [1]}},
            "recording.unsubscribe.audio",
            "no audio list",
        ),
        ({"maxIdleTime": 4}, "recording.maxIdleTime", "5 to 4294967295"),
        ({"subscribe": {"audio": [0]}}, "recording.subscribe.audio[0]", "not a uid"),
        ({"decryption": {"mode": "aes-128-xts"}}, "recording.decryption.secret", "required"),
        (
            {"decryption": {"mode": "none", "secret": {"env": "X"}}},
            "recording.decryption.secret",
            "not allowed",
        ),
        ({"decryption": {"mode": "rot13"}}, "recording.decryption.mode", "aes-256-xts"),
        (
            {"subscribe": {"audio": [1, 2, 3]}, "subscribeUidGroup": "1-2"},
            "recording.subscribeUidGroup",
            "name 3 uids, so the group is 3-7",
        ),
        ({"subscribeUidGroup": 4}, "recording.subscribeUidGroup", "13-17"),
        ({"sreams": "audio"}, "recording.sreams", "did you mean 'streams'?"),
    ],
)
def test_recording_rules(recording: dict[str, Any], field: str, fragment: str) -> None:
    found = errors_of(with_(MIX, recording=recording))
    assert [f for f, _ in found] == [field], found
    assert fragment in found[0][1]


def test_uid_group_is_derived_only_when_the_lists_make_it_certain() -> None:
    def group(recording: dict[str, Any]) -> str | None:
        return build(with_(INDIVIDUAL, recording=recording)).subscribe_uid_group

    assert group({"subscribe": {"audio": [1, 2], "video": [2, 3]}}) == "3-7"
    assert group({"subscribe": {"audio": list(range(1, 13))}}) == "8-12"
    assert group({"subscribe": {"video": list(range(1, 18))}}) == "13-17"
    assert group({"subscribe": {"audio": [1]}, "subscribeUidGroup": "1-2"}) == "1-2"
    # in mix mode nothing is derived: the body carries only an explicit group
    assert build(with_(MIX, recording={"subscribe": {"audio": [1]}})).subscribe_uid_group is None


@pytest.mark.parametrize(
    "recording",
    [
        {},
        {"subscribe": {"audio": ["#allstream#"]}},
        {"unsubscribe": {"audio": [1]}},
        {"subscribe": {"audio": list(range(1, 19))}},  # 18 uids: beyond the last group
    ],
)
def test_individual_mode_needs_a_uid_group_it_cannot_derive(recording: dict[str, Any]) -> None:
    found = errors_of(with_(MIX, mode="individual", recording=recording))
    assert [f for f, _ in found] == ["recording.subscribeUidGroup"]
    assert "required in individual mode" in found[0][1]


@pytest.mark.parametrize(
    ("transcoding", "field", "fragment"),
    [
        ({"width": 1921, "height": 100, "fps": 15, "bitrate": 500}, "transcoding.width", "1920"),
        (
            {"width": 1920, "height": 1081, "fps": 15, "bitrate": 500},
            "transcoding.height",
            "1920x1080",
        ),
        ({"width": 1080, "height": 1920, "fps": 15, "bitrate": 500}, None, ""),
        ({"width": 640, "height": 360, "fps": 15}, "transcoding.bitrate", "required"),
        ({"width": 640, "height": 360, "fps": 0, "bitrate": 1}, "transcoding.fps", "at least 1"),
        # Agora's current documentation: over 6500 Kbps the start is refused.
        ({"width": 640, "height": 360, "fps": 15, "bitrate": 6500}, None, ""),
        (
            {"width": 640, "height": 360, "fps": 15, "bitrate": 6501},
            "transcoding.bitrate",
            "at most 6500",
        ),
        (
            {"width": 640, "height": 360, "fps": True, "bitrate": 500},
            "transcoding.fps",
            "whole number (got true)",
        ),
    ],
)
def test_transcoding(transcoding: dict[str, Any], field: str | None, fragment: str) -> None:
    found = errors_of(with_(MIX, transcoding=transcoding))
    assert [f for f, _ in found] == ([field] if field else [])
    if field:
        assert fragment in found[0][1]


REGION = {"x": 0, "y": 0, "width": 0.5, "height": 0.5}


@pytest.mark.parametrize(
    ("layout", "field", "fragment"),
    [
        ({"type": "custom"}, "layout.regions", "1 to 17 regions"),
        ({"type": "custom", "regions": [REGION] * 18}, "layout.regions", "at most 17"),
        ({"type": "adaptive", "regions": [REGION]}, "layout.regions", "only for type custom"),
        ({"type": "floating", "maxResolutionUid": 5}, "layout.maxResolutionUid", "vertical"),
        ({"background": "red"}, "layout.background", "#RRGGBB"),
        ({"background": None}, "layout.background", "quotes"),
        (
            {"type": "custom", "regions": [{**REGION, "x": 1.5}]},
            "layout.regions[0].x",
            "0.0 to 1.0",
        ),
        (
            {"type": "custom", "regions": [{**REGION, "alpha": 0.1234567}]},
            "layout.regions[0].alpha",
            "six decimals",
        ),
        (
            {"type": "custom", "regions": [{**REGION, "renderMode": "stretch"}]},
            "layout.regions[0].renderMode",
            "crop, fit",
        ),
        ({"type": "custom", "regions": [{"x": 0}]}, "layout.regions[0].y", "required"),
        ({"type": "grid"}, "layout.type", "floating, adaptive, vertical, custom"),
    ],
)
def test_layout_rules(layout: dict[str, Any], field: str, fragment: str) -> None:
    found = errors_of(with_(MIX, layout=layout))
    assert found and found[0][0] == field, found
    assert fragment in found[0][1]


def test_layout_words_and_codes() -> None:
    m = build(
        with_(
            MIX,
            layout={
                "type": 3,
                "background": "#00ff00",
                "regions": [{**REGION, "uid": "7", "renderMode": 1, "alpha": 1}],
            },
        )
    )
    assert m.layout is not None
    assert m.layout.type == "custom"
    assert m.layout.background == "#00FF00"
    assert m.layout.regions is not None
    assert m.layout.regions[0].render_mode == "fit"
    assert m.layout.regions[0].uid == 7
    vertical = build(with_(MIX, layout={"type": "vertical", "maxResolutionUid": 9}))
    assert vertical.layout is not None and vertical.layout.max_resolution_uid == 9


@pytest.mark.parametrize(
    ("changes", "fields", "fragment"),
    [
        # only mix: transcoding, layout, audioProfile, aliyunVod
        (
            {"transcoding": {"width": 1, "height": 1, "fps": 1, "bitrate": 1}},
            ["transcoding"],
            "only allowed in mix mode",
        ),
        ({"layout": {"type": "adaptive"}}, ["layout"], "only allowed in mix mode"),
        (
            {"recording": {"audioProfile": 1, "subscribeUidGroup": 0}},
            ["recording.audioProfile"],
            "mix mode",
        ),
        ({"aliyunVod": VOD}, ["aliyunVod"], "only allowed in mix mode"),
        # snapshots: individual only, with video, not with recording files
        (
            {"snapshots": {"interval": 5}, "recordingFiles": {}},
            ["snapshots"],
            "either snapshots or recordingFiles",
        ),
        (
            {"snapshots": {}, "recording": {"streams": "audio", "subscribeUidGroup": 0}},
            ["recording.streams"],
            "snapshots need video",
        ),
        (
            {
                "snapshots": {},
                "recording": {"subscribe": {"audio": [1]}, "subscribeUidGroup": 0},
            },
            ["recording.subscribe.video"],
            "needs a subscribe video list",
        ),
        # a repeated type: valid once, it could never be translated (never recorded)
        (
            {"snapshots": {"fileTypes": ["jpg", "jpg"]}},
            ["snapshots.fileTypes"],
            "jpg is listed more than once",
        ),
    ],
)
def test_individual_mode_restrictions(
    changes: dict[str, Any], fields: list[str], fragment: str
) -> None:
    found = errors_of(with_(INDIVIDUAL, **changes))
    assert [f for f, _ in found] == fields, found
    assert fragment in found[0][1]


@pytest.mark.parametrize(
    ("changes", "fields"),
    [
        ({"snapshots": {"interval": 5}}, ["snapshots"]),
        ({"aliyunVod": VOD, "storage": STORAGE}, ["storage"]),
        ({"aliyunVod": {**VOD, "videoData": {}}}, ["aliyunVod.videoData.title"]),
        ({"aliyunVod": {**VOD, "regionId": "CN Shanghai"}}, ["aliyunVod.regionId"]),
        ({"aliyunVod": {**VOD, "errorHandlePolicy": "ignore"}}, ["aliyunVod.errorHandlePolicy"]),
        ({"recordingFiles": {"fileTypes": ["mp3"]}}, ["recordingFiles.fileTypes[0]"]),
    ],
)
def test_mix_mode_exclusions(changes: dict[str, Any], fields: list[str]) -> None:
    assert [f for f, _ in errors_of(with_(MIX, **changes))] == fields


@pytest.mark.parametrize(
    ("file_types", "canonical"),
    [
        (["hls"], ("hls",)),
        (["hls", "mp4"], ("hls", "mp4")),
        (["mp4", "hls"], ("hls", "mp4")),  # the order written changes nothing
    ],
)
def test_mix_mode_records_mp4_beside_hls(file_types: list[str], canonical: tuple[str]) -> None:
    m = build(with_(MIX, recordingFiles={"fileTypes": file_types}))
    assert m.recording_files is not None
    assert m.recording_files.file_types == canonical


@pytest.mark.parametrize(
    ("base", "file_types", "message"),
    [
        (
            MIX,
            ["mp4"],
            "mp4 needs hls beside it (Agora refuses it alone): write fileTypes: [hls, mp4]",
        ),
        (MIX, ["hls", "mp4", "hls"], "hls is listed more than once"),
        (
            INDIVIDUAL,
            ["hls", "mp4"],
            "mp4 is only allowed in mix mode (mode is individual): write fileTypes: [hls]",
        ),
        (
            INDIVIDUAL,
            ["mp4"],
            "mp4 needs hls beside it (Agora refuses it alone): write fileTypes: [hls, mp4]",
        ),
        (MIX, ["mp3"], "must be 'hls' or 'mp4' (got 'mp3')"),
        (MIX, [], "needs at least 1 item"),
    ],
)
def test_recording_file_types_errors(
    base: dict[str, Any], file_types: list[str], message: str
) -> None:
    found = errors_of(with_(base, recordingFiles={"fileTypes": file_types}))
    assert len(found) == 1, found
    field, text = found[0]
    assert field.startswith("recordingFiles.fileTypes")
    assert message in text


def test_every_feature_together_is_valid() -> None:
    m = build(
        with_(
            MIX,
            token={"env": "TOKEN"},
            resourceExpiredHour=24,
            recording={"audioProfile": 0, "subscribe": {"audio": [1]}, "subscribeUidGroup": 0},
            transcoding={"width": 1920, "height": 1080, "fps": 30, "bitrate": 3000},
            layout={"type": "custom", "regions": [REGION]},
            aliyunVod=VOD,
        )
    )
    assert m.aliyun_vod is not None
    snap = build(
        with_(
            INDIVIDUAL,
            snapshots={"interval": "1h", "fileTypes": ["jpg"]},
            storage=STORAGE,
            recording={"streams": "video", "subscribeUidGroup": 0},
        )
    )
    assert snap.snapshots is not None and snap.snapshots.interval == 3600
    assert build(with_(INDIVIDUAL, snapshots=None, recordingFiles={})).recording_files is not None


def test_empty_snapshots_section_means_defaults() -> None:
    doc = with_(INDIVIDUAL)
    doc["snapshots"] = None
    m = build(doc)
    assert m.snapshots is not None
    assert m.snapshots.interval is None
    assert m.snapshots.file_types == ("jpg",)


@pytest.mark.parametrize(
    ("interval", "ok"), [(4, False), (5, True), (3600, True), (3601, False), ("2m", True)]
)
def test_snapshot_interval_range(interval: Any, ok: bool) -> None:
    found = errors_of(with_(INDIVIDUAL, snapshots={"interval": interval}))
    assert (found == []) is ok


@pytest.mark.parametrize(
    ("schedule", "field", "fragment"),
    [
        ({}, "schedule", "cron + timezone + duration"),
        ({"cron": "0 9 * * *"}, "schedule.timezone", "required with cron"),
        ({"cron": "0 9 * * *", "timezone": "UTC"}, "schedule.duration", "required with cron"),
        ({"cron": "61 9 * * *", "timezone": "UTC", "duration": "1h"}, "schedule.cron", ""),
        (
            {"cron": "0 9 * * *", "timezone": "Mars/Base", "duration": "1h"},
            "schedule.timezone",
            "IANA",
        ),
        (
            {"cron": "0 9 * * *", "timezone": "Europe/Berln", "duration": "1h"},
            "schedule.timezone",
            "did you mean 'Europe/Berlin'?",
        ),
        # Defect: names of the host's zone files were taken; `localtime` is whatever
        # zone the machine is set to.
        *(
            (
                {"cron": "0 9 * * *", "timezone": name, "duration": "1h"},
                "schedule.timezone",
                "a file of this host's zone database, not an IANA time zone",
            )
            for name in ("localtime", "posixrules", "right/UTC", "posix/Europe/Berlin")
        ),
        ({"cron": "0 9 * * *", "timezone": "UTC", "duration": "0s"}, "schedule.duration", "longer"),
        ({"cron": "0 9 * * *", "timezone": "UTC", "duration": "1x"}, "schedule.duration", "1h30m"),
        ({"always": True, "timezone": "UTC"}, "schedule.timezone", "only used with cron"),
        (
            {
                "always": True,
                "windows": [{"start": "2026-01-01T00:00:00Z", "end": "2026-01-02T00:00:00Z"}],
            },
            "schedule.always",
            "only one of",
        ),
        ({"windows": []}, "schedule.windows", "at least 1"),
        (
            {"windows": [{"start": "2026-01-01T00:00:00", "end": "2026-01-02T00:00:00Z"}]},
            "schedule.windows[0].start",
            "UTC offset",
        ),
        (
            {"windows": [{"start": "2026-01-02T00:00:00Z", "end": "2026-01-01T00:00:00Z"}]},
            "schedule.windows[0].end",
            "after start",
        ),
        (
            {"windows": [{"start": "tomorrow", "end": "2026-01-01T00:00:00Z"}]},
            "schedule.windows[0].start",
            "ISO-8601",
        ),
        ({"always": False}, "schedule.always", "always: true"),
        ("sometimes", "schedule", "must be a mapping"),
    ],
)
def test_schedule_rules(schedule: Any, field: str, fragment: str) -> None:
    found = errors_of(with_(MIX, schedule=schedule))
    assert found and found[0][0] == field, found
    assert fragment in found[0][1]


def test_schedule_forms_build() -> None:
    from datetime import UTC, datetime

    now = datetime(2026, 3, 2, 7, 0, tzinfo=UTC)  # a Monday, 08:00 in Berlin
    cron = build(MIX).build_schedule()
    first = cron.windows_between(now, now + timedelta(days=2))[0]
    assert first.start == datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
    assert first.end - first.start == timedelta(minutes=30)
    always = build(with_(MIX, schedule="always")).build_schedule()
    assert always.active_at(now) is not None
    assert build(with_(MIX, schedule={"always": True})).schedule.always is True
    windows = build(
        with_(
            MIX,
            schedule={
                "windows": [
                    {"start": "2026-03-02T09:00:00+01:00", "end": "2026-03-02T10:00:00+01:00"}
                ]
            },
        )
    ).build_schedule()
    assert windows.active_at(now + timedelta(hours=1, minutes=30)) is not None
    assert windows.active_at(now) is None


def test_secrets_are_references_and_literals_are_found() -> None:
    m = build(
        with_(
            MIX,
            token="plain-token",
            storage={**STORAGE, "accessKey": "AKIAEXAMPLE"},
        )
    )
    assert isinstance(m.token, LiteralSecret)
    assert m.literal_secrets() == ["token", "storage.accessKey"]
    refs = dict(m.secret_refs())
    assert refs["storage.secretKey"] == CredentialSecret(credential="sk")
    assert "plain-token" not in repr(m)
    assert "AKIAEXAMPLE" not in repr(m)
    assert isinstance(build(with_(MIX, token={"env": "T"})).token, EnvSecret)


@pytest.mark.parametrize(
    ("token", "field"),
    [
        ({"env": "1BAD"}, "token.env"),
        ({"vault": "x"}, "token"),
        ({"s3cr3t-T0KEN": "x"}, "token"),  # the secret written as a key
        (42, "token"),
    ],
)
def test_bad_secret_references_are_positioned_and_never_echoed(token: Any, field: str) -> None:
    found = errors_of(with_(MIX, token=token))
    assert [f for f, _ in found] == [field]
    for text in ("1BAD", "42", "vault", "s3cr3t"):
        assert text not in found[0][1]


def test_snake_case_keys_are_unknown() -> None:
    found = errors_of(with_(MIX, update_policy="defer"))
    assert found[0][0] == "update_policy"
    assert "did you mean 'updatePolicy'?" in found[0][1]


def test_validation_errors_never_raise_other_exceptions() -> None:
    for doc in ([], "x", 5, None, {"schedule": {"windows": "x"}}, {1: 2}):
        with pytest.raises(ValidationError):
            Manifest.model_validate(doc)
