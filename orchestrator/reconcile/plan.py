"""Planning: a pure function from (desired, actual, now) to frozen actions.

No I/O and no clock here: `now` is an argument, so every row of DESIGN.md
section 4 is a plain table-driven unit test. What it reads and says (desired,
actual, actions, notes) is model.py's; the executor (execute.py, calls.py)
performs the actions; the CLI prints them.

What the planner must never do: start a second session for a recording that may
still be live (a session in the store that is not ended or failed blocks a new
start), or treat a manifest whose file failed to load as a deletion.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from orchestrator.contract import Mode, ServiceStatus
from orchestrator.manifest.model import UpdatePolicy
from orchestrator.reconcile.model import (
    END_CONFLICT,
    END_STOPPED,
    END_UNTRACKED,
    SID_UNKNOWN_JOIN,
    Action,
    ActionKind,
    ActualState,
    DesiredRecording,
    Note,
    NoteKind,
    Plan,
    PlanPolicy,
    Restart,
    Resume,
    Rollover,
    Start,
    Stop,
    Update,
    UpdateLayout,
    action_session,
    action_window,
)
from orchestrator.schedule import FAR_FUTURE, Window
from orchestrator.state.model import EndKind, Intent, Phase, SessionRecord

# The vocabulary (model.py) is imported from here too: the planner's one address.
__all__ = [
    "END_CONFLICT",
    "END_STOPPED",
    "END_UNTRACKED",
    "Action",
    "ActionKind",
    "ActualState",
    "DesiredRecording",
    "Note",
    "NoteKind",
    "Plan",
    "PlanPolicy",
    "Restart",
    "Resume",
    "Rollover",
    "Start",
    "Stop",
    "Update",
    "UpdateLayout",
    "action_session",
    "action_window",
    "plan",
    "plan_shutdown",
    "restart_backoff",
]


_INTERRUPTED = frozenset({Intent.ACQUIRE, Intent.START, Intent.STOP})


@dataclass
class _Pass:
    """One planning pass: what it reads (`actual`, `now`, `policy`) and what it says so
    far (`actions`, `notes`), handed whole to each step."""

    actual: ActualState
    now: datetime
    policy: PlanPolicy
    actions: list[Action] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)

    def waits(
        self, until: datetime, kind: NoteKind, manifest: str, message: str, session: int | None
    ) -> bool:
        """Note that `manifest` waits until `until` and say True; False once that is past."""
        if self.now >= until:
            return False
        self.notes.append(Note(kind, manifest, message, session, until=until))
        return True


def _restart_after(previous: SessionRecord, policy: PlanPolicy) -> tuple[int, timedelta]:
    """(restart number, delay) for a new session after `previous` ended in this window.

    A session we stopped on purpose is followed at once, with the count reset. A
    recording that ended on its own (idle exit, stopped elsewhere) is restarted at
    once the first time; when the restarted one ends again "soon" (it recorded for
    less than `restart_backoff_max`) each further restart waits, doubling. A
    session that recorded at least that long counts as healthy: the count starts
    again. A start that never recorded (a conflict, a failed start) always waits.
    """
    if previous.end_kind is EndKind.STOPPED:
        return 0, timedelta(0)
    if previous.started_at is None:  # it never recorded: back off from the first failure
        count = previous.restart_count + 1
        return count, restart_backoff(count, policy)
    lasted = (previous.ended_at or previous.started_at) - previous.started_at
    if previous.restart_count == 0 or lasted >= policy.restart_backoff_max:
        return 1, timedelta(0)
    count = previous.restart_count + 1
    return count, restart_backoff(count - 1, policy)


def restart_backoff(count: int, policy: PlanPolicy) -> timedelta:
    """Delay before restart number `count` (1-based) within one window: doubling, capped."""
    if count <= 0:
        return timedelta(0)
    factor: int = 2 ** min(count - 1, 30)
    delay: timedelta = policy.restart_backoff_initial * factor
    return min(delay, policy.restart_backoff_max)


def plan(
    desired: Iterable[DesiredRecording],
    actual: ActualState,
    now: datetime,
    policy: PlanPolicy | None = None,
) -> Plan:
    """The actions a reconcile pass takes at `now`, and notes on what it holds back."""
    p = _Pass(actual, now, policy or PlanPolicy())

    live_by_manifest: dict[str, list[SessionRecord]] = defaultdict(list)
    for session in actual.live:
        live_by_manifest[session.manifest].append(session)

    desired_by_name = {d.name: d for d in desired}
    for name in sorted(desired_by_name):
        d = desired_by_name[name]
        sessions = sorted(live_by_manifest.pop(name, []), key=lambda s: s.id)
        chain = _chain(sessions)
        if chain is not None:  # a rollover under way: its two sessions belong together
            sessions = [s for s in sessions if s not in chain]
            for extra in sessions:
                p.actions.append(_wind_down(extra, "a newer session of this manifest exists"))
            _plan_chain(d, *chain, p)
            continue
        # Normally at most one; extra live sessions (should not happen) are wound down.
        for extra in sessions[:-1]:
            if extra.phase is Phase.UNMANAGEABLE:
                p.notes.append(_unmanageable_note(extra, "a newer session of this manifest exists"))
            else:
                p.actions.append(_wind_down(extra, "a newer session of this manifest exists"))
        current = sessions[-1] if sessions else None
        _plan_desired(d, current, p)

    for name in sorted(live_by_manifest):
        for session in live_by_manifest[name]:
            if name in actual.held:
                why = f"app profile {session.app!r} is not configured any more"
                p.notes.append(Note(NoteKind.KEPT, name, f"{why}; keeping it running", session.id))
            elif session.source_file and session.source_file in actual.invalid_files:
                p.notes.append(
                    Note(
                        NoteKind.KEPT,
                        name,
                        f"{session.source_file} does not load; keeping the running session "
                        "as last known good",
                        session.id,
                    )
                )
            elif session.phase is Phase.UNMANAGEABLE:
                p.notes.append(_unmanageable_note(session, "manifest removed; cannot stop"))
            else:
                p.actions.append(_wind_down(session, "manifest removed"))

    return Plan(
        tuple(p.actions),
        tuple(n for n in p.notes if n.kind is not NoteKind.ROLLOVER_DUE),
        tuple(n for n in p.notes if n.kind is NoteKind.ROLLOVER_DUE),
    )


def plan_shutdown(live: Iterable[SessionRecord]) -> Plan:
    """Stop every live session: the daemon's shutdown with `reconcile.stopOnShutdown`."""
    actions: list[Action] = []
    notes: list[Note] = []
    for session in sorted(live, key=lambda s: s.id):
        if session.phase is Phase.UNMANAGEABLE:
            notes.append(_unmanageable_note(session, "cannot stop it at shutdown"))
        else:
            actions.append(_wind_down(session, "daemon shutting down (stopOnShutdown)"))
    return Plan(tuple(actions), tuple(notes))


