"""The state store as an interface: what reconcile, the daemon and the CLI may ask of it.

Two stores keep it, with one implementation of its methods (base.py) over their two
SQL dialects: `SqliteStore` (store.py: one file, one writer process) and
`PostgresStore` (postgres.py: several replicas). Both pass the same contract test
suite (tests/contract). Writes name their fields: `SessionFields` lists every
column a caller may write, with its type, so that mypy checks every write; at import
it is checked to be `SessionRecord`'s fields but `id` and `created_at`.

Everything a store raises is a StoreError (errors.py): a session id the store does
not hold is SessionNotFoundError, never a bare KeyError.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol, TypedDict, Unpack, get_type_hints

from orchestrator.state import model


class SessionFields(TypedDict, total=False):
    """The writable columns of a session (`SessionRecord` minus `id` and `created_at`)."""

    manifest: str
    app: str
    app_id: str
    channel: str
    uid: int
    mode: str
    phase: model.Phase
    updated_at: datetime
    resource_id: str | None
    sid: str | None
    source_file: str | None
    spec_hash: str | None
    subscription_hash: str | None
    layout_hash: str | None
    restart_hash: str | None
    window_start: datetime | None
    window_end: datetime | None
    started_at: datetime | None
    ended_at: datetime | None
    last_query_at: datetime | None
    last_status: int | None
    end_reason: str | None
    end_kind: model.EndKind | None
    file_list: Any
    uploading_status: str | None
    restart_count: int
    intent: model.Intent | None
    intent_at: datetime | None
    error: str | None
    join_expires_at: datetime | None
    resource_expires_at: datetime | None
    predecessor_id: int | None
    failover_at: datetime | None
    failover_uid: str | None
    confirm_until: datetime | None


def _check_session_fields() -> None:
    """Python cannot derive a TypedDict from a dataclass, so the two lists are checked
    against each other at import: `SessionFields` is `SessionRecord` but `id` and
    `created_at`, field for field and type for type, so that mypy holds every write
    to what a read returns."""
    readable = get_type_hints(model.SessionRecord)
    writable = {name: hint for name, hint in readable.items() if name not in ("id", "created_at")}
    if get_type_hints(SessionFields) != writable:
        raise AssertionError("SessionFields must be SessionRecord's fields but id and created_at")


_check_session_fields()


class Store(Protocol):
    """Sessions, per-manifest state and last known good manifests.

    Every write is committed before the call returns (an intent is durable before
    the API call it announces). No secret value is ever written. Reading or writing
    a session by an id the store does not hold is SessionNotFoundError (except
    `update_session_if`, which then returns None). Once fenced (`fence`), a write
    that changes a session of an App ID this process no longer owns is
    StoreFencedError and writes nothing.
    """

    @property
    def location(self) -> str:
        """Where the store is, for messages (a path, or a URL without its password)."""
        ...

    @property
    def schema_version(self) -> int: ...

    async def aclose(self) -> None: ...

    async def restore_if_removed(self) -> bool:
        """Write the store back if its file was removed under us (SQLite); False when
        nothing had to be done."""
        ...

    async def app_owners(self) -> list[model.AppOwner]:
        """Who owns which App ID (replicas on PostgreSQL; empty for SQLite)."""
        ...

    def fence(self, epochs: Mapping[str, int]) -> None:
        """Write sessions only of the App IDs in `epochs` (App ID -> the epoch of this
        process's claim), and only while each still has that epoch: every write that
        changes a session (create, update, update_if, intent, outcome) checks it in
        the same statement, and one that fails is StoreFencedError and writes
        nothing. Reads are never fenced; nothing is fenced before the first call.
        Called by `Ownership` as it claims, releases and loses App IDs. A no-op for
        SQLite, whose writer lock already makes its process the only writer."""
        ...

    # sessions
    async def create_session(self, **values: Unpack[SessionFields]) -> model.SessionRecord: ...

    async def get_session(self, session_id: int) -> model.SessionRecord: ...

    async def update_session(
        self, session_id: int, **values: Unpack[SessionFields]
    ) -> model.SessionRecord: ...

    async def update_session_if(
        self, session_id: int, phases: Collection[model.Phase], **values: Unpack[SessionFields]
    ) -> model.SessionRecord | None:
        """Write only while the session is in one of `phases` (checked in the same
        statement); None when it was not."""
        ...

    async def record_intent(
        self, session_id: int, intent: model.Intent, /, **values: Unpack[SessionFields]
    ) -> model.SessionRecord: ...

    async def record_outcome(
        self, session_id: int, **values: Unpack[SessionFields]
    ) -> model.SessionRecord: ...

    async def live_sessions(self) -> list[model.SessionRecord]: ...

    async def unmanageable_on(
        self, app_id: str, channel: str, uid: int
    ) -> list[model.SessionRecord]: ...

    async def history(
        self, limit: int = 50, manifest: str | None = None
    ) -> list[model.SessionRecord]: ...

    async def latest_ended(
        self, app_ids: Collection[str] | None = None
    ) -> dict[str, model.SessionRecord]:
        """The newest ended or failed session of each manifest (of sessions of
        `app_ids`; None: all)."""
        ...

    async def unconfirmed_sessions(self) -> list[model.SessionRecord]:
        """Ended sessions whose end is not confirmed yet (`confirm_until` set)."""
        ...

    async def session_by_sid(self, sid: str) -> model.SessionRecord | None:
        """The newest session with this sid (None: none)."""
        ...

    async def sidless_on(self, channel: str, uid: int) -> list[model.SessionRecord]:
        """Starting or unmanageable sessions on this channel and uid (any App ID) whose
        sid is unknown: those a notification's unknown sid may name."""
        ...

    # Agora's notifications (NCS)
    async def record_notice(self, notice: model.Notice) -> bool:
        """Keep a notification as received; False when its `notice_id` was kept
        before (a resend: it is acted on once). Wakes the owner of its App ID
        (PostgreSQL: NOTIFY)."""
        ...

    async def pending_notices(
        self, app_ids: Collection[str] | None = None, limit: int = 500
    ) -> list[model.Notice]:
        """Notifications not yet acted on (of sessions of `app_ids`; None: all),
        oldest first."""
        ...

    async def settle_notice(self, notice_id: str, outcome: str) -> None:
        """A notification was acted on: when, and what came of it."""
        ...

    async def prune_notices(self, before: datetime) -> int:
        """Forget notifications acted on (or of no known session) received before
        `before`; the count forgotten."""
        ...

    # per manifest
    async def manifest_states(self) -> dict[str, model.ManifestState]: ...

    async def set_manifest_state(self, state: model.ManifestState) -> None: ...

    async def clear_failures(self, names: Sequence[str] | None = None) -> int: ...

    async def known_good(
        self, names: Collection[str] | None = None, *, documents: bool = True
    ) -> dict[str, model.KnownGood]: ...

    async def remember_known_good(
        self, entries: Sequence[model.KnownGood], forget: Sequence[str] = ()
    ) -> None: ...


class Ownership(Protocol):
    """Which App IDs this replica may act on (PostgreSQL replicas; see postgres.py).

    Owning an App ID is holding its lock; every session write of the store for it
    is fenced by the claim's epoch (it tells the store through `Store.fence`). A
    failure of the connection behind it raises StoreUnavailableError and leaves this
    replica owning nothing (`owned` empty), and so writing nothing."""

    name: str

    @property
    def owned(self) -> frozenset[str]: ...

    async def survey(self) -> tuple[int, dict[str, str | None]]:
        """(live replicas, App ID -> the replica holding it, None when nobody does)."""
        ...

    async def check(self) -> None:
        """That our locks still stand (cheap; StoreUnavailableError when not)."""
        ...

    async def claim(self, app_id: str) -> bool: ...

    async def release(self, app_id: str) -> None: ...

    async def owners(self) -> list[model.AppOwner]: ...

    def lost(self) -> None: ...

    async def listen(self, wake: Callable[[str], None]) -> None:
        """Until cancelled: `wake(app_id)` for every notification a replica keeps
        (PostgreSQL LISTEN/NOTIFY), and `wake("")` whenever listening (re)starts."""
        ...

    async def aclose(self) -> None: ...
