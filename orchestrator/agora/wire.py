"""Wire models: every request and response body of the six endpoints, field for field.

Field names are the reference's exact JSON names (camelCase, `x_axis`, ...), so a
model dumps to the bytes Agora expects. Request models are strict and forbid
unknown fields: they encode every range, exclusion and mode restriction of the
reference, and are shared by the client (checking before sending) and the emulator
(answering code 2 / 1028 like Agora). Rules that depend on the URL's `mode` read it
from the validation context: ``StartRequest.model_validate(body, context={"mode": m})``.

Response models are lenient: unknown fields are kept, and numbers that arrive as
strings (``"status": "5"`` in the reference's own example) are coerced.

This module never formats an input value into an error message: bodies carry
storage keys, tokens and decryption secrets.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    model_validator,
)

UINT32_MAX = 2**32 - 1
MAX_CHANNEL_BYTES = 64
MAX_UID_LIST = 32
MAX_LAYOUT_REGIONS = 17
MAX_PREFIX_CHARS = 128
ALL_STREAMS = "#allstream#"
MODES = ("mix", "individual")

#: The 89 characters a channel name may contain (reference, error 1013).
CHANNEL_CHARSET = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 !#$%&()+-:;<=.>?@[]^_{}|~,"
)

#: Valid `region` numbers per storage `vendor` (reference, storageConfig).
STORAGE_REGIONS: dict[int, frozenset[int]] = {
    0: frozenset(range(5)),  # Qiniu
    1: frozenset([*range(16), 17]),  # Amazon S3 (there is no 16)
    2: frozenset(range(19)),  # Alibaba Cloud
    3: frozenset(range(20)),  # Tencent Cloud
    4: frozenset(range(10)),  # Kingsoft Cloud
}

_PREFIX_PART = re.compile(r"[A-Za-z0-9]+")
_COLOR = r"^#[0-9A-Fa-f]{6}$"
_DIGITS = re.compile(r"[0-9]+")


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
    """Why `uid` is not a decimal UID string in 1..2^32-1, or None."""
    if not _DIGITS.fullmatch(uid):
        return "must be a string of decimal digits"
    low = 0 if allow_zero else 1
    if not low <= int(uid) <= UINT32_MAX:
        return f"must be between {low} and {UINT32_MAX}"
    return None


def _check_uid(value: str) -> str:
    problem = uid_problem(value)
    if problem:
        raise ValueError(f"uid {problem}")
    return value


def _check_layout_uid(value: str) -> str:
    problem = uid_problem(value, allow_zero=True)
    if problem:
        raise ValueError(f"uid {problem}")
    return value


def _check_subscribe_uid(value: str) -> str:
    if value == ALL_STREAMS:
        return value
    return _check_uid(value)


Uid = Annotated[str, AfterValidator(_check_uid)]
LayoutUid = Annotated[str, AfterValidator(_check_layout_uid)]
SubscribeUid = Annotated[str, AfterValidator(_check_subscribe_uid)]
UidList = Annotated[list[SubscribeUid], Field(max_length=MAX_UID_LIST)]
NonEmptyUidList = Annotated[list[SubscribeUid], Field(min_length=1, max_length=MAX_UID_LIST)]
Unit = Annotated[float, Field(ge=0.0, le=1.0)]


def validation_reason(exc: ValidationError, limit: int = 3) -> str:
    """A short, value-free description of validation errors: `path: message; ...`."""
    parts = []
    for error in exc.errors(include_input=False, include_url=False)[:limit]:
        location = ".".join(str(p) for p in error["loc"]) or "body"
        message = str(error["msg"]).removeprefix("Value error, ")
        parts.append(f"{location}: {message}")
    more = len(exc.errors()) - limit
    if more > 0:
        parts.append(f"(+{more} more)")
    return "; ".join(parts)


class _Request(BaseModel):
    """Strict: numbers must be numbers and strings strings; unknown fields are refused."""

    model_config = ConfigDict(extra="forbid", strict=True)

    def to_wire(self) -> dict[str, Any]:
        """The JSON body, with only the fields that were given."""
        return self.model_dump(mode="json", exclude_unset=True, exclude_none=True)


class _Response(BaseModel):
    """Lenient: unknown fields are kept and numeric strings are coerced."""

    model_config = ConfigDict(extra="allow")


# ---------------------------------------------------------------- acquire


class AcquireClientRequest(_Request):
    resourceExpiredHour: int = Field(72, ge=1, le=720)


class AcquireRequest(_Request):
    cname: str
    uid: Uid
    clientRequest: AcquireClientRequest = Field(default_factory=AcquireClientRequest)


class AcquireResponse(_Response):
    resourceId: str


# ---------------------------------------------------------------- start


class LayoutRegion(_Request):
    uid: LayoutUid | None = None
    x_axis: Unit
    y_axis: Unit
    width: Unit
    height: Unit
    alpha: Unit = 1.0
    render_mode: int = Field(0, ge=0, le=1)


class TranscodingConfig(_Request):
    width: int = Field(ge=1, le=1920)
    height: int = Field(ge=1, le=1920)
    fps: int = Field(ge=1)
    bitrate: int = Field(ge=1)
    maxResolutionUid: LayoutUid | None = None
    mixedVideoLayout: int = Field(0, ge=0, le=3)
    backgroundColor: str = Field("#000000", pattern=_COLOR)
    layoutConfig: list[LayoutRegion] | None = Field(None, max_length=MAX_LAYOUT_REGIONS)

    @model_validator(mode="after")
    def _check(self) -> TranscodingConfig:
        if self.width * self.height > 1920 * 1080:
            raise ValueError("width * height must not exceed 1920 * 1080")
        if self.mixedVideoLayout == 3 and not self.layoutConfig:
            raise ValueError("mixedVideoLayout 3 (custom) requires layoutConfig")
        return self


def _check_sub_xor_unsub(sub: list[str] | None, unsub: list[str] | None, kind: str) -> None:
    if sub is not None and unsub is not None:
        raise ValueError(f"subscribe{kind}Uids and unSubscribe{kind}Uids are mutually exclusive")


class RecordingConfig(_Request):
    channelType: int = Field(0, ge=0, le=1)
    streamTypes: int = Field(2, ge=0, le=2)
    decryptionMode: int = Field(0, ge=0, le=3)
    secret: str | None = None
    audioProfile: int = Field(0, ge=0, le=2)
    videoStreamType: int = Field(0, ge=0, le=1)
    maxIdleTime: int = Field(30, ge=5, le=UINT32_MAX)
    transcodingConfig: TranscodingConfig | None = None
    subscribeAudioUids: UidList | None = None
    unSubscribeAudioUids: UidList | None = None
    subscribeVideoUids: UidList | None = None
    unSubscribeVideoUids: UidList | None = None
    subscribeUidGroup: int | None = Field(None, ge=0, le=3)

    @model_validator(mode="after")
    def _check(self) -> RecordingConfig:
        if self.decryptionMode != 0 and not self.secret:
            raise ValueError("decryptionMode 1..3 requires a non-empty secret")
        if self.decryptionMode == 0 and self.secret:
            raise ValueError("secret is only allowed with decryptionMode 1..3")
        _check_sub_xor_unsub(self.subscribeAudioUids, self.unSubscribeAudioUids, "Audio")
        _check_sub_xor_unsub(self.subscribeVideoUids, self.unSubscribeVideoUids, "Video")
        return self


class RecordingFileConfig(_Request):
    avFileType: list[str] = Field(default_factory=lambda: ["hls"])

    @model_validator(mode="after")
    def _check(self) -> RecordingFileConfig:
        if self.avFileType != ["hls"]:
            raise ValueError('avFileType supports only ["hls"]')
        return self


class SnapshotConfig(_Request):
    captureInterval: int = Field(10, ge=5, le=3600)
    fileType: list[str]

    @model_validator(mode="after")
    def _check(self) -> SnapshotConfig:
        if self.fileType != ["jpg"]:
            raise ValueError('fileType supports only ["jpg"]')
        return self


class StorageConfig(_Request):
    vendor: int = Field(ge=0, le=4)
    region: int = Field(ge=0)
    bucket: str = Field(min_length=1)
    accessKey: str = Field(min_length=1)
    secretKey: str = Field(min_length=1)
    fileNamePrefix: list[str] | None = None

    @model_validator(mode="after")
    def _check(self) -> StorageConfig:
        if self.region not in STORAGE_REGIONS[self.vendor]:
            raise ValueError(f"region {self.region} does not exist for vendor {self.vendor}")
        if self.fileNamePrefix is not None:
            for part in self.fileNamePrefix:
                if not _PREFIX_PART.fullmatch(part):
                    raise ValueError("fileNamePrefix entries may contain only a-z, A-Z and 0-9")
            total = sum(len(p) + 1 for p in self.fileNamePrefix)
            if total > MAX_PREFIX_CHARS:
                raise ValueError(
                    f"fileNamePrefix is longer than {MAX_PREFIX_CHARS} characters with slashes"
                )
        return self


class VideoData(_Request):
    title: str
    description: str | None = None
    coverUrl: str | None = None
    cateId: str | None = None
    tags: str | None = None
    templateGroupId: str | None = None
    userData: str | None = None
    storageLocation: str | None = None
    workflowId: str | None = None


class ApiData(_Request):
    videoData: VideoData


class AliyunVodParam(_Request):
    accessKey: str = Field(min_length=1)
    secretKey: str = Field(min_length=1)
    regionId: str = Field(min_length=1)
    apiData: ApiData


class ExtensionService(_Request):
    serviceName: Literal["aliyun_vod_service"]
    errorHandlePolicy: Literal["error_abort"] = "error_abort"
    serviceParam: AliyunVodParam


class ExtensionServiceConfig(_Request):
    errorHandlePolicy: Literal["error_abort"] = "error_abort"
    extensionServices: list[ExtensionService] = Field(min_length=1)


class StartClientRequest(_Request):
    token: str | None = None
    recordingConfig: RecordingConfig
    recordingFileConfig: RecordingFileConfig | None = None
    snapshotConfig: SnapshotConfig | None = None
    storageConfig: StorageConfig | None = None
    extensionServiceConfig: ExtensionServiceConfig | None = None

    @model_validator(mode="after")
    def _check(self, info: ValidationInfo) -> StartClientRequest:
        context = info.context if isinstance(info.context, dict) else {}
        mode = context.get("mode")
        rc = self.recordingConfig
        if self.recordingFileConfig is not None and self.snapshotConfig is not None:
            raise ValueError("recordingFileConfig and snapshotConfig are mutually exclusive")
        if self.extensionServiceConfig is not None:
            if self.snapshotConfig is not None:
                raise ValueError("extensionServiceConfig excludes snapshotConfig")
            if self.storageConfig is not None:
                raise ValueError("extensionServiceConfig (aliyun VOD) excludes storageConfig")
            if mode is not None and mode != "mix":
                raise ValueError("extensionServiceConfig (aliyun VOD) requires mode mix")
        if self.snapshotConfig is not None:
            if mode is not None and mode != "individual":
                raise ValueError("snapshotConfig requires mode individual")
            if rc.streamTypes not in (1, 2):
                raise ValueError("snapshotConfig requires streamTypes 1 or 2")
            if rc.subscribeAudioUids is not None and rc.subscribeVideoUids is None:
                raise ValueError("with snapshotConfig, subscribeAudioUids needs subscribeVideoUids")
        if mode == "individual":
            if "audioProfile" in rc.model_fields_set:
                raise ValueError("audioProfile is not allowed in individual mode")
            if rc.transcodingConfig is not None:
                raise ValueError("transcodingConfig is not allowed in individual mode")
            if rc.subscribeUidGroup is None:
                raise ValueError("subscribeUidGroup is required in individual mode")
        return self


class StartRequest(_Request):
    uid: Uid
    cname: str
    clientRequest: StartClientRequest


class StartResponse(_Response):
    resourceId: str
    sid: str


# ---------------------------------------------------------------- update


class AudioUidList(_Request):
    subscribeAudioUids: NonEmptyUidList | None = None
    unSubscribeAudioUids: NonEmptyUidList | None = None

    @model_validator(mode="after")
    def _check(self) -> AudioUidList:
        _check_sub_xor_unsub(self.subscribeAudioUids, self.unSubscribeAudioUids, "Audio")
        return self


class VideoUidList(_Request):
    subscribeVideoUids: NonEmptyUidList | None = None
    unSubscribeVideoUids: NonEmptyUidList | None = None

    @model_validator(mode="after")
    def _check(self) -> VideoUidList:
        _check_sub_xor_unsub(self.subscribeVideoUids, self.unSubscribeVideoUids, "Video")
        return self


class StreamSubscribe(_Request):
    audioUidList: AudioUidList | None = None
    videoUidList: VideoUidList | None = None


class UpdateClientRequest(_Request):
    streamSubscribe: StreamSubscribe


class UpdateRequest(_Request):
    uid: Uid
    cname: str
    clientRequest: UpdateClientRequest


class UpdateResponse(_Response):
    resourceId: str
    sid: str


# ---------------------------------------------------------------- updateLayout


class UpdateLayoutClientRequest(_Request):
    maxResolutionUid: LayoutUid | None = None
    mixedVideoLayout: int = Field(0, ge=0, le=3)
    backgroundColor: str = Field("#000000", pattern=_COLOR)
    layoutConfig: list[LayoutRegion] | None = Field(None, max_length=MAX_LAYOUT_REGIONS)

    @model_validator(mode="after")
    def _check(self) -> UpdateLayoutClientRequest:
        if self.mixedVideoLayout == 3 and not self.layoutConfig:
            raise ValueError("mixedVideoLayout 3 (custom) requires layoutConfig")
        return self


class UpdateLayoutRequest(_Request):
    uid: Uid
    cname: str
    clientRequest: UpdateLayoutClientRequest


# ---------------------------------------------------------------- query and stop


class FileInfo(_Response):
    filename: str
    trackType: str | None = None
    uid: str | None = None
    mixedAllUser: bool | None = None
    isPlayable: bool | None = None
    sliceStartTime: int | None = None


class VideoInfo(_Response):
    fileName: str
    videoId: str


class ExtensionPayload(_Response):
    state: str | None = None
    videoInfo: list[VideoInfo] | None = None


class ExtensionServiceState(_Response):
    serviceName: str
    payload: ExtensionPayload | None = None


class SubServiceStatus(_Response):
    recordingService: str | None = None


class QueryServerResponse(_Response):
    status: int | None = None
    fileListMode: str | None = None
    fileList: str | list[FileInfo] | None = None
    sliceStartTime: int | None = None
    extensionServiceState: list[ExtensionServiceState] | None = None
    subServiceStatus: SubServiceStatus | None = None


class QueryResponse(_Response):
    resourceId: str
    sid: str
    serverResponse: QueryServerResponse = Field(default_factory=QueryServerResponse)


class StopClientRequest(_Request):
    async_stop: bool | None = None


class StopRequest(_Request):
    uid: Uid
    cname: str
    clientRequest: StopClientRequest = Field(default_factory=StopClientRequest)


class StopServerResponse(_Response):
    fileListMode: str | None = None
    fileList: str | list[FileInfo] | None = None
    uploadingStatus: str | None = None  # "uploaded" | "backuped" | "unknown"
    extensionServiceState: list[ExtensionServiceState] | None = None


class StopResponse(_Response):
    resourceId: str
    sid: str
    serverResponse: StopServerResponse = Field(default_factory=StopServerResponse)


# ---------------------------------------------------------------- errors


class ErrorBody(_Response):
    """`{"code": N, "reason": "..."}`: an error answered by the recording service."""

    code: int
    reason: str = ""


class GatewayErrorBody(_Response):
    """`{"message": "..."}`: an error answered by the API gateway (routes, auth, rate)."""

    message: str
