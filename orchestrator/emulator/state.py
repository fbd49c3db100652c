"""The emulator's model of Cloud Recording: resources, sessions, channels, and their rules.

Everything here is synchronous and takes `now` (emulator seconds since the epoch) as
an argument: idle exits, resource expiry, `resourceExpiredHour` and token expiry are
evaluated lazily when something asks (a request, or the notifications' tick in
`server.py`), so behaviour is deterministic and a test can move time with the
emulator's clock instead of sleeping. Each operation returns an `Answer` (HTTP status +
JSON body) exactly as Agora would send it; the HTTP layer in `server.py` only routes,
authenticates and injects faults. One session's lifecycle and answers are in
`session.py`, what the channel makes of a token in `tokens.py`.

It must never log a request body (bodies carry storage keys, tokens and secrets), nor
put an App Certificate or a token in a session's description, a repr or an answer.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

from pydantic import ValidationError

from orchestrator import contract
from orchestrator.agora import wire
from orchestrator.contract import ErrorCode
from orchestrator.emulator.session import END_TOKEN_EXPIRED, Resource, Session
from orchestrator.emulator.tokens import (
    TOKEN_MISSING,
    AppCertificates,
    TokenVerdict,
    check_token,
)

ROLE_BROADCASTER = "broadcaster"
ROLE_AUDIENCE = "audience"
UPLOADING_STATUSES = ("uploaded", "backuped", "unknown")
#: Ends after which `query` still answers the exit status for `ended_linger` seconds
#: (8, or 20 when aborted); after any other end it answers 404 at once.
_LINGERING_ENDS = ("idle", "aborted", END_TOKEN_EXPIRED)

__all__ = [
    "END_TOKEN_EXPIRED",
    "NOT_FOUND",
    "ROLE_AUDIENCE",
    "ROLE_BROADCASTER",
    "TOKEN_MISSING",
    "UPLOADING_STATUSES",
    "Answer",
    "AppCertificates",
    "EmulatorState",
    "Resource",
    "Session",
    "Settings",
    "TokenVerdict",
    "check_token",
    "error",
]


@dataclass(frozen=True)
class Answer:
    """An answer to send: `body` as JSON, or `raw` bytes as they are (with `content_type`,
    if any): what a proxy in front of Agora may answer instead of Agora."""

    status: int
    body: dict[str, Any]
    raw: bytes | None = None
    content_type: str | None = None

    @property
    def code(self) -> int | None:
        code = self.body.get("code")
        return code if isinstance(code, int) else None


def error(code: int, reason: str, status: int = 400) -> Answer:
    return Answer(status, {"code": code, "reason": reason})


NOT_FOUND = Answer(404, {"code": ErrorCode.NOT_FOUND, "reason": "failed to find worker"})

_P = ParamSpec("_P")
_R = TypeVar("_R", bound=wire.Request)


class _Refused(Exception):
    """The error answer a check found part-way through an endpoint (see `_answers`)."""

    def __init__(self, answer: Answer) -> None:
        super().__init__(answer.status, answer.code)
        self.answer = answer


def _answers(endpoint: Callable[_P, Answer]) -> Callable[_P, Answer]:
    """An endpoint whose checks refuse a request by raising `_Refused`: it answers with
    the refusal's error."""

    @functools.wraps(endpoint)
    def answer(*args: _P.args, **kwargs: _P.kwargs) -> Answer:
        try:
            return endpoint(*args, **kwargs)
        except _Refused as refused:
            return refused.answer

    return answer


def _channel(body: dict[str, Any]) -> Any:
    """The body's `cname`; refused when it is a string the reference does not accept as
    a channel name (checked before the rest of the body)."""
    cname = body.get("cname")
    if isinstance(cname, str):
        problem = contract.channel_name_problem(cname)
        if problem:
            raise _Refused(error(ErrorCode.INVALID_CHANNEL, problem))
    return cname


def _validated(
    model: type[_R],
    body: dict[str, Any],
    *,
    mode: str | None = None,
    code: int = ErrorCode.INVALID_PARAMETER,
) -> _R:
    """`body` as a `model` request (validated for `mode` when given); refused with `code`
    and the broken rules when it is not one."""
    try:
        return model.model_validate(body, context=None if mode is None else {"mode": mode})
    except ValidationError as exc:
        raise _Refused(error(code, wire.validation_reason(exc))) from None


