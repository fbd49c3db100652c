"""The store's errors as records (fields declared once, the message made of them).

Covers: the holder's facts are keyword-only and default to None; the message names
whatever is known of the holder; the repr is the message (as for every store error);
errors compare by identity and are hashable; `StoreLockedError` knows no holder and
says what locked the database and for how long it waited; every other record error
keeps its fields as attributes, takes them in the order its callers pass them, and
words its message from them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from orchestrator.state.errors import (
    RECOVER,
    SessionNotFoundError,
    StoreAccessError,
    StoreBusyError,
    StoreConflictError,
    StoreCorruptError,
    StoreError,
    StoreFencedError,
    StoreLockedError,
    StoreMissingError,
    StoreUnavailableError,
)

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


PG = "postgresql://recorder@db.example/orchestrator"


@pytest.mark.parametrize(
    ("error", "attributes", "message"),
    [
        (
            StoreCorruptError(DB, "is empty"),
            {"path": DB, "problem": "is empty"},
            f"state store {DB} is empty; {RECOVER}",
        ),
        (
            StoreAccessError(DB, "cannot write the directory"),
            {"path": DB, "message": "cannot write the directory"},
            "cannot write the directory",
        ),
        (
            StoreUnavailableError(PG, "connection refused"),
            {"path": PG, "detail": "connection refused"},
            f"state store {PG} is unavailable: connection refused; check that the "
            "PostgreSQL server is running and reachable from this host and that the URL's "
            "host, port, user, password and database are right, then retry",
        ),
        (
            StoreConflictError(DB, "app-1", "room 1", 7),
            {"path": DB, "app_id": "app-1", "channel": "room 1", "uid": 7},
            f"state store {DB} already has a live session recording app ID app-1 channel "
            "'room 1' uid 7; another orchestrator process may be managing it: reload the "
            "live sessions (the next reconcile adopts it) instead of starting a second "
            "recording",
        ),
        (
            StoreFencedError(PG, "app-1"),
            {"path": PG, "app_id": "app-1"},
            f"state store {PG}: this replica no longer owns app ID app-1 (another replica "
            "claimed it); nothing about its sessions was written",
        ),
        (
            SessionNotFoundError(DB, 12),
            {"path": DB, "session_id": 12},
            f"state store {DB} has no session 12",
        ),
    ],
)
def test_a_record_error_keeps_its_fields_and_words_its_message(
    error: StoreError, attributes: dict[str, object], message: str
) -> None:
    assert {name: getattr(error, name) for name in attributes} == attributes
    assert str(error) == message
    assert error.args == (message,)
    assert repr(error) == f"{type(error).__name__}({message!r})"
    again = type(error)(*attributes.values())
    assert error != again and len({error, again}) == 2


def test_a_missing_store_points_at_its_backup_when_there_is_one() -> None:
    plain = StoreMissingError(DB)
    assert (plain.path, plain.backup) == (DB, None)
    assert str(plain).startswith(f"no state store at {DB}: create it with `orchestrator init`")
    backup = Path("/srv/orchestrator/state.db.restore")
    kept = StoreMissingError(DB, backup=backup)
    assert kept.backup == backup
    assert f"move {backup} to {DB}, check it with `orchestrator status`" in str(kept)
    with pytest.raises(TypeError):
        StoreMissingError(DB, backup)  # type: ignore[call-arg]
