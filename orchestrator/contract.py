"""The Cloud Recording reference, written once: limits, code tables, status codes.

Every rule of the reference that two layers need (the manifest model checks a
manifest, the wire models check a request body, the emulator answers like Agora)
reads its numbers, character sets and tables from here, so they cannot drift
apart. Words are what manifests say; codes are what the API takes. Where Agora's
current documentation allows more than the reference, the constant follows it and
a comment beside it cites the page (docs/contracts.md lists every such widening).

This module is a leaf: it imports nothing of ours, does no I/O, and spells no
rule that can be written in terms of the constants below.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from types import MappingProxyType
from typing import Final, Literal, get_args

# ------------------------------------------------------------ identity and channel

UINT32_MAX: Final = 2**32 - 1
#: A recording uid is 1 .. 2^32-1; a layout region's uid may also be 0.
MIN_UID: Final = 1
MAX_CHANNEL_BYTES: Final = 64
#: The 89 characters a channel name may contain (reference, error 1013).
CHANNEL_CHARSET: Final = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 !#$%&()+-:;<=.>?@[]^_{}|~,"
)
#: The same set as a regular expression (JSON schema of the manifest).
CHANNEL_PATTERN: Final = r"^[A-Za-z0-9 !#$%&()+\-:;<=.>?@\[\]^_{}|~,]+$"

_DIGITS = re.compile(r"[0-9]+")
_APP_CREDENTIAL = re.compile(r"[0-9a-fA-F]{32}")


def is_app_credential(value: str) -> bool:
    """An App ID or an App Certificate: 32 hexadecimal digits (Agora's token tools
    refuse anything else)."""
    return _APP_CREDENTIAL.fullmatch(value) is not None


def channel_name_problem(cname: str) -> str | None:
    """Why `cname` is not a valid channel name (error 1013), or None."""
    if not cname:
        return "channel name is empty"
    if len(cname.encode("utf-8")) > MAX_CHANNEL_BYTES:
        return f"channel name is longer than {MAX_CHANNEL_BYTES} bytes"
    bad = sorted({c for c in cname if c not in CHANNEL_CHARSET})
    if bad:
        return "channel name contains characters outside the allowed set: " + "".join(bad[:5])
    return None


def uid_problem(uid: str, *, allow_zero: bool = False) -> str | None:
    """Why `uid` is not a decimal UID string in 1..2^32-1 (0.. with allow_zero), or None."""
    if not _DIGITS.fullmatch(uid):
        return "must be a string of decimal digits"
    low = 0 if allow_zero else MIN_UID
    if not low <= int(uid) <= UINT32_MAX:
        return f"must be between {low} and {UINT32_MAX}"
    return None


#: The RESTful API's endpoints, as the client and the emulator name them (and the
#: `endpoint` label of the metrics).
ENDPOINTS: Final = ("acquire", "start", "update", "updateLayout", "query", "stop")

# ------------------------------------------------------------ modes and ranges


@dataclass(frozen=True)
class Range:
    """An integer field's bounds (both allowed) and what the service uses when it is
    not sent: one record per field, so its three numbers are read together."""

    low: int
    high: int
    default: int


class Mode(StrEnum):
    """The `<mode>` segment of the start, update, query and stop URLs."""

    MIX = "mix"
    INDIVIDUAL = "individual"


def mode_problem(mode: str) -> str | None:
    """Why `mode` is no `<mode>` segment of the URLs, or None."""
    if mode in tuple(Mode):
        return None
    return f"mode must be one of {', '.join(Mode)}, not {mode!r}"


#: "#allstream#": subscribe to every stream of a kind.
ALL_STREAMS: Final = "#allstream#"
#: Subscribe and unsubscribe lists: at most 32 uids each.
MAX_UID_LIST: Final = 32
#: A custom layout: at most 17 regions; a mix also records at most 17 uids.
MAX_LAYOUT_REGIONS: Final = 17
MAX_SUBSCRIBED_UIDS: Final = 17
#: transcodingConfig: each side at most 1920, the area at most 1920 x 1080.
MAX_SIDE: Final = 1920
MAX_PIXELS: Final = 1920 * 1080
#: transcodingConfig.bitrate: Kbps, at most 6500. The reference names no bound; Agora's
#: current documentation does ("设置输出视频属性", doc.shengwang.cn, cloud-recording
#: restful user-guide mix-mode set-output-video-profile): "码率上限为 6500 Kbps。如果
#: 设置的码率超过上限,会收到报错。" (over it, the start is refused).
MAX_BITRATE: Final = 6500
#: transcodingConfig.fps: Agora's standard frame rates; any other is recorded at 15
#: (the same page: "仅支持声网标准帧率 ... 如果你设置成其他帧率 ... 采用默认帧率 15 fps").
FRAME_RATES: Final = (1, 7, 10, 15, 24, 30, 60)
BACKGROUND_PATTERN: Final = r"^#[0-9A-Fa-f]{6}$"
DEFAULT_BACKGROUND: Final = "#000000"
#: maxIdleTime: seconds, 5 .. 2^32-1, default 30.
IDLE_TIME: Final = Range(low=5, high=UINT32_MAX, default=30)
#: snapshotConfig.captureInterval: seconds, 5 .. 3600, default 10.
CAPTURE_INTERVAL: Final = Range(low=5, high=3600, default=10)
#: acquire's resourceExpiredHour: 1 .. 720, default 72.
RESOURCE_HOURS: Final = Range(low=1, high=720, default=72)
#: clientRequest.token: an AccessToken2 token is valid for 24 hours at most, and the
#: recorder cannot renew its token (Agora's start reference: the token's validity must
#: exceed the recording's duration; its token FAQ: Cloud Recording leaves the channel
#: when its token expires). The longest a session with a token records.
MAX_TOKEN_HOURS: Final = 24
#: fileNamePrefix: parts of a-z A-Z 0-9, at most 128 characters with the slashes.
MAX_PREFIX_CHARS: Final = 128
PREFIX_PART: Final = re.compile(r"[A-Za-z0-9]+")
#: recordingFileConfig.avFileType. The reference allows only ["hls"] (M3U8 and TS
#: files). Widened (docs/contracts.md, "Where Agora's current documentation widens
#: the reference"): Agora's current start reference also takes "mp4" (an MP4 file
#: besides the M3U8/TS files) in composite (mix) recording, and only together with
#: "hls" (["mp4"] alone is answered with code 2); individual recording keeps the
#: default. "Start a cloud recording task",
#: https://docs.agora.io/en/api-reference/api-ref/cloud-recording/start
#: (Its "mp3" names no mode it is for: not adopted.)
RecordingFileType = Literal["hls", "mp4"]
SnapshotFileType = Literal["jpg"]
#: Every avFileType value, in the order a request lists them.
RECORDING_FILE_TYPES: Final[tuple[RecordingFileType, ...]] = get_args(RecordingFileType)
SNAPSHOT_FILE_TYPES: Final[tuple[SnapshotFileType, ...]] = get_args(SnapshotFileType)
HLS: Final[RecordingFileType] = "hls"
MP4: Final[RecordingFileType] = "mp4"
#: What avFileType is when not given; every avFileType must include HLS.
DEFAULT_RECORDING_FILE_TYPES: Final[tuple[RecordingFileType, ...]] = (HLS,)
#: File types only a mix-mode start may ask for.
MIX_ONLY_RECORDING_FILE_TYPES: Final[frozenset[RecordingFileType]] = frozenset({MP4})
AliyunVodService = Literal["aliyun_vod_service"]
ErrorAbort = Literal["error_abort"]  # the only errorHandlePolicy
ALIYUN_VOD_SERVICE: Final[AliyunVodService] = get_args(AliyunVodService)[0]
ERROR_ABORT: Final[ErrorAbort] = get_args(ErrorAbort)[0]
#: What the service uses when `transcodingConfig` is absent; the reference also
#: requires all four once the object is sent, which a layout alone forces.
DEFAULT_TRANSCODING: Final[Mapping[str, int]] = MappingProxyType(
    {"width": 360, "height": 640, "fps": 15, "bitrate": 500}
)

# ------------------------------------------------------------ code tables (word -> code)


def _table(entries: dict[str, int]) -> Mapping[str, int]:
    return MappingProxyType(entries)


CHANNEL_TYPES: Final = _table({"communication": 0, "live": 1})
STREAM_TYPES: Final = _table({"audio": 0, "video": 1, "audio+video": 2})
DECRYPTION_MODES: Final = _table({"none": 0, "aes-128-xts": 1, "aes-128-ecb": 2, "aes-256-xts": 3})
AUDIO_PROFILES: Final = _table({"mono-48kbps": 0, "mono-128kbps": 1, "stereo-192kbps": 2})
VIDEO_STREAM_TYPES: Final = _table({"high": 0, "low": 1})
#: subscribeUidGroup: the expected peak number of subscribed uids, by range.
UID_GROUPS: Final = _table({"1-2": 0, "3-7": 1, "8-12": 2, "13-17": 3})
UID_GROUP_RANGES: Final[Mapping[str, tuple[int, int]]] = MappingProxyType(
    {"1-2": (1, 2), "3-7": (3, 7), "8-12": (8, 12), "13-17": (13, 17)}
)
LAYOUT_TYPES: Final = _table({"floating": 0, "adaptive": 1, "vertical": 2, "custom": 3})
CUSTOM_LAYOUT: Final = LAYOUT_TYPES["custom"]
RENDER_MODES: Final = _table({"crop": 0, "fit": 1})
#: storageConfig.vendor. The reference lists 0 .. 4. Widened (docs/contracts.md):
#: Agora's current start reference adds 5 Microsoft Azure, 6 Google Cloud, 7 Huawei
#: Cloud (OBS) and 8 Baidu AI Cloud (BOS), same page as avFileType above.
#: (Its 11, S3-compatible storage, needs `extensionParams.endpoint`, which no manifest
#: field carries yet: not adopted.)
VENDORS: Final = _table(
    {
        "qiniu": 0,
        "aws-s3": 1,
        "aliyun-oss": 2,
        "tencent-cos": 3,
        "kingsoft-ks3": 4,
        "azure-blob": 5,
        "google-gcs": 6,
        "huawei-obs": 7,
        "baidu-bos": 8,
    }
)
# Region names exactly as the reference's tables spell them (manifests match them
# case-insensitively with `-` and `_` alike, so `us-east-1` is US_EAST_1).
#
# Widened (docs/contracts.md): the codes marked "current docs" are in Agora's current
# table ("Third-party cloud storage regions",
# https://docs.agora.io/en/realtime-media/cloud-recording/reference/region-vendor)
# and not in the reference. Nothing of the reference is dropped, even where the
# current table no longer lists it (aws-s3 17; qiniu and kingsoft-ks3 altogether).
# Azure and Google Cloud have no regions: Agora ignores `region` for them.
REGIONS: Final[Mapping[str, Mapping[str, int]]] = MappingProxyType(
    {
        "qiniu": _table({"Huadong": 0, "Huabei": 1, "Huanan": 2, "Beimei": 3, "Dongnanya": 4}),
        "aws-s3": _table(
            {
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
                "CN_NORTHWEST_1": 16,  # current docs
                "US_GOV_WEST_1": 17,  # the reference (no longer in the current table)
                "AF_SOUTH_1": 18,  # current docs, as are 19 .. 25 (no 23)
                "AP_EAST_1": 19,
                "AP_NORTHEAST_3": 20,
                "EU_NORTH_1": 21,
                "ME_SOUTH_1": 22,
                "AP_SOUTHEAST_3": 24,
                "EU_SOUTH_1": 25,
            }
        ),
        "aliyun-oss": _table(
            {
                "CN_Hangzhou": 0,
                "CN_Shanghai": 1,
                "CN_Qingdao": 2,
                "CN_Beijin": 3,  # the reference's spelling; CN_Beijing is REGION_ALIASES'
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
                "AP_Southeast_6": 19,  # current docs, as are 20 .. 27
                "CN_Heyuan": 20,
                "CN_Guangzhou": 21,
                "CN_Chengdu": 22,
                "CN_Nanjing": 23,
                "CN_Fuzhou": 24,
                "CN_Wulanchabu": 25,
                "CN_Northeast_2": 26,
                "CN_Southeast_7": 27,
            }
        ),
        "tencent-cos": _table(
            {
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
            }
        ),
        "kingsoft-ks3": _table(
            {
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
            }
        ),
        "azure-blob": _table({}),  # current docs
        "google-gcs": _table({}),  # current docs
        "huawei-obs": _table(  # current docs
            {
                "CN_North_1": 0,
                "CN_North_4": 1,
                "CN_East_2": 2,
                "CN_East_3": 3,
                "CN_South_1": 4,
                "CN_Southwest_2": 5,
                "AP_Southeast_1": 6,
                "AP_Southeast_2": 7,
                "AP_Southeast_3": 8,
                "AF_South_1": 9,
                "SA_Argentina_1": 10,
                "SA_Peru_1": 11,
                "NA_Mexico_1": 12,
                "SA_Brazil_1": 13,
                "LA_South_2": 14,
                "SA_Chile_1": 15,
            }
        ),
        # current docs; the table starts at 1 (an older version of Agora's start page
        # also had 0 Beijing, which the current table does not: not adopted)
        "baidu-bos": _table(
            {
                "Baoding": 1,
                "Suzhou": 2,
                "Guangzhou": 3,
                "Hongkong": 4,
                "Singapore": 5,
                "Wuhan": 6,
                "Shanghai": 7,
            }
        ),
    }
)
#: Other names of a region, per vendor: alias -> the table's name. Agora's current
#: table spells aliyun-oss 3 `CN_Beijing`; the reference `CN_Beijin`.
REGION_ALIASES: Final[Mapping[str, Mapping[str, str]]] = MappingProxyType(
    {"aliyun-oss": MappingProxyType({"CN_Beijing": "CN_Beijin"})}
)
#: Vendor codes that take no region (Agora ignores `region` for them), and the
#: `region` sent for them, since the field is required on the wire.
REGIONLESS_VENDORS: Final = frozenset(VENDORS[vendor] for vendor, t in REGIONS.items() if not t)
NO_REGION: Final = 0
#: Valid `region` codes per `vendor` code, derived from the tables above.
STORAGE_REGIONS: Final[Mapping[int, frozenset[int]]] = MappingProxyType(
    {VENDORS[vendor]: frozenset(table.values()) for vendor, table in REGIONS.items()}
)


def max_code(table: Mapping[str, int]) -> int:
    """The highest code of a table (the wire models' upper bound)."""
    return max(table.values())


# ------------------------------------------------------------ query status


class ServiceStatus(IntEnum):
    """`serverResponse.status` of a query: the state of the recording service."""

    NOT_STARTED = 0
    INITIALIZED = 1
    STARTING = 2
    PARTIALLY_STARTED = 3
    STARTED = 4
    RECORDING = 5
    STOP_REQUESTED = 6
    STOPPED = 7
    EXITED = 8
    EXITED_ABNORMALLY = 20


_EXITS: Final[Mapping[ServiceStatus, str]] = MappingProxyType(
    {
        ServiceStatus.EXITED: "idle exit or stopped",
        ServiceStatus.EXITED_ABNORMALLY: "abnormal exit",
    }
)

# `subServiceStatus.recordingService` (the reference's 服务状态): the query of a recording
# with an extension service (Aliyun VOD) answers it and no `status` (the reference's
# example, "阿里视频点播"). Each is read as the status it stands for, so that such a
# recording is seen recording (a rollover's successor) and seen leaving.
RECORDING_SERVICE: Final[Mapping[str, ServiceStatus]] = MappingProxyType(
    {
        "serviceIdle": ServiceStatus.NOT_STARTED,
        "serviceStarted": ServiceStatus.STARTING,
        "serviceReady": ServiceStatus.STARTED,
        "serviceInProgress": ServiceStatus.RECORDING,
        "serviceCompleted": ServiceStatus.EXITED,  # all uploaded
        "servicePartialCompleted": ServiceStatus.EXITED,  # partly uploaded
        "serviceValidationFailed": ServiceStatus.EXITED_ABNORMALLY,  # e.g. wrong apiData
        "serviceAbnormal": ServiceStatus.EXITED_ABNORMALLY,
    }
)


def service_status(status: int | None, recording_service: str | None) -> int | None:
    """The status a query answered: its `status`, or where it has none, the one its
    `recordingService` stands for (None: neither, or a word the reference does not list)."""
    if status is not None or recording_service is None:
        return status
    read = RECORDING_SERVICE.get(recording_service)
    return None if read is None else int(read)


def exit_description(status: int | None, recording_service: str | None = None) -> str | None:
    """Why the recording left, for a query's status (8, 20) or, where it answers none,
    its `recordingService`; None if it has not left."""
    read = service_status(status, recording_service)
    try:
        left = None if read is None else _EXITS.get(ServiceStatus(read))
    except ValueError:  # a status the reference does not list: nothing is concluded
        return None
    if left is None:
        return None
    return f"{left} (status {read})" if status is not None else f"{left} ({recording_service})"


# ------------------------------------------------------------ error codes


class ErrorCode(IntEnum):
    """The `code` of an error body (reference, "常见错误")."""

    INVALID_PARAMETER = 2
    ALREADY_STARTED = 7  # start sent again with the same resource ID
    BAD_HEADER = 8
    STOP_REPEATED = 49  # stop sent again with the same resource ID and sid
    RECORDING_EXISTS = 53  # another resource ID already records this channel and uid
    NO_RECORDING_PERMISSION = 62  # the App ID has no cloud recording enabled
    NETWORK_JITTER = 65  # retry with the same resource ID
    NOT_FOUND = 404  # the recording has ended or never existed
    MISMATCHED_PARAMETERS = 432
    RESOURCE_EXPIRED = 433  # start more than five minutes after acquire
    NO_FILES = 435  # nobody sent a stream: nothing was recorded
    EXITING = 501  # the service is leaving (query after stop)
    RESOURCE_DECRYPT_FAILED = 1001
    MISMATCHED_IDS = 1003
    INVALID_CHANNEL = 1013
    INVALID_UID = 1028


#: Codes that mean "this request can never succeed as sent".
PERMANENT_CODES: Final = frozenset(
    {
        ErrorCode.INVALID_PARAMETER,
        ErrorCode.BAD_HEADER,
        ErrorCode.MISMATCHED_PARAMETERS,
        ErrorCode.RESOURCE_DECRYPT_FAILED,
        ErrorCode.MISMATCHED_IDS,
        ErrorCode.INVALID_CHANNEL,
        ErrorCode.INVALID_UID,
    }
)
#: Codes that refuse the whole App ID (not one manifest's fault).
APP_CODES: Final = frozenset({ErrorCode.NO_RECORDING_PERMISSION})
