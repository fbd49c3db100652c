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

from collections.abc import Callable, Iterator
from typing import Annotated, Any, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    PrivateAttr,
    SerializationInfo,
    ValidationError,
    ValidationInfo,
    model_validator,
)

from orchestrator import contract as c
from orchestrator.contract import ALL_STREAMS, uid_problem
from orchestrator.errors import OrchestratorError
from orchestrator.secrets import SECRET_REF_TYPES, SecretRef, describe_secret


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
UidList = Annotated[list[SubscribeUid], Field(max_length=c.MAX_UID_LIST)]
NonEmptyUidList = Annotated[list[SubscribeUid], Field(min_length=1, max_length=c.MAX_UID_LIST)]
Unit = Annotated[float, Field(ge=0.0, le=1.0)]


def _within(bounds: c.Range) -> Any:
    """An integer field of the reference's `bounds`, defaulting to its default."""
    return Field(bounds.default, ge=bounds.low, le=bounds.high)


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


class _SecretMarker:
    """Marks a request field that carries a secret (a key, a token, a decryption secret)."""


_SECRET = _SecretMarker()
SecretResolver = Callable[[SecretRef], str]


class UnresolvedSecretError(OrchestratorError):
    """A request still holding a secret reference was about to be sent."""


class EmptySecretError(OrchestratorError, ValueError):
    """A secret reference resolved to an empty value (Agora refuses it). Names the
    reference, never a value."""


def _check_secret(value: Any) -> str | SecretRef:
    if isinstance(value, str):
        if not value:
            raise ValueError("must not be empty")
        return value
    if isinstance(value, SECRET_REF_TYPES):
        return value
    raise ValueError("must be a string")


def _dump_secret(value: str | SecretRef, info: SerializationInfo) -> str:
    if isinstance(value, str):
        return value
    if isinstance(info.context, dict) and info.context.get("describe_secrets"):
        return describe_secret(value)
    raise UnresolvedSecretError(f"{describe_secret(value)} was not resolved before sending")


#: A secret: a reference until the executor resolves it just before a call, then the
#: value. Serialised as `<env:NAME>` in descriptions (fingerprints, `plan`); a request
#: whose references were not resolved refuses to become a body.
Secret = Annotated[
    str | SecretRef,
    PlainValidator(_check_secret),
    PlainSerializer(_dump_secret),
    _SECRET,
]
#: An optional secret (the marker on the field itself, where `secret_values` reads it).
OptionalSecret = Annotated[Secret | None, _SECRET]


class Request(BaseModel):
    """Strict: numbers must be numbers and strings strings; unknown fields are refused."""

    model_config = ConfigDict(extra="forbid", strict=True)

    def to_wire(self) -> dict[str, Any]:
        """The JSON body, with only the fields that were given (secrets must be resolved)."""
        return self.model_dump(mode="json", exclude_unset=True, exclude_none=True)

    def described(self) -> dict[str, Any]:
        """The body with each secret shown as its reference (`<env:S3_KEY>`), never a value."""
        return self.model_dump(
            mode="json",
            exclude_unset=True,
            exclude_none=True,
            context={"describe_secrets": True},
        )

    def resolved(self, resolve: SecretResolver) -> Self:
        """A copy whose secret references are replaced by their values (`resolve`)."""
        changes = {}
        for name in self.model_fields_set:
            value = getattr(self, name)
            new = _resolved(value, resolve)
            if new is not value:
                changes[name] = new
        return self.model_copy(update=changes) if changes else self

    def secret_values(self) -> Iterator[str]:
        """The literal secret values this request carries (to mask in any echo)."""
        fields = type(self).model_fields
        for name in self.model_fields_set:
            value = getattr(self, name)
            if _SECRET in fields[name].metadata and isinstance(value, str):
                yield value
            for item in value if isinstance(value, list) else (value,):
                if isinstance(item, Request):
                    yield from item.secret_values()

    def secret_refs(self) -> Iterator[SecretRef]:
        """The secret references still to resolve."""
        for name in self.model_fields_set:
            value = getattr(self, name)
            for item in value if isinstance(value, list) else (value,):
                if isinstance(item, SECRET_REF_TYPES):
                    yield item
                elif isinstance(item, Request):
                    yield from item.secret_refs()


def _resolved(value: Any, resolve: SecretResolver) -> Any:
    if isinstance(value, SECRET_REF_TYPES):
        resolved = resolve(value)
        if not resolved:
            raise EmptySecretError(f"{describe_secret(value)} is empty")
        return resolved
    if isinstance(value, Request):
        return value.resolved(resolve)
    if isinstance(value, list):
        items = [_resolved(item, resolve) for item in value]
        return items if any(a is not b for a, b in zip(items, value, strict=True)) else value
    return value


