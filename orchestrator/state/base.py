"""What both stores (store.py, postgres.py) share above their SQL: the lifecycle of the
`Store` protocol, the session writes that differ only in the one statement each store
runs for them (`_write_session`), and a reader's check of the schema version.

No SQL here: each store keeps its own.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Collection
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self, Unpack

from orchestrator.state.columns import intent_row, outcome_row, update_row
from orchestrator.state.errors import StoreError
from orchestrator.state.model import Intent, Phase, SessionRecord
from orchestrator.state.protocol import SessionFields


def too_new(location: Path | str, version: int, current: int) -> StoreError:
    """A store whose schema `version` is newer than `current`, the one this code knows."""
    return StoreError(
        f"state store {location} has schema version {version}, newer than this "
        f"orchestrator understands ({current}); upgrade the orchestrator"
    )


def check_readable(location: Path | str, version: int, current: int) -> int:
    """A reader's check: the schema `version` found must be exactly `current`, the one
    this code knows (a reader never migrates). Returns it."""
    if version > current:
        raise too_new(location, version, current)
    if version < current:
        raise StoreError(
            f"state store {location} has schema version {version}, older than this "
            f"orchestrator's ({current}); a writer (`orchestrator run` or "
            "`orchestrator apply`) must upgrade it first"
        )
    return version


class StoreBase(ABC):
    """The part of the `Store` protocol that both stores keep alike.

    A store supplies `location`, `aclose()`, `_schema_version` (set at open) and
    `_write_session`, the one statement behind every session update; the public
    writes here check the caller may write and complete the row (columns.py)."""

    _schema_version: int

    def __init__(self, *, writer: bool, now: Callable[[], datetime] | None) -> None:
        self.writer = writer
        self._now = now or (lambda: datetime.now(UTC))
        self._closed = False

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

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def _require_open(self) -> None:
        if self._closed:
            raise StoreError(f"state store {self.location} is closed")

    def _require_writer(self) -> None:
        if not self.writer:
            raise StoreError(f"state store {self.location} is open read-only")

    # -- session writes --------------------------------------------------------------

    @abstractmethod
    async def _write_session(
        self, session_id: int, phases: Collection[Phase] | None, row: dict[str, Any]
    ) -> SessionRecord | None:
        """Write `row` (complete: `updated_at` included) to the session in one committed
        statement and return the session as stored; with `phases`, only while it is in
        one of them (None when it was not). KeyError when there is no such session."""

    async def _update_session(
        self, session_id: int, phases: Collection[Phase] | None, values: dict[str, Any]
    ) -> SessionRecord | None:
        self._require_writer()
        return await self._write_session(session_id, phases, update_row(values, self._now()))

    async def _update_always(self, session_id: int, values: dict[str, Any]) -> SessionRecord:
        updated = await self._update_session(session_id, None, values)
        if updated is None:  # pragma: no cover (only a phase condition gives None)
            raise KeyError(session_id)
        return updated

    async def update_session(
        self, session_id: int, **values: Unpack[SessionFields]
    ) -> SessionRecord:
        """Write the given fields (and `updated_at`) in one committed statement."""
        return await self._update_always(session_id, dict(values))

    async def update_session_if(
        self, session_id: int, phases: Collection[Phase], **values: Unpack[SessionFields]
    ) -> SessionRecord | None:
        """Write the given fields only while the session is in one of `phases` (checked
        in the same statement); None when it was not (another action moved it on)."""
        return await self._update_session(session_id, phases, dict(values))

    async def record_intent(
        self, session_id: int, intent: Intent, /, **values: Unpack[SessionFields]
    ) -> SessionRecord:
        """Before a mutating API call: what is about to be done (with any new phase)."""
        return await self._update_always(session_id, intent_row(values, intent, self._now()))

    async def record_outcome(
        self, session_id: int, **values: Unpack[SessionFields]
    ) -> SessionRecord:
        """After a mutating API call: its outcome; clears the intent (and the error)
        unless given."""
        return await self._update_always(session_id, outcome_row(values))
