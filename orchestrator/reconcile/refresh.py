"""The resync's queries: what Agora says about each live session, written to the store.

`refresh_sessions` queries every running or updating session, under a bound the
executor keeps for queries apart from its actions' (so that a resync never holds
back an action), and records the ones that ended and why. A session whose resource
ID or sid the API no longer recognises is kept as unmanageable (`mark_unrecognised`,
which a stop or an update that meets the same answer uses too).

A 404 is not always an exit: during Agora's own failover `query`, `stop` and
`updateLayout` answer 404 for 30 s to a minute while the recording goes on under a
new uid. So (issue 19) a 404 within `grace` of a failover notification changes
nothing, and any other 404 ends the session *unconfirmed* (`confirm_until`): the
planner may start a successor at once (no gap), and the ended session keeps being
queried until `confirm_until`; if it answers again it is taken back (`take_back`)
and the planner stops one of the two. An exit notification confirms an end at once.

It must never act on a recording (no start, stop or update), never overwrite what
another writer recorded while a query was out (every write is conditional on the
phase it read), and never conclude anything from a query that failed: those are
returned for the caller to report.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, NamedTuple, Unpack

import structlog

from orchestrator.agora import wire
from orchestrator.agora.client import AgoraClient
from orchestrator.agora.errors import AgoraError, NotFoundError, SessionUnknownError
from orchestrator.state import (
    FINAL_PHASES,
    EndKind,
    Phase,
    SessionFields,
    SessionNotFoundError,
    SessionRecord,
    Store,
    StoreConflictError,
    StoreFencedError,
)

log = structlog.get_logger("orchestrator.reconcile")

# The phases a query's answer may be written in.
QUERIED = (Phase.RUNNING, Phase.UPDATING)

#: Told of each session found ended by itself: as written, and the status the last
#: query before its end saw (None: none did; the written one holds the end's own).
OnExit = Callable[[SessionRecord, int | None], None]
#: Waits until a session's query may go (a resync's queries spread over its interval),
#: and says whether it still is to go then (False: a replica handed its App ID over while
#: the round waited: the next owner queries it).
Pace = Callable[[SessionRecord], Awaitable[bool]]

#: How long after a failover notification a 404 is taken for the failover, and how
#: long an unconfirmed end is still queried: longer than the 30 s to 1 min failover
#: Agora documents (config `reconcile.failoverGrace`).
DEFAULT_FAILOVER_GRACE = timedelta(seconds=90)


class Address(NamedTuple):
    """What names a started session in the API's paths, in the order the client's
    session calls (query, update, update_layout, stop) take it."""

    app_id: str
    resource_id: str
    sid: str
    mode: str


def exit_values(at: datetime, reason: str, **more: Unpack[SessionFields]) -> SessionFields:
    """What a session that ended by itself (an exit, not our stop) records: ended at
    `at`, for `reason`, and `more`."""
    return {
        "phase": Phase.ENDED,
        "ended_at": at,
        "end_reason": reason,
        "end_kind": EndKind.EXITED,
        **more,
    }


def address(session: SessionRecord) -> Address | None:
    """The session's address; None until a start has given it a resource ID and a sid."""
    if not session.resource_id or not session.sid:
        return None
    return Address(session.app_id, session.resource_id, session.sid, session.mode)


async def refresh_sessions(
    store: Store,
    clients: Mapping[str, AgoraClient],
    sessions: Sequence[SessionRecord],
    *,
    now: Callable[[], datetime],
    limit: asyncio.Semaphore,
    on_exit: OnExit | None = None,
    grace: timedelta = DEFAULT_FAILOVER_GRACE,
    pace: Pace | None = None,
) -> list[str]:
    """Query every running session, and every ended one whose end is unconfirmed (at
    most `limit` at once, each after `pace` let it go) through the client of its app
    profile; record the ones that ended and why (and tell `on_exit` of each), and take
    back an unconfirmed one that answers. A session `pace` says no to when its turn
    comes is left alone (its App ID was handed over to another replica).

    Returns what could not be queried (one line per session): nothing is concluded
    about those, and the caller reports them.
    """
    await _close_expired_unmanageable(store, sessions, now())
    running = [
        (s, where)
        for s in sessions
        if (s.phase in QUERIED or _unconfirmed(s)) and (where := address(s)) is not None
    ]
    round_ = _Round(store, clients, now, limit, on_exit, grace, pace)
    outcomes = await asyncio.gather(*(round_.refresh(s, where) for s, where in running))
    return [problem for problem in outcomes if problem is not None]


def _unconfirmed(session: SessionRecord) -> bool:
    return session.phase in FINAL_PHASES and session.confirm_until is not None


