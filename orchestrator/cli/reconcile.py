"""`apply` and `init`: change things from the command line.

- `apply` runs one pass (query, plan, execute) and exits: 0 when every action
  succeeded, every live session was queried, every manifest loaded and none is held
  (failed, or behind an unmanageable session: `Plan.blocked`), 1 otherwise, 3 when
  another process (a running daemon, another `apply`) holds the store. A restart
  waiting for its backoff (`Plan.waiting`) is not held: it follows by itself, so it
  is no failure of the pass (`status`, which asks whether all records, says 1).
  `--forget-unmanageable` closes the records of sessions an operator has ended by
  other means.
- `init` creates the state store (with SQLite the daemon's first start does too): 0, also when
  it exists; 1 when it is damaged or foreign, 3 when another process holds it.

`plan` (plan.py) and `status` (status.py) look without acting. These two must
never write beside another writer: both open the store as its writer (with SQLite,
its lock), and `apply` acts only on the App IDs it could claim (PostgreSQL
replicas). Output goes to stdout; structured logs go to stderr.
"""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from orchestrator.cli import cli
from orchestrator.cli.context import (
    STORE_BUSY,
    Busy,
    Failure,
    claim,
    errors,
    fail,
    load_context,
    note,
    read_manifests,
    store_failures,
    when,
    writer,
    writer_desired,
)
from orchestrator.cli.options import CONFIG, STATE, sources

if TYPE_CHECKING:
    from orchestrator.manifest.diagnostics import Diagnostic
    from orchestrator.reconcile.reconciler import PassResult
    from orchestrator.state import Store

__all__ = ["STORE_BUSY", "apply_command", "init_command"]


@cli.command("apply")
@sources
@click.option(
    "--retry-failed",
    is_flag=True,
    help="Forget permanent failures first, so failed manifests are tried again.",
)
@click.option(
    "--forget-unmanageable",
    "forget",
    multiple=True,
    metavar="NAME",
    help="Close the unmanageable sessions of manifest NAME first (after ending the "
    "recording by other means, or once it has idled out). Repeatable.",
)
def apply_command(
    config_path: Path | None,
    manifests_dir: Path | None,
    state_url: str | None,
    retry_failed: bool,
    forget: tuple[str, ...],
) -> None:
    """Run one reconcile pass, then exit: 0 every action succeeded and nothing is held
    (a restart waiting for its backoff is not), 1 otherwise, 3 store busy."""
    try:
        code = asyncio.run(_apply(config_path, manifests_dir, state_url, retry_failed, forget))
    except (Failure, Busy) as exc:
        fail(exc)
        return
    sys.exit(code)


async def _apply(
    config_path: Path | None,
    manifests_dir: Path | None,
    state_url: str | None,
    retry: bool,
    forget: tuple[str, ...] = (),
) -> int:
    from orchestrator.reconcile.reconciler import reconcile_once, remember_known_good

    ctx = load_context(config_path, manifests_dir, state_url)
    now = datetime.now(UTC)
    loaded = read_manifests(ctx, now)  # before the store (`read_manifests`)
    async with writer(ctx, "apply") as runtime:
        store = runtime.store
        desired, problems = await writer_desired(ctx, runtime, loaded)
        await remember_known_good(store, desired)
        if retry:
            await store.clear_failures()
        for name in forget:
            problems.extend(await _forget_unmanageable(store, name, now))
        apps, notes = await claim(runtime)
        problems.extend(notes)
        result = await reconcile_once(
            desired, store, runtime.executor, now, runtime.policy, apps=apps
        )
    click.echo(_apply_text(result, problems))
    return 0 if result.ok and not errors(problems) and not result.plan.blocked else 1


async def _forget_unmanageable(store: Store, name: str, now: datetime) -> list[Diagnostic]:
    """Close manifest `name`'s unmanageable sessions: an operator says it has ended."""
    from orchestrator.reconcile.plan import END_STOPPED
    from orchestrator.state import EndKind, Phase

    closed = [s for s in await store.live_sessions() if s.manifest == name]
    closed = [s for s in closed if s.phase is Phase.UNMANAGEABLE]
    for s in closed:
        await store.record_outcome(
            s.id,
            phase=Phase.ENDED,
            ended_at=now,
            # "stopped": an operator ended it on purpose, so no restart backoff follows.
            end_reason=f"{END_STOPPED}: closed by an operator (apply --forget-unmanageable)",
            end_kind=EndKind.STOPPED,
        )
    if not closed:
        return [note(f"{name}: no unmanageable session to forget")]
    forgot = ", ".join(str(s.id) for s in closed)
    return [note(f"{name}: forgot unmanageable session(s) {forgot}")]


def _apply_text(result: PassResult, problems: list[Diagnostic]) -> str:
    out = []
    for p in problems:
        out.append(p.text() if p.severity == "note" else f"problem: {p.text()}")
    out.extend(f"problem: {query}" for query in result.problems)
    for s in result.untracked:
        out.append(
            f"untracked {s.manifest}: a recording with no live session in the store holds channel "
            f"{s.channel!r} uid {s.uid} (start answered 53 at {when(s.ended_at)})"
        )
    for r in result.results:
        status = "ok    " if r.ok else "FAILED"
        out.append(f"{status} {r.action.kind.value:<12} {r.action.manifest}: {r.message}")
    for n in result.plan.notes:
        out.append(f"held   {n.kind.value:<12} {n.manifest}: {n.message}")
    failed = sum(1 for r in result.results if not r.ok)
    out.append(
        f"{len(result.results)} action(s), {failed} failed, {len(result.plan.notes)} held back"
        + (f", {len(result.problems)} query failure(s)" if result.problems else "")
        + (f", {len(result.untracked)} untracked" if result.untracked else "")
    )
    return "\n".join(out)


@cli.command("init")
@CONFIG
@STATE
def init_command(config_path: Path | None, state_url: str | None) -> None:
    """Create the state store (with SQLite the daemon's first start does it too); 0 if it
    exists."""
    try:
        asyncio.run(_init(config_path, state_url))
    except (Failure, Busy) as exc:
        fail(exc)


async def _init(config_path: Path | None, state_url: str | None) -> None:
    from orchestrator.state import connect_store

    ctx = load_context(config_path, None, state_url)
    with store_failures():
        store = await connect_store(ctx.state_url, writer=True, holder="init", create=True)
    try:
        click.echo(f"state store ready: {store.location} (schema version {store.schema_version})")
    finally:
        await store.aclose()
