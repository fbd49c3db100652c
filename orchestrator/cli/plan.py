"""`plan`: what a pass would do now (or `--at`), what it holds back and why, and the
coming timeline.

Exit 0; with `--detailed-exitcode`: 0 nothing to do, 2 changes; 1 on errors (a
manifest that does not load, a config or store that cannot be read), 3 when another
process holds the store. `--offline` needs no credentials and sends nothing: the
store alone is "actual", read without a lock.

It must never act: a plan with a store writer queries the live sessions, and
nothing more is sent. Output goes to stdout; structured logs go to stderr.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from orchestrator.cli import cli
from orchestrator.cli.context import (
    Busy,
    Context,
    Failure,
    Unreachable,
    claim,
    desired_from,
    errors,
    fail,
    general,
    load_context,
    note,
    open_reader,
    read_manifests,
    writer,
    writer_desired,
)
from orchestrator.cli.options import FORMAT, HORIZON, as_of, at_option, sources

if TYPE_CHECKING:
    from orchestrator.manifest.diagnostics import Diagnostic
    from orchestrator.manifest.loaded import LoadResult
    from orchestrator.reconcile.plan import Action, ActualState, Note, Plan
    from orchestrator.reconcile.reconciler import Desired


class _PlanUsageError(click.UsageError):
    exit_code = 1


class _PlanCommand(click.Command):
    """`plan`, whose usage errors exit 1: with `--detailed-exitcode`, 2 means changes, and
    a mistyped option must not read as changes to a CI job (as with terraform)."""

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.UsageError as exc:
            raise _PlanUsageError(exc.format_message(), exc.ctx) from None


@cli.command("plan", cls=_PlanCommand)
@sources
@at_option("Plan as of this instant")
@HORIZON
@FORMAT
@click.option(
    "--detailed-exitcode",
    is_flag=True,
    help="Exit 2 on changes (actions now, or a restart waiting for its backoff), 0 on none.",
)
@click.option(
    "--offline",
    is_flag=True,
    help="Use the state store alone: no credentials, no API call (for CI).",
)
def plan_command(
    config_path: Path | None,
    manifests_dir: Path | None,
    state_url: str | None,
    at: datetime | None,
    horizon: timedelta,
    fmt: str,
    detailed_exitcode: bool,
    offline: bool,
) -> None:
    """Show what a reconcile would do now, and the coming starts and stops."""
    try:
        code, changes = asyncio.run(
            _plan(config_path, manifests_dir, state_url, as_of(at), horizon, fmt, offline)
        )
    except Busy as exc:  # a daemon runs on the store: what `--offline` is for
        fail(Busy(f"{exc}; `plan --offline` reads it beside the daemon"))
        return
    except Failure as exc:
        fail(exc)
        return
    if code == 0 and detailed_exitcode and changes:
        code = 2
    sys.exit(code)


async def _plan(
    config_path: Path | None,
    manifests_dir: Path | None,
    state_url: str | None,
    now: datetime,
    horizon: timedelta,
    fmt: str,
    offline: bool,
) -> tuple[int, bool]:
    """(exit code, whether the plan has actions)."""
    from orchestrator.reconcile.plan import ActualState, plan
    from orchestrator.reconcile.timeline import lanes
    from orchestrator.runtime import plan_policy

    ctx = load_context(config_path, manifests_dir, state_url)
    loaded = read_manifests(ctx, now)  # before the store (`read_manifests`)
    theirs = 0  # manifests of App IDs other replicas own: not planned here
    if offline and _missing_store(ctx.state_url):
        # CI has no store: plan from an empty state, and create nothing.
        desired, problems = desired_from(ctx, loaded, {})
        problems.append(note(f"no state store at {ctx.state_url}: planned from an empty state"))
        actual = ActualState(invalid_files=desired.invalid_files)
    else:
        try:
            desired, problems, actual, theirs = await _observe_for_plan(ctx, loaded, offline)
        except Unreachable as exc:  # offline: no store needed, whatever the URL
            desired, problems = desired_from(ctx, loaded, {})
            problems.append(note(f"{exc}: planned from an empty state"))
            actual = ActualState(invalid_files=desired.invalid_files)
    the_plan = plan(desired.recordings, actual, now, plan_policy(ctx.config))
    timeline = lanes(desired.recordings, now, horizon, the_plan)
    problems.extend(map(general, actual.problems))
    problems.extend(
        general(f"{n.manifest}: held ({n.kind.value}): {n.message}") for n in the_plan.blocked
    )
    if fmt == "json":
        click.echo(json.dumps(_plan_json(the_plan, timeline, problems, now), indent=2))
    else:
        click.echo(_plan_text(the_plan, timeline, problems, now, horizon, theirs))
    # Changes: actions now, or a restart that waits its backoff (it will act by itself).
    return (1 if errors(problems) else 0), not the_plan.empty or bool(the_plan.waiting)


def _missing_store(url: str) -> bool:
    """Whether `url` names an SQLite file that is not there. Raises Failure where that
    cannot be told (a directory on its path that may not be searched): an unknown
    store is not an empty one, as for every command that opens it."""
    from orchestrator.state import StoreError
    from orchestrator.state.sqlite_file import exists
    from orchestrator.state.store import sqlite_path_from_url

    try:
        path = sqlite_path_from_url(url)
    except StoreError:
        return False  # not a SQLite URL: opening it reports the problem
    try:
        return not exists(path)
    except StoreError as exc:
        raise Failure(str(exc)) from None


async def _observe_for_plan(
    ctx: Context, loaded: LoadResult, offline: bool
) -> tuple[Desired, list[Diagnostic], ActualState, int]:
    """What to plan from, and how many manifests were left out: those of App IDs that
    running replicas own (they are theirs to plan)."""
    from orchestrator.reconcile.reconciler import observe

    if offline:
        # A reader: no lock, so it works beside a running daemon; it sends nothing.
        async with open_reader(ctx.state_url, offline=True) as store:
            desired, problems = desired_from(ctx, loaded, await store.known_good())
            actual = await observe(store, desired)
        return desired, problems, actual, 0
    async with writer(ctx, "plan") as runtime:
        desired, problems = await writer_desired(ctx, runtime, loaded)
        apps, notes = await claim(runtime)  # replicas: query only what we may
        problems.extend(notes)
        actual = await observe(runtime.store, desired, runtime.executor, apps)
        theirs = 0
        if apps is not None:
            recordings = tuple(d for d in desired.recordings if d.app_id in apps)
            theirs = len(desired.recordings) - len(recordings)
            desired = dataclasses.replace(desired, recordings=recordings)
    return desired, problems, actual, theirs


def _action_json(a: Action) -> dict[str, Any]:
    from orchestrator.reconcile.plan import action_session, action_window

    window = action_window(a)
    return {
        "action": a.kind.value,
        "manifest": a.manifest,
        "reason": a.reason,
        "session": action_session(a),
        "window": [window.start.isoformat(), window.end.isoformat()] if window else None,
    }


def _note_json(n: Note) -> dict[str, Any]:
    return {
        "kind": n.kind.value,
        "manifest": n.manifest,
        "message": n.message,
        "session": n.session_id,
        "until": n.until.isoformat() if n.until else None,
    }


def _plan_json(the_plan: Plan, timeline: Any, problems: list[Diagnostic], now: datetime) -> Any:
    return {
        "at": now.isoformat(),
        "actions": [_action_json(a) for a in the_plan.actions],
        "notes": [_note_json(n) for n in the_plan.notes],
        "upcoming": [_note_json(n) for n in the_plan.upcoming],
        "timeline": [
            {
                "manifest": lane.manifest,
                "suspended": lane.suspended,
                "events": [{"at": t.isoformat(), "event": e} for t, e in lane.events()],
                # The window open now is wanted but will not be recorded, and why.
                "skipped": lane.skipped,
                "waits_until": lane.waits_until.isoformat() if lane.waits_until else None,
            }
            for lane in timeline
        ],
        "problems": [p.text() for p in problems],
    }


def _plan_text(
    the_plan: Plan,
    timeline: Any,
    problems: list[Diagnostic],
    now: datetime,
    horizon: timedelta,
    theirs: int = 0,
) -> str:
    from orchestrator.reconcile.plan import action_session
    from orchestrator.reconcile.timeline import describe_next, render

    out = [f"Plan at {now.isoformat()}"]
    faults = [p for p in problems if p.severity == "error"]
    warnings = [p for p in problems if p.severity == "warning"]
    notes = [p for p in problems if p.severity == "note"]
    if faults:
        out.append("")
        out.append("Problems (files that do not load keep their last known good version):")
        out.extend(f"  {p.text()}" for p in faults)
    if warnings:
        out.append("")
        out.append("Warnings (settings that load but will not do what they say):")
        out.extend(f"  {p.text()}" for p in warnings)
    if notes:
        out.append("")
        out.extend(p.text() for p in notes)
    out.append("")
    if the_plan.actions:
        out.append(f"Actions ({len(the_plan.actions)}):")
        for a in the_plan.actions:
            session_id = action_session(a)
            session = f" [session {session_id}]" if session_id else ""
            out.append(f"  {a.kind.value:<12} {a.manifest}{session}: {a.reason}")
    elif the_plan.waiting:
        out.append(
            "Actions: none now, but not everything is as desired: a restart waits its "
            "backoff (see what is held back below)."
        )
    elif the_plan.blocked or faults:
        out.append(
            "Actions: none, but not everything is as desired (see the problems above and "
            "what is held back below)."
        )
    elif theirs:
        out.append(
            f"Actions: none for the App IDs this plan may act on; {theirs} manifest(s) of App "
            "IDs that running replicas own are theirs to plan (see the notes above)."
        )
    else:
        out.append("Actions: none, everything is as desired.")
    for title, listed, when in (
        ("Held back:", the_plan.notes, " (until {})"),
        ("Upcoming (due by themselves):", the_plan.upcoming, " at {}"),
    ):
        if listed:
            out.extend(("", title))
            for n in listed:
                until = when.format(n.until.isoformat()) if n.until else ""
                out.append(f"  {n.kind.value:<12} {n.manifest}: {n.message}{until}")
    out.append("")
    out.append("Timeline:")
    out.append(
        render(timeline, now, horizon)
        if timeline or not theirs
        else "(no manifests of the App IDs this plan may act on)"
    )
    out.append("")
    for lane in timeline:
        out.append(f"  {lane.manifest}: {describe_next(lane, now)}")
    return "\n".join(out)