class _Addressed:
    """A request addressed to one recording uid: the same body for another uid (a
    rollover's successor records on the manifest's second uid)."""

    def for_uid(self, uid: int) -> Self:
        assert isinstance(self, BaseModel)
        return self.model_copy(update={"uid": str(uid)})


class _Response(BaseModel):
    """Lenient: unknown fields are kept and numeric strings are coerced."""

    model_config = ConfigDict(extra="allow")


# ---------------------------------------------------------------- acquire


class AcquireClientRequest(Request):
    resourceExpiredHour: int = _within(c.RESOURCE_HOURS)


class AcquireRequest(Request, _Addressed):
    cname: str
    uid: Uid
    clientRequest: AcquireClientRequest = Field(default_factory=AcquireClientRequest)


class AcquireResponse(_Response):
    resourceId: str


# ---------------------------------------------------------------- start


class LayoutRegion(Request):
    uid: LayoutUid | None = None
    x_axis: Unit
    y_axis: Unit
    width: Unit
    height: Unit
    alpha: Unit = 1.0
    render_mode: int = Field(0, ge=0, le=c.max_code(c.RENDER_MODES))


class TranscodingConfig(Request):
    width: int = Field(ge=1, le=c.MAX_SIDE)
    height: int = Field(ge=1, le=c.MAX_SIDE)
    fps: int = Field(ge=1)
    bitrate: int = Field(ge=1, le=c.MAX_BITRATE)
    maxResolutionUid: LayoutUid | None = None
    mixedVideoLayout: int = Field(0, ge=0, le=c.max_code(c.LAYOUT_TYPES))
    backgroundColor: str = Field(c.DEFAULT_BACKGROUND, pattern=c.BACKGROUND_PATTERN)
    layoutConfig: list[LayoutRegion] | None = Field(None, max_length=c.MAX_LAYOUT_REGIONS)

    @model_validator(mode="after")
    def _check(self) -> TranscodingConfig:
        if self.width * self.height > c.MAX_PIXELS:
            raise ValueError(f"width * height must not exceed {c.MAX_PIXELS}")
        if self.mixedVideoLayout == c.CUSTOM_LAYOUT and not self.layoutConfig:
            raise ValueError("mixedVideoLayout 3 (custom) requires layoutConfig")
        return self


def _check_sub_xor_unsub(sub: list[str] | None, unsub: list[str] | None, kind: str) -> None:
    if sub is not None and unsub is not None:
        raise ValueError(f"subscribe{kind}Uids and unSubscribe{kind}Uids are mutually exclusive")


class RecordingConfig(Request):
    channelType: int = Field(0, ge=0, le=c.max_code(c.CHANNEL_TYPES))
    streamTypes: int = Field(2, ge=0, le=c.max_code(c.STREAM_TYPES))
    decryptionMode: int = Field(0, ge=0, le=c.max_code(c.DECRYPTION_MODES))
    secret: OptionalSecret = None
    audioProfile: int = Field(0, ge=0, le=c.max_code(c.AUDIO_PROFILES))
    videoStreamType: int = Field(0, ge=0, le=c.max_code(c.VIDEO_STREAM_TYPES))
    maxIdleTime: int = _within(c.IDLE_TIME)
    transcodingConfig: TranscodingConfig | None = None
    subscribeAudioUids: UidList | None = None
    unSubscribeAudioUids: UidList | None = None
    subscribeVideoUids: UidList | None = None
    unSubscribeVideoUids: UidList | None = None
    subscribeUidGroup: int | None = Field(None, ge=0, le=c.max_code(c.UID_GROUPS))

    @model_validator(mode="after")
    def _check(self) -> RecordingConfig:
        if self.decryptionMode != 0 and not self.secret:
            raise ValueError("decryptionMode 1..3 requires a non-empty secret")
        if self.decryptionMode == 0 and self.secret:
            raise ValueError("secret is only allowed with decryptionMode 1..3")
        _check_sub_xor_unsub(self.subscribeAudioUids, self.unSubscribeAudioUids, "Audio")
        _check_sub_xor_unsub(self.subscribeVideoUids, self.unSubscribeVideoUids, "Video")
        return self


class RecordingFileConfig(Request):
    """avFileType: "hls", and "mp4" beside it in mix mode (`StartClientRequest.problem`)."""

    avFileType: list[str] = Field(default_factory=lambda: list[str](c.DEFAULT_RECORDING_FILE_TYPES))

    @model_validator(mode="after")
    def _check(self) -> RecordingFileConfig:
        if any(kind not in c.RECORDING_FILE_TYPES for kind in self.avFileType):
            raise ValueError(f"avFileType supports only {list(c.RECORDING_FILE_TYPES)}")
        if len(set(self.avFileType)) != len(self.avFileType):
            raise ValueError("avFileType lists a file type twice")
        if c.HLS not in self.avFileType:
            raise ValueError(f'avFileType must include "{c.HLS}"')
        return self


