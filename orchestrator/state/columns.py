"""What both stores (store.py, postgres.py) share about their rows: the column names,
which of them hold datetimes, the rule that no column name looks like a secret, and
how a session write is checked and completed before each store turns it into SQL."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import fields
from datetime import datetime
from typing import Any

from orchestrator.state.model import FINAL_PHASES, Intent, ManifestState, Phase, SessionRecord

SESSION_COLUMNS = tuple(f.name for f in fields(SessionRecord))
WRITABLE_SESSION_COLUMNS = frozenset(SESSION_COLUMNS) - {"id", "created_at"}
STATE_COLUMNS = tuple(f.name for f in fields(ManifestState))
DATETIME_COLUMNS = frozenset(
    {
        "created_at",
        "updated_at",
        "window_start",
        "window_end",
        "started_at",
        "ended_at",
        "last_query_at",
        "intent_at",
        "failed_at",
        "stored_at",
    }
)
FINAL_PHASE_VALUES = tuple(p.value for p in FINAL_PHASES)
_FORBIDDEN_COLUMN_PARTS = ("secret", "token", "password", "accesskey", "key")


def check_no_secret_columns(names: Iterable[str]) -> None:
    """No column name looks like it could hold a secret (checked at import)."""
    for name in sorted(set(names)):
        if any(part in name.replace("_", "") for part in _FORBIDDEN_COLUMN_PARTS):
            raise AssertionError(f"column {name!r} looks like it could hold a secret")


def _checked(row: dict[str, Any], extra: frozenset[str] = frozenset()) -> dict[str, Any]:
    unknown = set(row) - WRITABLE_SESSION_COLUMNS - extra
    if unknown:
        raise TypeError(f"unknown session fields: {sorted(unknown)}")
    return row


def new_session_row(values: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    """A new session's columns: `phase` defaults to ACQUIRING; created and updated now."""
    row: dict[str, Any] = {"phase": Phase.ACQUIRING, "updated_at": now, **values}
    row["created_at"] = now
    return _checked(row, frozenset({"created_at"}))


def update_row(values: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    """The columns an update writes: the given ones and `updated_at`."""
    return _checked({**values, "updated_at": now})


def intent_row(values: Mapping[str, Any], intent: Intent, now: datetime) -> dict[str, Any]:
    """Before a mutating API call: the intent, when it was recorded, and the given values."""
    for name in ("intent", "intent_at"):
        if name in values:
            raise TypeError(f"record_intent() got multiple values for argument {name!r}")
    return {**values, "intent": intent, "intent_at": now}


def outcome_row(values: Mapping[str, Any]) -> dict[str, Any]:
    """After a mutating API call: the given values; the intent and error cleared unless
    given."""
    return {"intent": None, "intent_at": None, "error": None, **values}
