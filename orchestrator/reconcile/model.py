"""The planner's vocabulary: what it reads (the desired recordings, the actual state,
the policy) and what it says (frozen actions, notes, the plan).

Plain frozen records and enums, no logic beyond describing themselves: plan.py
decides, calls.py carries actions out, the CLI and the overview print them.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import ClassVar, assert_never

from orchestrator.contract import Mode
from orchestrator.manifest.model import Manifest, UpdatePolicy
from orchestrator.reconcile.translate import Fingerprints, Requests, TranslationError, translate
from orchestrator.schedule import Schedule, Window
from orchestrator.state.model import ManifestState, SessionRecord


class ActionKind(StrEnum):
    START = "start"  # acquire, then start at once
    STOP = "stop"
    UPDATE = "update"  # streamSubscribe
    UPDATE_LAYOUT = "updateLayout"  # the whole layout
    RESTART = "restart"  # stop, then acquire + start (a change `update` cannot carry)
    RESUME = "resume"  # finish a call that a killed process left without an outcome
    ROLLOVER = "rollover"  # a successor on the second uid, confirmed, then the old one stopped


class NoteKind(StrEnum):
    DEFERRED = "deferred"  # a change waits for the next window (updatePolicy: defer)
    FAILED = "failed"  # permanent error for this spec; not retried until the spec changes
    BACKOFF = "backoff"  # a restart or retry waits for its backoff
    MISSED = "missed"  # the window opened longer ago than startingDeadline
    UNMANAGEABLE = "unmanageable"  # a recording whose sid is unknown: needs an operator
    KEPT = "kept"  # its manifest file is invalid: the last known good version stands
    ROLLOVER = "rollover"  # a rollover's successor failed: the next one waits until `until`
    # Not held back: its session rolls over at `until`, before its token or resource ID
    # expires (`Plan.upcoming`).
    ROLLOVER_DUE = "rollover-due"


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

    Only the manifest's `spec_hash` is computed at load (once per loaded version,
    and kept in the daemon's manifest cache). The typed requests (`requests`) and
    the other fingerprints the planner compares with a live session
    (`restart_hash`, `subscription_hash`, `layout_hash`) are built when the
    recording first acts or is compared with a session of its own, and stay with
    this version; the executor sends them as they are (only the start's secrets
    are resolved at the last moment). Translating every manifest at load would
    cost most of a 10,000-manifest start-up, and keeping every manifest's requests
    some 8 KiB each (82 MB for 10,000, over the daemon's memory target), for the
    few that act at any time.
    """

    name: str
    app: str
    app_id: str
    channel: str
    uid: int
    mode: Mode
    schedule: Schedule = field(compare=False)
    manifest: Manifest = field(compare=False, repr=False)
    spec_hash: str
    source_file: str = ""
    suspend: bool = False
    update_policy: UpdatePolicy = UpdatePolicy.RESTART
    starting_deadline: timedelta | None = None
    # The second uid a rollover's successor records on (None: the manifest has none).
    rollover_uid: int | None = None
    # Given (tests, and plans built from fingerprints known already); else those of
    # `requests`, built at the first use.
    given: Fingerprints | None = field(default=None, compare=False, repr=False)

    @functools.cached_property
    def requests(self) -> Requests:
        """The typed requests of this manifest version, built at the first use.
        Raises TranslationError (a bug the property tests rule out)."""
        return translate(self.manifest)

    @property
    def fingerprints(self) -> Fingerprints:
        return self.given if self.given is not None else self.requests.fingerprints

    def untranslatable(self) -> str | None:
        """Why this version's requests cannot be built (then it is held as failed), or
        None; translates it if that was not done yet."""
        if self.given is not None:
            return None
        try:
            _ = self.requests
        except TranslationError as exc:
            return f"cannot translate: {exc}"
        return None

    def requests_for(self, uid: int) -> Requests:
        """The requests for a session of this recording on `uid` (its uid, or its
        rollover uid)."""
        return self.requests.for_uid(uid)

    def wanted_at(self, now: datetime) -> bool:
        """Whether it should record at `now`: not suspended, in a window."""
        return not self.suspend and self.schedule.active_at(now) is not None

    @property
    def resource_lifetime(self) -> timedelta:
        """How long a resource ID of this recording lives from its start."""
        return timedelta(hours=self.requests.acquire.clientRequest.resourceExpiredHour)

    def other_uid(self, uid: int) -> int:
        """The uid a successor of a session on `uid` records on: the two alternate."""
        if self.rollover_uid is None:
            raise ValueError(f"{self.name} has no rollover uid")
        return self.rollover_uid if uid == self.uid else self.uid

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
    # Manifests no version of which can be planned now (the stand-in names an app
    # profile the config no longer has): their live sessions are kept as they are.
    held: frozenset[str] = frozenset()