def _wind_down(session: SessionRecord, reason: str) -> Action:
    if session.intent in _INTERRUPTED:
        return Resume(session.manifest, f"finish interrupted {session.intent}", session.id)
    return Stop(session.manifest, reason, session.id)


def _unmanageable_note(session: SessionRecord, message: str) -> Note:
    what = (
        "is recording with an unknown sid"  # a start that took effect, its answer lost
        if session.sid is None
        else f"is no longer recognised by the API (sid {_short(session.sid)})"  # 1001, 1003
    )
    return Note(
        NoteKind.UNMANAGEABLE,
        session.manifest,
        f"session {session.id} (resource {_short(session.resource_id)}) {what}: {message}",
        session.id,
    )


def _short(value: str | None) -> str:
    if not value:
        return "-"
    return value if len(value) <= 12 else f"{value[:8]}…"


def _plan_desired(
    d: DesiredRecording,
    current: SessionRecord | None,
    p: _Pass,
) -> None:
    window = d.schedule.active_at(p.now)
    wanted = window is not None and not d.suspend
    state = p.actual.manifest_states.get(d.name)
    # Why this very spec is held as failed (None: it is not).
    failure = None
    if state is not None and state.failed_spec_hash == d.spec_hash:
        failure = state.failure_reason or "held as failed"

    if current is not None:
        if current.intent in _INTERRUPTED:
            p.actions.append(
                Resume(
                    d.name,
                    f"finish interrupted {current.intent}",
                    current.id,
                    recording=d,
                    window=window if wanted else None,
                )
            )
            return
        if current.phase is Phase.UNMANAGEABLE:
            if window is None or not wanted:
                p.notes.append(_unmanageable_note(current, "it ends by itself (maxIdleTime)"))
                return
            if _records_until_token_expiry(d, current):
                # Its start took effect with a token minted for it: it records until
                # that expires, and is rolled over before then like any session.
                p.notes.append(_unmanageable_note(current, "it records until its token expires"))
                _plan_rollover(d, current, window, p)
                return
            # While the recording is wanted, keep trying a fresh start with backoff:
            # Agora answers 53 while the old session still records (then the
            # recording is covered), and a success closes the unmanageable record.
            p.notes.append(
                _unmanageable_note(
                    current, "it may still record; a fresh start is tried with backoff"
                )
            )
            _plan_start(d, window, p, failure)
            return
        if window is None or d.suspend:  # not wanted
            reason = "suspended" if d.suspend else "window over"
            p.actions.append(Stop(d.name, reason, current.id))
            return
        failure = failure or d.untranslatable()  # the fingerprints compared below
        if failure is not None:
            p.notes.append(Note(NoteKind.FAILED, d.name, f"not changing it: {failure}", current.id))
            return
        if current.restart_hash != d.restart_hash:
            if d.update_policy is UpdatePolicy.RESTART:
                p.actions.append(
                    Restart(
                        d.name, "spec changed in a way update cannot carry", d, current.id, window
                    )
                )
                return
            # The window as the manifest says now: its schedule may have been edited
            # since the session started for the one it then had.
            endless = window.end >= FAR_FUTURE
            last = endless or d.schedule.next_boundary(window.end) is None
            never = "`always` has no next window" if endless else "this is its last window"
            p.notes.append(
                Note(
                    NoteKind.DEFERRED,
                    d.name,
                    f"spec changed, but {never}: the change is never "
                    "applied under updatePolicy: defer (use restart)"
                    if last
                    else "spec changed; the new version starts with the next window",
                    current.id,
                    until=None if last else window.end,
                )
            )
        if current.mode != d.mode:
            return  # a deferred mode change: the live session keeps its old spec whole
        if current.subscription_hash != d.subscription_hash:
            p.actions.append(Update(d.name, "subscription changed", d, current.id))
        if d.mode is Mode.MIX and current.layout_hash != d.layout_hash:
            p.actions.append(UpdateLayout(d.name, "layout changed", d, current.id))
        _plan_rollover(d, current, window, p)
        return

    if window is not None and not d.suspend:  # wanted
        _plan_start(d, window, p, failure)


