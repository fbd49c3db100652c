"""From a manifest to the exact request bodies of the Cloud Recording API.

This is the ONLY module that knows Agora's numeric codes and the API's field
names (`unSubscribeAudioUids`, `x_axis`, `render_mode`, ...). The model accepts
numeric codes too, so it borrows the tables at the top of this module to map a
code to its word; everything else speaks words.

It must never resolve a secret by itself: `start_body` takes a resolver, and
`fingerprints` hashes secret *references*, never values. Bodies are plain,
JSON-ready dicts; UIDs are strings in bodies, as the reference requires.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from orchestrator.secrets import SecretRef

if TYPE_CHECKING:  # the model imports this module's tables; no runtime cycle
    from orchestrator.manifest.model import Layout, Manifest, Recording, Subscription

# --- Agora's numeric codes, by the words manifests use -------------------------------

CHANNEL_TYPES: Mapping[str, int] = {"communication": 0, "live": 1}
STREAM_TYPES: Mapping[str, int] = {"audio": 0, "video": 1, "audio+video": 2}
DECRYPTION_MODES: Mapping[str, int] = {
    "none": 0,
    "aes-128-xts": 1,
    "aes-128-ecb": 2,
    "aes-256-xts": 3,
}
AUDIO_PROFILES: Mapping[str, int] = {
    "mono-48kbps": 0,
    "mono-128kbps": 1,
    "stereo-192kbps": 2,
}
VIDEO_STREAM_TYPES: Mapping[str, int] = {"high": 0, "low": 1}
UID_GROUPS: Mapping[str, int] = {"1-2": 0, "3-7": 1, "8-12": 2, "13-17": 3}
LAYOUT_TYPES: Mapping[str, int] = {"floating": 0, "adaptive": 1, "vertical": 2, "custom": 3}
RENDER_MODES: Mapping[str, int] = {"crop": 0, "fit": 1}
VENDORS: Mapping[str, int] = {
    "qiniu": 0,
    "aws-s3": 1,
    "aliyun-oss": 2,
    "tencent-cos": 3,
    "kingsoft-ks3": 4,
}
# Region names exactly as the reference's tables spell them (matching is
# case-insensitive and treats `-` and `_` alike, so `us-east-1` is US_EAST_1).
REGIONS: Mapping[str, Mapping[str, int]] = {
    "qiniu": {"Huadong": 0, "Huabei": 1, "Huanan": 2, "Beimei": 3, "Dongnanya": 4},
    "aws-s3": {
        "US_EAST_1": 0,
        "US_EAST_2": 1,
        "US_WEST_1": 2,
        "US_WEST_2": 3,
        "EU_WEST_1": 4,
        "EU_WEST_2": 5,
        "EU_WEST_3": 6,
        "EU_CENTRAL_1": 7,
        "AP_SOUTHEAST_1": 8,
        "AP_SOUTHEAST_2": 9,
        "AP_NORTHEAST_1": 10,
        "AP_NORTHEAST_2": 11,
        "SA_EAST_1": 12,
        "CA_CENTRAL_1": 13,
        "AP_SOUTH_1": 14,
        "CN_NORTH_1": 15,
        "US_GOV_WEST_1": 17,
    },
    "aliyun-oss": {
        "CN_Hangzhou": 0,
        "CN_Shanghai": 1,
        "CN_Qingdao": 2,
        "CN_Beijin": 3,
        "CN_Zhangjiakou": 4,
        "CN_Huhehaote": 5,
        "CN_Shenzhen": 6,
        "CN_Hongkong": 7,
        "US_West_1": 8,
        "US_East_1": 9,
        "AP_Southeast_1": 10,
        "AP_Southeast_2": 11,
        "AP_Southeast_3": 12,
        "AP_Southeast_5": 13,
        "AP_Northeast_1": 14,
        "AP_South_1": 15,
        "EU_Central_1": 16,
        "EU_West_1": 17,
        "EU_East_1": 18,
    },
    "tencent-cos": {
        "AP_Beijing_1": 0,
        "AP_Beijing": 1,
        "AP_Shanghai": 2,
        "AP_Guangzhou": 3,
        "AP_Chengdu": 4,
        "AP_Chongqing": 5,
        "AP_Shenzhen_FSI": 6,
        "AP_Shanghai_FSI": 7,
        "AP_Beijing_FSI": 8,
        "AP_Hongkong": 9,
        "AP_Singapore": 10,
        "AP_Mumbai": 11,
        "AP_Seoul": 12,
        "AP_Bangkok": 13,
        "AP_Tokyo": 14,
        "NA_Siliconvalley": 15,
        "NA_Ashburn": 16,
        "NA_Toronto": 17,
        "EU_Frankfurt": 18,
        "EU_Moscow": 19,
    },
    "kingsoft-ks3": {
        "CN_Hangzhou": 0,
        "CN_Shanghai": 1,
        "CN_Qingdao": 2,
        "CN_Beijing": 3,
        "CN_Guangzhou": 4,
        "CN_Hongkong": 5,
        "JR_Beijing": 6,
        "JR_Shanghai": 7,
        "NA_Russia_1": 8,
        "NA_Singapore_1": 9,
    },
}
ALL_STREAMS = "#allstream#"
ALIYUN_VOD_SERVICE = "aliyun_vod_service"
# What the reference says the service uses when `transcodingConfig` is absent; it
# also requires all four once the object is sent, which a layout alone forces.
DEFAULT_TRANSCODING: Mapping[str, int] = {"width": 360, "height": 640, "fps": 15, "bitrate": 500}

SecretResolver = Callable[[SecretRef], str]


# --- bodies --------------------------------------------------------------------------


def mode_path(m: Manifest) -> str:
    """The `<mode>` segment of start/update/query/stop URLs."""
    return str(m.mode)


def _identity(m: Manifest) -> dict[str, Any]:
    return {"cname": m.channel, "uid": str(m.recording_uid)}


def acquire_body(m: Manifest) -> dict[str, Any]:
    client: dict[str, Any] = {}
    if m.resource_expired_hour is not None:
        client["resourceExpiredHour"] = m.resource_expired_hour
    return {**_identity(m), "clientRequest": client}


def _uids(values: tuple[int | str, ...]) -> list[str]:
    return [str(v) for v in values]


def _subscription_lists(r: Recording) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    if r.subscribe is not None:
        if r.subscribe.audio is not None:
            out["subscribeAudioUids"] = _uids(r.subscribe.audio)
        if r.subscribe.video is not None:
            out["subscribeVideoUids"] = _uids(r.subscribe.video)
    if r.unsubscribe is not None:
        if r.unsubscribe.audio is not None:
            out["unSubscribeAudioUids"] = _uids(r.unsubscribe.audio)
        if r.unsubscribe.video is not None:
            out["unSubscribeVideoUids"] = _uids(r.unsubscribe.video)
    return out


def _layout_fields(layout: Layout | None) -> dict[str, Any]:
    """mixedVideoLayout, backgroundColor, layoutConfig, maxResolutionUid: the whole layout."""
    if layout is None:
        return {"mixedVideoLayout": LAYOUT_TYPES["floating"], "backgroundColor": "#000000"}
    out: dict[str, Any] = {"mixedVideoLayout": LAYOUT_TYPES[layout.type]}
    out["backgroundColor"] = layout.background or "#000000"
    if layout.max_resolution_uid is not None:
        out["maxResolutionUid"] = str(layout.max_resolution_uid)
    if layout.regions is not None:
        regions: list[dict[str, Any]] = []
        for region in layout.regions:
            entry: dict[str, Any] = {}
            if region.uid is not None:
                entry["uid"] = str(region.uid)
            entry["x_axis"] = float(region.x)
            entry["y_axis"] = float(region.y)
            entry["width"] = float(region.width)
            entry["height"] = float(region.height)
            if region.alpha is not None:
                entry["alpha"] = float(region.alpha)
            if region.render_mode is not None:
                entry["render_mode"] = RENDER_MODES[region.render_mode]
            regions.append(entry)
        out["layoutConfig"] = regions
    return out


def _recording_config(m: Manifest, resolve: SecretResolver) -> dict[str, Any]:
    r = m.recording
    cfg: dict[str, Any] = {
        "channelType": CHANNEL_TYPES[r.channel_type],
        "streamTypes": STREAM_TYPES[r.streams],
        "maxIdleTime": r.max_idle_time,
    }
    if r.decryption is not None and r.decryption.mode != "none":
        cfg["decryptionMode"] = DECRYPTION_MODES[r.decryption.mode]
        if r.decryption.secret is not None:
            cfg["secret"] = resolve(r.decryption.secret)
    if r.audio_profile is not None:
        cfg["audioProfile"] = AUDIO_PROFILES[r.audio_profile]
    if r.video_stream_type is not None:
        cfg["videoStreamType"] = VIDEO_STREAM_TYPES[r.video_stream_type]
    if m.transcoding is not None or m.layout is not None:
        t = m.transcoding
        transcoding: dict[str, Any] = (
            dict(DEFAULT_TRANSCODING)
            if t is None
            else {"width": t.width, "height": t.height, "fps": t.fps, "bitrate": t.bitrate}
        )
        if m.layout is not None:
            transcoding.update(_layout_fields(m.layout))
        cfg["transcodingConfig"] = transcoding
    cfg.update(_subscription_lists(r))
    group = m.subscribe_uid_group
    if group is not None:
        cfg["subscribeUidGroup"] = UID_GROUPS[group]
    return cfg


def start_body(m: Manifest, resolve: SecretResolver) -> dict[str, Any]:
    """The `start` body; `resolve` turns each secret reference into the value to send."""
    client: dict[str, Any] = {}
    if m.token is not None:
        client["token"] = resolve(m.token)
    client["recordingConfig"] = _recording_config(m, resolve)
    if m.recording_files is not None:
        client["recordingFileConfig"] = {"avFileType": list(m.recording_files.file_types)}
    if m.snapshots is not None:
        snap: dict[str, Any] = {}
        if m.snapshots.interval is not None:
            snap["captureInterval"] = m.snapshots.interval
        snap["fileType"] = list(m.snapshots.file_types)
        client["snapshotConfig"] = snap
    if m.storage is not None:
        s = m.storage
        storage: dict[str, Any] = {
            "vendor": VENDORS[s.vendor],
            "region": REGIONS[s.vendor][s.region],
            "bucket": s.bucket,
            "accessKey": resolve(s.access_key),
            "secretKey": resolve(s.secret_key),
        }
        if s.file_name_prefix is not None:
            storage["fileNamePrefix"] = list(s.file_name_prefix)
        client["storageConfig"] = storage
    if m.aliyun_vod is not None:
        vod = m.aliyun_vod
        video = vod.video_data.model_dump(by_alias=True, exclude_none=True)
        service: dict[str, Any] = {
            "serviceName": ALIYUN_VOD_SERVICE,
            "serviceParam": {
                "accessKey": resolve(vod.access_key),
                "secretKey": resolve(vod.secret_key),
                "regionId": vod.region_id,
                "apiData": {"videoData": video},
            },
        }
        if vod.error_handle_policy is not None:
            service["errorHandlePolicy"] = vod.error_handle_policy
        client["extensionServiceConfig"] = {"extensionServices": [service]}
    return {**_identity(m), "clientRequest": client}


def _listed_kinds(r: Recording) -> list[str]:
    """The recorded kinds (audio, video) that have a subscribe or unsubscribe list."""
    return [
        kind
        for kind in r.recorded_kinds
        if _uid_list(r.subscribe, kind) is not None or _uid_list(r.unsubscribe, kind) is not None
    ]


def _uid_list(lists: Subscription | None, kind: str) -> tuple[int | str, ...] | None:
    return None if lists is None else lists.kind(kind)


def stream_subscribe(m: Manifest) -> dict[str, Any]:
    """The `streamSubscribe` object: the manifest's whole subscription for `update`.

    A recorded kind without a list is sent as `#allstream#` only when no kind has
    a list (the manifest subscribes to everything); when some kind has a list,
    the reference leaves the others unsubscribed, which `update` cannot express,
    so they are omitted (and `fingerprints.restart` covers that case).
    """
    r = m.recording
    listed = _listed_kinds(r)
    out: dict[str, Any] = {}
    for kind in r.recorded_kinds:
        cap = kind.capitalize()
        sub = _uid_list(r.subscribe, kind)
        unsub = _uid_list(r.unsubscribe, kind)
        entry: dict[str, list[str]] = {}
        if sub is not None:
            entry[f"subscribe{cap}Uids"] = _uids(sub)
        elif unsub is not None:
            entry[f"unSubscribe{cap}Uids"] = _uids(unsub)
        elif not listed:
            entry[f"subscribe{cap}Uids"] = [ALL_STREAMS]
        if entry:
            out[f"{kind}UidList"] = entry
    return out


def update_body(m: Manifest) -> dict[str, Any]:
    """The `update` body: {"uid", "cname", "clientRequest": {"streamSubscribe": ...}}."""
    return {**_identity(m), "clientRequest": {"streamSubscribe": stream_subscribe(m)}}


def update_layout_body(m: Manifest) -> dict[str, Any]:
    """The `updateLayout` body. It replaces the whole layout, so all of it is always sent."""
    return {**_identity(m), "clientRequest": _layout_fields(m.layout)}


def stop_body(
    m: Manifest | None = None, *, channel: str = "", uid: int | str = 0
) -> dict[str, Any]:
    """The `stop` body, from a manifest or from a stored session's channel and uid."""
    if m is not None:
        return {**_identity(m), "clientRequest": {}}
    return {"cname": channel, "uid": str(uid), "clientRequest": {}}


