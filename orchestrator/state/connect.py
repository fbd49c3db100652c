"""Open the state store a URL names: SQLite (`sqlite:///PATH`) or PostgreSQL
(`postgresql://...`). Everything above the state package opens stores here and
sees only the `Store` protocol."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from orchestrator.state.protocol import Ownership, Store
from orchestrator.state.store import DEFAULT_BUSY_TIMEOUT, open_store

_POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def is_postgres(url: str) -> bool:
    return url.startswith(_POSTGRES_SCHEMES)


async def connect_store(
    url: str,
    *,
    writer: bool = True,
    holder: str = "orchestrator",
    create: bool = False,
    busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
) -> Store:
    """The store at `url`, opened (see `open_store` and `open_postgres_store`).

    SQLite: a writer takes the store's writer lock, naming itself `holder`.
    PostgreSQL: several writers share the database (replicas); who may act on
    which App ID is settled by ownership, not by a store-wide lock."""
    if is_postgres(url):
        from orchestrator.state.postgres import open_postgres_store

        return await open_postgres_store(url, writer=writer, create=create)
    return open_store(url, writer=writer, holder=holder, create=create, busy_timeout=busy_timeout)


@asynccontextmanager
async def opened_store(
    url: str, *, writer: bool = True, holder: str = "orchestrator", create: bool = False
) -> AsyncIterator[Store]:
    """`connect_store` as a context manager: the store is closed on exit."""
    store = await connect_store(url, writer=writer, holder=holder, create=create)
    try:
        yield store
    finally:
        await store.aclose()


def ownership_for(store: Store, name: str) -> Ownership | None:
    """Per-App-ID ownership for a store several replicas share (PostgreSQL), as
    replica `name`; None for SQLite, whose single writer owns everything."""
    if "orchestrator.state.postgres" not in sys.modules:
        return None  # never imported, so no store of it exists (psycopg: 70 ms of a start)
    from orchestrator.state.postgres import PostgresOwnership, PostgresStore

    if isinstance(store, PostgresStore):
        return PostgresOwnership(store, name)
    return None