class SnapshotConfig(Request):
    captureInterval: int = _within(c.CAPTURE_INTERVAL)
    fileType: list[str]

    @model_validator(mode="after")
    def _check(self) -> SnapshotConfig:
        if tuple(self.fileType) != c.SNAPSHOT_FILE_TYPES:
            raise ValueError(f"fileType supports only {list(c.SNAPSHOT_FILE_TYPES)}")
        return self


class StorageConfig(Request):
    vendor: int = Field(ge=0, le=c.max_code(c.VENDORS))
    region: int = Field(ge=0)
    bucket: str = Field(min_length=1)
    accessKey: Secret
    secretKey: Secret
    fileNamePrefix: list[str] | None = None

    @model_validator(mode="after")
    def _check(self) -> StorageConfig:
        regions = c.STORAGE_REGIONS.get(self.vendor)
        if regions is None:
            raise ValueError(f"vendor {self.vendor} does not exist")
        # a vendor without regions ignores the field (Agora: "no need to set it")
        if self.vendor not in c.REGIONLESS_VENDORS and self.region not in regions:
            raise ValueError(f"region {self.region} does not exist for vendor {self.vendor}")
        if self.fileNamePrefix is not None:
            for part in self.fileNamePrefix:
                if not c.PREFIX_PART.fullmatch(part):
                    raise ValueError("fileNamePrefix entries may contain only a-z, A-Z and 0-9")
            total = sum(len(p) + 1 for p in self.fileNamePrefix)
            if total > c.MAX_PREFIX_CHARS:
                raise ValueError(
                    f"fileNamePrefix is longer than {c.MAX_PREFIX_CHARS} characters with slashes"
                )
        return self


class VideoData(Request):
    title: str
    description: str | None = None
    coverUrl: str | None = None
    cateId: str | None = None
    tags: str | None = None
    templateGroupId: str | None = None
    userData: str | None = None
    storageLocation: str | None = None
    workflowId: str | None = None


class ApiData(Request):
    videoData: VideoData


class AliyunVodParam(Request):
    accessKey: Secret
    secretKey: Secret
    regionId: str = Field(min_length=1)
    apiData: ApiData


class ExtensionService(Request):
    serviceName: c.AliyunVodService
    errorHandlePolicy: c.ErrorAbort = c.ERROR_ABORT
    serviceParam: AliyunVodParam


class ExtensionServiceConfig(Request):
    errorHandlePolicy: c.ErrorAbort = c.ERROR_ABORT
    extensionServices: list[ExtensionService] = Field(min_length=1)


class StartClientRequest(Request):
    token: OptionalSecret = None
    recordingConfig: RecordingConfig
    recordingFileConfig: RecordingFileConfig | None = None
    snapshotConfig: SnapshotConfig | None = None
    storageConfig: StorageConfig | None = None
    extensionServiceConfig: ExtensionServiceConfig | None = None

    @model_validator(mode="after")
    def _check(self, info: ValidationInfo) -> StartClientRequest:
        context = info.context if isinstance(info.context, dict) else {}
        problem = self.problem(context.get("mode"))
        if problem:
            raise ValueError(problem)
        return self

    def problem(self, mode: str | None) -> str | None:
        """The first rule of the start table this request breaks (in `mode`), or None."""
        rc = self.recordingConfig
        if self.recordingFileConfig is not None and self.snapshotConfig is not None:
            return "recordingFileConfig and snapshotConfig are mutually exclusive"
        if self.extensionServiceConfig is not None:
            if self.snapshotConfig is not None:
                return "extensionServiceConfig excludes snapshotConfig"
            if self.storageConfig is not None:
                return "extensionServiceConfig (aliyun VOD) excludes storageConfig"
            if mode is not None and mode != c.Mode.MIX:
                return "extensionServiceConfig (aliyun VOD) requires mode mix"
        files = self.recordingFileConfig
        if files is not None and mode is not None and mode != c.Mode.MIX:
            mix_only = sorted(c.MIX_ONLY_RECORDING_FILE_TYPES.intersection(files.avFileType))
            if mix_only:
                return f"avFileType {', '.join(mix_only)} requires mode mix"
        if self.snapshotConfig is not None:
            if mode is not None and mode != c.Mode.INDIVIDUAL:
                return "snapshotConfig requires mode individual"
            if rc.streamTypes == c.STREAM_TYPES["audio"]:
                return "snapshotConfig requires streamTypes 1 or 2"
            if rc.subscribeAudioUids is not None and rc.subscribeVideoUids is None:
                return "with snapshotConfig, subscribeAudioUids needs subscribeVideoUids"
        if mode == c.Mode.INDIVIDUAL:
            if "audioProfile" in rc.model_fields_set:
                return "audioProfile is not allowed in individual mode"
            if rc.transcodingConfig is not None:
                return "transcodingConfig is not allowed in individual mode"
            if rc.subscribeUidGroup is None:
                return "subscribeUidGroup is required in individual mode"
        return None


