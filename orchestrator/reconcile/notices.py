"""Acting on Agora's notifications (NCS): what each kept notice means for its session.

The receiver (daemon/receiver.py) verifies a notification, keeps it in the store and
wakes the owner of its session's App ID; the owner's pass calls `act_on_notices`
before it plans. An exit (`session_exit`, `recorder_leave`, a fatal
`cloud_recording_error`) ends a running session at once, as the event says, so the
planner restarts the recording without waiting for a resync; a failover
(`session_failover`) records the new uid and when, so that the 404s Agora answers
meanwhile are not taken for an exit; a file list (`cloud_recording_file_infos`,
`uploaded`) is stored for `status`; everything else is only counted.

Must never: act on a notice twice (each is settled once acted on, and its writes are
conditional on the phase they read), act on a session an action is changing (its
intent set: the notice waits for the next pass), start or stop anything (the planner
decides), or treat a failover as a reason to restart.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

import structlog
from pydantic import ValidationError

from orchestrator.agora import ncs
from orchestrator.reconcile.refresh import QUERIED, OnExit, confirm_end, exit_values, take_back
from orchestrator.state import (
    FINAL_PHASES,
    Notice,
    Phase,
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
) -> tuple[int, set[str]]:
    """Act on each notice and settle it. Returns (notices acted on, manifests whose
    sessions an action is changing: their notices wait, settled by a later pass)."""
    acted = 0
    waiting: set[str] = set()
    for notice in notices:
        session = await _session_of(store, notice)
        if session is not None and session.intent is not None:
            waiting.add(session.manifest)
            continue
        outcome = await _act(store, notice, session, now(), on_exit)
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


async def _act(
    store: Store,
    notice: Notice,
    session: SessionRecord | None,
    now: datetime,
    on_exit: OnExit | None,
) -> str:
    if session is None:
        return "no such session"
    try:
        meaning = ncs.meaning(ncs.Notification.model_validate(notice.body))
    except ValidationError:  # kept by an older or newer version: nothing to read
        return "not a notification this version reads"
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
            on_exit(ended)
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