_RECORDING_PHASES = frozenset({Phase.RUNNING, Phase.UPDATING})


def _records_until_token_expiry(d: DesiredRecording, session: SessionRecord) -> bool:
    """An unmanageable session of `d` that records until its minted token expires (then
    Agora removes it, and the resync closes its record): a start that took effect, its
    sid unknown (one the API stopped recognising, sid known, may have ended), on one of
    `d`'s two uids, so that a successor can take over on the other."""
    return (
        session.phase is Phase.UNMANAGEABLE
        and session.sid is None
        and session.join_expires_at is not None
        and d.rollover_uid is not None
        and session.uid in (d.uid, d.rollover_uid)
    )


def _chain(sessions: Sequence[SessionRecord]) -> tuple[SessionRecord, SessionRecord] | None:
    """(predecessor, successor) when the newest live session succeeds another live one."""
    if len(sessions) < 2:
        return None
    newest = sessions[-1]
    older = {s.id: s for s in sessions[:-1]}
    if newest.predecessor_id is not None and newest.predecessor_id in older:
        return older[newest.predecessor_id], newest
    return None


def _plan_rollover(
    d: DesiredRecording,
    current: SessionRecord,
    window: Window,
    p: _Pass,
) -> None:
    """A recording session whose token or resource ID expires before its window ends
    gets a successor `rollover_lead` before then (make before break)."""
    expires = current.expires_at
    if (
        expires is None
        or expires >= window.end
        or (current.phase not in _RECORDING_PHASES and not _records_until_token_expiry(d, current))
        or d.rollover_uid is None
        or any(a.manifest == d.name for a in p.actions)  # a change comes first
    ):
        return
    due = expires - p.policy.rollover_lead
    if current.started_at is not None:
        # Never before half its life: a lead as long as a short-lived resource ID
        # (rolloverLead 2h, resourceExpiredHour 1) would otherwise replace every
        # session as soon as it started, in a loop.
        due = max(due, current.started_at + (expires - current.started_at) / 2)
    # The note's `until` is the time it rolls over (shown after the message).
    message = f"its token or resource ID expires at {expires.isoformat()}: it rolls over"
    if p.waits(due, NoteKind.ROLLOVER_DUE, d.name, message, current.id):
        return
    # A successor that failed is tried again with the restart backoff, the predecessor
    # recording meanwhile (until it actually expires).
    attempt = 0
    previous = p.actual.latest_ended.get(d.name)
    if previous is not None and previous.predecessor_id == current.id:
        attempt = previous.restart_count + 1
        until = (previous.ended_at or p.now) + restart_backoff(attempt, p.policy)
        message = (
            f"rollover attempt #{attempt + 1} waits (the last one: "
            f"{previous.end_reason}); session {current.id} records meanwhile"
        )
        if p.waits(until, NoteKind.ROLLOVER, d.name, message, current.id):
            return
    reason = f"its token or resource ID expires at {expires.isoformat()}"
    p.actions.append(Rollover(d.name, reason, d, current.id, window, attempt=attempt))


