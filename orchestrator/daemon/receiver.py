"""The receiver of Agora's notifications (NCS): `notifications.address`, POST
`notifications.path`.

It faces Agora (behind the operator's TLS proxy), so it trusts nothing it has not
verified: every request's `Agora-Signature-V2` header must be the HMAC-SHA256 of the
raw body under `notifications.secret` (a missing or wrong one is 401 and changes
nothing), bodies over `notifications.maxBody` are refused before they are read
(413, by the listener), and a verified body that is not a notification is 400. A
verified notification is answered 200, with a small JSON body, once it is kept in
the store (NCS never sends again what it had a 200 for): the keeping (finding the
session its sid names, writing the notice, waking the owner of its App ID) is a task
of the daemon's registry, and the answer waits for it, so each connection has one
notice in work at most. A store that fails, or a keeping cut short (a shutdown's
drain), is answered 503, and NCS sends it again. A resent `noticeId` is kept once,
so acted on once; a notice of a session the store does not know is counted and
logged, and kept settled, without acting; one that means nothing for its session (a
recorder started, an upload's progress) is counted and kept settled without waking
anyone. A sid the store does not know, on the channel and uid of a
session of ours whose sid is unknown (a start under way, or one whose answer was
lost), is kept with that session for its owner, which confirms it with the API
(reconcile/notices.py).

Must never: put the secret, a signature or a body in a log line or an answer; block
the event loop (the route is an HMAC and a JSON parse, the keeping a task); answer
200 before the notice is in the store; act on a recording itself (the owner's pass
does, reconcile/notices.py).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Coroutine, Mapping
from datetime import datetime
from http import HTTPStatus
from typing import Any

import structlog

from orchestrator.agora import ncs
from orchestrator.daemon.listener import Listener, Page, bounds_for
from orchestrator.state import Notice, SessionRecord, Store, StoreError

log = structlog.get_logger("orchestrator.daemon")

#: Outcomes counted by `orchestrator_notifications_total{outcome}`.
KEPT = "kept"
DUPLICATE = "duplicate"
UNKNOWN_SESSION = "unknown_session"
BAD_SIGNATURE = "bad_signature"
BAD_BODY = "bad_body"
TOO_LARGE = "too_large"
STORE_FAILED = "store_failed"
#: The event of a notification refused before its body was read.
UNKNOWN_EVENT = "unknown"

#: Runs the keeping of a notice as a task of the daemon's registry.
Spawn = Callable[[Coroutine[Any, Any, Page]], "asyncio.Future[Page]"]
#: Told of every notification received: (event name, outcome).
Observe = Callable[[str, str], None]


def _json(status: HTTPStatus, body: Mapping[str, Any]) -> Page:
    return Page(int(status), "application/json", json.dumps(body).encode())


class NoticeReceiver:
    """Verifies, answers and keeps Agora's notifications; `wake(app_id)` is told of
    each new one of a known session (SQLite: the pass runs in this process)."""

    def __init__(
        self,
        store: Store,
        secret: str,
        *,
        path: str,
        max_body: int,
        spawn: Spawn,
        wake: Callable[[str], None],
        clock: Callable[[], datetime],
        observe: Observe | None = None,
    ) -> None:
        self._store = store
        self._secret = secret
        self._spawn = spawn
        self._wake = wake
        self._clock = clock
        self._observe = observe
        self.listener = Listener(
            {},
            posts={path: self.receive},
            max_body=max_body,
            bounds=bounds_for(),
            on_refused=self._refused,
        )

    def receive(self, headers: Mapping[str, str], body: bytes) -> Page | asyncio.Future[Page]:
        """The POST route: verify and read it at once; its answer once it is kept."""
        if not ncs.verify(self._secret, body, headers.get(ncs.SIGNATURE_HEADER.lower())):
            self._count(UNKNOWN_EVENT, BAD_SIGNATURE)
            log.warning("notice.refused", reason="signature missing or wrong", size=len(body))
            return _json(HTTPStatus.UNAUTHORIZED, {"error": "signature missing or wrong"})
        try:
            notification = ncs.parse(body)
        except ncs.NotificationError as exc:
            self._count(UNKNOWN_EVENT, BAD_BODY)
            log.warning("notice.refused", reason=f"not a notification: {exc}")
            return _json(HTTPStatus.BAD_REQUEST, {"error": "not a notification"})
        return self._spawn(self._keep(notification, self._clock()))

    def _refused(self, status: int) -> None:
        if status == HTTPStatus.REQUEST_ENTITY_TOO_LARGE:
            self._count(UNKNOWN_EVENT, TOO_LARGE)
            log.warning("notice.refused", reason="body over notifications.maxBody")

    async def _keep(self, notification: ncs.Notification, received_at: datetime) -> Page:
        """Keep it, then its answer: 200 once kept (or known: a resend), 503 when the
        store failed (NCS sends it again)."""
        event = ncs.event_name(notification.eventType)
        try:
            outcome, owner = await self._store_notice(notification, received_at)
        except StoreError as exc:
            log.error("notice.not_kept", notice_id=notification.noticeId, error=str(exc))
            self._count(event, STORE_FAILED)
            return _json(HTTPStatus.SERVICE_UNAVAILABLE, {"error": "not kept: send it again"})
        self._count(event, outcome)
        if owner is not None:
            self._wake(owner)
        return _json(HTTPStatus.OK, {"ok": True, "noticeId": notification.noticeId})

    async def _store_notice(
        self, notification: ncs.Notification, received_at: datetime
    ) -> tuple[str, str | None]:
        """Keep it (once per noticeId) with the session its sid names (or, for a sid we
        do not know, the session of ours on its channel and uid whose sid is unknown);
        settle at once what no pass needs to act on: a sid of no session of ours, an
        event that means nothing for its session (a recorder started, an upload's
        progress). The outcome, and the App ID whose owner acts on it (None: nobody)."""
        payload = notification.payload
        session = await self._store.session_by_sid(payload.sid) if payload.sid else None
        # A sid the store does not know may be a start's whose answer was lost.
        claims = session is None and bool(payload.sid)
        if claims:
            session = await self._sidless(payload)
            if session is None:  # the start's answer may have been written in between
                session = await self._store.session_by_sid(payload.sid)
                claims = session is None
        acts = claims or ncs.meaning(notification).effect is not ncs.Effect.NONE
        # What no pass needs to act on is kept settled: one write, nothing left pending
        # should a second one fail (a resend is a duplicate, which changes nothing).
        settled = None if session is not None and acts else received_at
        outcome = "no session of ours has its sid" if session is None else "counted"
        notice = Notice(
            notice_id=notification.noticeId,
            event_type=notification.eventType,
            received_at=received_at,
            body=notification.model_dump(mode="json"),
            sid=payload.sid or None,
            channel=payload.cname or None,
            app_id=None if session is None else session.app_id,
            session_id=None if session is None else session.id,
            handled_at=settled,
            outcome=None if settled is None else outcome,
        )
        fields = {"notice_id": notice.notice_id, "notice_event": ncs.event_name(notice.event_type)}
        if not await self._store.record_notice(notice):
            log.info("notice.duplicate", **fields)
            return DUPLICATE, None
        if session is None:
            log.warning("notice.unknown_session", sid=payload.sid, channel=payload.cname, **fields)
            return UNKNOWN_SESSION, None
        log.debug("notice.received", manifest=session.manifest, session_id=session.id, **fields)
        return KEPT, session.app_id if acts else None

    async def _sidless(self, payload: ncs.Payload) -> SessionRecord | None:
        """The newest session of ours on the payload's channel and uid whose sid is
        unknown, when they are all one App ID's (notifications do not name theirs)."""
        uid = payload.uid_number()
        if not payload.cname or uid is None:
            return None
        found = await self._store.sidless_on(payload.cname, uid)
        if len({s.app_id for s in found}) != 1:
            return None
        return found[-1]

    def _count(self, event: str, outcome: str) -> None:
        if self._observe is not None:
            self._observe(event, outcome)

    async def start(self, host: str, port: int) -> int:
        return await self.listener.start(host, port)

    async def stop(self) -> None:
        await self.listener.stop()
