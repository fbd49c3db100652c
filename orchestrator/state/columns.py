"""What both stores (store.py, postgres.py) share about their rows: the column names,
which of them hold datetimes and JSON, the rule that no column name looks like a
secret, how a session write is checked and completed before it becomes SQL, and how
values are written to columns and read back into records (`Codec`, which each store
completes with its own types for datetimes, JSON and arrays).

No SQL here (queries.py holds it), and never a secret value in a row."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import fields
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

from orchestrator.secrets import is_secret_key
from orchestrator.state import model
from orchestrator.state.errors import StoreCorruptError

SESSION_COLUMNS = tuple(f.name for f in fields(model.SessionRecord))
WRITABLE_SESSION_COLUMNS = frozenset(SESSION_COLUMNS) - {"id", "created_at"}
STATE_COLUMNS = tuple(f.name for f in fields(model.ManifestState))
NOTICE_COLUMNS = tuple(f.name for f in fields(model.Notice))
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
        "join_expires_at",
        "resource_expires_at",
        "failover_at",
        "confirm_until",
        "failed_at",
        "stored_at",
        "received_at",
        "handled_at",
    }
)
JSON_COLUMNS = frozenset({"file_list", "document", "body"})
FINAL_PHASE_VALUES = tuple(sorted(p.value for p in model.FINAL_PHASES))


def check_no_secret_columns(names: Iterable[str]) -> None:
    """No column name looks like it could hold a secret (checked at import)."""
    for name in sorted(set(names)):
        # Stricter than the keys that carry secrets: no column is even called a key.
        if is_secret_key(name) or "key" in name.replace("_", ""):
            raise AssertionError(f"column {name!r} looks like it could hold a secret")


def _checked(row: dict[str, Any], extra: frozenset[str] = frozenset()) -> dict[str, Any]:
    unknown = set(row) - WRITABLE_SESSION_COLUMNS - extra
    if unknown:
        raise TypeError(f"unknown session fields: {sorted(unknown)}")
    return row


def new_session_row(values: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    """A new session's columns: `phase` defaults to ACQUIRING; created and updated now."""
    row: dict[str, Any] = {"phase": model.Phase.ACQUIRING, "updated_at": now, **values}
    row["created_at"] = now
    return _checked(row, frozenset({"created_at"}))