def _plan_chain(
    d: DesiredRecording,
    predecessor: SessionRecord,
    successor: SessionRecord,
    p: _Pass,
) -> None:
    """A rollover under way (two live sessions): finish what a killed process left half
    done, stop the predecessor once the successor records, and wind both down when the
    recording is no longer wanted. Changes of the manifest wait until it is over."""
    window = d.schedule.active_at(p.now)
    if window is None or d.suspend:
        why = "suspended" if d.suspend else "window over"
        for session in (successor, predecessor):
            if session.phase is Phase.UNMANAGEABLE:
                p.notes.append(_unmanageable_note(session, "it ends by itself (maxIdleTime)"))
            else:
                p.actions.append(_wind_down(session, why))
        return
    for session, role in ((successor, "successor"), (predecessor, "predecessor")):
        if session.intent in _INTERRUPTED:
            p.actions.append(
                Resume(
                    d.name,
                    f"finish interrupted {session.intent} of a rollover's {role}",
                    session.id,
                    recording=d,
                    window=window,
                )
            )
            return
    if predecessor.phase is Phase.UNMANAGEABLE:  # the successor is the recording now
        p.notes.append(_unmanageable_note(predecessor, "a rollover's predecessor"))
        _plan_desired(d, successor, p)
        return
    if successor.phase is Phase.UNMANAGEABLE:
        if _records_until_token_expiry(d, successor):
            # Its start took effect (code 7 on the replay), with a token minted for it:
            # it records, and takes over; only its sid is unknown. (One the API stopped
            # recognising, sid known, may have ended: the predecessor stays and tries
            # again when due.)
            # No query can see it record, so the predecessor stops only once the
            # successor has had the time a recorder takes to join (make before break).
            p.notes.append(_unmanageable_note(successor, "it records until its token expires"))
            joined = successor.updated_at + SID_UNKNOWN_JOIN
            message = (
                f"session {successor.id} started (its sid is unknown); session "
                f"{predecessor.id} stops once it has had time to join"
            )
            if p.waits(joined, NoteKind.ROLLOVER, d.name, message, predecessor.id):
                return
            p.actions.append(
                Stop(
                    d.name,
                    f"rolled over to session {successor.id} (its sid is unknown)",
                    predecessor.id,
                    successor.id,
                )
            )
            return
        p.notes.append(_unmanageable_note(successor, "a rollover's successor"))  # try again
        _plan_desired(d, predecessor, p)
        return
    if successor.phase in _RECORDING_PHASES and successor.last_status == ServiceStatus.RECORDING:
        if _taken_back(predecessor, successor):
            reason = (
                f"a duplicate: it answered again after a 404 (a failover) while session "
                f"{successor.id} records in its place"
            )
            p.actions.append(Stop(d.name, reason, predecessor.id))
            return
        reason = f"rolled over to session {successor.id}"
        p.actions.append(Stop(d.name, reason, predecessor.id, successor.id))
        return
    # Started, not yet seen recording: confirm it (queries), then stop the predecessor.
    duplicate = _taken_back(predecessor, successor)
    p.actions.append(
        Rollover(
            d.name,
            f"confirm session {successor.id} records, then stop session {predecessor.id}"
            + (" (a duplicate: it answered again after a 404)" if duplicate else ""),
            d,
            predecessor.id,
            window,
            successor_id=successor.id,
            duplicate=duplicate,
        )
    )


