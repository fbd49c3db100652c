"""What the state store raises (kept apart so that store.py and lock.py share it)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path


class StoreError(Exception):
    """The store cannot be opened or used (bad URL, unreadable file, newer schema)."""


class StoreBusyError(StoreError):
    """Another process holds the store's writer lock.

    The holder is whatever that process wrote into the lock file; any part of it
    may be None when the file is empty or half-written (it is then "another
    process").
    """

    def __init__(
        self,
        path: Path,
        *,
        pid: int | None = None,
        host: str | None = None,
        since: datetime | None = None,
        command: str | None = None,
    ) -> None:
        self.path = path
        self.pid = pid
        self.host = host
        self.since = since
        self.command = command
        who = f'"{command}"' if command else "another process"
        details = []
        if pid is not None:
            details.append(f"pid {pid}")
        if host:
            details.append(f"on {host}")
        if since is not None:
            details.append(f"since {since.isoformat()}")
        if details:
            who += f" ({' '.join(details)})"
        super().__init__(
            f"state store {path} is in use by {who}; "
            "only one process may write to a store at a time"
        )
