"""What the store holds, as plain frozen records (no SQL here).

A *session* is one attempt at one recording: one resource ID, at most one sid.
Its `phase` says where it is; `intent` is the mutating call that was about to be
made when the row was last written (cleared by the call's outcome), which is
how a restarted process knows what a killed one was doing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any


class Phase(StrEnum):
    ACQUIRING = "acquiring"
    STARTING = "starting"
    RUNNING = "running"
    UPDATING = "updating"
    STOPPING = "stopping"
    ENDED = "ended"
    FAILED = "failed"
    UNMANAGEABLE = "unmanageable"


FINAL_PHASES = frozenset({Phase.ENDED, Phase.FAILED})
"""Phases after which nothing is recording for this session."""


class Intent(StrEnum):
    ACQUIRE = "acquire"
    START = "start"
    UPDATE = "update"
    UPDATE_LAYOUT = "updateLayout"
    STOP = "stop"


class EndKind(StrEnum):
    """Why a session ended, as the planner reads it (`end_reason` is the text for people)."""

    STOPPED = "stopped"  # we stopped it on purpose: the only kind free of restart backoff
    EXITED = "exited"  # it left by itself (idle exit, abnormal exit, 404, superseded)
    FAILED = "failed"  # it never recorded (acquire or start refused, secrets missing)
    CONFLICT = "conflict"  # start answered 53 while our own unmanageable session records
    UNTRACKED = "untracked"  # start answered 53 and no session of ours records the target


@dataclass(frozen=True)
class SessionRecord:
    id: int
    manifest: str
    app: str
    app_id: str
    channel: str
    uid: int
    mode: str
    phase: Phase
    created_at: datetime
    updated_at: datetime
    resource_id: str | None = None
    sid: str | None = None
    source_file: str | None = None
    spec_hash: str | None = None
    subscription_hash: str | None = None
    layout_hash: str | None = None
    restart_hash: str | None = None
    window_start: datetime | None = None
    window_end: datetime | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    last_query_at: datetime | None = None
    last_status: int | None = None
    end_reason: str | None = None
    end_kind: EndKind | None = None
    file_list: Any = None
    uploading_status: str | None = None
    restart_count: int = 0
    intent: Intent | None = None
    intent_at: datetime | None = None
    error: str | None = None
    # When its start's token stops admitting the recorder (Agora then removes it from
    # the channel: it records no longer), when its resource ID expires (no call reaches
    # it after), and the session it replaced (a rollover's chain). None: unknown/never.
    join_expires_at: datetime | None = None
    resource_expires_at: datetime | None = None
    predecessor_id: int | None = None
    # Agora's failover (issue 19): when a `session_failover` notification said the
    # recorder moved, and its new uid; during `failover_grace` after it a 404 is no exit.
    failover_at: datetime | None = None
    failover_uid: str | None = None
    # An end that a 404 suggested but nothing confirmed (no exit notification): until
    # then the session is still queried, and taken back if it answers (a failover).
    confirm_until: datetime | None = None

    @property
    def expires_at(self) -> datetime | None:
        """When the session must have been replaced by: its token or its resource ID
        expires, whichever comes first (None: neither is known to)."""
        known = [t for t in (self.join_expires_at, self.resource_expires_at) if t is not None]
        return min(known, default=None)

    @property
    def is_live(self) -> bool:
        """Something may be recording (or about to) for this session."""
        return self.phase not in FINAL_PHASES


@dataclass(frozen=True)
class Notice:
    """One notification from Agora's NCS as received (issue 19): acted on once, by the
    owner of its session's App ID. `body` is the notification as posted (it holds no
    secret: NCS signs bodies, it does not carry credentials)."""

    notice_id: str
    event_type: int
    received_at: datetime
    body: dict[str, Any]
    sid: str | None = None
    channel: str | None = None
    # The session the sid named when it was received (None: the store knew none).
    app_id: str | None = None
    session_id: int | None = None
    handled_at: datetime | None = None
    outcome: str | None = None


@dataclass(frozen=True)
class KnownGood:
    """The last version of a manifest that loaded, kept so that a broken edit of its
    file does not change what is recorded. `document` holds secret references only:
    manifests with literal secrets are never stored."""

    name: str
    source_file: str
    spec_hash: str
    document: dict[str, Any]
    stored_at: datetime | None = None


@dataclass(frozen=True)
class ManifestState:
    """What the reconciler remembers per manifest name, across sessions."""

    name: str
    # A permanent error for this exact spec: not retried until the spec changes.
    failed_spec_hash: str | None = None
    failure_reason: str | None = None
    failed_at: datetime | None = None


@dataclass(frozen=True)
class AppOwner:
    """Who owns an App ID (replicas on PostgreSQL): the replica that claimed it last,
    since when, whether its lock is held now, and the claim's epoch."""

    app_id: str
    owner: str | None
    since: datetime | None
    held: bool
    epoch: int
