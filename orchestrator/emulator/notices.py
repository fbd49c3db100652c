"""The NCS notifications Agora would send for what happened to the emulator's sessions.

Agora's Notification Center tells an operator's endpoint when a recorder starts (40),
fails over (12), leaves (41), has files (4, then 31 uploaded or 32 backuped) and when
the session exits (11). `Announcer` looks at the sessions (settled at `now` by the
caller) and returns, once each, the notifications their changes call for since it
last looked, in the order they happened; `notify.py` signs and delivers them.

Pure and synchronous: no clock (instants are the sessions' own and `now`), no I/O,
and no secret (signing happens at delivery). It must never announce a change twice,
nor a change that happened before it began to look (`baseline`).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from orchestrator.agora import ncs
from orchestrator.agora.ncs import EventType
from orchestrator.emulator.session import END_TOKEN_EXPIRED, END_TOKEN_REFUSED, Session

#: `details.leaveCode` of 41 recorder_leave, by end reason: Agora's LEAVE_PATH_CODE
#: bits (2 signal, 4 no users, 8 timer, 16 the recorder left when asked; 0 it never
#: initialised, as a recorder refused for its token never joins).
LEAVE_CODES = {"stopped": 16, "idle": 4, "aborted": 2, "expired": 8, END_TOKEN_EXPIRED: 8}
LEAVE_CODE_INIT = 0
#: `payload.serviceType`: which part of Cloud Recording tells (Agora's values).
SERVICE, RECORDER, UPLOADER = 0, 1, 2
#: The upload event `stop`'s `uploadingStatus` stands for (none for "unknown").
_UPLOAD_EVENTS = {"uploaded": EventType.UPLOADED, "backuped": EventType.BACKUPED}


@dataclass
class _Told:
    """What NCS has told of one session so far."""

    sequence: int = 0  # the next notification's `payload.sequence`
    started: bool = False
    failovers: int = 0
    ended: bool = False


@dataclass(frozen=True)
class _Event:
    """Something that happened to a session, as NCS tells it."""

    kind: EventType
    at: float  # when it happened (emulator seconds): `payload.sendts`
    uid: str  # the recorder's uid then: `payload.uid`
    service: int
    details: dict[str, Any]


class Announcer:
    """Turns the sessions' changes into notifications, once each, with a `sequence`
    per sid counting from 0."""

    def __init__(self) -> None:
        self._told: dict[str, _Told] = {}

    def baseline(self, sessions: Iterable[Session]) -> None:
        """Take everything that has happened to `sessions` as told (notifications were
        off while it happened)."""
        for session in sessions:
            self._told[session.sid] = _Told(
                started=True, failovers=len(session.failovers), ended=session.ended_at is not None
            )

    def forget(self) -> None:
        self._told.clear()

    def announce(
        self, sessions: Iterable[Session], now: float, *, uploading_status: str = "uploaded"
    ) -> list[ncs.Notification]:
        """The notifications for what happened to `sessions` since the last call, sent
        at `now`; `uploading_status` is what `stop` answers (it picks event 31 or 32)."""
        notices: list[ncs.Notification] = []
        for session in sessions:
            told = self._told.setdefault(session.sid, _Told())
            if told.ended:
                continue
            events: list[_Event] = []
            if not told.started:
                told.started = True
                started = {"msgName": "recorder_started", "status": 0}
                events.append(
                    _Event(
                        EventType.RECORDER_STARTED,
                        session.started_at,
                        session.uid,
                        RECORDER,
                        started,
                    )
                )
            for failover in session.failovers[told.failovers :]:
                told.failovers += 1
                if failover.notify:
                    moved = {"msgName": "session_failover", "newUid": int(failover.new_uid)}
                    events.append(
                        _Event(
                            EventType.SESSION_FAILOVER,
                            failover.at,
                            failover.old_uid,
                            SERVICE,
                            moved,
                        )
                    )
            if session.ended_at is not None:
                told.ended = True
                events.extend(_exit(session, session.ended_at, uploading_status))
            notices.extend(_notice(session, told, event, now) for event in events)
        return notices


def _exit(session: Session, at: float, uploading_status: str) -> list[_Event]:
    """The recorder leaves (41), its files are listed (4) and uploaded (31 or 32) when
    it recorded any, and the session exits (11)."""
    reason = session.end_reason or ""
    refused = reason.startswith(END_TOKEN_REFUSED)
    leave_code = LEAVE_CODE_INIT if refused else LEAVE_CODES.get(reason, LEAVE_CODE_INIT)
    uid = session.recorder_uid
    left = {"msgName": "recorder_leave", "leaveCode": leave_code}
    events = [_Event(EventType.RECORDER_LEAVE, at, uid, RECORDER, left)]
    # NCS names a file `fileName` where query and stop answer `filename`.
    files = [
        {"fileName": f["filename"], **{k: v for k, v in f.items() if k != "filename"}}
        for f in session.files()
    ]
    if files:
        infos = {"msgName": "cloud_recording_file_infos", "fileList": files}
        events.append(_Event(EventType.CLOUD_RECORDING_FILE_INFOS, at, uid, SERVICE, infos))
        upload = _UPLOAD_EVENTS.get(uploading_status)
        if upload is not None:
            done = {"msgName": upload.name.lower(), "status": 0, "fileList": files}
            events.append(_Event(upload, at, uid, UPLOADER, done))
    exited = {"msgName": "session_exit", "exitStatus": int(refused or reason == "aborted")}
    events.append(_Event(EventType.SESSION_EXIT, at, uid, SERVICE, exited))
    return events


def _notice(session: Session, told: _Told, event: _Event, now: float) -> ncs.Notification:
    """`event` as the next notification of `session`, sent at `now` (emulator seconds)."""
    payload = ncs.Payload(
        cname=session.cname,
        uid=event.uid,
        sid=session.sid,
        sequence=told.sequence,
        sendts=int(event.at * 1000),
        serviceType=event.service,
        details=event.details,
    )
    told.sequence += 1
    return ncs.Notification(
        noticeId=uuid.uuid4().hex,
        productId=ncs.CLOUD_RECORDING,
        eventType=int(event.kind),
        notifyMs=int(now * 1000),
        payload=payload,
    )
