"""What the commands that reconcile (`plan`, `apply`, `status`, `init`) share: the
config and its logging, the desired recordings, the store (as its single writer
through the composition root, or as a reader), the App IDs a replica may act on, and
how a failure ends a command: one line on stderr, exit 1, or 3 when another process
holds the store.

It must never decide what a pass does (reconcile does) nor print anything but a
failure's message. Heavy modules are imported inside the functions, so that
`--help` stays fast.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from orchestrator.cli import echo_error

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from orchestrator.config import Config
    from orchestrator.manifest.diagnostics import Diagnostic
    from orchestrator.reconcile.reconciler import Desired
    from orchestrator.runtime import Runtime
    from orchestrator.state import KnownGood, Store

STORE_BUSY = 3
"""Exit status when another process holds the store (README and docs/cli.md)."""


class Failure(Exception):
    """A problem that ends the command with exit 1 and a one-line message."""


class Busy(Exception):
    """Another writer holds the store: exit 3 with its message."""


class Unreachable(Failure):
    """`plan --offline` found no store it can read (missing, or its server down)."""


def fail(exc: Failure | Busy) -> None:
    """End the command: the message on stderr, exit 3 when busy, else 1."""
    echo_error(exc)
    sys.exit(STORE_BUSY if isinstance(exc, Busy) else 1)


@dataclass
class Context:
    config: Config
    manifests: Path
    state_url: str


def load_context(config_path: Path | None, manifests: Path | None, state: str | None) -> Context:
    """The config (and its logging set up); the options name the manifests and the store
    where they override it."""
    from orchestrator.config import ConfigError, load_config
    from orchestrator.logging import configure_logging

    try:
        config = load_config(config_path)
    except ConfigError as exc:
        raise Failure(str(exc)) from None
    fmt = config.logging.format
    configure_logging(config.logging.level, json=None if fmt == "auto" else fmt == "json")
    return Context(config, manifests or config.manifests.dir, state or config.state.url)


def load_desired(
    ctx: Context, now: datetime, known_good: Mapping[str, KnownGood]
) -> tuple[Desired, list[Diagnostic]]:
    """The recordings the manifests want, and the problems met on the way."""
    from orchestrator.manifest.loader import load_manifests
    from orchestrator.reconcile.reconciler import desired_recordings

    app_ids = {name: profile.app_id for name, profile in ctx.config.apps.items()}
    loaded = load_manifests([ctx.manifests], now=now, app_ids=app_ids)
    problems = list(loaded.diagnostics)
    wanted = desired_recordings(
        loaded.manifests, app_ids, loaded.failed_files, known_good, unreadable=loaded.unreadable
    )
    problems.extend(map(general, wanted.problems))
    return wanted, problems


async def writer_desired(
    ctx: Context, runtime: Runtime, now: datetime
) -> tuple[Desired, list[Diagnostic]]:
    """`load_desired` for the store's writer: with the store's last known good
    manifests, and the runtime's own problems (an app profile it could not set up)."""
    desired, problems = load_desired(ctx, now, await runtime.store.known_good())
    problems.extend(map(general, runtime.problems))
    return desired, problems


def general(message: str) -> Diagnostic:
    """A problem about no place in a manifest file (the store, a profile, a query)."""
    from orchestrator.manifest.diagnostics import Diagnostic

    return Diagnostic.general(message)


def note(message: str) -> Diagnostic:
    from orchestrator.manifest.diagnostics import Diagnostic

    return Diagnostic.general(message, "note")


def errors(problems: list[Diagnostic]) -> list[Diagnostic]:
    """The problems that fail a command (not warnings, not notes)."""
    return [p for p in problems if p.severity == "error"]


@contextmanager
def store_failures() -> Iterator[None]:
    """A store that another process holds ends the command with exit 3; any other
    store error with exit 1."""
    from orchestrator.state import StoreBusyError, StoreError

    try:
        yield
    except StoreBusyError as exc:
        raise Busy(str(exc)) from None
    except StoreError as exc:
        raise Failure(str(exc)) from None


@asynccontextmanager
async def writer(ctx: Context, holder: str) -> AsyncIterator[Runtime]:
    """The composition root's runtime, as the store's single writer for this command."""
    from orchestrator.runtime import open_runtime

    with store_failures():
        async with open_runtime(ctx.config, state_url=ctx.state_url, holder=holder) as runtime:
            yield runtime


@asynccontextmanager
async def open_reader(url: str, *, offline: bool = False) -> AsyncIterator[Store]:
    """The store as a reader: no lock, so it works beside a running daemon."""
    from orchestrator.state import (
        StoreError,
        StoreMissingError,
        StoreUnavailableError,
        connect_store,
    )

    try:
        store = await connect_store(url, writer=False)
    except (StoreMissingError, StoreUnavailableError) as exc:
        raise (Unreachable if offline else Failure)(str(exc)) from None
    except StoreError as exc:
        raise Failure(str(exc)) from None
    try:
        yield store
    finally:
        await store.aclose()


async def claim(runtime: Runtime) -> tuple[frozenset[str] | None, list[Diagnostic]]:
    """With PostgreSQL replicas: take each App ID's lock as a replica would; act only
    on those we got (None: SQLite, whose writer lock covers everything), and say
    which App IDs another replica owns. The locks go when the command ends."""
    from orchestrator.state import StoreError

    own = runtime.ownership
    if own is None:
        return None, []
    try:
        for app_id in sorted(runtime.app_ids):
            await own.claim(app_id)
        _, holders = await own.survey()
    except StoreError as exc:
        raise Failure(str(exc)) from None
    skipped = sorted(runtime.app_ids - own.owned)
    notes = [
        note(f"skipped App ID {app_id}: owned by replica {holders.get(app_id) or '?'}")
        for app_id in skipped
    ]
    return own.owned, notes


def when(at: datetime | None) -> str:
    """An instant in a line of text ("-" when unknown)."""
    return at.isoformat() if at else "-"
