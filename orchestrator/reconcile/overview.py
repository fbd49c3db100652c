"""What every recording should be doing, what it is doing, and why not when the two differ.

One pure function, `overview(desired, actual, plan, now, ...)`, reads the planner's
answer for `now` and the store's sessions and says, per manifest: should it record now
(or wait for its next window, or is it suspended or over), is a session recording it,
and when a wanted recording is not recording, why (its start is due, its last start
failed and is retried at ..., it waits a restart backoff, it is held as failed, its
window was missed, an unmanageable session holds it), with the last error and the
next attempt. Files that fail to load, unmanageable sessions (including those the API
no longer recognises) and untracked recordings are listed beside them.

`orchestrator status`, the daemon's `/readyz`, its metrics and its systemd STATUS=
line all show this one answer, so that a failure is never visible in one place and
hidden in another. This module must never do I/O or read the clock: `now` and
everything observed are arguments.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from orchestrator.manifest.diagnostics import Diagnostic
from orchestrator.reconcile.plan import (
    ActualState,
    DesiredRecording,
    Note,
    NoteKind,
    Plan,
    Start,
)
from orchestrator.schedule import FAR_FUTURE, Window
from orchestrator.state.model import EndKind, Phase, SessionRecord

FORGET_COMMAND = "orchestrator apply --forget-unmanageable {name}"
"""How an operator closes the record of an unmanageable session once it has ended
(with the daemon stopped: `apply` takes the store's writer lock)."""


class Should(StrEnum):
    """What a manifest's schedule asks for at the instant looked at."""

    RECORD = "record"  # inside a window, not suspended
    WAIT = "wait"  # between windows: the next one is `RecordingStatus.window`
    SUSPENDED = "suspended"
    ENDED = "ended"  # no window lies ahead


class Reason(StrEnum):
    """Why what a recording is doing differs from what it should be doing."""

    STARTING = "starting"  # its start is due now or in flight
    FAILING = "failing"  # its last start failed; retried at `next_attempt`
    BACKOFF = "backoff"  # it ended by itself; its restart waits until `next_attempt`
    HELD = "held"  # a permanent error for this spec: not retried until the spec changes
    MISSED = "missed"  # its window opened longer ago than startingDeadline: not joined
    UNMANAGEABLE = "unmanageable"  # a session we cannot query or stop holds the target
    STOPPING = "stopping"  # live although not wanted: its stop is due, or failing


# When several notes apply, the one that explains most wins.
_NOTE_REASONS = {
    NoteKind.FAILED: Reason.HELD,
    NoteKind.UNMANAGEABLE: Reason.UNMANAGEABLE,
    NoteKind.BACKOFF: Reason.BACKOFF,
    NoteKind.MISSED: Reason.MISSED,
}
_PRECEDENCE = (Reason.HELD, Reason.UNMANAGEABLE, Reason.BACKOFF, Reason.MISSED)
_NEVER_RECORDED = frozenset({EndKind.FAILED, EndKind.CONFLICT, EndKind.UNTRACKED})
_RECORDING = frozenset({Phase.RUNNING, Phase.UPDATING})


@dataclass(frozen=True)
class RecordingStatus:
    """One manifest at one instant."""

    name: str
    app: str
    app_id: str
    channel: str
    uid: int
    source_file: str
    should: Should
    # The current window (RECORD, MISSED), or the next one (WAIT); None otherwise.
    window: Window | None
    # The live session recording it or being acted on (None: nothing live).
    session: SessionRecord | None = None
    # Set when what it does differs from what it should do; `message` says why.
    reason: Reason | None = None
    message: str = ""
    last_error: str | None = None
    last_error_at: datetime | None = None
    next_attempt: datetime | None = None
    # Its manifest file does not load: this is its last known good version.
    kept: bool = False
    # Its session is unmanageable, and a start since met 53 on the target: Agora says
    # that session still records (DESIGN: count it as recording).
    by_53: bool = False

    @property
    def recording(self) -> bool:
        return self.by_53 or (self.session is not None and self.session.phase in _RECORDING)

    @property
    def wanted(self) -> bool:
        return self.should is Should.RECORD

    @property
    def doing(self) -> str:
        """What it is doing, in a word: recording, starting, stopping, unmanageable, idle."""
        return doing_of(self.session)

    @property
    def not_recording(self) -> bool:
        """Wanted now and not recording (its window was missed on purpose: not a fault)."""
        return self.wanted and not self.recording and self.reason is not Reason.MISSED

    def as_dict(self) -> dict[str, Any]:
        window = self.window
        return {
            "manifest": self.name,
            "app": self.app,
            "app_id": self.app_id,
            "channel": self.channel,
            "uid": self.uid,
            "file": self.source_file,
            "should": self.should.value,
            "window": _window_dict(window),
            "doing": self.doing,
            "session": _session_dict(self.session) if self.session else None,
            "reason": self.reason.value if self.reason else None,
            "message": self.message or None,
            "last_error": self.last_error,
            "last_error_at": _iso(self.last_error_at),
            "next_attempt": _iso(self.next_attempt),
            "kept": self.kept,
        }


@dataclass(frozen=True)
class Tally:
    """What an overview's recordings add up to, counted once per list of them: every
    pass's metrics, log event and STATUS= line read it."""

    counted: tuple[RecordingStatus, ...] = ()  # the very recordings counted
    wanted: int = 0
    recording: int = 0
    # The sessions of the recordings (live, or being acted on): not the orphans.
    sessions: tuple[SessionRecord, ...] = ()
    not_recording: tuple[RecordingStatus, ...] = ()
    # Per App ID present: (wanted, recording, not recording by reason). Read only.
    by_app: Mapping[str, tuple[int, int, Counter[str]]] = dataclasses.field(default_factory=dict)


def doing_of(session: SessionRecord | None) -> str:
    """What a live session (None: none) is doing, in a word: recording, starting,
    stopping, unmanageable, idle."""
    if session is None:
        return "idle"
    if session.phase in _RECORDING:
        return "recording"
    if session.phase in (Phase.ACQUIRING, Phase.STARTING):
        return "starting"
    return session.phase.value  # stopping, unmanageable


def _tally(recordings: tuple[RecordingStatus, ...]) -> Tally:
    wanted = recording = 0
    sessions: list[SessionRecord] = []
    missing: list[RecordingStatus] = []
    by_app: dict[str, tuple[int, int, Counter[str]]] = {}
    for r in recordings:
        app = by_app.get(r.app_id)
        if app is None:
            app = by_app[r.app_id] = (0, 0, Counter())
        app_wanted, app_recording, reasons = app
        if r.session is not None:
            sessions.append(r.session)
        if r.recording:
            recording += 1
            app_recording += 1
        if r.wanted:
            wanted += 1
            app_wanted += 1
        if r.not_recording:
            missing.append(r)
            if r.reason is not None:
                reasons[r.reason.value] += 1
        by_app[r.app_id] = (app_wanted, app_recording, reasons)
    return Tally(recordings, wanted, recording, tuple(sessions), tuple(missing), by_app)


@dataclass(frozen=True)
class Overview:
    """Every manifest's status at `at`, and what needs an operator beside them."""

    at: datetime
    recordings: tuple[RecordingStatus, ...] = ()
    # Errors of the manifest files that do not load (their last known good stands).
    files_failing: tuple[Diagnostic, ...] = ()
    # Problems that concern no position in a file (a last known good version in force, ...).
    problems: tuple[str, ...] = ()
    # Sessions we cannot query or stop: an unknown sid, or the API no longer knows them.
    unmanageable: tuple[SessionRecord, ...] = ()
    # Recordings live on Agora that the store does not know (a start met 53).
    untracked: tuple[SessionRecord, ...] = ()
    # Live sessions whose manifest is gone (their stop is due) or whose file fails.
    orphans: tuple[SessionRecord, ...] = ()
    # `recordings` counted (made from them unless given with them).
    tally: Tally = dataclasses.field(default=Tally(), compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.tally.counted is not self.recordings:
            object.__setattr__(self, "tally", _tally(self.recordings))

    @property
    def wanted(self) -> tuple[RecordingStatus, ...]:
        return tuple(r for r in self.recordings if r.wanted)

    @property
    def not_recording(self) -> tuple[RecordingStatus, ...]:
        return self.tally.not_recording

    @property
    def reasons(self) -> Counter[str]:
        """Wanted recordings that are not recording, by reason."""
        return Counter(r.reason.value for r in self.not_recording if r.reason)

    @property
    def failing_files(self) -> tuple[str, ...]:
        return tuple(sorted({d.file for d in self.files_failing if d.file}))

    @property
    def ok(self) -> bool:
        """Everything wanted records (or is starting right now), every file loads, and
        nothing needs an operator."""
        trouble = [r for r in self.not_recording if r.reason is not Reason.STARTING]
        return not (
            trouble or self.files_failing or self.problems or self.unmanageable or self.untracked
        )

    def summary(self) -> str:
        """One line: the systemd STATUS= line and `/readyz`'s detail."""
        parts = [f"{self.tally.wanted} wanted, {self.tally.recording} recording"]
        missing = self.not_recording
        if missing:
            named = ", ".join(f"{r.name} ({r.reason})" for r in missing[:5])
            more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
            parts.append(f"{len(missing)} not recording: {named}{more}")
        else:
            parts.append("0 not recording")
        parts.append(f"{len(self.failing_files)} failing to load")
        if self.unmanageable:
            parts.append(f"{len(self.unmanageable)} unmanageable")
        if self.untracked:
            parts.append(f"{len(self.untracked)} untracked")
        return ", ".join(parts)

    def as_dict(self, limit: int | None = None) -> dict[str, Any]:
        """JSON-ready; `limit` bounds each list (a probe's answer stays small)."""

        def few(items: Sequence[Any]) -> Sequence[Any]:
            return items if limit is None else items[:limit]

        return {
            "at": self.at.isoformat(),
            "ok": self.ok,
            "counts": {
                "manifests": len(self.recordings),
                "wanted": self.tally.wanted,
                "recording": self.tally.recording,
                "not_recording": len(self.not_recording),
                "not_recording_by_reason": dict(sorted(self.reasons.items())),
                "files_failing": len(self.failing_files),
                "unmanageable": len(self.unmanageable),
                "untracked": len(self.untracked),
            },
            "not_recording": [r.as_dict() for r in few(self.not_recording)],
            "files_failing": [d.as_dict() for d in few(self.files_failing)],
            "problems": list(few(self.problems)),
            "unmanageable": [
                {**_session_dict(s), "forget": FORGET_COMMAND.format(name=s.manifest)}
                for s in few(self.unmanageable)
            ],
            "untracked": [_session_dict(s) for s in few(self.untracked)],
        }


def overview(
    desired: Iterable[DesiredRecording],
    actual: ActualState,
    the_plan: Plan,
    now: datetime,
    *,
    files_failing: Sequence[Diagnostic] = (),
    problems: Sequence[str] = (),
    untracked: Sequence[SessionRecord] = (),
    memo: OverviewMemo | None = None,
) -> Overview:
    """Each desired recording's status at `now`, from the plan made at `now` with `actual`.

    `files_failing`: the error diagnostics of files that do not load; `problems`:
    problems at no position; `untracked`: see `reconciler.untracked`; `memo`: the
    caller's, kept from one call to the next (the daemon's): the same answer, with the
    statuses it kept where nothing of theirs changed."""
    notes: dict[str, list[Note]] = {}
    for note in the_plan.notes:
        notes.setdefault(note.manifest, []).append(note)
    starts = {a.manifest for a in the_plan.actions if isinstance(a, Start)}
    acting = {a.manifest: a for a in the_plan.actions}
    live: dict[str, SessionRecord] = {}
    for s in sorted(actual.live, key=lambda s: s.id):
        # The newest, as the planner does, unless it does not record and an older one
        # does: a rollover's predecessor while its successor starts or cannot be seen.
        older = live.get(s.manifest)
        if older is None or s.phase in _RECORDING or older.phase not in _RECORDING:
            live[s.manifest] = s
    if memo is not None:
        memo.begin()
    names = set()
    statuses = []
    for d in sorted(desired, key=lambda d: d.name):
        names.add(d.name)
        inputs: _Inputs = (
            d,
            live.get(d.name),
            actual.latest_ended.get(d.name),
            tuple(notes.get(d.name, ())),
            d.name in starts,
            d.name in acting,
            d.source_file in actual.invalid_files,
        )
        statuses.append(_status(*inputs, now) if memo is None else memo.recall(inputs, now))
    orphans = tuple(s for s in actual.live if s.manifest not in names)
    recordings, tally = tuple(statuses), Tally()
    last = memo.last if memo is not None else None
    if last is not None and _same_items(recordings, last.recordings):
        recordings, tally = last.recordings, last.tally
    view = Overview(
        at=now,
        recordings=recordings,
        tally=tally,
        files_failing=tuple(d for d in files_failing if d.severity == "error"),
        problems=tuple(problems),
        unmanageable=tuple(s for s in actual.live if s.phase is Phase.UNMANAGEABLE),
        untracked=tuple(untracked),
        orphans=orphans,
    )
    if memo is not None:
        memo.done(view)
    return view


# What one status is made of besides the instant: its desired recording, its live
# session, its last finished one, the plan's notes on it, whether the plan starts it,
# whether the plan acts on it, whether its file fails to load (its last known good).
_Inputs = tuple[
    DesiredRecording, SessionRecord | None, SessionRecord | None, tuple[Note, ...], bool, bool, bool
]
_Kept = dict[str, tuple[_Inputs, RecordingStatus, datetime, datetime]]


class OverviewMemo:
    """What `overview` keeps from one call to the next for a caller that asks after
    every pass (the daemon). Each status is kept with what it was made of and the
    instant until which its schedule answers alike (`Schedule.steady_until`); a status
    whose inputs are the same and whose window has neither opened nor closed since is
    the kept one, not made again. When every status is a kept one, so are the list of
    them and its counts. An instant before the one a status was made at (a clock
    stepped back) makes it anew."""

    def __init__(self) -> None:
        self._kept: _Kept = {}
        self._previous: _Kept = {}  # what the last answer kept, while a new one is made
        self.last: Overview | None = None

    def begin(self) -> None:
        """A new answer begins: only what it recalls stays kept."""
        self._previous, self._kept = self._kept, {}

    def done(self, view: Overview) -> None:
        """The new answer is made: what the last one kept and this one did not is let go."""
        self.last, self._previous = view, {}

    def recall(self, inputs: _Inputs, now: datetime) -> RecordingStatus:
        """The status of these inputs at `now`: the kept one, or made and kept."""
        d = inputs[0]
        entry = self._previous.get(d.name)
        if entry is not None and entry[2] <= now < entry[3] and entry[0] == inputs:
            self._kept[d.name] = entry
            return entry[1]
        status = _status(*inputs, now)
        # What a status says depends on the instant only through its schedule.
        until = FAR_FUTURE if d.suspend else d.schedule.steady_until(now)
        self._kept[d.name] = (inputs, status, now, until)
        return status


def _same_items(a: Sequence[object], b: Sequence[object]) -> bool:
    return len(a) == len(b) and all(x is y for x, y in zip(a, b, strict=True))


def _status(
    d: DesiredRecording,
    session: SessionRecord | None,
    previous: SessionRecord | None,
    notes: Sequence[Note],
    starting: bool,
    acting: bool,
    kept: bool,
    now: datetime,
) -> RecordingStatus:
    window = d.schedule.active_at(now)
    if d.suspend:
        should, shown = Should.SUSPENDED, None
    elif window is not None:
        should, shown = Should.RECORD, window
    else:
        nxt = d.schedule.next_boundary(now)
        upcoming = d.schedule.active_at(nxt) if nxt is not None else None
        should, shown = (Should.WAIT, upcoming) if upcoming is not None else (Should.ENDED, None)
    base = RecordingStatus(
        name=d.name,
        app=d.app,
        app_id=d.app_id,
        channel=d.channel,
        uid=d.uid,
        source_file=d.source_file,
        should=should,
        window=shown,
        session=session,
        kept=kept,
    )
    # The last attempt in this window, when it failed or ended by itself.
    last = previous
    if last is not None and (window is None or last.window_start != window.start):
        last = None
    error = _last_error(session, last)
    if should is Should.RECORD:
        if base.recording:
            return _with(base, error)
        if (
            session is not None
            and session.phase is Phase.UNMANAGEABLE
            and last is not None
            and last.end_kind is EndKind.CONFLICT
            and last.created_at >= session.created_at
        ):
            met = f"{last.ended_at:%H:%M:%S}" if last.ended_at else "-"
            message = f"its unmanageable session records: a start met 53 at {met}"
            return dataclasses.replace(_with(base, error, None, message), by_53=True)
        return _why_not(base, session, last, notes, starting, error)
    if session is not None and session.phase is not Phase.UNMANAGEABLE:
        message = "its window is over" if should is not Should.SUSPENDED else "suspended"
        if acting:
            message += ": its stop is due"
        return _with(base, error, Reason.STOPPING, f"live, but {message}")
    return base


def _why_not(
    base: RecordingStatus,
    session: SessionRecord | None,
    last: SessionRecord | None,
    notes: Sequence[Note],
    starting: bool,
    error: tuple[str | None, datetime | None],
) -> RecordingStatus:
    by_reason = {_NOTE_REASONS[n.kind]: n for n in notes if n.kind in _NOTE_REASONS}
    for reason in _PRECEDENCE:
        note = by_reason.get(reason)
        if note is None:
            continue
        if reason is Reason.BACKOFF and last is not None and last.end_kind in _NEVER_RECORDED:
            reason = Reason.FAILING
        if reason is Reason.UNMANAGEABLE:
            retry = by_reason.get(Reason.BACKOFF)
            until = retry.until if retry is not None else None
            return _with(base, error, reason, note.message, until)
        return _with(base, error, reason, _note_text(reason, note.message), note.until)
    if session is not None and session.phase in (Phase.ACQUIRING, Phase.STARTING):
        if session.error:  # its start went unanswered (5xx, timeouts) after every retry
            message = "its start has not gone through; resumed at each pass"
            return _with(base, error, Reason.FAILING, message)
        return _with(base, error, Reason.STARTING, "its start is in flight")
    if starting:
        if last is not None and last.end_kind in _NEVER_RECORDED:
            return _with(base, error, Reason.FAILING, "its last start failed; retried now", None)
        return _with(base, error, Reason.STARTING, "its start is due now")
    if session is not None:  # stopping while wanted: a restart under way
        return _with(base, error, Reason.STARTING, f"its session is {session.phase.value}")
    return _with(base, error, Reason.STARTING, "its start is due at the next pass")


def _note_text(reason: Reason, message: str) -> str:
    if reason is Reason.FAILING:
        return "its last start failed; the next attempt waits its backoff"
    return message


def _with(
    base: RecordingStatus,
    error: tuple[str | None, datetime | None],
    reason: Reason | None = None,
    message: str = "",
    next_attempt: datetime | None = None,
) -> RecordingStatus:
    return dataclasses.replace(
        base,
        reason=reason,
        message=message,
        last_error=error[0],
        last_error_at=error[1],
        next_attempt=next_attempt,
    )


def _last_error(
    session: SessionRecord | None, last: SessionRecord | None
) -> tuple[str | None, datetime | None]:
    """The newest error said about this recording: the live session's, else the failed
    or exited last attempt's end reason in this window."""
    if session is not None and session.error:
        return session.error, session.updated_at
    if last is not None and last.end_kind is not EndKind.STOPPED and last.end_reason:
        return last.end_reason, last.ended_at
    return None, None


def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at is not None else None


def _window_dict(window: Window | None) -> dict[str, str | None] | None:
    if window is None:
        return None
    end = None if window.end >= FAR_FUTURE else window.end.isoformat()
    return {"start": window.start.isoformat(), "end": end}


def _session_dict(s: SessionRecord) -> dict[str, Any]:
    """A session as status shows it: no secret (the store holds none)."""
    return {
        "id": s.id,
        "manifest": s.manifest,
        "app_id": s.app_id,
        "channel": s.channel,
        "uid": s.uid,
        "phase": s.phase.value,
        "sid": s.sid,
        "since": _iso(s.started_at or s.created_at),
        "error": s.error,
        "ended_at": _iso(s.ended_at),
    }


def counts_by_app(
    ov: Overview, app_ids: Iterable[str]
) -> Mapping[str, tuple[int, int, Counter[str]]]:
    """Per App ID: (wanted, recording, not recording by reason), every App ID of
    `app_ids` and of the recordings present."""
    out: dict[str, tuple[int, int, Counter[str]]] = {a: (0, 0, Counter()) for a in app_ids}
    out.update(ov.tally.by_app)
    return out


def held_by_reason(the_plan: Plan, ov: Overview) -> Counter[str]:
    """Manifests held back, by reason, each once a reason: the plan's notes, and the
    manifests that follow their last known good version while their file fails to
    load (`kept`, as those whose version could not be kept at all)."""
    held = Counter(kind for _name, kind in {(n.manifest, n.kind.value) for n in the_plan.notes})
    held[NoteKind.KEPT.value] += sum(1 for r in ov.recordings if r.kept)
    return held


__all__ = [
    "FORGET_COMMAND",
    "Overview",
    "OverviewMemo",
    "Reason",
    "RecordingStatus",
    "Should",
    "Tally",
    "counts_by_app",
    "held_by_reason",
    "overview",
]