def update_row(values: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    """The columns an update writes: the given ones and `updated_at`."""
    return _checked({**values, "updated_at": now})


def intent_row(values: Mapping[str, Any], intent: model.Intent, now: datetime) -> dict[str, Any]:
    """Before a mutating API call: the intent, when it was recorded, and the given values."""
    for name in ("intent", "intent_at"):
        if name in values:
            raise TypeError(f"record_intent() got multiple values for argument {name!r}")
    return {**values, "intent": intent, "intent_at": now}


def outcome_row(values: Mapping[str, Any]) -> dict[str, Any]:
    """After a mutating API call: the given values; the intent and error cleared unless
    given."""
    return {"intent": None, "intent_at": None, "error": None, **values}


class UndecodableError(Exception):
    """A stored value this code cannot read back (the store raises `corrupt()` for it)."""

    def corrupt(self, path: Path | str) -> StoreCorruptError:
        """The StoreCorruptError of the store at `path` that holds the value."""
        return StoreCorruptError(path, f"holds a value that cannot be read ({self})")


class Row(Protocol):
    """A fetched row, by column name (a dict: SQLite's store makes them, psycopg's
    `dict_row`)."""

    def __getitem__(self, column: str, /) -> Any: ...


# The columns that hold an enum's value, and the enum.
_ENUMS: Mapping[str, type[StrEnum]] = {
    "phase": model.Phase,
    "intent": model.Intent,
    "end_kind": model.EndKind,
}
_ENUM_TYPES = tuple(_ENUMS.values())
# A session's columns that `from_db` converts; it reads the others as they are.
_SESSION_DECODED = tuple(
    c for c in SESSION_COLUMNS if c in DATETIME_COLUMNS or c in JSON_COLUMNS or c in _ENUMS
)
if hasattr(model.SessionRecord, "__post_init__") or hasattr(model.SessionRecord, "__slots__"):
    raise AssertionError("Codec.session fills a SessionRecord's __dict__: it needs neither")


class Codec(ABC):
    """How a store writes values to its columns and reads them back into records.

    Datetimes must be timezone-aware and come back in UTC, JSON columns hold any
    JSON value, enums are stored as their values; a store says only how its column
    types hold datetimes (`write_stamp`, `read_stamp`) and JSON (`write_json`,
    `read_json`), and how it binds a list of texts as one parameter (`write_array`,
    for the array conditions of queries.py). A value that cannot be read back is
    UndecodableError."""

    @abstractmethod
    def write_array(self, values: Iterable[str]) -> Any: ...

    @abstractmethod
    def write_stamp(self, value: datetime) -> Any: ...

    @abstractmethod
    def read_stamp(self, value: Any) -> datetime: ...

    @abstractmethod
    def write_json(self, value: Any) -> Any: ...

    @abstractmethod
    def read_json(self, value: Any) -> Any: ...

    def to_db(self, column: str, value: Any) -> Any:
        if value is None:
            return None
        if column in DATETIME_COLUMNS:
            if not isinstance(value, datetime) or value.tzinfo is None:
                raise TypeError(f"{column} must be a timezone-aware datetime")
            return self.write_stamp(value)
        if column in JSON_COLUMNS:
            return self.write_json(value)
        if isinstance(value, _ENUM_TYPES):
            return value.value
        return value

    def from_db(self, column: str, value: Any) -> Any:
        if value is None:
            return None
        try:
            if column in DATETIME_COLUMNS:
                return self.read_stamp(value)
            if column in JSON_COLUMNS:
                return self.read_json(value)
            enum = _ENUMS.get(column)
            if enum is not None:
                return enum(value)
        except (ValueError, TypeError) as exc:
            raise UndecodableError(f"column {column} holds {value!r:.60}: {exc}") from None
        return value

    def session(self, row: Row) -> model.SessionRecord:
        values = {c: row[c] for c in SESSION_COLUMNS}
        for column in _SESSION_DECODED:
            value = values[column]
            if value is not None:
                values[column] = self.from_db(column, value)
        # Every field is given: filled in place of the frozen dataclass's __init__,
        # which sets 37 fields one `object.__setattr__` at a time (9 us a session
        # against 1 us; a pass may read 10,000). SessionRecord has no __post_init__.
        record = object.__new__(model.SessionRecord)
        record.__dict__.update(values)
        return record

    def notice(self, row: Row) -> model.Notice:
        return model.Notice(**{n: self.from_db(n, row[n]) for n in NOTICE_COLUMNS})

    def manifest_state(self, row: Row) -> model.ManifestState:
        return model.ManifestState(**{n: self.from_db(n, row[n]) for n in STATE_COLUMNS})

    def known_good(self, row: Row, *, documents: bool) -> model.KnownGood:
        """A last known good version; without `documents`, from a row that has no
        document (it is then an empty dict)."""
        return model.KnownGood(
            name=row["name"],
            source_file=row["source_file"],
            spec_hash=row["spec_hash"],
            document=self.from_db("document", row["document"]) if documents else {},
            stored_at=self.from_db("stored_at", row["stored_at"]),
        )


def session_summary(record: model.SessionRecord) -> Mapping[str, Any]:
    """A JSON-ready view of a session (for `status --format json`); holds no secret."""
    out: dict[str, Any] = {}
    for name in SESSION_COLUMNS:
        value = getattr(record, name)
        if isinstance(value, datetime):
            value = value.isoformat()
        elif isinstance(value, model.Phase | model.Intent | model.EndKind):
            value = value.value
        out[name] = value
    return out