@dataclass(frozen=True)
class PlanPolicy:
    # 10 s is long enough not to hammer a channel that keeps emptying, short enough
    # that a recording lost to an idle exit resumes before much is missed.
    restart_backoff_initial: timedelta = timedelta(seconds=10)
    restart_backoff_max: timedelta = timedelta(minutes=10)
    # How long before a session's token or resource ID expires its successor starts
    # (config `reconcile.rolloverLead`): room for a few retries of a successor.
    rollover_lead: timedelta = timedelta(minutes=10)


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
    # In place of a session whose end is not confirmed (a 404 that may be a failover):
    # on the manifest's other uid, as its successor, so that should it answer again
    # the two are told apart and one is stopped.
    uid: int | None = None
    predecessor_id: int | None = None


@dataclass(frozen=True)
class Stop(_Action):
    kind: ClassVar[ActionKind] = ActionKind.STOP
    session_id: int
    # A rollover's predecessor: the successor that records in its place (the two
    # sessions' overlap is measured when this stop ends it).
    successor_id: int | None = None


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


@dataclass(frozen=True)
class Rollover(_Action):
    """Make before break: start a successor of `session_id` on the manifest's other uid
    (or, with `successor_id`, take the one already started), wait until it records,
    then stop `session_id`. The recording never has a gap; at most two sessions live."""

    kind: ClassVar[ActionKind] = ActionKind.ROLLOVER
    recording: DesiredRecording = field(repr=False)
    session_id: int
    window: Window
    successor_id: int | None = None
    attempt: int = 0
    # `session_id` answered again after a 404 taken for its end (a failover) while
    # `successor_id` was started in its place: stopped as a duplicate, no rollover.
    duplicate: bool = False


#: What the planner asks for: one frozen record per kind, handled by exhaustive `match`.
Action = Start | Stop | Update | UpdateLayout | Restart | Resume | Rollover


def action_session(action: Action) -> int | None:
    """The session an action works on (None for a start: it has none yet)."""
    match action:
        case Start():
            return None
        case Stop() | Update() | Restart() | Resume() | Rollover():
            return action.session_id
        case _:
            assert_never(action)


def action_window(action: Action) -> Window | None:
    """The window an action records (None when it starts nothing)."""
    match action:
        case Start() | Restart() | Resume() | Rollover():
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
    notes: tuple[Note, ...] = ()  # what is held back, and why
    upcoming: tuple[Note, ...] = ()  # what is due later by itself: rollovers

    @property
    def wake_at(self) -> datetime | None:
        """The soonest instant a pass is due besides window boundaries: a backoff ends,
        a rollover is due."""
        return min(
            (
                n.until
                for n in self.notes + self.upcoming
                if n.until is not None and n.kind in _WAKES
            ),
            default=None,
        )

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


#: How long a recorder takes to join its channel and record, at most: a rollover's
#: successor whose start took effect but whose sid is unknown (no query can confirm
#: it) is given this long, from when it was last written, before its predecessor
#: stops. Agora's recorder joins within seconds.
SID_UNKNOWN_JOIN = timedelta(seconds=15)

_BLOCKING = frozenset({NoteKind.FAILED, NoteKind.UNMANAGEABLE})
_WAKES = frozenset({NoteKind.BACKOFF, NoteKind.ROLLOVER, NoteKind.ROLLOVER_DUE})