class _Round(NamedTuple):
    """One `refresh_sessions` call's settings, shared by its sessions' queries."""

    store: Store
    clients: Mapping[str, AgoraClient]
    now: Callable[[], datetime]
    limit: asyncio.Semaphore
    on_exit: OnExit | None
    grace: timedelta
    pace: Pace | None

    async def refresh(self, session: SessionRecord, where: Address) -> str | None:
        """Query one session and record what the answer says; what could not be
        queried, or None."""
        store, now = self.store, self.now
        try:
            if _unconfirmed(session):
                assert session.confirm_until is not None
                if now() >= session.confirm_until:
                    await confirm_end(store, session, "no answer but 404 within the grace")
                    return None
            if self.pace is not None:
                if not await self.pace(session):
                    _skipped(session, "this replica no longer owns its App ID")
                    return None
                # The round waited for this turn: a stop (or an exit a notification
                # told) may have ended the session meanwhile, and its query would only
                # spend a query slot on a 404.
                try:
                    current = await store.get_session(session.id)
                except SessionNotFoundError:  # an operator deleted it: nothing to query
                    return None
                if current.phase not in QUERIED and not _unconfirmed(current):
                    _skipped(session, f"it is {current.phase.value} now", quiet=True)
                    return None
            # A paced round is the resync's polling: query slots, within the share and
            # behind mutating calls. Unpaced, something waits on the answers (the
            # start-up adoption, `apply`, a rollover's confirmation): ordinary slots, the
            # full rate.
            ask = _Ask(self.clients.get(session.app), background=self.pace is not None)
            async with self.limit:
                if _unconfirmed(session):
                    await _query_unconfirmed(store, ask, session, where, now)
                    return None
                return await _query_one(store, ask, session, where, now, self.on_exit, self.grace)
        except StoreFencedError:
            # Another replica owns the App ID now: what it learns is its to record.
            _skipped(session, "another replica owns its App ID now")
            return None


def _skipped(session: SessionRecord, reason: str, *, quiet: bool = False) -> None:
    """Log that a round left `session` unqueried, and why (`quiet`: at debug level)."""
    emit = log.debug if quiet else log.info
    emit("session.query_skipped", manifest=session.manifest, session_id=session.id, reason=reason)


class _Ask(NamedTuple):
    """The client of a session's app profile (None: none resolved), and whether its
    query is the resync's (`AgoraClient.query(background=...)`)."""

    client: AgoraClient | None
    background: bool

    async def query(self, session: SessionRecord, where: Address) -> wire.QueryResponse:
        assert self.client is not None
        return await self.client.query(
            *where, channel=session.channel, uid=session.uid, background=self.background
        )


async def _query_one(
    store: Store,
    ask: _Ask,
    session: SessionRecord,
    where: Address,
    now: Callable[[], datetime],
    on_exit: OnExit | None,
    grace: timedelta,
) -> str | None:
    if ask.client is None:
        return _query_failed(session, f"no client for app profile {session.app!r}")
    try:
        answer = await ask.query(session, where)
    except NotFoundError:
        at = now()
        if session.failover_at is not None and at < session.failover_at + grace:
            # Agora announced a failover: its 404s are expected, the recording goes on.
            log.info("session.failover_404", manifest=session.manifest, session_id=session.id)
            return None
        gone = await _gone(store, session, at, grace=None if session.failover_at else grace)
        if gone is not None and on_exit is not None:
            on_exit(gone, session.last_status)
        return None
    except SessionUnknownError as exc:
        await mark_unrecognised(store, session, exc, QUERIED, now=now())
        return None
    except AgoraError as exc:
        return _query_failed(session, str(exc))
    server = answer.serverResponse
    status = server.service_status
    values: SessionFields = {"last_query_at": now(), "last_status": status}
    files = file_list(server.fileList)
    if files is not None:
        values["file_list"] = files
    exited = server.exited
    if exited is not None:
        values.update(exit_values(now(), f"exited: {exited}"))
    # Only while nothing else moved the session on meanwhile (a stop sent while the
    # query was out keeps its own outcome).
    written = await store.update_session_if(session.id, QUERIED, **values)
    if exited is not None and written is not None:
        log.info("session.exited", manifest=session.manifest, session_id=session.id, status=status)
        if on_exit is not None:
            on_exit(written, session.last_status)
    elif written is not None and status != session.last_status:
        # A query that changes nothing is quiet (its api.call is a debug line).
        log.info(
            "session.status",
            manifest=session.manifest,
            session_id=session.id,
            status=status,
            previous=session.last_status,
        )
    return None


async def _gone(
    store: Store, session: SessionRecord, now: datetime, *, grace: timedelta | None
) -> SessionRecord | None:
    """The query answered 404: the recording has most likely ended (unless another
    writer moved the session on meanwhile); unconfirmed for `grace` (None: confirmed,
    the failover announced before it is over)."""
    ended = await store.update_session_if(
        session.id,
        QUERIED,
        **exit_values(
            now,
            "exited: query answered 404 (idle exit, expired, stopped elsewhere, or a failover)",
            last_query_at=now,
            confirm_until=None if grace is None else now + grace,
            intent=None,
            intent_at=None,
            error=None,
        ),
    )
    if ended is not None:
        log.info(
            "session.exited",
            manifest=session.manifest,
            session_id=session.id,
            status=404,
            confirm_until=None if ended.confirm_until is None else ended.confirm_until.isoformat(),
        )
    return ended