def _taken_back(predecessor: SessionRecord, successor: SessionRecord) -> bool:
    """`successor` was started in place of `predecessor` after a 404, and `predecessor`
    answered again since (a failover): not a rollover, a duplicate."""
    return predecessor.failover_at is not None and predecessor.failover_at >= successor.created_at


def _plan_start(
    d: DesiredRecording,
    window: Window,
    p: _Pass,
    failure: str | None,
) -> None:
    if failure is not None:
        p.notes.append(Note(NoteKind.FAILED, d.name, f"not starting: {failure}"))
        return
    previous = p.actual.latest_ended.get(d.name)
    same_window = previous is not None and previous.window_start == window.start
    restart_count = 0
    if previous is not None and same_window:
        restart_count, delay = _restart_after(previous, p.policy)
        if delay and previous.ended_at is not None:
            message = f"restart #{restart_count} after {previous.end_reason} waits"
            if p.waits(previous.ended_at + delay, NoteKind.BACKOFF, d.name, message, None):
                return
    joined = same_window and previous is not None and previous.started_at is not None
    late = d.starting_deadline is not None and p.now - window.start > d.starting_deadline
    # startingDeadline is about a window's start; `always` has none to be late for, nor
    # has a chain of merged cron windows that began beyond what is looked at (every 10
    # minutes for an hour: it never began, as far as anyone can tell).
    if late and not joined and window.end < FAR_FUTURE and not window.open_start:
        p.notes.append(
            Note(
                NoteKind.MISSED,
                d.name,
                f"window opened at {window.start.isoformat()}, more than startingDeadline ago",
            )
        )
        return
    if restart_count:
        reason = f"restart #{restart_count} after {previous.end_reason if previous else '?'}"
    else:
        reason = "always on" if window.end >= FAR_FUTURE else "window open"
    unconfirmed = previous if previous is not None and _unconfirmed(previous, p.now) else None
    if unconfirmed is None:
        p.actions.append(Start(d.name, reason, d, window, restart_count))
    elif d.rollover_uid is None:  # no second uid to start on beside it: wait
        p.notes.append(
            Note(
                NoteKind.BACKOFF,
                d.name,
                f"waits until the end of session {unconfirmed.id} is confirmed (a 404 may be "
                "a failover; the manifest has no second uid to record on meanwhile)",
                unconfirmed.id,
                until=unconfirmed.confirm_until,
            )
        )
    else:
        uid = d.other_uid(unconfirmed.uid)
        reason += f" (on uid {uid}: session {unconfirmed.id}'s end is not confirmed yet)"
        p.actions.append(
            Start(d.name, reason, d, window, restart_count, uid=uid, predecessor_id=unconfirmed.id)
        )


def _unconfirmed(session: SessionRecord, now: datetime) -> bool:
    """An end that a 404 suggested and nothing confirmed yet: it may be a failover."""
    return session.confirm_until is not None and now < session.confirm_until
