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
    Store,
    StoreBusyError,
    StoreError,
    open_store,
    session_summary,
)

__all__ = [
    "FINAL_PHASES",
    "Intent",
    "KnownGood",
    "ManifestState",
    "Phase",
    "SessionRecord",
    "Store",
    "StoreBusyError",
    "StoreError",
    "open_store",
    "session_summary",
]
