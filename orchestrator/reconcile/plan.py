"""Planning: a pure function from (desired, actual, now) to frozen actions.

No I/O and no clock here: `now` is an argument, so every row of DESIGN.md
section 4 is a plain table-driven unit test. The executor (execute.py) performs
the actions; the CLI prints them.

What the planner must never do: start a second session for a recording that may
still be live (a session in the store that is not ended or failed blocks a new
start), or treat a manifest whose file failed to load as a deletion.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import ClassVar, assert_never

from orchestrator.contract import Mode
from orchestrator.manifest.model import Manifest, UpdatePolicy
from orchestrator.reconcile.translate import Fingerprints, Requests, translate
from orchestrator.schedule import FAR_FUTURE, Schedule, Window
from orchestrator.state.model import EndKind, Intent, ManifestState, Phase, SessionRecord


class ActionKind(StrEnum):
    START = "start"  # acquire, then start at once
    STOP = "stop"
    UPDATE = "update"  # streamSubscribe
    UPDATE_LAYOUT = "updateLayout"  # the whole layout
    RESTART = "restart"  # stop, then acquire + start (a change `update` cannot carry)
    RESUME = "resume"  # finish a call that a killed process left without an outcome


class NoteKind(StrEnum):
    DEFERRED = "deferred"  # a change waits for the next window (updatePolicy: defer)
    FAILED = "failed"  # permanent error for this spec; not retried until the spec changes
    BACKOFF = "backoff"  # a restart or retry waits for its backoff
    MISSED = "missed"  # the window opened longer ago than startingDeadline
    UNMANAGEABLE = "unmanageable"  # a recording whose sid is unknown: needs an operator
    KEPT = "kept"  # its manifest file is invalid: the last known good version stands


# How `SessionRecord.end_reason`, the text for people, begins for each kind of end;
# the planner reads `end_kind` (only `EndKind.STOPPED` is free of restart backoff).
END_STOPPED = "stopped"
# A start answered 53 while our own unmanageable session records the target.
END_CONFLICT = "failed: conflict (53)"
# A start answered 53 with no session of ours on the target: a live recording the
# store does not know (reported in `status` and metrics as untracked).
END_UNTRACKED = "failed: untracked (53)"


@dataclass(frozen=True)
class DesiredRecording:
    """One valid manifest, reduced to what planning needs, with its requests.

    The manifest was translated when it was loaded: the planner compares the
    fingerprints of its requests. The typed requests themselves (`requests`) are
    kept only once a recording acts: the first action builds them from the same
    manifest and they stay with this version; the executor sends them as they are
    (only the start's secrets are resolved at the last moment). Keeping every
    manifest's requests would cost some 8 KiB each (82 MB for 10,000 manifests,
    over the daemon's memory target) for the few that act at any time.
    """

    name: str
    app: str
    app_id: str
    channel: str
    uid: int
    mode: Mode
    schedule: Schedule = field(compare=False)
    manifest: Manifest = field(compare=False, repr=False)
    fingerprints: Fingerprints = field(repr=False)
    source_file: str = ""
    suspend: bool = False
    update_policy: UpdatePolicy = UpdatePolicy.RESTART
    starting_deadline: timedelta | None = None

    @functools.cached_property
    def requests(self) -> Requests:
        """The typed requests of this manifest version, built at the first action."""
        return translate(self.manifest)

    @property
    def spec_hash(self) -> str:
        return self.fingerprints.spec

    @property
    def subscription_hash(self) -> str:
        return self.fingerprints.subscription

    @property
    def layout_hash(self) -> str:
        return self.fingerprints.layout

    @property
    def restart_hash(self) -> str:
        return self.fingerprints.restart


@dataclass(frozen=True)
class ActualState:
    """What the store says, refreshed by `query` where the executor could."""

    live: Sequence[SessionRecord] = ()
    latest_ended: Mapping[str, SessionRecord] = field(default_factory=dict)
    manifest_states: Mapping[str, ManifestState] = field(default_factory=dict)
    invalid_files: frozenset[str] = frozenset()
    # What could not be observed (queries that failed): nothing is concluded from it.
    problems: tuple[str, ...] = ()


@dataclass(frozen=True)
class PlanPolicy:
    # 10 s is long enough not to hammer a channel that keeps emptying, short enough
    # that a recording lost to an idle exit resumes before much is missed.
    restart_backoff_initial: timedelta = timedelta(seconds=10)
    restart_backoff_max: timedelta = timedelta(minutes=10)


@dataclass(frozen=True)
class _Action:
    """What every action names: its manifest and why (shown by `plan` and logged)."""

    manifest: str
    reason: str


@dataclass(frozen=True)
class Start(_Action):
    """Acquire, then start at once, for `window`."""

    kind: ClassVar[ActionKind] = ActionKind.START
    recording: DesiredRecording = field(repr=False)
    window: Window
    restart_count: int = 0


@dataclass(frozen=True)
class Stop(_Action):
    kind: ClassVar[ActionKind] = ActionKind.STOP
    session_id: int


@dataclass(frozen=True)
class Update(_Action):
    """Send the manifest's whole subscription (`update`)."""

    kind: ClassVar[ActionKind] = ActionKind.UPDATE
    recording: DesiredRecording = field(repr=False)
    session_id: int


@dataclass(frozen=True)
class UpdateLayout(Update):
    """Send the manifest's whole layout (`updateLayout`, mix mode). An `Update` of
    another endpoint: a `match` on `Update` covers it too."""

    kind: ClassVar[ActionKind] = ActionKind.UPDATE_LAYOUT


@dataclass(frozen=True)
class Restart(_Action):
    """Stop the session, then start the new spec for `window`."""

    kind: ClassVar[ActionKind] = ActionKind.RESTART
    recording: DesiredRecording = field(repr=False)
    session_id: int
    window: Window


@dataclass(frozen=True)
class Resume(_Action):
    """Finish the call a killed process left without an outcome. `recording` and
    `window` are what is still wanted (None: the manifest is gone or out of window)."""

    kind: ClassVar[ActionKind] = ActionKind.RESUME
    session_id: int
    recording: DesiredRecording | None = field(default=None, repr=False)
    window: Window | None = None


#: What the planner asks for: one frozen record per kind, handled by exhaustive `match`.
Action = Start | Stop | Update | UpdateLayout | Restart | Resume


def action_session(action: Action) -> int | None:
    """The session an action works on (None for a start: it has none yet)."""
    match action:
        case Start():
            return None
        case Stop() | Update() | Restart() | Resume():
            return action.session_id
        case _:
            assert_never(action)


def action_window(action: Action) -> Window | None:
    """The window an action records (None when it starts nothing)."""
    match action:
        case Start() | Restart() | Resume():
            return action.window
        case Stop() | Update():
            return None
        case _:
            assert_never(action)


@dataclass(frozen=True)
class Note:
    kind: NoteKind
    manifest: str
    message: str
    session_id: int | None = None
    until: datetime | None = None


@dataclass(frozen=True)
class Plan:
    actions: tuple[Action, ...] = ()
    notes: tuple[Note, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.actions

    @property
    def blocked(self) -> tuple[Note, ...]:
        """Notes on recordings that are not as desired and will not become so by
        waiting: held as failed, or behind an unmanageable session."""
        return tuple(n for n in self.notes if n.kind in _BLOCKING)

    @property
    def waiting(self) -> tuple[Note, ...]:
        """Notes on recordings that are not as desired yet but will be acted on by
        themselves: a restart or a retry waiting for its backoff."""
        return tuple(n for n in self.notes if n.kind is NoteKind.BACKOFF)


_INTERRUPTED = frozenset({Intent.ACQUIRE, Intent.START, Intent.STOP})
_BLOCKING = frozenset({NoteKind.FAILED, NoteKind.UNMANAGEABLE})


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
    policy = policy or PlanPolicy()
    actions: list[Action] = []
    notes: list[Note] = []

    live_by_manifest: dict[str, list[SessionRecord]] = defaultdict(list)
    for session in actual.live:
        live_by_manifest[session.manifest].append(session)

    desired_by_name = {d.name: d for d in desired}
    for name in sorted(desired_by_name):
        d = desired_by_name[name]
        sessions = sorted(live_by_manifest.pop(name, []), key=lambda s: s.id)
        # Normally at most one; extra live sessions (should not happen) are wound down.
        for extra in sessions[:-1]:
            if extra.phase is Phase.UNMANAGEABLE:
                notes.append(_unmanageable_note(extra, "a newer session of this manifest exists"))
            else:
                actions.append(_wind_down(extra, "a newer session of this manifest exists"))
        current = sessions[-1] if sessions else None
        _plan_desired(d, current, actual, now, policy, actions, notes)

    for name in sorted(live_by_manifest):
        for session in live_by_manifest[name]:
            if session.source_file and session.source_file in actual.invalid_files:
                notes.append(
                    Note(
                        NoteKind.KEPT,
                        name,
                        f"{session.source_file} does not load; keeping the running session "
                        "as last known good",
                        session.id,
                    )
                )
            elif session.phase is Phase.UNMANAGEABLE:
                notes.append(_unmanageable_note(session, "manifest removed; cannot stop"))
            else:
                actions.append(_wind_down(session, "manifest removed"))

    return Plan(tuple(actions), tuple(notes))


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
    return Note(
        NoteKind.UNMANAGEABLE,
        session.manifest,
        f"session {session.id} (resource {_short(session.resource_id)}) is recording with an "
        f"unknown sid: {message}",
        session.id,
    )


def _short(value: str | None) -> str:
    if not value:
        return "-"
    return value if len(value) <= 12 else f"{value[:8]}…"


def _plan_desired(
    d: DesiredRecording,
    current: SessionRecord | None,
    actual: ActualState,
    now: datetime,
    policy: PlanPolicy,
    actions: list[Action],
    notes: list[Note],
) -> None:
    window = d.schedule.active_at(now)
    wanted = window is not None and not d.suspend
    state = actual.manifest_states.get(d.name)
    # Why this very spec is held as failed (None: it is not).
    failure = None
    if state is not None and state.failed_spec_hash == d.spec_hash:
        failure = state.failure_reason or "held as failed"

    if current is not None:
        if current.intent in _INTERRUPTED:
            actions.append(
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
                notes.append(_unmanageable_note(current, "it ends by itself (maxIdleTime)"))
                return
            # While the recording is wanted, keep trying a fresh start with backoff:
            # Agora answers 53 while the old session still records (then the
            # recording is covered), and a success closes the unmanageable record.
            notes.append(
                _unmanageable_note(
                    current, "counted as recording; a fresh start is tried with backoff"
                )
            )
            _plan_start(d, window, actual, now, policy, actions, notes, failure)
            return
        if window is None or d.suspend:  # not wanted
            reason = "suspended" if d.suspend else "window over"
            actions.append(Stop(d.name, reason, current.id))
            return
        if failure is not None:
            notes.append(Note(NoteKind.FAILED, d.name, f"not changing it: {failure}", current.id))
            return
        if current.restart_hash != d.restart_hash:
            if d.update_policy is UpdatePolicy.RESTART:
                actions.append(
                    Restart(
                        d.name, "spec changed in a way update cannot carry", d, current.id, window
                    )
                )
                return
            endless = current.window_end is None or current.window_end >= FAR_FUTURE
            notes.append(
                Note(
                    NoteKind.DEFERRED,
                    d.name,
                    "spec changed, but `always` has no next window: the change is never "
                    "applied under updatePolicy: defer (use restart)"
                    if endless
                    else "spec changed; the new version starts with the next window",
                    current.id,
                    until=None if endless else current.window_end,
                )
            )
        if current.mode != d.mode:
            return  # a deferred mode change: the live session keeps its old spec whole
        if current.subscription_hash != d.subscription_hash:
            actions.append(Update(d.name, "subscription changed", d, current.id))
        if d.mode is Mode.MIX and current.layout_hash != d.layout_hash:
            actions.append(UpdateLayout(d.name, "layout changed", d, current.id))
        return

    if window is not None and not d.suspend:  # wanted
        _plan_start(d, window, actual, now, policy, actions, notes, failure)


def _plan_start(
    d: DesiredRecording,
    window: Window,
    actual: ActualState,
    now: datetime,
    policy: PlanPolicy,
    actions: list[Action],
    notes: list[Note],
    failure: str | None,
) -> None:
    if failure is not None:
        notes.append(Note(NoteKind.FAILED, d.name, f"not starting: {failure}"))
        return
    previous = actual.latest_ended.get(d.name)
    same_window = previous is not None and previous.window_start == window.start
    restart_count = 0
    if previous is not None and same_window:
        restart_count, delay = _restart_after(previous, policy)
        if delay and previous.ended_at is not None:
            until = previous.ended_at + delay
            if now < until:
                notes.append(
                    Note(
                        NoteKind.BACKOFF,
                        d.name,
                        f"restart #{restart_count} after {previous.end_reason} waits",
                        until=until,
                    )
                )
                return
    joined = same_window and previous is not None and previous.started_at is not None
    late = d.starting_deadline is not None and now - window.start > d.starting_deadline
    # startingDeadline is about a window's start; `always` has none to be late for.
    if late and not joined and window.end < FAR_FUTURE:
        notes.append(
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
    actions.append(Start(d.name, reason, d, window, restart_count))
