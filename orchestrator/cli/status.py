"""`status`: what every recording should be doing and is doing, why not where the two
differ, the files that do not load, the App IDs' owners, live sessions and recent
history, all from the store.

Exit 0 when every wanted recording records and every file loads; 1 otherwise, or
when the store cannot be read. It must never write: the store is opened as a reader
(no lock, beside a running daemon), and no request is sent.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from orchestrator.cli import cli
from orchestrator.cli.context import (
    Busy,
    Failure,
    desired_from,
    fail,
    load_context,
    open_reader,
    read_manifests,
    when,
)
from orchestrator.cli.options import FORMAT, LIMIT, as_of, at_option, sources

if TYPE_CHECKING:
    from orchestrator.reconcile.overview import Overview, RecordingStatus
    from orchestrator.runtime import QueryBudgetLine
    from orchestrator.state import AppOwner, SessionRecord


@cli.command("status")
@sources
@FORMAT
@LIMIT
@at_option("Judge the schedules at this instant")
def status_command(
    config_path: Path | None,
    manifests_dir: Path | None,
    state_url: str | None,
    fmt: str,
    limit: int,
    at: datetime | None,
) -> None:
    """What every recording should be doing and is doing, why not when the two differ,
    live sessions and recent history (0 all as desired, 1 otherwise)."""
    try:
        ok = asyncio.run(_status(config_path, manifests_dir, state_url, fmt, limit, as_of(at)))
    except (Failure, Busy) as exc:
        fail(exc)
        return
    sys.exit(0 if ok else 1)


async def _status(
    config_path: Path | None,
    manifests_dir: Path | None,
    state_url: str | None,
    fmt: str,
    limit: int,
    now: datetime,
) -> bool:
    """Print the status; True when everything wanted records and nothing fails."""
    from orchestrator.manifest.diagnostics import one_line
    from orchestrator.reconcile.overview import overview
    from orchestrator.reconcile.plan import plan
    from orchestrator.reconcile.reconciler import observe, untracked
    from orchestrator.runtime import plan_policy, query_budget
    from orchestrator.state import session_summary

    ctx = load_context(config_path, manifests_dir, state_url)
    loaded = read_manifests(ctx, now)  # before the store (`read_manifests`)
    async with open_reader(ctx.state_url) as store:
        desired, problems = desired_from(ctx, loaded, await store.known_good())
        actual = await observe(store, desired)
        history = await store.history(limit)
        owners = await store.app_owners()
    the_plan = plan(desired.recordings, actual, now, plan_policy(ctx.config))
    unknown = untracked(actual, desired.recordings, now)
    view = overview(
        desired.recordings,
        actual,
        the_plan,
        now,
        files_failing=[p for p in problems if p.file and p.severity == "error"],
        problems=[p.message for p in problems if not p.file and p.severity == "error"],
        untracked=unknown,
    )
    live = list(actual.live)
    budget = query_budget(ctx.config, live)
    states = actual.manifest_states
    failures = {name: s.failure_reason for name, s in sorted(states.items()) if s.failed_spec_hash}
    if fmt == "json":
        data = {
            **view.as_dict(),
            "recordings": [r.as_dict() for r in view.recordings],
            "live": [session_summary(s) for s in live],
            "history": [session_summary(s) for s in history],
            "failed": failures,
            "untracked": [session_summary(s) for s in unknown],
            "query_budget": [b.as_dict() for b in budget],
            "owners": [
                {
                    "app_id": o.app_id,
                    "replica": o.owner if o.held else None,
                    "since": o.since.isoformat() if o.since and o.held else None,
                    "last_owner": o.owner,
                }
                for o in owners
            ],
        }
        click.echo(json.dumps(data, indent=2))
        return view.ok
    lines = [
        *_overview_text(view),
        *_owners_text(owners),
        *_budget_text(budget),
        *_status_text(live, history, failures, now, unknown),
    ]
    click.echo("\n".join(one_line(line) for line in lines))
    return view.ok


def _overview_text(view: Overview) -> Iterator[str]:
    """What should record and does, and why not where the two differ."""
    from orchestrator.reconcile.overview import FORGET_COMMAND

    recording = sum(1 for r in view.recordings if r.recording)
    yield (
        f"Recordings at {view.at.isoformat()}: {len(view.recordings)} manifest(s), "
        f"{len(view.wanted)} wanted now, {recording} recording, "
        f"{len(view.not_recording)} not recording, "
        f"{len(view.failing_files)} file(s) failing to load"
    )
    yield ""
    missing = view.not_recording
    if missing:
        yield "Not recording, although wanted now:"
        for r in missing:
            yield f"  {r.name}: {r.reason}: {r.message}"
            if r.last_error:
                yield f"      last error ({when(r.last_error_at)}): {r.last_error}"
            if r.next_attempt:
                yield f"      next attempt: {r.next_attempt.isoformat()}"
        yield ""
    if view.files_failing or view.problems:
        yield "Failing to load (their last known good versions stay in force):"
        yield from (f"  {d.text()}" for d in view.files_failing)
        yield from (f"  {p}" for p in view.problems)
        yield ""
    if view.unmanageable:
        yield (
            "Unmanageable (cannot be queried or stopped: it may still record; while wanted, a "
            "fresh start is tried with backoff and a success replaces it):"
        )
        for s in view.unmanageable:
            yield f"  #{s.id} {s.manifest}: channel {s.channel!r} uid {s.uid}: {s.error or '-'}"
            yield (
                "      once it has ended: "
                + FORGET_COMMAND.format(name=s.manifest)
                + " (stop the daemon first: apply needs the store's writer lock)"
            )
        yield ""
    yield "Manifests:"
    if not view.recordings:
        yield "  none"
    width = min(max((len(r.name) for r in view.recordings), default=0), 32)
    for r in view.recordings:
        yield f"  {r.name:<{width}}  {_should_text(r)}; {_doing_text(r)}"
    yield ""


def _should_text(r: RecordingStatus) -> str:
    from orchestrator.reconcile.overview import Should
    from orchestrator.schedule import FAR_FUTURE

    w = r.window
    if r.should is Should.RECORD and w is not None:
        return (
            "should record (always)"
            if w.end >= FAR_FUTURE
            else f"should record until {w.end:%Y-%m-%d %H:%M}Z"
        )
    if r.should is Should.WAIT and w is not None:
        return f"next window {w.start:%Y-%m-%d %H:%M}Z"
    return r.should.value


def _doing_text(r: RecordingStatus) -> str:
    s = r.session
    doing = r.doing
    if s is not None:
        doing += f" (session #{s.id}, sid {_short(s.sid)})"
    if r.reason is not None:
        doing += f", {r.reason}"
    if r.kept:
        doing += " [its file does not load: last known good]"
    return doing


def _short(value: str | None) -> str:
    if not value:
        return "-"
    return value if len(value) <= 12 else f"{value[:8]}…"


def _budget_text(budget: list[QueryBudgetLine]) -> Iterator[str]:
    """Each App ID's resync: one round of queries over its live sessions, at
    reconcile.queryShare of its rate limit, against the resync interval."""
    if not budget:
        return
    yield "Query budget (one resync round per App ID):"
    for b in budget:
        late = "  (longer than resyncInterval: exits are noticed late)" if b.too_long else ""
        yield (
            f"  {b.app_id}: {b.live} live, {b.cycle_s:.1f} s per round at {b.share:g} of "
            f"{b.rate}/s (resync every {b.resync_s:g} s){late}"
        )
    yield ""


def _owners_text(owners: list[AppOwner]) -> Iterator[str]:
    """Replicas on PostgreSQL: who owns which App ID, and since when."""
    if not owners:
        return
    yield "App ID owners (replicas):"
    for o in owners:
        if o.held:
            since = o.since.isoformat() if o.since else "-"
            yield f"  {o.app_id}: {o.owner} since {since}"
        else:
            yield (
                f"  {o.app_id}: nobody now (last: {o.owner or '-'}); a running replica claims "
                "it within replica.claimInterval (none runs, if it stays so)"
            )
    yield ""


def _status_text(
    live: list[SessionRecord],
    history: list[SessionRecord],
    failures: dict[str, str | None],
    now: datetime,
    unknown: tuple[SessionRecord, ...] = (),
) -> Iterator[str]:
    yield f"Live sessions ({len(live)}):"
    if not live:
        yield "  none"
    for s in live:
        since = s.started_at.isoformat() if s.started_at else "-"
        status = f" status {s.last_status}" if s.last_status is not None else ""
        intent = ""
        if s.intent:  # an answer refused it (its error says how), or none came (a kill)
            intent = (
                f" ({s.intent} failed, tried again)" if s.error else f" (interrupted {s.intent})"
            )
        yield (
            f"  #{s.id} {s.manifest}: {s.phase.value}{intent}{status}, channel {s.channel!r} "
            f"uid {s.uid}, {s.mode}, sid {s.sid or '-'}, since {since}{_succeeds(s)}"
        )
        expiries = _expiries(s)
        if expiries:
            yield f"      {expiries}"
        if s.failover_at is not None:
            uid = f", recorder now uid {s.failover_uid}" if s.failover_uid else ""
            yield f"      Agora failover at {s.failover_at.isoformat()}{uid}"
        files = _files(s.file_list)
        if files:
            yield f"      files: {files}"
        if s.error:
            yield f"      last error: {s.error}"
    yield ""
    yield f"Recent history ({len(history)}):"
    if not history:
        yield "  none"
    for s in history:
        ended = s.ended_at.isoformat() if s.ended_at else "-"
        upload = f", upload {s.uploading_status}" if s.uploading_status else ""
        yield (
            f"  #{s.id} {s.manifest}: {s.phase.value} at {ended}: {s.end_reason or '-'}{upload}"
            f"{_succeeds(s)}"
        )
        if s.confirm_until is not None and s.confirm_until > now:
            yield (
                f"      end not confirmed (a 404 may be a failover): still queried until "
                f"{s.confirm_until.isoformat()}"
            )
        files = _files(s.file_list)
        if files:
            yield f"      files: {files}"
    if unknown:
        yield ""
        yield "Untracked (live on Agora, not in the store: a start met 53 on our target):"
        for s in unknown:
            at = s.ended_at.isoformat() if s.ended_at else "-"
            yield f"  {s.manifest}: channel {s.channel!r} uid {s.uid} (seen {at})"
    if failures:
        yield ""
        yield "Failed manifests (not retried until their spec changes, or apply --retry-failed):"
        for name, reason in failures.items():
            yield f"  {name}: {reason}"


def _succeeds(s: SessionRecord) -> str:
    """A rollover's chain: the session this one replaced."""
    return f" (succeeds #{s.predecessor_id})" if s.predecessor_id is not None else ""


def _expiries(s: SessionRecord) -> str:
    """When the session must have been rolled over by (its start's token, its resource ID)."""
    parts = [
        f"{what} expires {at.isoformat()}"
        for what, at in (("token", s.join_expires_at), ("resource", s.resource_expires_at))
        if at is not None
    ]
    return ", ".join(parts)


def _files(file_list: Any) -> str:
    if not file_list:
        return ""
    if isinstance(file_list, str):
        return file_list
    # `query` names a file `filename`, Agora's notifications `fileName`.
    names = [
        str(f.get("filename", f.get("fileName", "?"))) for f in file_list if isinstance(f, dict)
    ]
    return ", ".join(names)
