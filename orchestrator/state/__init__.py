"""The actual state we own: sessions and their history (see store.py)."""

from orchestrator.state.model import (
    FINAL_PHASES,
    Intent,
    KnownGood,
    ManifestState,
    Phase,
    SessionRecord,
)
from orchestrator.state.store import (
    DEFAULT_BUSY_TIMEOUT,
    Store,
    StoreAccessError,
    StoreBusyError,
    StoreCorruptError,
    StoreError,
    StoreLockedError,
    StoreMissingError,
    open_store,
    session_summary,
)

__all__ = [
    "DEFAULT_BUSY_TIMEOUT",
    "FINAL_PHASES",
    "Intent",
    "KnownGood",
    "ManifestState",
    "Phase",
    "SessionRecord",
    "Store",
    "StoreAccessError",
    "StoreBusyError",
    "StoreCorruptError",
    "StoreError",
    "StoreLockedError",
    "StoreMissingError",
    "open_store",
    "session_summary",
]
