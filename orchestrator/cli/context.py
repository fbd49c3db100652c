"""What the commands that reconcile (`plan`, `apply`, `status`, `init`) share: the
config and its logging, the desired recordings, the store (as its single writer
through the composition root, or as a reader), the App IDs a replica may act on, and
how a failure ends a command: one line on stderr, exit 1, or 3 when another process
holds the store.

It must never decide what a pass does (reconcile does) nor print anything but a
failure's message. Heavy modules are imported inside the functions, so that
`--help` stays fast.

A command loads its manifests once and exits (`load_once`, for `validate`, `show`,
`plan`, `apply` and `status`), so Python's cyclic garbage collector is paused for
the load (`OneLoad`): what a load makes lives until the command ends, and a
collector traversing it again and again as it grows costs a quarter of a load of
10,000 manifests. The daemon, which lives on, has its own policy
(`orchestrator.daemon.gcpolicy`).
"""

from __future__ import annotations

import gc
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from orchestrator.cli import echo_error
from orchestrator.daemon.gcpolicy import COLLECT_EVERY

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from orchestrator.config import Config
    from orchestrator.manifest.diagnostics import Diagnostic
    from orchestrator.manifest.loaded import LoadResult, LoadStats
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


class OneLoad:
    """The collector around the one manifest load of a command (`LoadHooks`).

    Paused during the load: the collector would otherwise be triggered by the load's
    allocations and traverse every object loaded so far, again and again (the
    ruamel loader breaks its own cycles, so little garbage is made meanwhile).
    Young objects are still collected every `COLLECT_EVERY` parses: a file with a
    finding to place leaves ~10 KB of cycles behind (the round-trip parse), and
    10,000 of them must not pile up. On the way out everything alive is frozen
    (`gc.freeze`): it lives until the command exits, and frozen objects are never
    traversed again, not by later collections nor by the one at exit. Then the
    collector is as it was found (nested uses each restore what they found).

    Only for a process that exits after its load: what is frozen is never freed
    before the exit. The daemon must never use it.
    """

    @contextmanager
    def loading(self) -> Iterator[None]:
        enabled = gc.isenabled()
        gc.disable()
        try:
            yield
        finally:
            gc.freeze()
            if enabled:
                gc.enable()

    def parsed(self, count: int) -> None:
        if count % COLLECT_EVERY == 0:
            gc.collect(0)

    def loaded(self, stats: LoadStats) -> None:
        """Nothing to settle: `loading` froze what was loaded."""


def load_once(
    paths: Sequence[Path],
    *,
    strict: bool = False,
    now: datetime | None,
    app_ids: Mapping[str, str] | None,
) -> LoadResult:
    """`load_manifests` for a command that loads once and exits: the same load, with
    the collector paused (`OneLoad`), also while the loader's modules are imported
    (the model's classes live as long as the process)."""
    hooks = OneLoad()
    with hooks.loading():
        from orchestrator.manifest.helper import ParseHelper
        from orchestrator.manifest.loader import ManifestCache

        helper = ParseHelper.forking()  # a bulk load shares its parse with a forked worker
        cache = ManifestCache(paths, strict=strict, app_ids=app_ids, hooks=hooks, helper=helper)
        return cache.load(now=now)


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


def read_manifests(ctx: Context, now: datetime) -> LoadResult:
    """The manifests of `ctx`, loaded once (`load_once`) with its App IDs. A command reads
    them before it opens a store: a process that runs one thread may fork a worker for a
    bulk load, and a store's connection runs one."""
    return load_once([ctx.manifests], now=now, app_ids=_app_ids(ctx))


def desired_from(
    ctx: Context, loaded: LoadResult, known_good: Mapping[str, KnownGood]
) -> tuple[Desired, list[Diagnostic]]:
    """The recordings the manifests read want, and the problems met on the way."""
    from orchestrator.reconcile.reconciler import desired_recordings

    problems = list(loaded.diagnostics)
    wanted = desired_recordings(
        loaded.manifests,
        _app_ids(ctx),
        loaded.failed_files,
        known_good,
        unreadable=loaded.unreadable,
    )
    problems.extend(wanted.file_errors)
    problems.extend(map(general, wanted.problems))
    return wanted, problems


async def writer_desired(
    ctx: Context, runtime: Runtime, loaded: LoadResult
) -> tuple[Desired, list[Diagnostic]]:
    """`desired_from` for the store's writer: with the store's last known good
    manifests, and the runtime's own problems (an app profile it could not set up)."""
    desired, problems = desired_from(ctx, loaded, await runtime.store.known_good())
    problems.extend(map(general, runtime.problems))
    return desired, problems


def _app_ids(ctx: Context) -> dict[str, str]:
    return {name: profile.app_id for name, profile in ctx.config.apps.items()}


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
    except StoreError as exc:  # a read refused midway (a role's privileges, a lost server)
        raise Failure(str(exc)) from None
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
