"""The `Store` protocol written once, for both stores (store.py: SQLite, postgres.py:
PostgreSQL), over a small dialect.

Why it exists: the two stores differ in how they open, lock, recover and run a
statement, never in what a store method does. `SqlStore` holds each method once; a
store completes it with its dialect: its statements (`Queries`, queries.py), how its
columns hold values (`Codec`, columns.py) and how a statement runs (`_fetch`,
`_execute`, `_write_batches`: SQLite on the store's own worker thread, PostgreSQL on
a pooled connection). A store's runner turns every driver error into a StoreError,
and a write the live-target index refuses into `LiveTargetTaken`.

Fencing (replicas, see `Ownership` in protocol.py): after `fence(epochs)`, every
write that changes a session (`create_session`, `update_session`,
`update_session_if`, `record_intent`, `record_outcome`) checks, in the same
statement, that the session's App ID still has the epoch this process claimed; one
that does not raises StoreFencedError and writes nothing, so a replica that lost an
App ID can write nothing more about its sessions. Reads are never fenced. SQLite
does not fence: its writer lock already makes one process the only writer.

Must never: run a statement itself (only through the store's runner), build SQL
(queries.py does), or let a KeyError out (a missing session is SessionNotFoundError).
"""

from __future__ import annotations

import functools
from abc import abstractmethod
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar, Unpack

from orchestrator.aio import AsyncClosing
from orchestrator.state.columns import (
    NOTICE_COLUMNS,
    STATE_COLUMNS,
    Codec,
    Row,
    UndecodableError,
    intent_row,
    new_session_row,
    outcome_row,
    update_row,
)
from orchestrator.state.errors import (
    SessionNotFoundError,
    StoreConflictError,
    StoreError,
    StoreFencedError,
)
from orchestrator.state.latest import KeptByVersion, LatestFinished
from orchestrator.state.model import Intent, KnownGood, ManifestState, Notice, Phase, SessionRecord
from orchestrator.state.protocol import SessionFields
from orchestrator.state.queries import Queries, latest_version

_T = TypeVar("_T")

#: Statements run with many rows of parameters each, all in one transaction.
Batch = tuple[str, Sequence[Sequence[Any]]]


class LiveTargetTaken(StoreError):
    """A session write that the live-target index refused (a store's runner raises it;
    `SqlStore` turns it into StoreConflictError naming the target)."""

    def __init__(self, location: str) -> None:
        super().__init__(f"state store {location} already has a live session on that target")


def too_new(location: Path | str, version: int, current: int) -> StoreError:
    """A store whose schema `version` is newer than `current`, the one this code knows."""
    return StoreError(
        f"state store {location} has schema version {version}, newer than this "
        f"orchestrator understands ({current}); upgrade the orchestrator"
    )


def check_readable(location: Path | str, version: int) -> int:
    """A reader's check: the schema `version` found must be exactly the one this code
    writes (a reader never migrates). Returns it."""
    current = latest_version()
    if version > current:
        raise too_new(location, version, current)
    if version < current:
        raise StoreError(
            f"state store {location} has schema version {version}, older than this "
            f"orchestrator's ({current}); a writer (`orchestrator run`, `apply` or "
            "`plan` without --offline) must upgrade it first, and then an older "
            "orchestrator no longer opens it"
        )
    return version


def upgrade(
    queries: Queries, location: Path | str, version: int
) -> list[tuple[str, tuple[Any, ...] | None]]:
    """What a writer runs, in its migration transaction, to bring a store at schema
    `version` to the latest: every later migration's statements in the store's
    dialect (without parameters: None), then the new version. Nothing when it is
    current; StoreError when `version` is newer than this code knows."""
    latest = latest_version()
    if version > latest:
        raise too_new(location, version, latest)
    if version == latest:
        return []
    steps: list[tuple[str, tuple[Any, ...] | None]] = [
        (statement, None) for statement in queries.migrations(after=version)
    ]
    return [*steps, (queries.clear_version, None), (queries.set_version, (latest,))]


