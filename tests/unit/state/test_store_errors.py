"""`StoreBusyError` and `StoreLockedError` as records.

Covers: the holder's facts are keyword-only and default to None; the message names
whatever is known of the holder; the repr is the message (as for every store error);
errors compare by identity and are hashable; `StoreLockedError` knows no holder and
says what locked the database and for how long it waited.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from orchestrator.state.errors import StoreBusyError, StoreLockedError

DB = Path("/srv/orchestrator/state.db")


def test_the_message_names_what_is_known_of_the_holder() -> None:
    since = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    busy = StoreBusyError(DB, pid=42, host="rec-1", since=since, command="orchestrator run")
    assert (busy.path, busy.pid, busy.host, busy.since) == (DB, 42, "rec-1", since)
    assert str(busy) == (
        f'state store {DB} is in use by "orchestrator run" (pid 42 on rec-1 since '
        "2025-01-02T03:04:05+00:00); only one process may write to a store at a time"
    )
    assert repr(busy) == f"StoreBusyError({str(busy)!r})"
    unknown = StoreBusyError(DB)
    assert (unknown.pid, unknown.host, unknown.since, unknown.command) == (None,) * 4
    assert "in use by another process;" in str(unknown)


def test_the_holder_is_keyword_only_and_errors_compare_by_identity() -> None:
    with pytest.raises(TypeError):
        StoreBusyError(DB, 42)  # type: ignore[call-arg]
    one, two = StoreBusyError(DB), StoreBusyError(DB)
    assert one != two and len({one, two}) == 2


def test_a_locked_database_names_no_holder() -> None:
    locked = StoreLockedError(DB, "database is locked", 5.0)
    assert isinstance(locked, StoreBusyError) and locked.pid is None and locked.command is None
    assert (locked.detail, locked.busy_timeout) == ("database is locked", 5.0)
    assert str(locked).startswith(f"state store {DB} is locked by another process")
    assert "after waiting 5 s; find it with `fuser" in str(locked)
