"""Execution: runs planned actions, grouped by manifest, and records their results.

Actions of different manifests run concurrently (bounded), actions of one manifest
in order. Manifests wait for nothing but each other's stops on the same target
(app, channel, uid), so that a renamed manifest's new session does not meet its
old one (code 53): a failing or retrying manifest never delays the others.
Queries have their own bound, so a resync never holds back an action (the queries
themselves are refresh.py's: `Executor.refresh` hands them over). What one action
sends and records is calls.py's (`SessionCalls`).

It must never stop the other manifests because one action failed or crashed, nor
begin an action while draining for shutdown.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, TypeVar, Unpack

import structlog

from orchestrator.agora.client import AgoraClient
from orchestrator.reconcile.calls import ActionFailed, CallOptions, SessionCalls
from orchestrator.reconcile.notices import act_on_notices
from orchestrator.reconcile.outbox import Outbox
from orchestrator.reconcile.plan import Action, DesiredRecording, Plan, Stop, action_session
from orchestrator.reconcile.refresh import OnExit, Pace, refresh_sessions
from orchestrator.state import SessionRecord, Store, StoreError, StoreFencedError

log = structlog.get_logger("orchestrator.reconcile")


@dataclass(frozen=True)
class ActionResult:
    action: Action
    ok: bool
    message: str
    session_id: int | None = None
    at: datetime | None = None  # when it ended (the status page's last actions)


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


class Executor:
    def __init__(
        self,
        store: Store,
        clients: Mapping[str, AgoraClient],
        *,
        concurrency: int = 16,
        **options: Unpack[CallOptions],
    ) -> None:
        self._limit = asyncio.Semaphore(max(1, concurrency))
        self._query_limit = asyncio.Semaphore(max(1, concurrency))
        self._draining = False
        self._now = options["now"]
        # The answers the store did not take yet (and whether it takes writes now).
        self.outbox = Outbox(store)
        # What one action sends and records; its store, clients, clock and grace are ours.
        self._calls = SessionCalls(
            store,
            clients,
            outbox=self.outbox,
            refresh=self.refresh,
            draining=lambda: self._draining,
            **options,
        )

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

    async def refresh(
        self,
        sessions: Sequence[SessionRecord],
        *,
        pace: Pace | None = None,
        on_exit: OnExit | None = None,
    ) -> list[str]:
        """Query every running session (and every ended one whose end is unconfirmed,
        when given); record the ones that ended and why (refresh.py). `pace` spreads
        the queries (a resync's budget), and says whether each is still to go;
        `on_exit` is told of each session found ended, as soon as it is recorded.

        Returns what could not be queried (one line per session): nothing is
        concluded about those, and the caller reports them.
        """
        unsettled = self.outbox.unsettled  # their rows are stale: nothing to query yet
        calls = self._calls

        def exited(session: SessionRecord, seen: int | None) -> None:
            calls.exited(session, seen)
            if on_exit is not None:
                on_exit(session, seen)

        return await refresh_sessions(
            calls.store,
            calls.clients,
            [s for s in sessions if s.id not in unsettled],
            now=calls.now,
            limit=self._query_limit,
            on_exit=exited,
            grace=calls.grace,
            pace=pace,
        )

    async def act_on_notices(self, app_ids: frozenset[str] | None) -> tuple[int, set[str]]:
        """Act on the notifications kept for sessions of `app_ids` (None: all) and not
        yet acted on (notices.py): (how many were, manifests whose notices wait for
        their actions to finish)."""
        calls = self._calls
        pending = await calls.store.pending_notices(app_ids)
        if not pending:
            return 0, set()
        return await act_on_notices(
            calls.store, pending, now=calls.now, on_exit=calls.exited, clients=calls.clients
        )

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
                session = await self._calls.store.get_session(first.session_id)
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
        result = await self._attempt(action)
        return replace(result, at=self._now())

    async def _attempt(self, action: Action) -> ActionResult:
        bound = log.bind(manifest=action.manifest, action=action.kind.value, reason=action.reason)
        if self._draining:
            bound.info("reconcile.action", outcome="skipped", detail="shutting down")
            return ActionResult(action, False, "skipped: shutting down", action_session(action))
        try:
            session_id, message = await self._calls.dispatch(action)
        except ActionFailed as exc:
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