# --- fingerprints --------------------------------------------------------------------


@dataclass(frozen=True)
class Fingerprints:
    """sha256 hex digests of canonical JSON; secret references hashed, never values."""

    spec: str  # everything (any change at all)
    subscription: str  # the parts `update` can change
    layout: str  # the parts `updateLayout` can change
    restart: str  # everything else a live session depends on (needs stop + start)


def describe_secret(ref: SecretRef) -> str:
    """A placeholder naming the reference: `<env:S3_KEY>`; a literal is never shown."""
    return f"<{ref.describe()}>"


def _digest(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()


_LAYOUT_KEYS = ("mixedVideoLayout", "backgroundColor", "layoutConfig", "maxResolutionUid")
_LIST_KEYS = (
    "subscribeAudioUids",
    "subscribeVideoUids",
    "unSubscribeAudioUids",
    "unSubscribeVideoUids",
)


def fingerprints(m: Manifest) -> Fingerprints:
    """What changed between two versions of a manifest, as the planner needs it.

    `restart` is the start/acquire bodies without the subscription lists and the
    layout, plus the app, mode and which recorded kinds `update` cannot subscribe
    again. Schedule, suspend, labels, updatePolicy and startingDeadline are in
    `spec` only: they decide *when* to record, not what a live session does.
    """
    start = start_body(m, describe_secret)
    config = start["clientRequest"]["recordingConfig"]
    for key in _LIST_KEYS:
        config.pop(key, None)
    transcoding = config.get("transcodingConfig")
    if transcoding is not None:
        for key in _LAYOUT_KEYS:
            transcoding.pop(key, None)
    recorded = (
        ("audio", "video") if m.recording.streams == "audio+video" else (m.recording.streams,)
    )
    listed = _listed_kinds(m.recording)
    # A recorded kind left without a list while another kind has one is not
    # subscribed at all, and `update` cannot change that: it needs a restart.
    unreachable = [k for k in recorded if listed and k not in listed]
    restart = {
        "app": m.app,
        "mode": str(m.mode),
        "acquire": acquire_body(m),
        "start": start,
        "unsubscribedKinds": unreachable,
    }
    layout = _layout_fields(m.layout) if str(m.mode) == "mix" else None
    spec = m.model_dump(mode="json", by_alias=True, exclude_none=True)
    spec_secrets = {path: describe_secret(ref) for path, ref in m.secret_refs()}
    return Fingerprints(
        spec=_digest({"manifest": _mask(spec, spec_secrets), "uid": m.recording_uid}),
        subscription=_digest(stream_subscribe(m)),
        layout=_digest(layout),
        restart=_digest(restart),
    )


def _mask(spec: dict[str, Any], secrets: Mapping[str, str]) -> dict[str, Any]:
    """Replace each secret in a dumped manifest by its reference description."""
    for path, described in secrets.items():
        node: Any = spec
        parts = path.split(".")
        for part in parts[:-1]:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict) and parts[-1] in node:
            node[parts[-1]] = described
    return spec