async def _query_unconfirmed(
    store: Store,
    ask: _Ask,
    session: SessionRecord,
    where: Address,
    now: Callable[[], datetime],
) -> None:
    """Query a session whose end a 404 suggested: still 404, nothing changes; an exit
    status confirms the end; anything else is a recording that went on (a failover):
    it is taken back."""
    if ask.client is None:
        return
    try:
        answer = await ask.query(session, where)
    except NotFoundError:
        return
    except AgoraError as exc:
        log.info(
            "session.query_failed",
            manifest=session.manifest,
            session_id=session.id,
            error=str(exc),
        )
        return
    status = answer.serverResponse.service_status
    exited = answer.serverResponse.exited
    if exited is not None:
        await confirm_end(store, session, f"query answered: {exited}")
        return
    await take_back(store, session, now(), status=status, why=f"query answered status {status}")


async def confirm_end(store: Store, session: SessionRecord, why: str) -> None:
    """An unconfirmed end is confirmed (an exit notification, an exit status, or the
    grace over): the session is no longer queried."""
    written = await store.update_session_if(session.id, tuple(FINAL_PHASES), confirm_until=None)
    if written is not None:
        log.info(
            "session.exit_confirmed", manifest=session.manifest, session_id=session.id, why=why
        )


async def take_back(
    store: Store, session: SessionRecord, now: datetime, *, status: int | None, why: str
) -> SessionRecord | None:
    """A session ended unconfirmed answers again (a failover was taken for an exit): it
    records, so it is live again, as if the failover had been announced; the planner
    then keeps one of it and the session started in its place. None when another
    writer moved it on, or when its target has another live session (logged: it
    cannot be tracked then)."""
    try:
        written = await store.update_session_if(
            session.id,
            tuple(FINAL_PHASES),
            phase=Phase.RUNNING,
            ended_at=None,
            end_reason=None,
            end_kind=None,
            confirm_until=None,
            failover_at=now,
            last_query_at=now,
            last_status=status if status is not None else session.last_status,
        )
    except StoreConflictError:
        report_unmanageable(
            "session.taken_back_failed",
            session,
            f"it answered again ({why}), but another live session holds its channel and "
            "uid: it cannot be tracked; stop it at Agora if it still records",
        )
        return None
    if written is not None:
        log.warning(
            "session.taken_back",
            manifest=session.manifest,
            session_id=session.id,
            detail=f"its end was not confirmed and it answered again ({why}): a failover",
        )
    return written


async def _close_expired_unmanageable(
    store: Store, sessions: Sequence[SessionRecord], now: datetime
) -> None:
    """An unmanageable session (its sid unknown, so no query reaches it) whose start's
    token has expired records no longer: Agora removes a recorder from the channel when
    its token expires. Its record is closed then, as of that instant."""
    for session in sessions:
        expired = session.join_expires_at
        if session.phase is not Phase.UNMANAGEABLE or expired is None or expired > now:
            continue
        try:
            closed = await store.update_session_if(
                session.id,
                (Phase.UNMANAGEABLE,),
                **exit_values(
                    expired,
                    f"exited: its token expired at {expired.isoformat()} (Agora removes the "
                    "recorder from the channel then)",
                ),
            )
        except StoreFencedError:  # another replica owns the App ID now: its to record
            continue
        if closed is not None:
            log.info("session.exited", manifest=session.manifest, session_id=session.id)


def _query_failed(session: SessionRecord, error: str) -> str:
    """Log a query that failed; the line the caller reports about it."""
    log.warning(
        "session.query_failed", manifest=session.manifest, session_id=session.id, error=error
    )
    return f"{session.manifest}: query of session {session.id} failed: {error}"


async def mark_unrecognised(
    store: Store,
    session: SessionRecord,
    exc: SessionUnknownError,
    phases: Sequence[Phase],
    *,
    now: datetime,
) -> None:
    """The API no longer recognises the session's resource ID or sid (1001, 1003):
    nothing can query or stop it, and whether it still records is unknown. It is
    kept as unmanageable: it may still record, a fresh start is tried with backoff
    while it is wanted (53 means it still records; a success supersedes it), and an
    operator closes the record once it has ended (`apply --forget-unmanageable`).
    Written only while the session is still in one of `phases`."""
    why = (
        f"the API no longer recognises this session ({exc.endpoint} answered code "
        f"{exc.code}): it cannot be queried or stopped"
    )
    written = await store.update_session_if(
        session.id,
        phases,
        phase=Phase.UNMANAGEABLE,
        intent=None,
        intent_at=None,
        last_query_at=now,
        error=why,
    )
    if written is not None:
        report_unmanageable("session.unrecognised", session, why, code=exc.code)


def report_unmanageable(event: str, session: SessionRecord, why: str, **extra: Any) -> None:
    """One error line for a session that cannot be queried or stopped any more."""
    log.error(
        event,
        manifest=session.manifest,
        session_id=session.id,
        channel=session.channel,
        uid=session.uid,
        detail=why,
        **extra,
    )


def file_list(files: str | list[wire.FileInfo] | None) -> Any:
    """A query or stop answer's file list as JSON-ready data (None when absent)."""
    if files is None or isinstance(files, str):
        return files
    return [f.model_dump(exclude_none=True) for f in files]
