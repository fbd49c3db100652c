"""Acting on Agora's notifications (NCS): what each kept notice means for its session.

The receiver (daemon/receiver.py) verifies a notification, keeps it in the store and
wakes the owner of its session's App ID; the owner's pass calls `act_on_notices`
before it plans. An exit (`session_exit`, `recorder_leave`, a fatal
`cloud_recording_error`) ends a running session at once, as the event says, so the
planner restarts the recording without waiting for a resync; a failover
(`session_failover`) records the new uid and when, so that the 404s Agora answers
meanwhile are not taken for an exit; a file list (`cloud_recording_file_infos`,
`uploaded`) is stored for `status`; everything else is only counted.

A notice whose sid the store did not know may name a session of ours whose sid is
unknown: a start whose answer was lost (unmanageable: "started, sid unknown"), or one
whose answer is not written yet. The receiver keeps it with such a session of its
channel and uid; the pass waits while a start is under way, then asks the API about
the notice's sid with each unmanageable candidate's resource ID (Agora ties a sid to
the resource ID that started it): the one it answers for takes the sid and is a
running session again, queried, updated and stopped like any other (`_claim`).

Must never: act on a notice twice (each is settled once acted on, and its writes are
conditional on the phase they read), act on a session an action is changing (its
intent set: the notice waits for the next pass), start or stop anything (the planner
decides), treat a failover as a reason to restart, or give a session a sid the API
did not confirm as that session's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime

import structlog
from pydantic import ValidationError

from orchestrator.agora import ncs
from orchestrator.agora.client import AgoraClient
from orchestrator.agora.errors import AgoraError, AppError, RetryableError
from orchestrator.agora.wire import QueryServerResponse
from orchestrator.reconcile.refresh import QUERIED, OnExit, confirm_end, exit_values, take_back
from orchestrator.state import (
    FINAL_PHASES,
    Notice,
    Phase,
    SessionFields,
    SessionNotFoundError,
    SessionRecord,
    Store,
)

log = structlog.get_logger("orchestrator.reconcile")

#: Phases in which a failover notice is recorded on the session (a stop under way
#: included: its 404s during the failover must not be taken for an end either).
_FAILOVER_PHASES = (*QUERIED, Phase.STOPPING)
_ALL_PHASES = tuple(Phase)


async def act_on_notices(
    store: Store,
    notices: Sequence[Notice],
    *,
    now: Callable[[], datetime],
    on_exit: OnExit | None = None,
    clients: Mapping[str, AgoraClient] | None = None,
) -> tuple[int, set[str]]:
    """Act on each notice and settle it. Returns (notices acted on, manifests whose
    sessions an action is changing: their notices wait, settled by a later pass).
    `clients` (by app profile) confirm a sid the store did not know (none: such a
    notice names no session)."""
    acted = 0
    waiting: set[str] = set()
    for notice in notices:
        session = await _session_of(store, notice)
        if session is not None and session.intent is not None:
            waiting.add(session.manifest)
            continue
        posted = _posted(notice)
        if session is not None and notice.sid is not None and notice.sid != session.sid:
            claimed = await _claim(store, clients or {}, notice, posted, notice.sid, now())
            if claimed is None:  # a start is under way, or the API did not answer
                waiting.add(session.manifest)
                continue
            if isinstance(claimed, str):
                session, outcome = None, claimed
            else:
                session = claimed
                outcome = f"took its sid; {await _act(store, posted, session, now(), on_exit)}"
        else:
            outcome = await _act(store, posted, session, now(), on_exit)
        await store.settle_notice(notice.notice_id, outcome)
        acted += 1
        quiet = outcome == "counted" or outcome.startswith("nothing to do")
        (log.debug if quiet else log.info)(
            "notice.acted",
            notice_id=notice.notice_id,
            notice_event=ncs.event_name(notice.event_type),
            session_id=notice.session_id,
            manifest=None if session is None else session.manifest,
            outcome=outcome,
        )
    return acted, waiting


async def _session_of(store: Store, notice: Notice) -> SessionRecord | None:
    if notice.session_id is None:
        return None
    try:
        return await store.get_session(notice.session_id)
    except SessionNotFoundError:
        return None


async def _claim(
    store: Store,
    clients: Mapping[str, AgoraClient],
    notice: Notice,
    posted: ncs.Notification | None,
    sid: str,
    now: datetime,
) -> SessionRecord | str | None:
    """The session of ours that `notice` names although the store knew no session with
    its `sid`: an unmanageable one of its App ID, channel and uid whose start's answer
    was lost, once the API answers a query of `sid` with that session's resource ID.
    It takes the sid and is running again (or ended, as the answer says). A str: no
    session of ours is `sid`'s; None: not known yet (a start of the channel and uid is
    under way, or the API did not answer), the notice waits."""
    uid = None if posted is None else posted.payload.uid_number()
    if notice.channel is None or uid is None:
        return "no session of ours has its sid"
    found = await store.sidless_on(notice.channel, uid)
    candidates = [c for c in found if c.app_id == notice.app_id]
    if any(c.intent is not None for c in candidates):
        return None
    for candidate in reversed(candidates):  # the newest first
        client = clients.get(candidate.app)
        if client is None or candidate.phase is not Phase.UNMANAGEABLE:
            continue
        if candidate.resource_id is None:  # no start was sent: no sid can be its
            continue
        try:
            answer = await client.query(
                candidate.app_id,
                candidate.resource_id,
                sid,
                candidate.mode,
                channel=candidate.channel,
                uid=candidate.uid,
                background=False,
            )
        except (RetryableError, AppError) as exc:  # no answer yet, or the app is refused
            log.warning(
                "notice.claim_unanswered", notice_id=notice.notice_id, sid=sid, error=str(exc)
            )
            return None
        except AgoraError:
            continue  # not this resource ID's sid (1003), or nothing live to take over
        return await _take_sid(store, candidate, sid, answer.serverResponse, now)
    return "no session of ours has its sid"


async def _take_sid(
    store: Store, session: SessionRecord, sid: str, server: QueryServerResponse, now: datetime
) -> SessionRecord | str:
    """Give an unmanageable session the sid the API confirmed as its own."""
    # Its start was sent when the session was created (its answer was lost): the
    # restart backoff counts it as recording since then.
    values: SessionFields = {
        "sid": sid,
        "error": None,
        "last_query_at": now,
        "last_status": server.service_status,
        "started_at": session.started_at or session.created_at,
    }
    exited = server.exited
    if exited is None:
        values["phase"] = Phase.RUNNING
    else:
        values.update(exit_values(now, f"exited: {exited}"))
    taken = await store.update_session_if(session.id, (Phase.UNMANAGEABLE,), **values)
    if taken is None:
        return "nothing to do: the session moved on meanwhile"
    log.warning(
        "session.sid_recovered",
        manifest=session.manifest,
        session_id=session.id,
        sid=sid,
        phase=taken.phase.value,
        detail="a notification named the sid of a start whose answer was lost; the API "
        "confirmed it: the session is managed again",
    )
    return taken


def _posted(notice: Notice) -> ncs.Notification | None:
    """The notification as posted (None: kept by an older or newer version, unreadable)."""
    try:
        return ncs.Notification.model_validate(notice.body)
    except ValidationError:
        return None


async def _act(
    store: Store,
    posted: ncs.Notification | None,
    session: SessionRecord | None,
    now: datetime,
    on_exit: OnExit | None,
) -> str:
    if session is None:
        return "no such session"
    if posted is None:
        return "not a notification this version reads"
    meaning = ncs.meaning(posted)
    match meaning.effect:
        case ncs.Effect.EXIT:
            return await _exit(store, session, meaning.reason, now, on_exit)
        case ncs.Effect.FAILOVER:
            return await _failover(store, session, meaning.new_uid, now)
        case ncs.Effect.FILES:
            await store.update_session_if(session.id, _ALL_PHASES, file_list=meaning.file_list)
            return "file list stored"
        case _:
            return "counted"


async def _exit(
    store: Store, session: SessionRecord, reason: str, now: datetime, on_exit: OnExit | None
) -> str:
    if session.phase in QUERIED:
        ended = await store.update_session_if(
            session.id,
            QUERIED,
            **exit_values(now, reason, confirm_until=None, error=None),
        )
        if ended is None:
            return "nothing to do: the session moved on meanwhile"
        log.info("session.exited", manifest=session.manifest, session_id=session.id, detail=reason)
        if on_exit is not None:
            on_exit(ended, session.last_status)
        return "ended the session"
    if session.phase in FINAL_PHASES and session.confirm_until is not None:
        await confirm_end(store, session, reason)
        return "confirmed its end"
    return f"nothing to do: the session is {session.phase}"


async def _failover(
    store: Store, session: SessionRecord, new_uid: str | None, now: datetime
) -> str:
    if session.phase in FINAL_PHASES:
        if session.confirm_until is None:
            return f"nothing to do: the session is {session.phase}"
        # A 404 came first and was taken for an end: it was this failover.
        taken = await take_back(store, session, now, status=None, why="a failover notification")
        if taken is None:
            return "not taken back"
        session = taken
    written = await store.update_session_if(
        session.id,
        _FAILOVER_PHASES,
        failover_at=now,
        failover_uid=new_uid,
    )
    if written is None:
        return f"nothing to do: the session is {session.phase}"
    log.warning(
        "session.failover",
        manifest=session.manifest,
        session_id=session.id,
        new_uid=new_uid,
        detail="Agora moved the recorder; the recording goes on, its 404s meanwhile are no exit",
    )
    return "failover recorded"
