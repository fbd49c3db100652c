"""`plan`, `apply` and `status`: reconcile from the command line.

- `plan` shows what a pass would do now (or `--at`) and the coming timeline.
  Exit 0; with `--detailed-exitcode`: 0 nothing to do, 2 changes; 1 on errors
  (a manifest that does not load, a config or store that cannot be read).
  `--offline` needs no credentials and sends nothing: the store alone is "actual".
- `apply` runs one pass (query, plan, execute) and exits: 0 when every action
  succeeded and every manifest loaded, 1 otherwise, 3 when another process (a
  running daemon, another `apply`) holds the store.
- `status` prints live sessions and recent history from the store: 0, or 1 when
  the store cannot be read.

Output goes to stdout; structured logs go to stderr.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sys
from collections.abc import Iterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from orchestrator.cli import cli, echo_error

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from orchestrator.config import Config
    from orchestrator.manifest.diagnostics import Diagnostic
    from orchestrator.reconcile.overview import Overview, RecordingStatus
    from orchestrator.reconcile.plan import Action, ActualState, Plan
    from orchestrator.reconcile.reconciler import Desired, PassResult
    from orchestrator.runtime import Runtime
    from orchestrator.state import AppOwner, KnownGood, SessionRecord, Store

_CONFIG = click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Daemon config file (default: $ORCHESTRATOR_CONFIG; else defaults and environment).",
)
_MANIFESTS = click.option(
    "--manifests",
    "manifests_dir",
    type=click.Path(exists=True, path_type=Path),
    default=None,
    help="Manifests directory or file (default: manifests.dir of the config).",
)
_STATE = click.option(
    "--state",
    "state_url",
    default=None,
    help="State store URL, e.g. sqlite:///state.db (default: state.url of the config).",
)


class _Failure(Exception):
    """A problem that ends the command with exit 1 and a one-line message."""


@dataclass
class _Context:
    config: Config
    manifests: Path
    state_url: str


def _load_context(config_path: Path | None, manifests: Path | None, state: str | None) -> _Context:
    from orchestrator.config import ConfigError, load_config
    from orchestrator.logging import configure_logging

    try:
        config = load_config(config_path)
    except ConfigError as exc:
        raise _Failure(str(exc)) from None
    fmt = config.logging.format
    configure_logging(config.logging.level, json=None if fmt == "auto" else fmt == "json")
    return _Context(config, manifests or config.manifests.dir, state or config.state.url)


def _parse_duration(value: str) -> timedelta:
    from orchestrator.manifest.model import parse_duration

    try:
        return parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _desired(
    ctx: _Context, now: datetime, known_good: Mapping[str, KnownGood]
) -> tuple[Desired, list[Diagnostic]]:
    from orchestrator.manifest.loader import load_manifests
    from orchestrator.reconcile.reconciler import desired_recordings

    app_ids = {name: profile.app_id for name, profile in ctx.config.apps.items()}
    loaded = load_manifests([ctx.manifests], now=now, app_ids=app_ids)
    problems = list(loaded.diagnostics)
    desired = desired_recordings(
        loaded.manifests, app_ids, loaded.failed_files, known_good, unreadable=loaded.unreadable
    )
    problems.extend(map(_general, desired.problems))
    return desired, problems


def _general(message: str) -> Diagnostic:
    """A problem about no place in a manifest file (the store, a profile, a query)."""
    from orchestrator.manifest.diagnostics import Diagnostic

    return Diagnostic.general(message)


def _note(message: str) -> Diagnostic:
    from orchestrator.manifest.diagnostics import Diagnostic

    return Diagnostic.general(message, "note")


def _errors(problems: list[Diagnostic]) -> list[Diagnostic]:
    """The problems that fail a command (not warnings, not notes)."""
    return [p for p in problems if p.severity == "error"]


STORE_BUSY = 3
"""Exit status when another process holds the store (README and docs/cli.md)."""


class _Busy(Exception):
    """Another writer holds the store: exit 3 with its message."""


@asynccontextmanager
async def _writer(ctx: _Context, holder: str) -> AsyncIterator[Runtime]:
    """The composition root's runtime, as the store's single writer for this command."""
    from orchestrator.runtime import open_runtime
    from orchestrator.state import StoreBusyError, StoreError

    try:
        async with open_runtime(ctx.config, state_url=ctx.state_url, holder=holder) as runtime:
            yield runtime
    except StoreBusyError as exc:
        raise _Busy(str(exc)) from None
    except StoreError as exc:
        raise _Failure(str(exc)) from None


class _Unreachable(_Failure):
    """`plan --offline` found no store it can read (missing, or its server down)."""


@asynccontextmanager
async def _open_reader(url: str, *, offline: bool = False) -> AsyncIterator[Store]:
    from orchestrator.state import (
        StoreError,
        StoreMissingError,
        StoreUnavailableError,
        connect_store,
    )

    try:
        store = await connect_store(url, writer=False)
    except (StoreMissingError, StoreUnavailableError) as exc:
        raise (_Unreachable if offline else _Failure)(str(exc)) from None
    except StoreError as exc:
        raise _Failure(str(exc)) from None
    try:
        yield store
    finally:
        await store.aclose()


def _now(at: datetime | None) -> datetime:
    if at is None:
        return datetime.now(UTC)
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def _fail(exc: _Failure | _Busy) -> None:
    echo_error(exc)
    sys.exit(STORE_BUSY if isinstance(exc, _Busy) else 1)


# -- plan ------------------------------------------------------------------------------


@cli.command("plan")
@_CONFIG
@_MANIFESTS
@_STATE
@click.option(
    "--at",
    "at",
    type=click.DateTime(formats=["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d"]),
    default=None,
    help="Plan as of this instant (default: now; naive means UTC).",
)
@click.option("--horizon", default="24h", show_default=True, help="How far the timeline reaches.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@click.option(
    "--detailed-exitcode", is_flag=True, help="Exit 2 when there are actions to take, 0 when none."
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
    horizon: str,
    fmt: str,
    detailed_exitcode: bool,
    offline: bool,
) -> None:
    """Show what a reconcile would do now, and the coming starts and stops."""
    span = _parse_duration(horizon)
    try:
        code, changes = asyncio.run(
            _plan(config_path, manifests_dir, state_url, _now(at), span, fmt, offline)
        )
    except (_Failure, _Busy) as exc:
        _fail(exc)
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

    ctx = _load_context(config_path, manifests_dir, state_url)
    if offline and _missing_store(ctx.state_url):
        # CI has no store: plan from an empty state, and create nothing.
        desired, problems = _desired(ctx, now, {})
        problems.append(_note(f"no state store at {ctx.state_url}: planned from an empty state"))
        actual = ActualState(invalid_files=desired.invalid_files)
    else:
        try:
            desired, problems, actual = await _observe_for_plan(ctx, now, offline)
        except _Unreachable as exc:  # offline: no store needed, whatever the URL
            desired, problems = _desired(ctx, now, {})
            problems.append(_note(f"{exc}: planned from an empty state"))
            actual = ActualState(invalid_files=desired.invalid_files)
    the_plan = plan(desired.recordings, actual, now, plan_policy(ctx.config))
    timeline = lanes(desired.recordings, now, horizon, the_plan)
    problems.extend(map(_general, actual.problems))
    problems.extend(
        _general(f"{n.manifest}: held ({n.kind.value}): {n.message}") for n in the_plan.blocked
    )
    if fmt == "json":
        click.echo(json.dumps(_plan_json(the_plan, timeline, problems, now), indent=2))
    else:
        click.echo(_plan_text(the_plan, timeline, problems, now, horizon))
    # Changes: actions now, or a restart that waits its backoff (it will act by itself).
    return (1 if _errors(problems) else 0), not the_plan.empty or bool(the_plan.waiting)


def _missing_store(url: str) -> bool:
    from orchestrator.state.store import StoreError, sqlite_path_from_url

    try:
        return not sqlite_path_from_url(url).exists()
    except StoreError:
        return False  # not a SQLite URL: opening it reports the problem


async def _observe_for_plan(
    ctx: _Context, now: datetime, offline: bool
) -> tuple[Desired, list[Diagnostic], ActualState]:
    from orchestrator.reconcile.reconciler import observe

    if offline:
        # A reader: no lock, so it works beside a running daemon; it sends nothing.
        async with _open_reader(ctx.state_url, offline=True) as store:
            desired, problems = _desired(ctx, now, await store.known_good())
            actual = await observe(store, desired.invalid_files, None, desired.unreadable)
        return desired, problems, actual
    async with _writer(ctx, "plan") as runtime:
        desired, problems = _desired(ctx, now, await runtime.store.known_good())
        problems.extend(map(_general, runtime.problems))
        apps, notes = await _claim(runtime)  # replicas: query only what we may
        problems.extend(notes)
        actual = await observe(
            runtime.store, desired.invalid_files, runtime.executor, desired.unreadable, apps
        )
        if apps is not None:
            recordings = tuple(d for d in desired.recordings if d.app_id in apps)
            desired = dataclasses.replace(desired, recordings=recordings)
    return desired, problems, actual


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


def _plan_json(the_plan: Plan, timeline: Any, problems: list[Diagnostic], now: datetime) -> Any:
    return {
        "at": now.isoformat(),
        "actions": [_action_json(a) for a in the_plan.actions],
        "notes": [
            {
                "kind": n.kind.value,
                "manifest": n.manifest,
                "message": n.message,
                "session": n.session_id,
                "until": n.until.isoformat() if n.until else None,
            }
            for n in the_plan.notes
        ],
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
    the_plan: Plan, timeline: Any, problems: list[Diagnostic], now: datetime, horizon: timedelta
) -> str:
    from orchestrator.reconcile.plan import action_session
    from orchestrator.reconcile.timeline import describe_next, render

    out = [f"Plan at {now.isoformat()}"]
    faults = [p for p in problems if p.severity != "note"]
    notes = [p for p in problems if p.severity == "note"]
    if faults:
        out.append("")
        out.append("Problems (files that do not load keep their last known good version):")
        out.extend(f"  {p.text()}" for p in faults)
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
    elif the_plan.blocked or any(p.severity != "note" for p in problems):
        out.append(
            "Actions: none, but not everything is as desired (see the problems above and "
            "what is held back below)."
        )
    else:
        out.append("Actions: none, everything is as desired.")
    if the_plan.notes:
        out.append("")
        out.append("Held back:")
        for n in the_plan.notes:
            until = f" (until {n.until.isoformat()})" if n.until else ""
            out.append(f"  {n.kind.value:<12} {n.manifest}: {n.message}{until}")
    out.append("")
    out.append("Timeline:")
    out.append(render(timeline, now, horizon))
    out.append("")
    for lane in timeline:
        out.append(f"  {lane.manifest}: {describe_next(lane, now)}")
    return "\n".join(out)


# -- apply -----------------------------------------------------------------------------


@cli.command("apply")
@_CONFIG
@_MANIFESTS
@_STATE
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
    """Run one reconcile pass, then exit (0 all as desired, 1 otherwise, 3 store busy)."""
    try:
        code = asyncio.run(_apply(config_path, manifests_dir, state_url, retry_failed, forget))
    except (_Failure, _Busy) as exc:
        _fail(exc)
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

    ctx = _load_context(config_path, manifests_dir, state_url)
    now = datetime.now(UTC)
    async with _writer(ctx, "apply") as runtime:
        store = runtime.store
        desired, problems = _desired(ctx, now, await store.known_good())
        problems.extend(map(_general, runtime.problems))
        await remember_known_good(store, desired)
        if retry:
            await store.clear_failures()
        for name in forget:
            problems.extend(await _forget_unmanageable(store, name, now))
        apps, notes = await _claim(runtime)
        problems.extend(notes)
        result = await reconcile_once(
            desired, store, runtime.executor, now, runtime.policy, apps=apps
        )
    click.echo(_apply_text(result, problems))
    return 0 if result.ok and not _errors(problems) and not result.plan.blocked else 1


async def _claim(runtime: Runtime) -> tuple[frozenset[str] | None, list[Diagnostic]]:
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
        raise _Failure(str(exc)) from None
    skipped = sorted(runtime.app_ids - own.owned)
    notes = [
        _note(f"skipped App ID {app_id}: owned by replica {holders.get(app_id) or '?'}")
        for app_id in skipped
    ]
    return own.owned, notes


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
        return [_note(f"{name}: no unmanageable session to forget")]
    forgot = ", ".join(str(s.id) for s in closed)
    return [_note(f"{name}: forgot unmanageable session(s) {forgot}")]


def _apply_text(result: PassResult, problems: list[Diagnostic]) -> str:
    out = []
    for p in problems:
        out.append(p.text() if p.severity == "note" else f"problem: {p.text()}")
    out.extend(f"problem: {query}" for query in result.problems)
    for s in result.untracked:
        out.append(
            f"untracked {s.manifest}: a recording the store does not know holds channel "
            f"{s.channel!r} uid {s.uid} (start answered 53 at {_when(s.ended_at)})"
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


def _when(at: datetime | None) -> str:
    return at.isoformat() if at else "-"


# -- init ------------------------------------------------------------------------------


@cli.command("init")
@_CONFIG
@_STATE
def init_command(config_path: Path | None, state_url: str | None) -> None:
    """Create the state store (the daemon's first start does it too); 0 if it exists."""
    try:
        asyncio.run(_init(config_path, state_url))
    except (_Failure, _Busy) as exc:
        _fail(exc)


async def _init(config_path: Path | None, state_url: str | None) -> None:
    from orchestrator.state import StoreBusyError, StoreError, connect_store

    ctx = _load_context(config_path, None, state_url)
    try:
        store = await connect_store(ctx.state_url, writer=True, holder="init", create=True)
    except StoreBusyError as exc:
        raise _Busy(str(exc)) from None
    except StoreError as exc:
        raise _Failure(str(exc)) from None
    try:
        click.echo(f"state store ready: {store.location} (schema version {store.schema_version})")
    finally:
        await store.aclose()


# -- status ----------------------------------------------------------------------------


@cli.command("status")
@_CONFIG
@_MANIFESTS
@_STATE
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@click.option("--limit", default=20, show_default=True, help="How many ended sessions to show.")
@click.option(
    "--at",
    "at",
    type=click.DateTime(formats=["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d"]),
    default=None,
    help="Judge the schedules at this instant (default: now; naive means UTC).",
)
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
        ok = asyncio.run(_status(config_path, manifests_dir, state_url, fmt, limit, _now(at)))
    except (_Failure, _Busy) as exc:
        _fail(exc)
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
    from orchestrator.reconcile.overview import overview
    from orchestrator.reconcile.plan import plan
    from orchestrator.reconcile.reconciler import observe, untracked
    from orchestrator.runtime import plan_policy
    from orchestrator.state import session_summary

    ctx = _load_context(config_path, manifests_dir, state_url)
    async with _open_reader(ctx.state_url) as store:
        desired, problems = _desired(ctx, now, await store.known_good())
        actual = await observe(store, desired.invalid_files, None, desired.unreadable)
        history = await store.history(limit)
        owners = await store.app_owners()
    the_plan = plan(desired.recordings, actual, now, plan_policy(ctx.config))
    unknown = untracked(actual.latest_ended, actual.live)
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
    click.echo(
        "\n".join(
            [
                *_overview_text(view),
                *_owners_text(owners),
                *_status_text(live, history, failures, unknown),
            ]
        )
    )
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
                yield f"      last error ({_when(r.last_error_at)}): {r.last_error}"
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
            "Unmanageable (cannot be queried or stopped: counted as recording; while wanted, a "
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
            yield f"  {o.app_id}: nobody now (last: {o.owner or '-'}); a replica claims it soon"
    yield ""


def _status_text(
    live: list[SessionRecord],
    history: list[SessionRecord],
    failures: dict[str, str | None],
    unknown: tuple[SessionRecord, ...] = (),
) -> Iterator[str]:
    yield f"Live sessions ({len(live)}):"
    if not live:
        yield "  none"
    for s in live:
        since = s.started_at.isoformat() if s.started_at else "-"
        status = f" status {s.last_status}" if s.last_status is not None else ""
        intent = f" (interrupted {s.intent})" if s.intent else ""
        yield (
            f"  #{s.id} {s.manifest}: {s.phase.value}{intent}{status}, channel {s.channel!r} "
            f"uid {s.uid}, {s.mode}, sid {s.sid or '-'}, since {since}"
        )
        if s.error:
            yield f"      last error: {s.error}"
    yield ""
    yield f"Recent history ({len(history)}):"
    if not history:
        yield "  none"
    for s in history:
        ended = s.ended_at.isoformat() if s.ended_at else "-"
        upload = f", upload {s.uploading_status}" if s.uploading_status else ""
        yield f"  #{s.id} {s.manifest}: {s.phase.value} at {ended}: {s.end_reason or '-'}{upload}"
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


def _files(file_list: Any) -> str:
    if not file_list:
        return ""
    if isinstance(file_list, str):
        return file_list
    names = [str(f.get("filename", "?")) for f in file_list if isinstance(f, dict)]
    return ", ".join(names)
