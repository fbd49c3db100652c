"""Execution: performs planned actions through the API client and records them.

Every mutating call is preceded by an intent written to the store and followed by
its outcome, so a process killed at any instant leaves a record from which the
next pass finishes or adopts the work (see `ActionKind.RESUME`). Actions of
different manifests run concurrently (bounded), actions of one manifest in
order. Manifests wait for nothing but each other's stops on the same target
(app, channel, uid), so that a renamed manifest's new session does not meet its
old one (code 53): a failing or retrying manifest never delays the others.
Queries have their own bound, so a resync never holds back an action (the queries
themselves are refresh.py's: `Executor.refresh` hands them over).

This module never translates a manifest: a desired recording carries its typed
requests (`orchestrator.reconcile.translate`), and the executor sends them as
they are, resolving the start's secrets just before it acquires.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar, assert_never

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
)
from orchestrator.reconcile.outbox import Outbox
from orchestrator.reconcile.plan import (
    END_CONFLICT,
    END_STOPPED,
    END_UNTRACKED,
    Action,
    DesiredRecording,
    Plan,
    Restart,
    Resume,
    Start,
    Stop,
    Update,
    UpdateLayout,
    action_session,
)
from orchestrator.reconcile.refresh import (
    address,
    file_list,
    mark_unrecognised,
    refresh_sessions,
    report_unmanageable,
)
from orchestrator.reconcile.translate import stop_request
from orchestrator.schedule import Window
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
    StoreError,
    StoreFencedError,
)

log = structlog.get_logger("orchestrator.reconcile")

SecretResolver = Callable[[SecretRef], str]


@dataclass(frozen=True)
class ActionResult:
    action: Action
    ok: bool
    message: str
    session_id: int | None = None


@dataclass(frozen=True)
class ActionGroup:
    """One manifest's actions of one plan, run in order by `Executor.run`.

    `stops`: the target (app, channel, uid) its first action, a stop, frees;
    `waits_for`: the manifests whose stops free the target its start records."""

    manifest: str
    actions: tuple[Action, ...]
    stops: tuple[str, str, int] | None = None
    waits_for: tuple[str, ...] = ()


_Task = TypeVar("_Task", bound="asyncio.Future[list[ActionResult]]")


def schedule(
    groups: Sequence[ActionGroup],
    start: Callable[[ActionGroup, Sequence[asyncio.Future[Any]]], _Task],
) -> dict[str, _Task]:
    """Start every group through `start(group, after)` (the caller's task owner), the
    groups that begin with a stop first, each other group after the stops it waits
    for; the tasks by manifest."""
    tasks: dict[str, _Task] = {}
    for group in groups:
        if group.stops is not None:
            tasks[group.manifest] = start(group, ())
    for group in groups:
        if group.stops is None:
            tasks[group.manifest] = start(group, [tasks[name] for name in group.waits_for])
    return tasks


class _ActionFailed(Exception):
    """An action did not reach its goal; the message says why (already recorded)."""


class Executor:
    def __init__(
        self,
        store: Store,
        clients: Mapping[str, AgoraClient],
        *,
        resolve_secret: SecretResolver,
        now: Callable[[], datetime],
        concurrency: int = 16,
    ) -> None:
        self._store = store
        self._clients = clients
        self._resolve = resolve_secret
        self._now = now
        self._limit = asyncio.Semaphore(max(1, concurrency))
        self._query_limit = asyncio.Semaphore(max(1, concurrency))
        self._draining = False
        # The answers the store did not take yet (and whether it takes writes now).
        self.outbox = Outbox(store)

    def drain(self) -> None:
        """Take no new action from now on (shutdown): actions not yet begun are skipped,
        calls already sent finish and record their outcome."""
        self._draining = True

    def resume(self) -> None:
        """Take actions again (the daemon's stop-on-shutdown pass after draining)."""
        self._draining = False

    @property
    def draining(self) -> bool:
        return self._draining

    async def refresh(self, sessions: Sequence[SessionRecord]) -> list[str]:
        """Query every running session; record the ones that ended and why (refresh.py).

        Returns what could not be queried (one line per session): nothing is
        concluded about those, and the caller reports them.
        """
        unsettled = self.outbox.unsettled  # their rows are stale: nothing to query yet
        return await refresh_sessions(
            self._store,
            self._clients,
            [s for s in sessions if s.id not in unsettled],
            now=self._now,
            limit=self._query_limit,
        )

    def _client(self, app: str) -> AgoraClient:
        try:
            return self._clients[app]
        except KeyError:
            raise _ActionFailed(f"no client for app profile {app!r}") from None

    # -- execute -------------------------------------------------------------------

    async def execute(
        self, the_plan: Plan, desired: Mapping[str, DesiredRecording]
    ) -> list[ActionResult]:
        """Perform every action and wait for all of them (`apply`, stop on shutdown); the
        results of manifests that begin with a stop first."""
        groups = await self.prepare(the_plan, desired)
        async with asyncio.TaskGroup() as tasks:
            running = schedule(
                groups, lambda group, after: tasks.create_task(self.run(group, after))
            )
        return [result for task in running.values() for result in task.result()]

    async def prepare(
        self, the_plan: Plan, desired: Mapping[str, DesiredRecording]
    ) -> list[ActionGroup]:
        """The plan's actions as one group per manifest, with what each must wait for.

        Everything a group needs from the store is read here, before any task exists:
        a failure raises with nothing started. A manifest whose first action starts a
        recording on a target (app, channel, uid) that another manifest of this plan
        stops waits for that stop; nothing else waits for anything but the bound."""
        by_manifest: dict[str, list[Action]] = defaultdict(list)
        for action in the_plan.actions:
            by_manifest[action.manifest].append(action)
        stopped: dict[str, tuple[str, str, int]] = {}
        for name, actions in by_manifest.items():
            first = actions[0]
            if isinstance(first, Stop):
                session = await self._store.get_session(first.session_id)
                stopped[name] = (session.app_id, session.channel, session.uid)
        groups = [
            ActionGroup(name, tuple(actions), stops=stopped[name])
            for name, actions in by_manifest.items()
            if name in stopped
        ]
        for name, actions in by_manifest.items():
            if name in stopped:
                continue
            d = desired.get(name)
            target = (d.app_id, d.channel, d.uid) if d is not None else None
            waits = tuple(other for other, at in stopped.items() if at == target)
            groups.append(ActionGroup(name, tuple(actions), waits_for=waits))
        return groups

    async def run(
        self, group: ActionGroup, after: Sequence[asyncio.Future[Any]] = ()
    ) -> list[ActionResult]:
        """Run one manifest's actions in order, once `after` (the stops it waits for)
        have finished, under the concurrency bound."""
        if after:
            await asyncio.wait(after)
        async with self._limit:
            # Made once the slot is taken: a waiter cancelled here leaves no coroutine
            # behind that never ran.
            return await self._run_group(list(group.actions))

    async def _run_group(self, actions: list[Action]) -> list[ActionResult]:
        results = []
        for action in actions:
            result = await self._run(action)
            results.append(result)
            if not result.ok:
                break  # later actions of this manifest assumed this one worked
        return results

    async def _run(self, action: Action) -> ActionResult:
        bound = log.bind(manifest=action.manifest, action=action.kind.value, reason=action.reason)
        if self._draining:
            bound.info("reconcile.action", outcome="skipped", detail="shutting down")
            return ActionResult(action, False, "skipped: shutting down", action_session(action))
        try:
            session_id, message = await self._dispatch(action)
        except _ActionFailed as exc:
            bound.warning("reconcile.action", outcome="failed", error=str(exc))
            return ActionResult(action, False, str(exc), action_session(action))
        except StoreFencedError as exc:
            # Another replica owns the App ID now: nothing more is sent or recorded for
            # it here (a call already sent is settled by the new owner from its intent).
            bound.warning("reconcile.action", outcome="skipped", detail=str(exc))
            return ActionResult(action, False, f"skipped: {exc}", action_session(action))
        except StoreError as exc:  # the store failed: no call is made without its intent
            self.outbox.refused()
            bound.error("reconcile.action", outcome="failed", error=str(exc))
            return ActionResult(action, False, str(exc), action_session(action))
        except Exception as exc:  # a bug must not stop the other manifests
            bound.exception("reconcile.action", outcome="crashed")
            return ActionResult(action, False, f"internal error: {type(exc).__name__}", None)
        if session_id is not None and session_id in self.outbox.unsettled:
            message += " (kept: the store does not take writes now; written when it does)"
        elif not self.outbox.unsettled:
            self.outbox.accepted()  # what this action wrote went through
        bound.info("reconcile.action", outcome="ok", session_id=session_id, detail=message)
        return ActionResult(action, True, message, session_id)

    async def _dispatch(self, action: Action) -> tuple[int | None, str]:
        match action:
            case Start(recording=d, window=window, restart_count=count):
                session = await self._start(d, window, count)
                return session.id, f"started sid {session.sid}"
            case Stop(session_id=session_id, reason=reason):
                session = await self._store.get_session(session_id)
                return session.id, await self._stop(session, f"{END_STOPPED}: {reason}")
            case Restart(recording=d, session_id=session_id, window=window, reason=reason):
                session = await self._store.get_session(session_id)
                await self._stop(session, f"{END_STOPPED}: restart ({reason})")
                new = await self._start(d, window, 0)
                return new.id, f"restarted as session {new.id} (sid {new.sid})"
            case Update(recording=d, session_id=session_id):  # and UpdateLayout
                layout = isinstance(action, UpdateLayout)
                session = await self._store.get_session(session_id)
                await self._update(session, d, layout=layout)
                return session.id, "layout updated" if layout else "subscription updated"
            case Resume(recording=d, session_id=session_id, window=window):
                session = await self._store.get_session(session_id)
                return session.id, await self._resume(session, d, window)
            case _:
                assert_never(action)

    # -- start -----------------------------------------------------------------------

    async def _start(
        self, d: DesiredRecording, window: Window, restart_count: int
    ) -> SessionRecord:
        try:
            client = self._client(d.app)
            start = self._start_request(d)  # secrets first: no resource ID wasted on one
        except _ActionFailed as exc:
            # Nothing was sent. The attempt is recorded like a refused start, so that
            # the next one waits its backoff and `status` shows why it is not recording.
            failed = self._session_fields(d, window, restart_count)
            failed["phase"] = Phase.FAILED
            failed["ended_at"] = self._now()
            failed["end_reason"] = f"failed: {exc}"
            failed["end_kind"] = EndKind.FAILED
            await self._store.create_session(**failed)
            raise
        try:
            session = await self._new_session(d, window, restart_count)
        except StoreConflictError as exc:  # another live session holds the target
            raise _ActionFailed(f"not started: {exc}") from None
        for _ in range(2):  # a second acquire only if the first resource ID expired (433)
            resource_id = await self._acquire(session, d, client)
            session = await self._store.update_session(
                session.id,
                resource_id=resource_id,
                phase=Phase.STARTING,
                intent=Intent.START,
                intent_at=self._now(),
            )
            try:
                return await self._send_start(session, d, client, start, ambiguous=False)
            except ResourceExpiredError:
                await self._store.record_intent(session.id, Intent.ACQUIRE, phase=Phase.ACQUIRING)
                continue
        await self._fail(session, d, "failed: resource ID expired twice (433)", permanent=False)
        raise _ActionFailed("resource ID expired twice (433)")

    async def _new_session(
        self, d: DesiredRecording, window: Window, restart_count: int
    ) -> SessionRecord:
        fields = self._session_fields(d, window, restart_count)
        fields["phase"] = Phase.ACQUIRING
        fields["intent"] = Intent.ACQUIRE
        fields["intent_at"] = self._now()
        return await self._store.create_session(**fields)

    @staticmethod
    def _session_fields(d: DesiredRecording, window: Window, restart_count: int) -> SessionFields:
        """What a new session of `d` for `window` records about itself."""
        return {
            "manifest": d.name,
            "app": d.app,
            "app_id": d.app_id,
            "channel": d.channel,
            "uid": d.uid,
            "mode": d.mode,
            "source_file": d.source_file,
            "spec_hash": d.spec_hash,
            "subscription_hash": d.subscription_hash,
            "layout_hash": d.layout_hash,
            "restart_hash": d.restart_hash,
            "window_start": window.start,
            "window_end": window.end,
            "restart_count": restart_count,
        }

    def _start_request(self, d: DesiredRecording) -> wire.StartRequest:
        try:
            return d.requests.start.resolved(self._resolve)
        except (SecretError, wire.EmptySecretError) as exc:
            raise _ActionFailed(f"cannot resolve a secret: {exc}") from None

    async def _acquire(
        self, session: SessionRecord, d: DesiredRecording, client: AgoraClient
    ) -> str:
        try:
            resource_id: str = await client.acquire(d.app_id, d.requests.acquire)
        except AgoraError as exc:
            await self._fail(session, d, f"failed: acquire: {exc}", permanent=_held(exc, d))
            raise _ActionFailed(f"acquire failed: {exc}") from None
        return resource_id

    async def _send_start(
        self,
        session: SessionRecord,
        d: DesiredRecording,
        client: AgoraClient,
        start: wire.StartRequest,
        *,
        ambiguous: bool,
    ) -> SessionRecord:
        """Send start with the session's resource ID.

        `ambiguous`: an earlier start with this resource ID may have arrived.
        """
        assert session.resource_id is not None
        try:
            sid: str = await client.start(d.app_id, session.resource_id, d.mode, start)
        except ResourceExpiredError:
            raise
        except AmbiguousStartError as exc:
            await self._unmanageable(session, f"start took effect but its sid is unknown ({exc})")
            raise _ActionFailed("started, sid unknown: marked unmanageable") from None
        except AlreadyStartedError as exc:
            if ambiguous:
                await self._unmanageable(
                    session, f"an interrupted start took effect; sid unknown ({exc})"
                )
                raise _ActionFailed("started, sid unknown: marked unmanageable") from None
            await self._fail(session, d, f"failed: start: {exc}", permanent=False)
            raise _ActionFailed(f"start failed: {exc}") from None
        except RecordingExistsError as exc:
            ours = await self._unmanageable_for_target(session)
            if ours is not None:
                # The old session records this channel: the recording is covered.
                detail = f"our unmanageable session {ours.id} is still recording"
                await self._fail(
                    session, d, f"{END_CONFLICT}: {detail}", permanent=False, kind=EndKind.CONFLICT
                )
            else:
                detail = "a recording the store does not know holds this channel and uid"
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
            raise _ActionFailed(f"start conflict: {detail} ({exc})") from None
        except PermanentError as exc:
            await self._fail(session, d, f"failed: start: {exc}", permanent=_held(exc, d))
            raise _ActionFailed(f"start failed: {exc}") from None
        except AgoraError as exc:
            # Retries are exhausted and the start may have arrived: keep the intent,
            # the next pass resumes it with the same resource ID.
            await self.outbox.update(session, error=f"start: {exc}")
            raise _ActionFailed(f"start unresolved, will resume: {exc}") from None
        # The sid is known now: never lost to a store that refuses the write (outbox.py).
        session = await self.outbox.outcome(
            session, sid=sid, phase=Phase.RUNNING, started_at=self._now()
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
        found = await self._store.unmanageable_on(session.app_id, session.channel, session.uid)
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
            session, phase=phase, ended_at=self._now(), end_reason=reason, end_kind=kind
        )

    # -- stop ------------------------------------------------------------------------

    async def _stop(self, session: SessionRecord, reason: str) -> str:
        where = address(session)
        if session.phase is Phase.UNMANAGEABLE or where is None:
            raise _ActionFailed(f"session {session.id} has no sid: cannot stop it")
        client = self._client(session.app)
        await self.outbox.settle(session.id)  # what is kept about it goes first
        # The reason is stored with the intent, so that a resumed stop keeps it.
        await self._store.record_intent(
            session.id, Intent.STOP, phase=Phase.STOPPING, end_reason=reason
        )
        values: SessionFields = {
            "phase": Phase.ENDED,
            "ended_at": self._now(),
            "end_kind": EndKind.STOPPED,
        }
        try:
            answer = await client.stop(*where, stop_request(session.channel, session.uid))
        except NoFilesError:
            values["end_reason"] = f"{reason} (no files: nobody sent streams)"
        except NotFoundError as exc:  # 404, or 49: already stopped
            values["end_reason"] = f"{reason} (already ended: {exc.code or exc.status})"
        except SessionUnknownError as exc:
            await mark_unrecognised(self._store, session, exc, (Phase.STOPPING,), now=self._now())
            raise _ActionFailed(f"stop: {exc}: marked unmanageable") from None
        except AgoraError as exc:
            await self.outbox.update(session, error=f"stop: {exc}")
            raise _ActionFailed(f"stop unresolved, will resume: {exc}") from None
        else:
            server = answer.serverResponse
            values["end_reason"] = reason
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
            raise _ActionFailed(f"session {session.id} has no sid: cannot update it")
        client = self._client(session.app)
        intent = Intent.UPDATE_LAYOUT if layout else Intent.UPDATE
        await self.outbox.settle(session.id)  # what is kept about it goes first
        await self._store.record_intent(session.id, intent, phase=Phase.UPDATING)
        try:
            if not layout:
                await client.update(*where, d.requests.update)
            elif d.requests.update_layout is not None:
                await client.update_layout(*where, d.requests.update_layout)
        except NotFoundError as exc:
            await self._end(
                session,
                Phase.ENDED,
                EndKind.EXITED,
                f"exited: {intent} answered {exc.status} (the recording had ended)",
            )
            raise _ActionFailed(f"{intent}: the recording had ended") from None
        except SessionUnknownError as exc:
            await mark_unrecognised(self._store, session, exc, (Phase.UPDATING,), now=self._now())
            raise _ActionFailed(f"{intent}: {exc}: marked unmanageable") from None
        except AgoraError as exc:
            await self.outbox.outcome(session, phase=Phase.RUNNING, error=f"{intent}: {exc}")
            if _held(exc, d):
                await self._fail_spec(d, f"{intent} rejected: {exc}")
            raise _ActionFailed(f"{intent} failed: {exc}") from None
        if layout:
            await self.outbox.outcome(session, phase=Phase.RUNNING, layout_hash=d.layout_hash)
        else:
            await self.outbox.outcome(
                session, phase=Phase.RUNNING, subscription_hash=d.subscription_hash
            )

    async def _fail_spec(self, d: DesiredRecording, reason: str) -> None:
        await self._store.set_manifest_state(
            ManifestState(
                name=d.name,
                failed_spec_hash=d.spec_hash,
                failure_reason=reason,
                failed_at=self._now(),
            )
        )
        log.error("manifest.failed", manifest=d.name, reason=reason)

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
                new = await self._start(d, window, 0)
                return f"abandoned interrupted acquire; started session {new.id}"
            return "abandoned interrupted acquire"
        # An interrupted start: it may or may not have arrived. Replaying it with the
        # same resource ID tells: success (it had not), or 7 (it had: sid unknown).
        if d is None:
            await self._unmanageable(
                session, "start was interrupted and its manifest is gone: cannot replay it"
            )
            raise _ActionFailed("interrupted start of a removed manifest: marked unmanageable")
        client = self._client(d.app)
        start = self._start_request(d)
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
            new = await self._start(d, window, 0)
            return f"interrupted start had not taken effect; started session {new.id}"
        if window is None:
            return await self._stop(started, f"{END_STOPPED}: resumed start no longer wanted")
        return f"resumed start: sid {started.sid}"


def _held(exc: AgoraError, d: DesiredRecording) -> bool:
    """Whether an error holds the manifest's spec as failed until it changes.

    An app-level refusal (401, 62, invalid App ID) is not the manifest's fault: it
    is retried with the restart backoff, so fixing the app's credentials is enough.
    """
    if isinstance(exc, AppError):
        log.error("app.failed", app=d.app, app_id=d.app_id, manifest=d.name, error=str(exc))
        return False
    return isinstance(exc, PermanentError)