class StartRequest(Request, _Addressed):
    uid: Uid
    cname: str
    clientRequest: StartClientRequest

    def with_token(self, token: str) -> StartRequest:
        """The same start carrying `token` (minted for this start: a secret)."""
        client = self.clientRequest.model_copy(update={"token": token})
        return self.model_copy(update={"clientRequest": client})


class StartResponse(_Response):
    resourceId: str
    sid: str


# ---------------------------------------------------------------- update


class AudioUidList(Request):
    subscribeAudioUids: NonEmptyUidList | None = None
    unSubscribeAudioUids: NonEmptyUidList | None = None

    @model_validator(mode="after")
    def _check(self) -> AudioUidList:
        _check_sub_xor_unsub(self.subscribeAudioUids, self.unSubscribeAudioUids, "Audio")
        return self


class VideoUidList(Request):
    subscribeVideoUids: NonEmptyUidList | None = None
    unSubscribeVideoUids: NonEmptyUidList | None = None

    @model_validator(mode="after")
    def _check(self) -> VideoUidList:
        _check_sub_xor_unsub(self.subscribeVideoUids, self.unSubscribeVideoUids, "Video")
        return self


class StreamSubscribe(Request):
    audioUidList: AudioUidList | None = None
    videoUidList: VideoUidList | None = None


class UpdateClientRequest(Request):
    streamSubscribe: StreamSubscribe


class UpdateRequest(Request, _Addressed):
    uid: Uid
    cname: str
    clientRequest: UpdateClientRequest


class UpdateResponse(_Response):
    resourceId: str
    sid: str


# ---------------------------------------------------------------- updateLayout


class UpdateLayoutClientRequest(Request):
    maxResolutionUid: LayoutUid | None = None
    mixedVideoLayout: int = Field(0, ge=0, le=c.max_code(c.LAYOUT_TYPES))
    backgroundColor: str = Field(c.DEFAULT_BACKGROUND, pattern=c.BACKGROUND_PATTERN)
    layoutConfig: list[LayoutRegion] | None = Field(None, max_length=c.MAX_LAYOUT_REGIONS)

    @model_validator(mode="after")
    def _check(self) -> UpdateLayoutClientRequest:
        if self.mixedVideoLayout == c.CUSTOM_LAYOUT and not self.layoutConfig:
            raise ValueError("mixedVideoLayout 3 (custom) requires layoutConfig")
        return self


class UpdateLayoutRequest(Request, _Addressed):
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

    @property
    def service_status(self) -> int | None:
        """`status`; of a recording with an extension service, which answers none, the
        status its `subServiceStatus.recordingService` stands for."""
        return c.service_status(self.status, self._recording_service)

    @property
    def exited(self) -> str | None:
        """Why the recording left, when this answer says it has (else None)."""
        return c.exit_description(self.status, self._recording_service)

    @property
    def _recording_service(self) -> str | None:
        sub = self.subServiceStatus
        return None if sub is None else sub.recordingService


class QueryResponse(_Response):
    resourceId: str
    sid: str
    serverResponse: QueryServerResponse = Field(default_factory=QueryServerResponse)


class StopClientRequest(Request):
    async_stop: bool | None = None


class StopRequest(Request, _Addressed):
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
    # Not in the body (no answer can set it): it came with HTTP 206, which the
    # reference's status table says means nobody sent streams during the whole
    # recording, or some files were not uploaded to the storage.
    _status: int = PrivateAttr(default=200)

    def answered(self, status: int) -> Self:
        """This answer, as it came with HTTP `status`."""
        self._status = status
        return self

    @property
    def partial(self) -> bool:
        return self._status == 206


# ---------------------------------------------------------------- errors


class ErrorBody(_Response):
    """`{"code": N, "reason": "..."}`: an error answered by the recording service."""

    code: int
    reason: str = ""


class GatewayErrorBody(_Response):
    """`{"message": "..."}`: an error answered by the API gateway (routes, auth, rate)."""

    message: str
