"""The actual state we own: sessions and their history.

protocol.py says what a store offers; base.py implements it once over the SQL of
queries.py; store.py (SQLite) and postgres.py (PostgreSQL) say how each database
opens, runs a statement and recovers; ownership.py splits App IDs among
PostgreSQL replicas; errors.py is everything a store raises."""

from orchestrator.state.columns import session_summary
from orchestrator.state.connect import connect_store, is_postgres, opened_store, ownership_for
from orchestrator.state.errors import (
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
from orchestrator.state.model import (
    FINAL_PHASES,
    AppOwner,
    EndKind,
    Intent,
    KnownGood,
    ManifestState,
    Notice,
    Phase,
    SessionRecord,
)
from orchestrator.state.protocol import Ownership, SessionFields, Store
from orchestrator.state.store import DEFAULT_BUSY_TIMEOUT, SqliteStore, open_store

__all__ = [
    "DEFAULT_BUSY_TIMEOUT",
    "FINAL_PHASES",
    "AppOwner",
    "EndKind",
    "Intent",
    "KnownGood",
    "ManifestState",
    "Notice",
    "Ownership",
    "Phase",
    "SessionFields",
    "SessionNotFoundError",
    "SessionRecord",
    "SqliteStore",
    "Store",
    "StoreAccessError",
    "StoreBusyError",
    "StoreConflictError",
    "StoreCorruptError",
    "StoreError",
    "StoreFencedError",
    "StoreLockedError",
    "StoreMissingError",
    "StoreUnavailableError",
    "connect_store",
    "is_postgres",
    "open_store",
    "opened_store",
    "ownership_for",
    "session_summary",
]