class SqlStore(AsyncClosing):
    """The `Store` protocol over one SQL dialect.

    A store supplies `location`, `aclose()`, `restore_if_removed()`, `app_owners()`,
    `_schema_version` (set at open) and its runner (`_fetch`, `_execute`,
    `_write_batches`); `_queries` and `_codec` are its dialect's."""

    _schema_version: int
    #: Whether a writer of this kind is the only process that writes its sessions (it
    #: then keeps `latest_ended()` from its own writes: latest.py).
    _sole_writer = False

    def __init__(
        self,
        *,
        writer: bool,
        now: Callable[[], datetime] | None,
        queries: Queries,
        codec: Codec,
    ) -> None:
        self.writer = writer
        self._now = now or (lambda: datetime.now(UTC))
        self._closed = False
        self._queries = queries
        self._codec = codec
        # App ID -> the epoch this process claimed; None: no fencing (yet).
        self._epochs: dict[str, int] | None = None
        self._latest = LatestFinished() if writer and self._sole_writer else None
        self._versions = (
            KeptByVersion() if writer and queries.versioned_sessions is not None else None
        )

    # -- lifecycle -------------------------------------------------------------------

    @property
    @abstractmethod
    def location(self) -> str:
        """Where the store is, for messages (a path, or a URL without its password)."""

    @property
    def schema_version(self) -> int:
        """The schema version found (readers) or migrated to (writers) at open."""
        return self._schema_version

    @property
    def closed(self) -> bool:
        return self._closed

    @abstractmethod
    async def aclose(self) -> None:
        """Close the store. Idempotent; completes even if the caller is cancelled."""

    def _require_open(self) -> None:
        if self._closed:
            raise StoreError(f"state store {self.location} is closed")

    def _require_writer(self) -> None:
        if not self.writer:
            raise StoreError(f"state store {self.location} is open read-only")

    # -- the runner (the store's) ----------------------------------------------------

    @abstractmethod
    async def _fetch(self, query: str, params: Sequence[Any]) -> list[Row]:
        """Run one statement (committed before it returns) and give its rows."""

    async def _read(
        self, query: str, params: Sequence[Any], decode: Callable[[Row], _T]
    ) -> list[_T]:
        """`_fetch`, each row decoded; a value that cannot be read back is
        StoreCorruptError."""
        rows = await self._fetch(query, params)
        try:
            return [decode(row) for row in rows]
        except UndecodableError as exc:
            raise exc.corrupt(self.location) from None

    @abstractmethod
    async def _execute(self, query: str, params: Sequence[Any]) -> int:
        """Run one statement (committed before it returns) and give the rows it changed."""

    @abstractmethod
    async def _write_batches(self, batches: Sequence[Batch]) -> None:
        """Run each statement with each of its rows of parameters, all in one
        transaction (committed before it returns)."""

    # -- fencing ---------------------------------------------------------------------

    def fence(self, epochs: Mapping[str, int]) -> None:
        """From now on write sessions only of the App IDs in `epochs`, and only while
        each one's epoch is the one given (see the module docstring; SQLite's store
        overrides this with nothing)."""
        self._epochs = dict(epochs)

    # -- sessions ----------------------------------------------------------------

    async def create_session(self, **values: Unpack[SessionFields]) -> SessionRecord:
        """A new session row; `phase` defaults to ACQUIRING. Returns it as stored.
        StoreConflictError when its target already has a live session."""
        self._require_writer()
        row = new_session_row(values, self._now())
        columns = sorted(row)
        params = [self._codec.to_db(c, row[c]) for c in columns]
        epochs = self._epochs
        if epochs is not None:
            params += [row.get("app_id"), self._codec.write_json(epochs)]
        query = self._queries.insert_session(columns, fenced=epochs is not None)
        try:
            rows = await self._write_rows(query, params)
        except LiveTargetTaken:
            raise self._conflict(row) from None
        if not rows:  # only the fence keeps an insert from writing its row
            raise StoreFencedError(self.location, str(row.get("app_id")))
        return self._written(rows[0])

    async def get_session(self, session_id: int) -> SessionRecord:
        """The session with this id; SessionNotFoundError when there is none."""
        rows = await self._sessions(self._queries.get_session, (session_id,))
        if not rows:
            raise SessionNotFoundError(self.location, session_id)
        return rows[0]

    async def update_session(
        self, session_id: int, **values: Unpack[SessionFields]
    ) -> SessionRecord:
        """Write the given fields (and `updated_at`) in one committed statement."""
        self._require_writer()
        return await self._write_always(session_id, update_row(values, self._now()))

    async def update_session_if(
        self, session_id: int, phases: Collection[Phase], **values: Unpack[SessionFields]
    ) -> SessionRecord | None:
        """Write the given fields only while the session is in one of `phases` (checked
        in the same statement); None when it was not (another action moved it on), or
        when there is no such session."""
        self._require_writer()
        return await self._write(session_id, phases, update_row(values, self._now()))

    async def record_intent(
        self, session_id: int, intent: Intent, /, **values: Unpack[SessionFields]
    ) -> SessionRecord:
        """Before a mutating API call: what is about to be done (with any new phase)."""
        self._require_writer()
        now = self._now()
        row = update_row(intent_row(values, intent, now), now)
        return await self._write_always(session_id, row)

    async def record_outcome(
        self, session_id: int, **values: Unpack[SessionFields]
    ) -> SessionRecord:
        """After a mutating API call: its outcome; clears the intent (and the error)
        unless given."""
        self._require_writer()
        return await self._write_always(session_id, update_row(outcome_row(values), self._now()))

    async def _write_always(self, session_id: int, row: dict[str, Any]) -> SessionRecord:
        written = await self._write(session_id, None, row)
        if written is None:  # pragma: no cover (only a phase condition gives None)
            raise SessionNotFoundError(self.location, session_id)
        return written

    async def _write(
        self, session_id: int, phases: Collection[Phase] | None, row: dict[str, Any]
    ) -> SessionRecord | None:
        """Write `row` (complete: `updated_at` included) to the session in one
        committed statement and return it as stored; with `phases`, only while it is
        in one of them (None when it was not, or is not there)."""
        columns = sorted(row)
        params = [*(self._codec.to_db(c, row[c]) for c in columns), session_id]
        if phases is not None:
            params.append(self._codec.write_array(Phase(p).value for p in phases))
        epochs = self._epochs
        if epochs is not None:
            params.append(self._codec.write_json(epochs))
        query = self._queries.update_session(
            columns, phases=phases is not None, fenced=epochs is not None
        )
        try:
            rows = await self._write_rows(query, params)
        except LiveTargetTaken:
            current = await self.get_session(session_id)
            target = {"app_id": current.app_id, "channel": current.channel, "uid": current.uid}
            raise self._conflict({**target, **row}) from None
        if rows:
            return self._written(rows[0], renamed="manifest" in row)
        await self._not_written(session_id, phases, epochs)
        return None

    async def _write_rows(self, query: str, params: Sequence[Any]) -> list[SessionRecord]:
        """The rows a session write returns. When it fails otherwise than by the
        live-target index, or its caller is cancelled while it runs, whether it was made
        is unknown: what this store keeps of its sessions is read again."""
        try:
            return await self._sessions(query, params)
        except LiveTargetTaken:
            raise
        except BaseException:
            if self._latest is not None:
                self._latest.forget()
            raise

    def _written(self, record: SessionRecord, *, renamed: bool = False) -> SessionRecord:
        """`record` as a write left it (`renamed`: the write set its manifest), told to
        what this store keeps of its sessions."""
        if self._latest is not None:
            if renamed:
                self._latest.forget()
            self._latest.saw(record)
        return record

    async def _not_written(
        self, session_id: int, phases: Collection[Phase] | None, epochs: dict[str, int] | None
    ) -> None:
        """Raise why an update wrote nothing: no such session (SessionNotFoundError;
        under a phase condition, nothing) or the fence (StoreFencedError); under a phase
        condition an owned session is left as it was on purpose (nothing to raise)."""
        params: list[Any] = [] if epochs is None else [self._codec.write_json(epochs)]
        found = await self._fetch(
            self._queries.session_standing(fenced=epochs is not None), [*params, session_id]
        )
        if not found:
            if phases is None:
                raise SessionNotFoundError(self.location, session_id)
            return
        if phases is None or not found[0]["owned"]:
            raise StoreFencedError(self.location, str(found[0]["app_id"]))

    def _conflict(self, target: Mapping[str, Any]) -> StoreConflictError:
        return StoreConflictError(
            self.location,
            str(target.get("app_id")),
            str(target.get("channel")),
            int(target.get("uid") or 0),
        )

    async def _sessions(self, query: str, params: Sequence[Any] = ()) -> list[SessionRecord]:
        return await self._read(query, params, self._codec.session)

    async def live_sessions(self) -> list[SessionRecord]:
        """Every session that may still be recording, oldest first."""
        return await self._sessions(self._queries.live_sessions)

    async def unmanageable_on(self, app_id: str, channel: str, uid: int) -> list[SessionRecord]:
        """Unmanageable sessions recording this (app, channel, uid): one indexed lookup."""
        return await self._sessions(
            self._queries.unmanageable_on, (Phase.UNMANAGEABLE.value, app_id, channel, uid)
        )

    async def sidless_on(self, channel: str, uid: int) -> list[SessionRecord]:
        """Sessions recording (or starting on) this channel and uid whose sid the store
        does not know: a start under way, or one whose answer was lost (unmanageable).
        Any App ID: Agora's notifications do not name theirs."""
        return await self._sessions(
            self._queries.sidless_on,
            (channel, uid, Phase.STARTING.value, Phase.UNMANAGEABLE.value),
        )

    async def history(self, limit: int = 50, manifest: str | None = None) -> list[SessionRecord]:
        """Ended and failed sessions, newest first (a negative limit: all of them)."""
        bound = limit if limit >= 0 else self._queries.unlimited
        if manifest is None:
            return await self._sessions(self._queries.history, (bound,))
        return await self._sessions(self._queries.history_of, (manifest, bound))

    async def latest_ended(
        self, app_ids: Collection[str] | None = None
    ) -> dict[str, SessionRecord]:
        """The newest ended or failed session of each manifest (of sessions of
        `app_ids`; None: all). A sole writer reads it once, then keeps it from its own
        writes; a PostgreSQL writer (a replica) reads the ids and row versions, then only
        the sessions whose version changed (latest.py); a reader reads what version 6's
        triggers keep."""
        latest = self._latest
        if latest is not None:
            if await self._written_by_others():
                latest.forget()  # an operator's hand: what is kept may be gone
            if not latest.loaded:
                latest.read(await self._read_latest_ended(None))
            return latest.snapshot(app_ids)
        kept = self._versions
        if kept is not None:
            async with kept.lock:
                return await self._read_latest_by_version(kept, app_ids)
        return await self._read_latest_ended(app_ids)

    async def _written_by_others(self) -> bool:
        """Whether another connection wrote the database since this was last asked
        (a sole writer's: an operator's hand, say, pruning history). Only a store that
        keeps `latest_ended()` from its own writes asks."""
        return False

    async def _read_latest_ended(self, app_ids: Collection[str] | None) -> dict[str, SessionRecord]:
        q = self._queries
        rows = await self._sessions(*self._of_apps(app_ids, q.latest_ended, q.latest_ended_of))
        return {record.manifest: record for record in rows}

    async def _read_latest_by_version(
        self, kept: KeptByVersion, app_ids: Collection[str] | None
    ) -> dict[str, SessionRecord]:
        """The ids and row versions, then only the sessions not kept at theirs."""
        q = self._queries
        assert q.latest_versions is not None and q.latest_versions_of is not None
        assert q.versioned_sessions is not None
        rows = await self._fetch(*self._of_apps(app_ids, q.latest_versions, q.latest_versions_of))
        versions = {int(row["id"]): str(row["row_version"]) for row in rows}
        stale = kept.stale(versions)
        read = (
            await self._read(
                q.versioned_sessions,
                (stale,),
                lambda row: (str(row["row_version"]), self._codec.session(row)),
            )
            if stale
            else []
        )
        return kept.answer(versions, read, app_ids)

    def _of_apps(
        self, app_ids: Collection[str] | None, every: str, of_apps: str, *more: Any
    ) -> tuple[str, tuple[Any, ...]]:
        """The statement and parameters of a read of every session's rows (`app_ids`
        None) or of those of `app_ids` (`of_apps`: an array first); `more` after."""
        if app_ids is None:
            return every, more
        return of_apps, (self._codec.write_array(sorted(app_ids)), *more)

    async def unconfirmed_sessions(self) -> list[SessionRecord]:
        """Ended sessions whose end is not confirmed yet (`confirm_until` set), oldest
        first: a 404 suggested it, nothing confirmed it, so they are still queried."""
        return await self._sessions(self._queries.unconfirmed)

    async def session_by_sid(self, sid: str) -> SessionRecord | None:
        """The newest session with this sid (None: the store knows none)."""
        rows = await self._sessions(self._queries.session_by_sid, (sid,))
        return rows[0] if rows else None

    # -- Agora's notifications ----------------------------------------------------------

    async def record_notice(self, notice: Notice) -> bool:
        """Keep a notification as received (settled already when `handled_at` is set:
        nothing to act on); False when its `notice_id` was kept before (a resend,
        acted on once). A new one that waits to be acted on wakes the replicas that
        listen, in the same statement (PostgreSQL's NOTIFY, with its App ID); SQLite's
        one process is told directly."""
        self._require_writer()
        params = [self._codec.to_db(c, getattr(notice, c)) for c in NOTICE_COLUMNS]
        return bool(await self._fetch(self._queries.insert_notice, params))

    async def pending_notices(
        self, app_ids: Collection[str] | None = None, limit: int = 500
    ) -> list[Notice]:
        """Notifications not yet acted on (of sessions of `app_ids`; None: all), in the
        order they were received."""
        q = self._queries
        query, params = self._of_apps(app_ids, q.pending_notices, q.pending_notices_of, limit)
        return await self._read(query, params, self._codec.notice)

    async def settle_notice(self, notice_id: str, outcome: str) -> None:
        """A notification was acted on (or is known to need nothing): when, and what
        came of it."""
        self._require_writer()
        handled = self._codec.to_db("handled_at", self._now())
        await self._execute(self._queries.settle_notice, (handled, outcome, notice_id))

    async def prune_notices(self, before: datetime) -> int:
        """Forget settled notifications received before `before` (NCS resends within
        minutes: a day of them is plenty to recognise a resend)."""
        self._require_writer()
        return await self._execute(
            self._queries.prune_notices, (self._codec.to_db("received_at", before),)
        )

    # -- manifest states ------------------------------------------------------------

    async def manifest_states(self) -> dict[str, ManifestState]:
        states = await self._read(self._queries.manifest_states, (), self._codec.manifest_state)
        return {state.name: state for state in states}

    async def set_manifest_state(self, state: ManifestState) -> None:
        self._require_writer()
        params = [self._codec.to_db(n, getattr(state, n)) for n in STATE_COLUMNS]
        await self._execute(self._queries.set_manifest_state, params)

    async def clear_failures(self, names: Sequence[str] | None = None) -> int:
        """Forget permanent failures (all, or of `names`) so they are tried again. The
        count: rows with a failure (all), or rows of `names` that exist (by names)."""
        self._require_writer()
        if names is None:
            return await self._execute(self._queries.clear_all_failures, ())
        return await self._execute(
            self._queries.clear_failures_of, (self._codec.write_array(names),)
        )

    # -- last known good manifests ------------------------------------------------------

    async def known_good(
        self, names: Collection[str] | None = None, *, documents: bool = True
    ) -> dict[str, KnownGood]:
        """Last known good versions (all, or of `names`). `documents=False` gives an
        index without the documents (empty dicts), and does not fetch them: what the
        daemon keeps in memory for thousands of manifests."""
        query = self._queries.known_good(documents=documents, by_name=names is not None)
        params = () if names is None else (self._codec.write_array(sorted(set(names))),)
        found = await self._read(
            query, params, functools.partial(self._codec.known_good, documents=documents)
        )
        return {entry.name: entry for entry in found}

    async def remember_known_good(
        self, entries: Sequence[KnownGood], forget: Sequence[str] = ()
    ) -> None:
        """Store these versions (rows whose spec and file are unchanged are left alone,
        their `stored_at` too) and forget the names in `forget`, in one transaction."""
        self._require_writer()
        to_db = self._codec.to_db
        now = to_db("stored_at", self._now())
        rows = [
            (e.name, e.source_file, e.spec_hash, to_db("document", e.document), now)
            for e in entries
        ]
        gone = [(self._codec.write_array(forget),)] if forget else []
        await self._write_batches(
            [(self._queries.remember_known_good, rows), (self._queries.forget_known_good, gone)]
        )
