"""One reconcile pass: observe, plan, execute. Shared by `plan`, `apply` and the daemon.

desired (loaded manifests + app profiles) -> actual (the store, refreshed by
`query`) -> `plan` -> `Executor.execute`. A manifest whose file does not load,
or whose app profile is unknown, is never treated as removed: its file goes into
`invalid_files`, and the planner keeps whatever that file had running.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from orchestrator.manifest.loader import LoadedManifest
from orchestrator.manifest.translate import fingerprints
from orchestrator.reconcile.execute import ActionResult, Executor
from orchestrator.reconcile.plan import ActualState, DesiredRecording, Plan, PlanPolicy, plan
from orchestrator.state import Store


@dataclass(frozen=True)
class Desired:
    recordings: tuple[DesiredRecording, ...]
    invalid_files: frozenset[str]
    problems: tuple[str, ...] = ()


def desired_recordings(
    loaded: Sequence[LoadedManifest],
    app_ids: Mapping[str, str],
    failed_files: frozenset[str] = frozenset(),
) -> Desired:
    """DesiredRecordings for the loaded manifests; `app_ids` maps profile names to App IDs."""
    recordings = []
    invalid = set(failed_files)
    problems = []
    for item in loaded:
        m = item.manifest
        app_id = app_ids.get(m.app)
        if app_id is None:
            invalid.add(item.file)
            known = ", ".join(sorted(app_ids)) or "none configured"
            problems.append(
                f"{item.file}:{item.line}:{item.column}: app: unknown app profile {m.app!r} "
                f"(known: {known})"
            )
            continue
        prints = fingerprints(m)
        recordings.append(
            DesiredRecording(
                name=m.name,
                app=m.app,
                app_id=app_id,
                channel=m.channel,
                uid=m.recording_uid,
                mode=str(m.mode),
                schedule=m.build_schedule(),
                spec_hash=prints.spec,
                subscription_hash=prints.subscription,
                layout_hash=prints.layout,
                restart_hash=prints.restart,
                source_file=item.file,
                suspend=m.suspend,
                update_policy=str(m.update_policy),
                starting_deadline=m.starting_deadline,
                manifest=m,
            )
        )
    # A file with any problem is invalid as a whole: none of its manifests act.
    kept = tuple(d for d in recordings if d.source_file not in invalid)
    return Desired(kept, frozenset(invalid), tuple(problems))


async def observe(
    store: Store, invalid_files: frozenset[str], executor: Executor | None = None
) -> ActualState:
    """The actual state from the store; with an executor, running sessions are queried first."""
    live = await store.live_sessions()
    if executor is not None and live:
        await executor.refresh(live)
        live = await store.live_sessions()
    return ActualState(
        live=tuple(live),
        latest_ended=await store.latest_ended(),
        manifest_states=await store.manifest_states(),
        invalid_files=invalid_files,
    )


@dataclass(frozen=True)
class PassResult:
    plan: Plan
    results: tuple[ActionResult, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)


async def reconcile_once(
    desired: Desired,
    store: Store,
    executor: Executor,
    now: datetime,
    policy: PlanPolicy | None = None,
) -> PassResult:
    """Observe, plan at `now`, execute. Returns the plan and every action's result."""
    actual = await observe(store, desired.invalid_files, executor)
    the_plan = plan(desired.recordings, actual, now, policy)
    results = await executor.execute(the_plan, {d.name: d for d in desired.recordings})
    return PassResult(the_plan, tuple(results))
