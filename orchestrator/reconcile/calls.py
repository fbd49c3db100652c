"""The calls of one action: what a start, a stop, an update, a rollover or a resumed
call sends to the API, and what it records before and after.

Every mutating call is preceded by an intent written to the store and followed by
its outcome, so a process killed at any instant leaves a record from which the
next pass finishes or adopts the work (see `ActionKind.RESUME`). A start's secrets
are resolved, and its token minted (a profile with an App Certificate), just before
it acquires; the token is sent and forgotten, only its expiry is kept.

This module never translates a manifest (a desired recording carries its typed
requests) and never decides what to do (the planner does): `SessionCalls.dispatch`
carries out one planned action. It must never send a call without its intent
recorded first, nor record an outcome it did not see.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Required, TypedDict, Unpack, assert_never

import structlog

from orchestrator.agora import wire
from orchestrator.agora.client import AgoraClient
from orchestrator.agora.errors import (
    AgoraError,
    AlreadyStartedError,
    AmbiguousStartError,
    AppError,
    NoFilesError,
    NotFoundError,
    PermanentError,
    RecordingExistsError,
    ResourceExpiredError,
    SessionUnknownError,
    StopAlreadyEndedError,
)
from orchestrator.agora.minter import TokenMinter
from orchestrator.contract import ServiceStatus
from orchestrator.reconcile import plan
from orchestrator.reconcile.outbox import Outbox
from orchestrator.reconcile.plan import (
    END_CONFLICT,
    END_STOPPED,
    END_UNTRACKED,
    Action,
    DesiredRecording,
)
from orchestrator.reconcile.refresh import (
    DEFAULT_FAILOVER_GRACE,
    QUERIED,
    address,
    exit_values,
    file_list,
    mark_unrecognised,
    report_unmanageable,
)
from orchestrator.reconcile.translate import stop_request
from orchestrator.schedule import FAR_FUTURE, Window
from orchestrator.secrets import SecretError, SecretRef
from orchestrator.state import (
    EndKind,
    Intent,
    ManifestState,
    Phase,
    SessionFields,
    SessionRecord,
    Store,
    StoreConflictError,
)

log = structlog.get_logger("orchestrator.reconcile")

SecretResolver = Callable[[SecretRef], str]

# A rollover's successor must be seen recording (query status 5) within this long
# after its start; the predecessor is stopped only then. Queried every
# `CONFIRM_INTERVAL`. Not seen by then: the next pass confirms it again.
CONFIRM_TIMEOUT = timedelta(seconds=30)
CONFIRM_INTERVAL = timedelta(seconds=1)
# A session with a minted token that ends before it was ever seen recording, this soon
# after its start, was most likely refused its token (Agora accepts the start and the
# recorder never joins): a warning names the profile's certificate reference.
TOKEN_REFUSAL_WINDOW = timedelta(minutes=3)


@dataclass(frozen=True)
class _Start:
    """A start request ready to send, and when its token expires (None: no token was
    minted for it)."""

    request: wire.StartRequest = field(repr=False)
    join_expires_at: datetime | None


@dataclass(frozen=True)
class _Place:
    """Where a new session records: on `uid` (None: the manifest's uid), replacing
    `predecessor` (a rollover's successor: the session it takes over from)."""

    uid: int | None = None
    predecessor: int | None = None


class CallOptions(TypedDict, total=False):
    """How an action's calls are made: the keywords `Executor` takes and hands to
    `SessionCalls`, declared once."""

    resolve_secret: Required[SecretResolver]
    now: Required[Callable[[], datetime]]
    # By app profile: the profiles with an App Certificate mint a token per start.
    minters: Mapping[str, TokenMinter] | None
    # Told of every completed rollover: the overlap in seconds (None: unknown).
    on_rollover: Callable[[float | None], None] | None
    failover_grace: timedelta  # DEFAULT_FAILOVER_GRACE when not given


class ActionFailed(Exception):
    """An action did not reach its goal; the message says why (already recorded)."""


class SessionCalls:
    """Carries out planned actions, one call at a time (`Executor` runs them)."""

    def __init__(
        self,
        store: Store,
        clients: Mapping[str, AgoraClient],
        *,
        outbox: Outbox,
        refresh: Callable[[Sequence[SessionRecord]], Awaitable[list[str]]],
        draining: Callable[[], bool],
        **options: Unpack[CallOptions],
    ) -> None:
        self.store = store
        self.clients = clients
        self.grace = options.get("failover_grace", DEFAULT_FAILOVER_GRACE)
        self._resolve = options["resolve_secret"]
        self.now = options["now"]
        self.outbox = outbox
        self.refresh = refresh  # the executor's resync of sessions (a rollover's confirm)
        self._draining = draining
        self._minters = options.get("minters") or {}
        self._on_rollover = options.get("on_rollover")

    def exited(self, session: SessionRecord, seen: int | None) -> None:
        """A query found `session` ended by itself: say plainly when that was most likely
        a refused token (a minted one, the recorder never seen recording, soon after
        its start), naming the profile and its certificate's reference, never a value.
        `seen`: the status the last query before its end saw (the written session's
        is the end's own)."""
        minter = self._minters.get(session.app)
        if (
            minter is None
            or session.started_at is None
            or session.ended_at is None
            or seen == ServiceStatus.RECORDING
            or session.ended_at - session.started_at > TOKEN_REFUSAL_WINDOW
        ):
            return
        log.warning(
            "token.refused",
            manifest=session.manifest,
            session_id=session.id,
            app=minter.app,
            detail=(
                f"session {session.id} ended before it was ever seen recording: Agora most "
                f"likely refused its token. Check that apps.{minter.app}.appCertificate "
                f"({minter.reference}) is the App Certificate of App ID {minter.app_id}; "
                "the recording is restarted under the restart backoff"
            ),
        )

    def _client(self, app: str) -> AgoraClient:
        try:
            return self.clients[app]
        except KeyError:
            raise ActionFailed(f"no client for app profile {app!r}") from None

    async def dispatch(self, action: Action) -> tuple[int | None, str]:
        match action:
            case plan.Start(recording=d, window=window, restart_count=count):
                place = _Place(action.uid, action.predecessor_id)
                session = await self._start(d, window, count, place)
                return session.id, f"started sid {session.sid}"
            case plan.Stop(session_id=session_id, reason=reason, successor_id=successor_id):
                session = await self.store.get_session(session_id)
                message = await self._stop(session, f"{END_STOPPED}: {reason}")
                if successor_id is not None:
                    self._rolled_over(session, await self.store.get_session(successor_id))
                return session.id, message
            case plan.Restart(recording=d, session_id=session_id, window=window, reason=reason):
                session = await self.store.get_session(session_id)
                await self._stop(session, f"{END_STOPPED}: restart ({reason})")
                new = await self._start(d, window, 0)
                return new.id, f"restarted as session {new.id} (sid {new.sid})"
            case plan.Update(recording=d, session_id=session_id):  # and UpdateLayout
                layout = isinstance(action, plan.UpdateLayout)
                session = await self.store.get_session(session_id)
                await self._update(session, d, layout=layout)
                return session.id, "layout updated" if layout else "subscription updated"
            case plan.Resume(recording=d, session_id=session_id, window=window):
                session = await self.store.get_session(session_id)
                return session.id, await self._resume(session, d, window)
            case plan.Rollover():
                return await self._rollover(action)
            case _:
                assert_never(action)

    # -- start -----------------------------------------------------------------------

    async def _start(
        self,
        d: DesiredRecording,
        window: Window,
        restart_count: int,
        place: _Place = _Place(),
    ) -> SessionRecord:
        """Acquire and start a session of `d` for `window` at `place` (default: on the
        manifest's uid; a rollover's successor: on its other uid, and its predecessor)."""
        problem = d.untranslatable()
        if problem is not None:  # held as failed until the manifest changes
            await self._fail_spec(d, problem)
            raise ActionFailed(problem)
        fields = _session_fields(d, window)
        fields["uid"] = d.uid if place.uid is None else place.uid
        fields["predecessor_id"] = place.predecessor
        fields["restart_count"] = restart_count
        try:
            client = self._client(d.app)
            # Secrets first: no resource ID wasted on one that does not resolve.
            start = self._start_request(d, fields["uid"], window)
        except ActionFailed as exc:
            # Nothing was sent. The attempt is recorded like a refused start, so that
            # the next one waits its backoff and `status` shows why it is not recording.
            fields["phase"] = Phase.FAILED
            fields["ended_at"] = self.now()
            fields["end_reason"] = f"failed: {exc}"
            fields["end_kind"] = EndKind.FAILED
            await self.store.create_session(**fields)
            raise
        fields["phase"] = Phase.ACQUIRING
        fields["intent"] = Intent.ACQUIRE
        fields["intent_at"] = self.now()
        try:
            session = await self.store.create_session(**fields)
        except StoreConflictError as exc:  # another live session holds the target
            raise ActionFailed(f"not started: {exc}") from None
        for _ in range(2):  # a second acquire only if the first resource ID expired (433)
            resource_id = await self._acquire(session, d, client)
            # The token's expiry goes with the intent, and the resource ID's as it is at
            # the latest (it lives `resourceExpiredHour` from the start, which comes
            # after this): should the answer be lost, the session is known to record no
            # longer than that, and once its sid comes back it rolls over in time.
            intent_at = self.now()
            session = await self.store.update_session(
                session.id,
                resource_id=resource_id,
                phase=Phase.STARTING,
                intent=Intent.START,
                intent_at=intent_at,
                join_expires_at=start.join_expires_at,
                resource_expires_at=intent_at + d.resource_lifetime,
            )
            if self._draining():  # shutting down: not begun now, lest it go unanswered
                raise ActionFailed("start not sent: shutting down (the next start sends it)")
            try:
                return await self._send_start(session, d, client, start, ambiguous=False)
            except ResourceExpiredError:
                await self.store.record_intent(session.id, Intent.ACQUIRE, phase=Phase.ACQUIRING)
                continue
        await self._fail(session, d, "failed: resource ID expired twice (433)", permanent=False)
        raise ActionFailed("resource ID expired twice (433)")

    def _start_request(self, d: DesiredRecording, uid: int, window: Window) -> _Start:
        """The start of a session of `d` on `uid`, its secrets resolved: a profile with
        an App Certificate mints a token for this very start (unless the manifest has a
        fixed `token`, which is sent as it is)."""
        try:
            start = d.requests_for(uid).start.resolved(self._resolve)
        except (SecretError, wire.EmptySecretError) as exc:
            raise ActionFailed(f"cannot resolve a secret: {exc}") from None
        minter = self._minters.get(d.app)
        if minter is None or start.clientRequest.token is not None:
            return _Start(start, None)
        minted = minter.mint(d.channel, uid, now=self.now(), window_end=window.end)
        return _Start(start.with_token(minted.token), minted.expires_at)

    async def _acquire(
        self, session: SessionRecord, d: DesiredRecording, client: AgoraClient
    ) -> str:
        try:
            acquire = d.requests_for(session.uid).acquire
            resource_id: str = await client.acquire(d.app_id, acquire)
        except AgoraError as exc:
            await self._fail(session, d, f"failed: {exc}", permanent=_held(exc, d))
            raise ActionFailed(f"acquire failed: {exc}") from None
        return resource_id

    async def _send_start(
        self,
        session: SessionRecord,
        d: DesiredRecording,
        client: AgoraClient,
        start: _Start,
        *,
        ambiguous: bool,
    ) -> SessionRecord:
        """Send start with the session's resource ID.

        `ambiguous`: an earlier start with this resource ID may have arrived.
        """
        assert session.resource_id is not None
        try:
            sid: str = await client.start(d.app_id, session.resource_id, d.mode, start.request)
        except ResourceExpiredError:
            raise
        except AmbiguousStartError as exc:
            await self._unmanageable(session, f"start took effect but its sid is unknown ({exc})")
            raise ActionFailed("started, sid unknown: marked unmanageable") from None
        except AlreadyStartedError as exc:
            if ambiguous:
                await self._unmanageable(
                    session, f"an interrupted start took effect; sid unknown ({exc})"
                )
                raise ActionFailed("started, sid unknown: marked unmanageable") from None
            await self._fail(session, d, f"failed: {exc}", permanent=False)
            raise ActionFailed(f"start failed: {exc}") from None
        except RecordingExistsError as exc:
            ours = await self._unmanageable_for_target(session)
            if ours is not None:
                # The old session records this channel: the recording is covered.
                detail = f"our unmanageable session {ours.id} is still recording"
                await self._fail(
                    session, d, f"{END_CONFLICT}: {detail}", permanent=False, kind=EndKind.CONFLICT
                )
            else:
                # (A session the store holds as ended may be it: an exit it was told of
                # while the recording went on.)
                detail = "a recording with no live session in the store holds this channel and uid"
                await self._fail(
                    session,
                    d,
                    f"{END_UNTRACKED}: {detail}",
                    permanent=False,
                    kind=EndKind.UNTRACKED,
                )
                log.error(
                    "session.untracked",
                    manifest=d.name,
                    app_id=d.app_id,
                    channel=d.channel,
                    uid=d.uid,
                    detail=detail,
                )
            raise ActionFailed(f"start conflict: {detail} ({exc})") from None
        except PermanentError as exc:
            await self._fail(session, d, f"failed: {exc}", permanent=_held(exc, d))
            raise ActionFailed(f"start failed: {exc}") from None
        except AgoraError as exc:
            # Retries are exhausted and the start may have arrived: keep the intent,
            # the next pass resumes it with the same resource ID.
            await self.outbox.update(session, error=f"start: {exc}")
            raise ActionFailed(f"start unresolved, will resume: {exc}") from None
        # The sid is known now: never lost to a store that refuses the write (outbox.py).
        started = self.now()
        session = await self.outbox.outcome(
            session,
            sid=sid,
            phase=Phase.RUNNING,
            started_at=started,
            # This start's token (a replayed start's is this one's: it did not arrive
            # before); the resource ID lives `resourceExpiredHour` from the start on.
            join_expires_at=start.join_expires_at,
            resource_expires_at=started + d.resource_lifetime,
        )
        previous = await self._unmanageable_for_target(session)
        if previous is not None:
            await self._end(
                previous,
                Phase.ENDED,
                EndKind.EXITED,
                f"exited: superseded by session {session.id} (no longer recording)",
            )
        return session

    async def _unmanageable_for_target(self, session: SessionRecord) -> SessionRecord | None:
        found = await self.store.unmanageable_on(session.app_id, session.channel, session.uid)
        return next((other for other in found if other.id != session.id), None)

    async def _unmanageable(self, session: SessionRecord, why: str) -> None:
        await self.outbox.outcome(session, phase=Phase.UNMANAGEABLE, error=why)
        report_unmanageable("session.unmanageable", session, why)

    async def _fail(
        self,
        session: SessionRecord,
        d: DesiredRecording | None,
        reason: str,
        *,
        permanent: bool,
        kind: EndKind = EndKind.FAILED,
    ) -> None:
        """End a session that never recorded; `permanent` also holds the manifest's spec."""
        await self._end(session, Phase.FAILED, kind, reason)
        if permanent and d is not None:
            await self._fail_spec(d, reason)

    async def _end(self, session: SessionRecord, phase: Phase, kind: EndKind, reason: str) -> None:
        """Record that `session` is over (`phase`: ended or failed), how and why, as of now."""
        await self.outbox.outcome(
            session, phase=phase, ended_at=self.now(), end_reason=reason, end_kind=kind
        )

    # -- stop ------------------------------------------------------------------------

    async def _stop(self, session: SessionRecord, reason: str) -> str:
        where = address(session)
        if session.phase is Phase.UNMANAGEABLE or where is None:
            raise ActionFailed(f"session {session.id} has no sid: cannot stop it")
        client = self._client(session.app)
        await self.outbox.settle(session.id)  # what is kept about it goes first
        # The reason is stored with the intent, so that a resumed stop keeps it.
        await self.store.record_intent(
            session.id, Intent.STOP, phase=Phase.STOPPING, end_reason=reason
        )
        values: SessionFields = {
            "phase": Phase.ENDED,
            "ended_at": self.now(),
            "end_kind": EndKind.STOPPED,
        }
        try:
            answer = await client.stop(*where, stop_request(session.channel, session.uid))
        except NoFilesError:
            values["end_reason"] = f"{reason} (no files: nobody sent streams)"
        except StopAlreadyEndedError as exc:  # 49: an earlier stop took effect
            values["end_reason"] = f"{reason} (already ended: {exc.code or exc.status})"
        except NotFoundError as exc:  # 404: ended, or a failover (still queried a while)
            values["end_reason"] = f"{reason} (already ended: {exc.code or exc.status})"
            values["confirm_until"] = self.now() + self.grace
        except SessionUnknownError as exc:
            await mark_unrecognised(self.store, session, exc, (Phase.STOPPING,), now=self.now())
            raise ActionFailed(f"stop: {exc}: marked unmanageable") from None
        except AgoraError as exc:
            await self.outbox.update(session, error=f"stop: {exc}")
            raise ActionFailed(f"stop unresolved, will resume: {exc}") from None
        else:
            server = answer.serverResponse
            partial = " (HTTP 206: nobody sent streams, or some files were not uploaded)"
            values["end_reason"] = reason + (partial if answer.partial else "")
            values["uploading_status"] = server.uploadingStatus
            files = file_list(server.fileList)
            if files is not None:
                values["file_list"] = files
        await self.outbox.outcome(session, **values)
        return str(values["end_reason"])

    # -- update ----------------------------------------------------------------------

    async def _update(self, session: SessionRecord, d: DesiredRecording, *, layout: bool) -> None:
        where = address(session)
        if where is None:
            raise ActionFailed(f"session {session.id} has no sid: cannot update it")
        client = self._client(session.app)
        intent = Intent.UPDATE_LAYOUT if layout else Intent.UPDATE
        await self.outbox.settle(session.id)  # what is kept about it goes first
        await self.store.record_intent(session.id, intent, phase=Phase.UPDATING)
        requests = d.requests_for(session.uid)
        try:
            if not layout:
                await client.update(*where, requests.update)
            elif requests.update_layout is not None:
                await client.update_layout(*where, requests.update_layout)
        except NotFoundError as exc:  # ended, or a failover (still queried a while)
            await self.outbox.outcome(
                session,
                **exit_values(
                    self.now(),
                    f"exited: {intent} answered {exc.status} (the recording had ended)",
                    confirm_until=self.now() + self.grace,
                ),
            )
            raise ActionFailed(f"{intent}: the recording had ended") from None
        except SessionUnknownError as exc:
            await mark_unrecognised(self.store, session, exc, (Phase.UPDATING,), now=self.now())
            raise ActionFailed(f"{intent}: {exc}: marked unmanageable") from None
        except AgoraError as exc:
            await self.outbox.outcome(session, phase=Phase.RUNNING, error=f"{intent}: {exc}")
            if _held(exc, d):
                await self._fail_spec(d, f"{intent} rejected: {exc}")
            raise ActionFailed(f"{intent} failed: {exc}") from None
        if layout:
            await self.outbox.outcome(session, phase=Phase.RUNNING, layout_hash=d.layout_hash)
        else:
            await self.outbox.outcome(
                session, phase=Phase.RUNNING, subscription_hash=d.subscription_hash
            )

    async def _fail_spec(self, d: DesiredRecording, reason: str) -> None:
        await self.store.set_manifest_state(
            ManifestState(
                name=d.name,
                failed_spec_hash=d.spec_hash,
                failure_reason=reason,
                failed_at=self.now(),
            )
        )
        log.error("manifest.failed", manifest=d.name, reason=reason)

    # -- rollover --------------------------------------------------------------------

    async def _rollover(self, action: plan.Rollover) -> tuple[int, str]:
        """Make before break: start the successor on the other uid (unless it was
        started already), wait until a query sees it recording, then stop the
        predecessor. Whatever fails leaves the predecessor recording."""
        d, window = action.recording, action.window
        predecessor = await self.store.get_session(action.session_id)
        if action.successor_id is None:
            try:
                place = _Place(d.other_uid(predecessor.uid), predecessor.id)
                successor = await self._start(d, window, action.attempt, place)
            except ActionFailed as exc:
                raise ActionFailed(
                    f"rollover: successor not started ({exc}); session {predecessor.id} records on"
                ) from None
            log.info(
                "session.rollover_started",
                manifest=d.name,
                session_id=successor.id,
                predecessor_id=predecessor.id,
                uid=successor.uid,
            )
        else:
            successor = await self.store.get_session(action.successor_id)
        successor = await self._confirm(successor, predecessor)
        predecessor = await self.store.get_session(predecessor.id)  # a query may have ended it
        if predecessor.phase is Phase.UNMANAGEABLE:  # no stop reaches it: it expires
            message = (
                f"session {predecessor.id} (sid unknown) records until its token expires, "
                f"at {predecessor.join_expires_at}"
            )
            self._rolled_over(predecessor, successor, ended=predecessor.join_expires_at)
        elif predecessor.phase not in QUERIED:
            message = f"session {predecessor.id} had ended already ({predecessor.end_reason})"
        elif action.duplicate:
            message = await self._stop(
                predecessor,
                f"{END_STOPPED}: a duplicate (it answered again after a 404) of session "
                f"{successor.id}",
            )
        else:
            message = await self._stop(
                predecessor, f"{END_STOPPED}: rolled over to session {successor.id}"
            )
            self._rolled_over(predecessor, successor)
        return successor.id, f"rolled over to session {successor.id}; {message}"

    def _rolled_over(
        self, predecessor: SessionRecord, successor: SessionRecord, ended: datetime | None = None
    ) -> None:
        """A rollover is complete: `predecessor` was stopped (or, unmanageable, ends at
        `ended`) while `successor` records. Logs it with the two sessions' overlap (from
        the successor's start to the predecessor's end) and reports that to
        `on_rollover` (metrics)."""
        end = ended or self.now()
        overlap = (
            max(0.0, (end - successor.started_at).total_seconds())
            if successor.started_at is not None
            else None
        )
        log.info(
            "session.rolled_over",
            manifest=successor.manifest,
            session_id=successor.id,
            predecessor_id=predecessor.id,
            overlap_s=None if overlap is None else round(overlap, 3),
        )
        if self._on_rollover is not None:
            self._on_rollover(overlap)

    async def _confirm(self, successor: SessionRecord, predecessor: SessionRecord) -> SessionRecord:
        """Query `successor` until it records (status 5), at most `CONFIRM_TIMEOUT`.
        Raises ActionFailed when it ended instead, or is not recording by then."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + CONFIRM_TIMEOUT.total_seconds()
        while True:
            if successor.phase in QUERIED and successor.last_status == ServiceStatus.RECORDING:
                return successor
            if successor.phase not in QUERIED:
                why = successor.end_reason or successor.error or successor.phase.value
                raise ActionFailed(
                    f"rollover: successor session {successor.id} did not record ({why}); "
                    f"session {predecessor.id} records on"
                )
            if self._draining() or loop.time() >= deadline:
                raise ActionFailed(
                    f"rollover: successor session {successor.id} not seen recording yet; "
                    f"session {predecessor.id} records on (confirmed again at the next pass)"
                )
            problems = await self.refresh([successor])
            successor = await self.store.get_session(successor.id)
            if problems or successor.last_status != ServiceStatus.RECORDING:
                await asyncio.sleep(CONFIRM_INTERVAL.total_seconds())

    # -- resume ----------------------------------------------------------------------

    async def _resume(
        self, session: SessionRecord, d: DesiredRecording | None, window: Window | None
    ) -> str:
        """Finish what a killed process left half done (an intent without an outcome)."""
        if session.intent is Intent.STOP:
            return await self._stop(session, session.end_reason or f"{END_STOPPED}: resumed stop")
        if session.intent is Intent.ACQUIRE or session.resource_id is None:
            # Nothing can have started without a resource ID we know; an orphan
            # resource ID expires by itself after five minutes.
            await self._end(
                session,
                Phase.FAILED,
                EndKind.STOPPED,
                f"{END_STOPPED}: interrupted during acquire, abandoned",
            )
            if d is not None and window is not None:
                new = await self._start(d, window, 0, _same_place(session, d))
                return f"abandoned interrupted acquire; started session {new.id}"
            return "abandoned interrupted acquire"
        # An interrupted start: it may or may not have arrived. Replaying it with the
        # same resource ID tells: success (it had not), or 7 (it had: sid unknown).
        if d is None:
            await self._unmanageable(
                session, "start was interrupted and its manifest is gone: cannot replay it"
            )
            raise ActionFailed("interrupted start of a removed manifest: marked unmanageable")
        client = self._client(d.app)
        start = self._start_request(d, session.uid, window or _window_of(session))
        try:
            started = await self._send_start(session, d, client, start, ambiguous=True)
        except ResourceExpiredError:
            await self._end(
                session,
                Phase.FAILED,
                EndKind.STOPPED,
                f"{END_STOPPED}: interrupted start never took effect (433)",
            )
            if window is None:
                return "interrupted start had not taken effect"
            new = await self._start(d, window, 0, _same_place(session, d))
            return f"interrupted start had not taken effect; started session {new.id}"
        if window is None:
            return await self._stop(started, f"{END_STOPPED}: resumed start no longer wanted")
        return f"resumed start: sid {started.sid}"


def _session_fields(d: DesiredRecording, window: Window) -> SessionFields:
    """What a new session of `d` for `window` records about its recording (its start
    adds its uid, predecessor and restart count)."""
    return {
        "manifest": d.name,
        "app": d.app,
        "app_id": d.app_id,
        "channel": d.channel,
        "mode": d.mode,
        "source_file": d.source_file,
        "spec_hash": d.spec_hash,
        "subscription_hash": d.subscription_hash,
        "layout_hash": d.layout_hash,
        "restart_hash": d.restart_hash,
        "window_start": window.start,
        "window_end": window.end,
    }


def _same_place(session: SessionRecord, d: DesiredRecording) -> _Place:
    """The uid and predecessor a session that replaces an abandoned `session` starts
    with: the same (a rollover's successor stays one), while its uid is still one of
    the manifest's."""
    if session.uid in (d.uid, d.rollover_uid):
        return _Place(session.uid, session.predecessor_id)
    return _Place()


def _window_of(session: SessionRecord) -> Window:
    """The window a session was started for (a resumed start no longer wanted)."""
    start = session.window_start or session.created_at
    return Window(start, session.window_end or FAR_FUTURE)


def _held(exc: AgoraError, d: DesiredRecording) -> bool:
    """Whether an error holds the manifest's spec as failed until it changes.

    An app-level refusal (401, 62, invalid App ID) is not the manifest's fault: it
    is retried with the restart backoff, so fixing the app's credentials is enough.
    """
    if isinstance(exc, AppError):
        log.error("app.failed", app=d.app, app_id=d.app_id, manifest=d.name, error=str(exc))
        return False
    return isinstance(exc, PermanentError)
