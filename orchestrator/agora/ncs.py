"""Agora's Notification Center Service (NCS): what a Cloud Recording notification
holds, how it is signed, and what each event means for a session.

NCS posts one JSON object per event to the operator's endpoint: `noticeId` (the same
on every resend of one notification), `productId` (3 for Cloud Recording),
`eventType`, `notifyMs` and `payload` (`cname`, `uid`, `sid`, `sequence`, `sendts`,
`serviceType`, `details`). The header `Agora-Signature-V2` carries the lowercase hex
HMAC-SHA256 of the raw body keyed with the NCS secret (`Agora-Signature`: the same with
HMAC-SHA1). Delivery is not guaranteed and duplicates happen.

Both sides use this module: the daemon's receiver verifies and reads, the emulator
signs and sends. It must never trust a body before its signature was checked (`parse`
is for verified bodies), and never put the secret in an error or a repr.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from enum import IntEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from orchestrator.contract import uid_problem
from orchestrator.errors import OrchestratorError

#: The header with the HMAC-SHA256 signature (lowercase hex) of the raw body.
SIGNATURE_HEADER = "Agora-Signature-V2"
#: The older header with the HMAC-SHA1 signature; sent by NCS, not needed here.
SIGNATURE_SHA1_HEADER = "Agora-Signature"
#: `productId` of Cloud Recording.
CLOUD_RECORDING = 3
#: `errorLevel` of a `cloud_recording_error` after which the recording does not go on.
FATAL_ERROR_LEVEL = 5


class EventType(IntEnum):
    """The Cloud Recording event types this project names (others are counted only)."""

    CLOUD_RECORDING_ERROR = 1
    CLOUD_RECORDING_WARNING = 2
    CLOUD_RECORDING_STATUS_UPDATE = 3
    CLOUD_RECORDING_FILE_INFOS = 4
    SESSION_EXIT = 11
    SESSION_FAILOVER = 12
    UPLOADER_STARTED = 30
    UPLOADED = 31
    BACKUPED = 32
    UPLOADING_PROGRESS = 33
    RECORDER_STARTED = 40
    RECORDER_LEAVE = 41
    RECORDER_SLICE_START = 42


#: A JSON integer as NCS sends one, within what the store's integer columns hold
#: (64 bits); not a boolean, a string or a float (`true` is no event type).
Int64 = Annotated[int, Field(strict=True, ge=-(2**63), le=2**63 - 1)]


def event_name(event_type: int) -> str:
    """A metric label for an event type: its name, or `other` for one not listed."""
    try:
        return EventType(event_type).name.lower()
    except ValueError:
        return "other"


class NotificationError(OrchestratorError):
    """A verified body that is not a notification this module can read."""


class Payload(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    cname: str = ""
    uid: str = ""
    sid: str = ""
    sequence: int = 0
    sendts: int = 0
    serviceType: int = 0
    details: dict[str, Any] = Field(default_factory=dict)

    def uid_number(self) -> int | None:
        """`uid` as the recorder's number (None: not a uid, or none given)."""
        return None if uid_problem(self.uid) else int(self.uid)


class Notification(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    noticeId: str = Field(min_length=1, max_length=200)
    productId: Int64
    eventType: Int64
    notifyMs: Int64 = 0
    payload: Payload = Payload()


def sign(secret: str, body: bytes) -> str:
    """The `Agora-Signature-V2` value of `body`: lowercase hex HMAC-SHA256."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def sign_sha1(secret: str, body: bytes) -> str:
    """The `Agora-Signature` value of `body`: lowercase hex HMAC-SHA1."""
    return hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()


def verify(secret: str, body: bytes, signature: str | None) -> bool:
    """Whether `signature` (the `Agora-Signature-V2` header) signs `body` with `secret`;
    compared in constant time, case-insensitively (hex). A header that is not ASCII
    (it cannot be one) is compared as bytes, and does not match."""
    if not signature:
        return False
    given = signature.strip().lower().encode("utf-8", "replace")
    return hmac.compare_digest(sign(secret, body).encode("ascii"), given)


def parse(body: bytes) -> Notification:
    """A verified body as a notification; `NotificationError` says what is wrong."""
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise NotificationError(f"the body is not JSON: {exc}") from None
    except RecursionError:  # signed, and still nothing NCS sends
        raise NotificationError("the body nests too deeply to be a notification") from None
    if not isinstance(data, dict):
        raise NotificationError("the body is not a JSON object")
    payload = data.get("payload")
    if isinstance(payload, dict) and "uid" in payload and not isinstance(payload["uid"], str):
        data = {**data, "payload": {**payload, "uid": str(payload["uid"])}}
    try:
        return Notification.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise NotificationError(f"{where}: {first['msg']}") from None


def dumps(notification: Notification) -> bytes:
    """The body NCS would send for `notification` (compact JSON, UTF-8)."""
    return json.dumps(
        notification.model_dump(mode="json"), separators=(",", ":"), ensure_ascii=False
    ).encode()


class Effect(IntEnum):
    """What an event means for the session it names."""

    NONE = 0  # counted only
    EXIT = 1  # the recording has ended
    FAILOVER = 2  # the recorder moved; the recording goes on under `new_uid`
    FILES = 3  # a file list (stored, shown by `status`)


@dataclass(frozen=True)
class Meaning:
    effect: Effect
    #: For people and the store: why the session ended, or what the event was.
    reason: str
    new_uid: str | None = None
    file_list: Any = None


def meaning(notification: Notification) -> Meaning:
    """What `notification` means for its session: an exit (11, 41, a fatal 1), a
    failover (12), a file list (4, 31, 32), or nothing to act on."""
    details = notification.payload.details
    kind = notification.eventType
    if notification.productId != CLOUD_RECORDING:
        return Meaning(Effect.NONE, f"product {notification.productId}")
    if kind == EventType.SESSION_EXIT:
        return Meaning(
            Effect.EXIT, f"exited: session_exit (exitStatus {details.get('exitStatus', '?')})"
        )
    if kind == EventType.RECORDER_LEAVE:
        return Meaning(
            Effect.EXIT, f"exited: recorder_leave (leaveCode {details.get('leaveCode', '?')})"
        )
    if kind == EventType.CLOUD_RECORDING_ERROR and _level(details) >= FATAL_ERROR_LEVEL:
        code = details.get("errorCode", "?")
        module = details.get("module", "?")
        return Meaning(
            Effect.EXIT,
            f"exited: cloud_recording_error (fatal, module {module}, errorCode {code})",
        )
    if kind == EventType.SESSION_FAILOVER:
        new_uid = details.get("newUid")
        return Meaning(
            Effect.FAILOVER,
            "session_failover",
            new_uid=None if new_uid is None else str(new_uid),
        )
    if kind in (EventType.CLOUD_RECORDING_FILE_INFOS, EventType.UPLOADED, EventType.BACKUPED):
        files = details.get("fileList")
        if files is not None:
            return Meaning(Effect.FILES, event_name(kind), file_list=files)
    return Meaning(Effect.NONE, event_name(kind))


def _level(details: dict[str, Any]) -> int:
    level = details.get("errorLevel")
    try:
        return int(level) if level is not None else 0
    except (TypeError, ValueError):
        return 0