@dataclass
class Settings:
    """Knobs the control API can turn. Defaults follow the reference."""

    resource_ttl: float = 300.0  # a resource ID must be started within 5 minutes
    ended_linger: float = 5.0  # seconds an exited session still answers query (status 8/20)
    warmup: float = 1.0  # seconds a new session reports status 4 before 5
    uploading_status: str = "uploaded"
    status_as_string: bool = False  # the reference's example sends "status": "5"
    rate_limit: int = 10  # requests per second per App ID
    # A recorder whose token the channel refuses keeps trying to join this many seconds
    # after the warmup, then gives up: Agora's session ends "within seconds".
    token_refused_exit: float = 2.0

    def update(self, values: dict[str, Any]) -> None:
        for key, value in values.items():
            if key not in self.__dataclass_fields__:
                raise ValueError(f"unknown setting {key!r}")
            current = getattr(self, key)
            if isinstance(current, bool):
                if not isinstance(value, bool):
                    raise ValueError(f"{key} must be a boolean")
            elif isinstance(current, int | float) and (
                isinstance(value, bool) or not isinstance(value, int | float) or value < 0
            ):
                raise ValueError(f"{key} must be a non-negative number")
            elif isinstance(current, str) and not isinstance(value, str):
                raise ValueError(f"{key} must be a string")
            if key == "uploading_status" and value not in UPLOADING_STATUSES:
                raise ValueError(f"uploading_status must be one of {UPLOADING_STATUSES}")
            if key == "rate_limit" and (not isinstance(value, int) or value < 1):
                raise ValueError("rate_limit must be an integer >= 1")
            setattr(self, key, type(current)(value) if not isinstance(current, bool) else value)


class EmulatorState:
    """Resources, sessions and channel occupancy of every App ID."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        certificates: AppCertificates | None = None,
        key: bytes | None = None,
    ) -> None:
        self.settings = settings or Settings()
        self.certificates = certificates or AppCertificates()
        self._key = key or uuid.uuid4().bytes
        self._counter = 0
        self.resources: dict[str, Resource] = {}
        self.sessions: dict[str, Session] = {}
        self.channels: dict[tuple[str, str], dict[str, str]] = {}

    # ------------------------------------------------------------ resource IDs

    def _encode_resource(self, payload: dict[str, Any]) -> str:
        raw = json.dumps(payload, separators=(",", ":")).encode()
        mac = hmac.new(self._key, raw, hashlib.sha256).digest()[:16]
        return base64.urlsafe_b64encode(raw + mac).decode().rstrip("=")

    def _decode_resource(self, resource_id: str) -> Resource | None:
        try:
            data = base64.urlsafe_b64decode(resource_id + "=" * (-len(resource_id) % 4))
        except ValueError:
            return None
        raw, mac = data[:-16], data[-16:]
        expected = hmac.new(self._key, raw, hashlib.sha256).digest()[:16]
        if len(data) <= 16 or not hmac.compare_digest(mac, expected):
            return None
        return self.resources.get(resource_id)

    def _resource(self, resource_id: str) -> Resource:
        """The resource an ID names; refused when this emulator did not issue the ID."""
        resource = self._decode_resource(resource_id)
        if resource is None:
            raise _Refused(
                error(ErrorCode.RESOURCE_DECRYPT_FAILED, "failed to decrypt the resource ID")
            )
        return resource

    def _resource_for(self, app_id: str, resource_id: str, sid: str) -> Resource:
        """The resource of a sid route; refused unless it is `app_id`'s and started `sid`."""
        resource = self._resource(resource_id)
        if resource.app_id != app_id or resource.sid != sid:
            raise _Refused(
                error(ErrorCode.MISMATCHED_IDS, "appid or sid does not match the resource ID")
            )
        return resource

    # ------------------------------------------------------------ channels

    def _publishers(self, app_id: str, cname: str, channel_type: int) -> set[str]:
        users = self.channels.get((app_id, cname), {})
        if channel_type == 0:  # communication: every user counts, sending or not
            return set(users)
        return {uid for uid, role in users.items() if role == ROLE_BROADCASTER}

    def _observe(self, session: Session, now: float) -> None:
        if not session.joined:  # a recorder outside the channel sees nobody
            return
        publishers = self._publishers(session.app_id, session.cname, session.channel_type)
        publishers.difference_update(session.uids)  # the recorder itself
        if publishers:
            session.idle_since = None
            for uid in publishers:
                session.seen.setdefault(uid, now)
        elif session.idle_since is None:
            session.idle_since = now

    def set_users(self, app_id: str, cname: str, users: dict[str, str], now: float) -> None:
        """Replace the users of a channel (uid -> role); settles sessions first."""
        self.settle(now)
        if users:
            self.channels[(app_id, cname)] = dict(users)
        else:
            self.channels.pop((app_id, cname), None)
        for session in self.sessions.values():
            if session.ended_at is None and (session.app_id, session.cname) == (app_id, cname):
                self._observe(session, now)

    def join(self, app_id: str, cname: str, uid: str, role: str, now: float) -> None:
        users = dict(self.channels.get((app_id, cname), {}))
        users[uid] = role
        self.set_users(app_id, cname, users, now)

    def leave(self, app_id: str, cname: str, uid: str, now: float) -> None:
        users = dict(self.channels.get((app_id, cname), {}))
        users.pop(uid, None)
        self.set_users(app_id, cname, users, now)

    def settle(self, now: float) -> None:
        for session in self.sessions.values():
            session.settle(now)

    def abort(self, sid: str, now: float) -> bool:
        """Make a live session exit abnormally (status 20). False if unknown or ended."""
        session = self._live(sid, now)
        if session is None:
            return False
        session.ended_at, session.end_reason = now, "aborted"
        return True

    def _live(self, sid: str, now: float) -> Session | None:
        """Session `sid` as of `now`; None if unknown or ended."""
        session = self.sessions.get(sid)
        if session is None:
            return None
        session.settle(now)
        return session if session.ended_at is None else None

    def fail_over(
        self,
        sid: str,
        now: float,
        seconds: float,
        *,
        new_uid: str | None = None,
        notify: bool = True,
    ) -> Session | None:
        """Move a live session's recorder to `new_uid` (None: one derived from the sid),
        as Agora does when a recording server fails: it goes on recording, and its sid
        routes answer 404 for `seconds`. None if unknown or ended; ValueError for a
        `new_uid` that is not a uid or is taken in the channel."""
        session = self._live(sid, now)
        if session is None:
            return None
        taken = set(self.channels.get((session.app_id, session.cname), {}))
        taken.update(
            other.recorder_uid
            for other in self.sessions.values()
            if other.ended_at is None
            and (other.app_id, other.cname) == (session.app_id, session.cname)
        )
        if new_uid is None:
            new_uid = session.next_uid(taken)
        elif problem := contract.uid_problem(new_uid):
            raise ValueError(f"new_uid {problem}")
        elif new_uid in taken or new_uid in session.uids:
            raise ValueError("new_uid is taken in the channel, or was the recorder's before")
        session.fail_over(now, seconds, new_uid, notify=notify)
        return session

    # ------------------------------------------------------------ endpoints

    @_answers
    def acquire(self, app_id: str, body: dict[str, Any], now: float) -> Answer:
        _channel(body)
        request = _validated(wire.AcquireRequest, body)
        self._counter += 1
        resource_id = self._encode_resource(
            {"a": app_id, "c": request.cname, "u": request.uid, "n": self._counter}
        )
        self.resources[resource_id] = Resource(
            resource_id,
            app_id,
            request.cname,
            request.uid,
            now,
            request.clientRequest.resourceExpiredHour,
        )
        return Answer(200, {"resourceId": resource_id})

    @_answers
    def start(
        self, app_id: str, resource_id: str, mode: str, body: dict[str, Any], now: float
    ) -> Answer:
        wrong = contract.mode_problem(mode)
        if wrong is not None:
            return error(ErrorCode.INVALID_PARAMETER, wrong)
        resource = self._resource(resource_id)
        cname = _channel(body)
        if resource.app_id != app_id or cname != resource.cname or body.get("uid") != resource.uid:
            return error(
                ErrorCode.MISMATCHED_PARAMETERS,
                "appid, cname or uid does not match the resource ID",
            )
        if resource.sid is not None:
            return error(
                ErrorCode.ALREADY_STARTED, "the recording has already started with this resource ID"
            )
        if now - resource.acquired_at > self.settings.resource_ttl:
            return error(ErrorCode.RESOURCE_EXPIRED, "the resource ID has expired")
        request = _validated(wire.StartRequest, body, mode=mode)
        self.settle(now)
        for other in self.sessions.values():
            if other.ended_at is None and (other.app_id, other.cname, other.uid) == (
                app_id,
                resource.cname,
                resource.uid,
            ):
                return error(
                    ErrorCode.RECORDING_EXISTS,
                    "a recording of this channel and uid is already running",
                )
        client = request.clientRequest
        rc = client.recordingConfig
        kind = "recording"
        if client.snapshotConfig is not None:
            kind = "snapshot"
        elif client.extensionServiceConfig is not None:
            kind = "vod"
        prefix = ""
        if client.storageConfig is not None and client.storageConfig.fileNamePrefix:
            prefix = "/".join(client.storageConfig.fileNamePrefix) + "/"
        files = client.recordingFileConfig
        file_types = (
            contract.DEFAULT_RECORDING_FILE_TYPES if files is None else tuple(files.avFileType)
        )
        layout = None
        if mode == "mix" and rc.transcodingConfig is not None:
            tc = rc.transcodingConfig
            layout = wire.UpdateLayoutClientRequest(
                maxResolutionUid=tc.maxResolutionUid,
                mixedVideoLayout=tc.mixedVideoLayout,
                backgroundColor=tc.backgroundColor,
                layoutConfig=tc.layoutConfig,
            ).model_dump(mode="json", exclude_none=True)
        sid = uuid.uuid4().hex
        session = Session(
            sid=sid,
            resource_id=resource_id,
            app_id=app_id,
            cname=resource.cname,
            uid=resource.uid,
            mode=mode,
            kind=kind,
            started_at=now,
            expires_at=now + resource.expired_hour * 3600.0,
            max_idle=rc.maxIdleTime,
            channel_type=rc.channelType,
            stream_types=rc.streamTypes,
            prefix=prefix,
            subscription={
                "subscribeAudioUids": rc.subscribeAudioUids,
                "unSubscribeAudioUids": rc.unSubscribeAudioUids,
                "subscribeVideoUids": rc.subscribeVideoUids,
                "unSubscribeVideoUids": rc.unSubscribeVideoUids,
            },
            layout=layout,
            file_types=file_types,
            token=self._token_verdict(app_id, resource, client.token, now),
        )
        self._observe(session, now)
        self.sessions[sid] = session
        resource.sid = sid
        return Answer(200, {"sid": sid, "resourceId": resource_id})

    def _token_verdict(
        self, app_id: str, resource: Resource, token: object, now: float
    ) -> TokenVerdict | None:
        """What the channel makes of a start's token: None when `app_id` has no App
        Certificate (the token is not read). A refused token is still answered 200 with
        a sid, as Agora does; the recorder just never joins, and gives up after the
        warmup and `token_refused_exit` seconds."""
        certificate = self.certificates.for_app(app_id)
        if certificate is None:
            return None
        return check_token(
            token,
            certificate=certificate,
            app_id=app_id,
            cname=resource.cname,
            uid=resource.uid,
            now=now,
            gives_up_at=now + self.settings.warmup + self.settings.token_refused_exit,
        )

    def _session_for(
        self,
        endpoint: str,
        app_id: str,
        resource_id: str,
        sid: str,
        mode: str,
        body: dict[str, Any] | None,
        now: float,
    ) -> Session:
        """The live session a sid-route call addresses; refused as Agora would."""
        resource = self._resource_for(app_id, resource_id, sid)
        session = self.sessions[sid]
        if body is not None:
            cname = _channel(body)
            # After a failover, the recorder's new uid names it as well as the first.
            if cname != resource.cname or body.get("uid") not in session.uids:
                raise _Refused(
                    error(
                        ErrorCode.MISMATCHED_PARAMETERS,
                        "cname or uid does not match the resource ID",
                    )
                )
        session.settle(now)
        if session.ended_at is not None:
            if endpoint == "stop" and session.end_reason == "stopped":
                raise _Refused(
                    error(ErrorCode.STOP_REPEATED, "the recording has already been stopped")
                )
            raise _Refused(NOT_FOUND)
        if session.failover_until(now) is not None:  # nothing acts on it: it goes on
            raise _Refused(NOT_FOUND)
        if mode != session.mode:
            raise _Refused(error(ErrorCode.INVALID_PARAMETER, "mode does not match the recording"))
        return session

    @_answers
    def update(
        self, app_id: str, resource_id: str, sid: str, mode: str, body: dict[str, Any], now: float
    ) -> Answer:
        found = self._session_for("update", app_id, resource_id, sid, mode, body, now)
        request = _validated(wire.UpdateRequest, body, mode=mode)
        subscribe = request.clientRequest.streamSubscribe
        audio, video = subscribe.audioUidList, subscribe.videoUidList
        # A list for a kind of stream the recording does not take is refused.
        for kind, given, only in (("audio", audio, "video"), ("video", video, "audio")):
            if given is not None and found.stream_types == contract.STREAM_TYPES[only]:
                return error(
                    ErrorCode.INVALID_PARAMETER,
                    f"{kind}UidList is not allowed when streamTypes is "
                    f"{contract.STREAM_TYPES[only]} ({only} only)",
                )
        found.subscription = {
            "subscribeAudioUids": audio.subscribeAudioUids if audio else None,
            "unSubscribeAudioUids": audio.unSubscribeAudioUids if audio else None,
            "subscribeVideoUids": video.subscribeVideoUids if video else None,
            "unSubscribeVideoUids": video.unSubscribeVideoUids if video else None,
        }
        return Answer(200, {"sid": sid, "resourceId": resource_id})

    @_answers
    def update_layout(
        self, app_id: str, resource_id: str, sid: str, mode: str, body: dict[str, Any], now: float
    ) -> Answer:
        found = self._session_for("updateLayout", app_id, resource_id, sid, mode, body, now)
        if found.mode != "mix":
            return error(ErrorCode.INVALID_UID, "updateLayout supports only mix mode")
        request = _validated(wire.UpdateLayoutRequest, body, code=ErrorCode.INVALID_UID)
        # The whole layout is replaced: omitted fields fall back to their defaults.
        found.layout = request.clientRequest.model_dump(mode="json", exclude_none=True)
        return Answer(200, {"sid": sid, "resourceId": resource_id})

    @_answers
    def query(self, app_id: str, resource_id: str, sid: str, mode: str, now: float) -> Answer:
        self._resource_for(app_id, resource_id, sid)
        session = self.sessions[sid]
        session.settle(now)
        if session.ended_at is not None:
            lingering = (
                session.end_reason in _LINGERING_ENDS
                and now - session.ended_at < self.settings.ended_linger
            )
            if not lingering:
                return NOT_FOUND
        elif session.failover_until(now) is not None:
            return NOT_FOUND
        elif mode != session.mode:
            return error(ErrorCode.INVALID_PARAMETER, "mode does not match the recording")
        return Answer(
            200,
            {
                "resourceId": resource_id,
                "sid": sid,
                "serverResponse": self._server_response(session, now),
            },
        )

    @_answers
    def stop(
        self, app_id: str, resource_id: str, sid: str, mode: str, body: dict[str, Any], now: float
    ) -> Answer:
        found = self._session_for("stop", app_id, resource_id, sid, mode, body, now)
        _validated(wire.StopRequest, body)
        found.ended_at, found.end_reason = now, "stopped"
        if not found.seen:
            return error(
                ErrorCode.NO_FILES, "no recorded files: nobody sent streams in the channel"
            )
        server = self._server_response(found, now, final=True)
        server.pop("status", None)
        server.pop("sliceStartTime", None)
        server.pop("subServiceStatus", None)
        server["uploadingStatus"] = self.settings.uploading_status
        return Answer(200, {"resourceId": resource_id, "sid": sid, "serverResponse": server})

    def _server_response(
        self, session: Session, now: float, *, final: bool = False
    ) -> dict[str, Any]:
        return session.server_response(
            now,
            warmup=self.settings.warmup,
            status_as_string=self.settings.status_as_string,
            final=final,
        )
