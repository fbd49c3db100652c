"""One reconcile pass: observe, plan, execute. Shared by `plan`, `apply` and the daemon.

desired (loaded manifests + app profiles) -> actual (the store, refreshed by
`query`) -> `plan` -> `Executor.execute`. A manifest whose file does not load,
or whose app profile is unknown, is never treated as removed: its last known
good version (kept in the store) stands in for it, and where there is none (it
had literal secrets, which are never stored) the planner keeps whatever that
file had running. Nor is one that no file gives any more while a file that does not
load may hold it (`hiding`): a broken file renamed takes its manifests along.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from orchestrator.manifest.diagnostics import Diagnostic
from orchestrator.manifest.loader import LoadedManifest, LoadResult
from orchestrator.manifest.model import Manifest
from orchestrator.reconcile.execute import ActionResult, Executor
from orchestrator.reconcile.plan import (
    ActualState,
    DesiredRecording,
    Plan,
    PlanPolicy,
    plan,
)
from orchestrator.schedule import Schedule
from orchestrator.state import EndKind, KnownGood, SessionRecord, Store


@dataclass(frozen=True)
class ToStore:
    """A version to store as last known good: its recording, and the document dumped
    for its spec hash if one was. Otherwise the document is dumped when stored
    (`known_good`), after the load rather than on its way: on a first start that is a
    dump for each manifest a worker parsed and hashed."""

    recording: DesiredRecording
    document: dict[str, Any] | None = None

    @property
    def name(self) -> str:
        return self.recording.name

    def known_good(self) -> KnownGood:
        d = self.recording
        document = self.document if self.document is not None else d.manifest.document()
        return KnownGood(d.name, d.source_file, d.spec_hash, document)


@dataclass(frozen=True)
class Desired:
    recordings: tuple[DesiredRecording, ...]
    invalid_files: frozenset[str]
    problems: tuple[str, ...] = ()
    # Versions to store as last known good, and names to forget (removed for real).
    remember: tuple[ToStore, ...] = ()
    forget: tuple[str, ...] = ()
    # Paths that could not be read: whatever came from a file at or under one of them
    # failed to load (its last known good stands, its sessions are kept), never removed.
    unreadable: frozenset[str] = frozenset()
    # Names whose last known good version has to stand in but was given without its
    # document (the daemon's index): build again with them (`known_good(names)`).
    wanting: tuple[str, ...] = ()
    # Errors of files that loaded but contribute nothing (an unknown app profile): files
    # failing to load as much as those whose errors the load found.
    file_errors: tuple[Diagnostic, ...] = ()
    # Manifests whose last known good version would stand in but names an app profile
    # the config no longer has: their live sessions are kept, wherever they started.
    held: frozenset[str] = frozenset()

    def kept(self) -> Desired:
        """What a long-lived holder keeps of this build: not the versions to store (on
        a first start, a document for each manifest), which go to the store once."""
        return replace(self, remember=(), forget=())


def under(path: str | None, roots: frozenset[str]) -> bool:
    """Whether `path` is one of `roots` or lies below one of them."""
    if not path or not roots:
        return False
    return path in roots or any(path.startswith(root.rstrip("/") + "/") for root in roots)


def _recording(
    m: Manifest, app_id: str, source_file: str, spec_hash: str, schedule: Schedule
) -> DesiredRecording:
    """The desired recording of a valid manifest. Its requests are translated at
    their first use (`DesiredRecording.requests`), not here."""
    return DesiredRecording(
        name=m.name,
        app=m.app,
        app_id=app_id,
        channel=m.channel,
        uid=m.recording_uid,
        mode=m.mode,
        schedule=schedule,
        manifest=m,
        spec_hash=spec_hash,
        source_file=source_file,
        suspend=m.suspend,
        update_policy=m.update_policy,
        starting_deadline=m.starting_deadline,
        rollover_uid=m.rollover_uid,
    )


def _loaded(item: LoadedManifest, app_id: str) -> DesiredRecording:
    """The desired recording of a loaded manifest (its spec hash and schedule as the
    load kept them)."""
    return _recording(item.manifest, app_id, item.file, item.spec_hash, item.schedule)


@dataclass(frozen=True)
class Delta:
    """What a rebuild of the desired recordings changed, by manifest name.

    `rebuilt`: the recordings built anew (the others are the very same objects as
    before); None after a full rebuild, when any may have changed."""

    added: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    rebuilt: tuple[DesiredRecording, ...] | None = None


class DesiredCache:
    """The desired recordings of a long-lived process, rebuilt only where files changed.

    After a load that changed a few files (`LoadResult.changed`) and left the set
    of failing files as it was, only those files' manifests are made again; the
    rest are kept as they are. Anything else (the first
    build, a file that starts or stops failing, an unknown app profile, a manifest
    gone while a file fails to load) rebuilds everything with `desired_recordings`,
    which gives the same answer.
    """

    def __init__(self) -> None:
        self._by_id: dict[int, tuple[Manifest, str, str, DesiredRecording]] = {}
        self._desired: Desired | None = None
        self._app_ids: dict[str, str] = {}

    def build(
        self,
        loaded: LoadResult,
        app_ids: Mapping[str, str],
        known_good: Mapping[str, KnownGood],
    ) -> tuple[Desired, Delta]:
        previous = self._desired
        if (
            previous is not None
            and dict(app_ids) == self._app_ids
            and loaded.failed_files == previous.invalid_files
            and loaded.unreadable == previous.unreadable
            and not previous.problems
            and not previous.file_errors
        ):
            patched = self._patch(previous, loaded, app_ids, known_good)
            if patched is not None:
                self._desired = patched[0].kept()
                return patched
        desired = desired_recordings(
            loaded.manifests, app_ids, loaded.failed_files, known_good, self, loaded.unreadable
        )
        if desired.wanting:  # not kept: the caller builds again with those documents
            return desired, Delta()
        before = {d.name: d.spec_hash for d in previous.recordings} if previous else {}
        after = {d.name: d.spec_hash for d in desired.recordings}
        delta = Delta(
            added=tuple(sorted(after.keys() - before.keys())),
            changed=tuple(sorted(n for n in after.keys() & before.keys() if after[n] != before[n])),
            removed=tuple(sorted(before.keys() - after.keys())),
        )
        self._desired, self._app_ids = desired.kept(), dict(app_ids)
        return desired, delta

    def _patch(
        self,
        previous: Desired,
        loaded: LoadResult,
        app_ids: Mapping[str, str],
        known_good: Mapping[str, KnownGood],
    ) -> tuple[Desired, Delta] | None:
        changed = loaded.changed
        items = [item for item in loaded.manifests if item.file in changed] if changed else []
        if any(item.manifest.app not in app_ids for item in items):
            return None  # a new problem: the full build reports it
        kept = [d for d in previous.recordings if d.source_file not in changed]
        names = {d.name for d in kept}
        documents = [i.dumped_unless_hashed() for i in items]
        rebuilt = [self.recording(i, app_ids[i.manifest.app]) for i in items]
        if any(d.name in names for d in rebuilt):
            return None  # a manifest moved between files: let the full build sort it out
        old = {d.name: d for d in previous.recordings if d.source_file in changed}
        still = {id(d.manifest) for d in rebuilt}
        for d in old.values():  # the replaced manifests need not be kept alive
            if id(d.manifest) not in still:
                self._by_id.pop(id(d.manifest), None)
        remember = tuple(
            version
            for i, d, document in zip(items, rebuilt, documents, strict=True)
            if (version := _to_store(i, d, known_good, document)) is not None
        )
        new_names = {d.name for d in rebuilt}
        removed = tuple(sorted(old.keys() - new_names))
        if removed and (loaded.failed_files or loaded.unreadable):
            return None  # a file that does not load may hold them: the full build decides
        desired = Desired(
            tuple(kept + rebuilt),
            previous.invalid_files,
            (),
            remember,
            tuple(n for n in removed if n in known_good),
        )
        delta = Delta(
            added=tuple(sorted(new_names - old.keys())),
            changed=tuple(
                sorted(d.name for d in rebuilt if d.name in old and old[d.name] is not d)
            ),
            removed=removed,
            rebuilt=tuple(rebuilt),
        )
        return desired, delta

    def recording(self, item: LoadedManifest, app_id: str) -> DesiredRecording:
        """The DesiredRecording of a manifest object, built once per object (a reload
        re-uses the objects of unchanged files; the cache holds on to them so that
        their ids cannot be reused)."""
        m, source_file = item.manifest, item.file
        entry = self._by_id.get(id(m))
        if entry is None or entry[1] != app_id or entry[2] != source_file:
            entry = (m, app_id, source_file, _loaded(item, app_id))
            self._by_id[id(m)] = entry
        return entry[3]

    def sweep(self, recordings: Sequence[DesiredRecording]) -> None:
        """Forget the manifests of recordings no longer desired."""
        live = {id(d.manifest) for d in recordings}
        self._by_id = {k: v for k, v in self._by_id.items() if k in live}


def invalid_files(
    loaded: Sequence[LoadedManifest],
    app_ids: Mapping[str, str],
    failed_files: frozenset[str] = frozenset(),
) -> tuple[frozenset[str], tuple[Diagnostic, ...]]:
    """Files that failed to load or hold a manifest naming an unknown app profile (a
    file with any problem contributes nothing), and the errors of the latter."""
    invalid = set(failed_files)
    errors = []
    for item in loaded:
        if item.manifest.app not in app_ids:
            invalid.add(item.file)
            known = ", ".join(sorted(app_ids)) or "none configured"
            message = f"unknown app profile {item.manifest.app!r} (known: {known})"
            line, column = item.position_of("app")
            errors.append(Diagnostic(item.file, line, column, "app", message))
    return frozenset(invalid), tuple(errors)


def desired_recordings(
    loaded: Sequence[LoadedManifest],
    app_ids: Mapping[str, str],
    failed_files: frozenset[str] = frozenset(),
    known_good: Mapping[str, KnownGood] | None = None,
    cache: DesiredCache | None = None,
    unreadable: frozenset[str] = frozenset(),
) -> Desired:
    """DesiredRecordings for the loaded manifests; `app_ids` maps profile names to App IDs.

    A manifest whose file failed to load stands in its last known good version
    (`known_good`, from the store), so its recordings still start and stop on
    schedule; a file with any problem contributes nothing else. So does a manifest
    that no file gives now while a file that does not load may hold it (`hiding`):
    moved or renamed into a broken file, it is not removed. `known_good` needs
    documents only for the versions that stand in (those missing are `wanting`): for
    the others the name, file and spec hash tell whether to store a new version.
    """
    failing, file_errors = invalid_files(loaded, app_ids, failed_files)
    problems: list[str] = []
    invalid = set(failing)
    kept = known_good or {}
    if unreadable:  # what was loaded from there before failed to load now
        invalid |= {e.source_file for e in kept.values() if under(e.source_file, unreadable)}
    hidden = hiding(loaded, invalid, failed_files, unreadable)
    recordings: list[DesiredRecording] = []
    remember: list[ToStore] = []
    for item in loaded:
        if item.file in invalid:
            continue
        app_id = app_ids[item.manifest.app]
        document = item.dumped_unless_hashed()
        d = cache.recording(item, app_id) if cache is not None else _loaded(item, app_id)
        recordings.append(d)
        version = _to_store(item, d, kept, document)
        if version is not None:
            remember.append(version)
    recordings = [d for d in recordings if d.source_file not in invalid]
    if cache is not None:
        cache.sweep(recordings)
    names = {d.name for d in recordings}
    given = {item.file for item in loaded}
    wanting: list[str] = []
    held: set[str] = set()
    standing_in = (
        e
        for e in kept.values()
        if e.name not in names and (e.source_file in invalid or hidden(e.name))
    )
    for entry in sorted(standing_in, key=lambda e: e.name) if invalid or unreadable else ():
        if not entry.document:  # an index entry: the caller reads it and builds again
            wanting.append(entry.name)
            continue
        moved = entry.source_file not in invalid
        if moved and entry.source_file not in given:
            invalid.add(entry.source_file)  # gone: its sessions are kept, as a broken file's
        try:
            m = Manifest.model_validate(entry.document)
            if m.app not in app_ids:
                held.add(entry.name)  # nothing to plan with, nothing to stop either
                continue
            standing = _recording(
                m, app_ids[m.app], entry.source_file, m.spec_digest(), m.build_schedule()
            )
            recordings.append(standing)
        except ValueError:
            problems.append(
                f"{entry.source_file}: the stored version of {entry.name!r} no longer validates"
            )
            continue
        names.add(entry.name)
        stored = entry.stored_at.isoformat() if entry.stored_at else "earlier"
        if moved:
            problems.append(
                f"{entry.source_file}: no longer gives {entry.name!r}, and "
                f"{_not_loading(sorted({*failed_files, *unreadable} or failing))} may "
                f"hold it now: it follows its last known good version (stored {stored}) "
                "until every file loads"
            )
        else:
            problems.append(
                f"{entry.source_file}: does not load; {entry.name!r} follows its last known "
                f"good version (stored {stored})"
            )
    forget = tuple(
        name
        for name, entry in kept.items()
        if name not in names
        and entry.source_file not in invalid
        and name not in wanting
        and name not in held
    )
    return Desired(
        tuple(recordings),
        frozenset(invalid),
        tuple(problems),
        tuple(remember),
        forget,
        unreadable,
        tuple(wanting),
        file_errors,
        frozenset(held),
    )


def _not_loading(files: Sequence[str]) -> str:
    """`a.yaml, which does not load,` or `a.yaml and 2 more, which do not load,`."""
    if len(files) <= 1:
        return f"{files[0] if files else 'a file'}, which does not load,"
    return f"{files[0]} and {len(files) - 1} more, which do not load,"


def hiding(
    loaded: Sequence[LoadedManifest],
    invalid: Collection[str],
    failed_files: frozenset[str],
    unreadable: frozenset[str],
) -> Callable[[str], bool]:
    """Whether a manifest that no valid file gives may be held by one that does not
    load: any, while a file fails to load or a path cannot be read (what it holds is
    unknown); else those a file with an unknown app profile names."""
    if failed_files or unreadable:
        return lambda name: True
    named = {item.manifest.name for item in loaded if item.file in invalid}
    return named.__contains__


def _unchanged(entry: KnownGood | None, d: DesiredRecording) -> bool:
    return (
        entry is not None and entry.spec_hash == d.spec_hash and entry.source_file == d.source_file
    )


def _to_store(
    item: LoadedManifest,
    d: DesiredRecording,
    known_good: Mapping[str, KnownGood],
    document: dict[str, Any] | None,
) -> ToStore | None:
    """The version of `d` to store as last known good (None: stored already, or it
    holds a literal secret, which is never stored); `document`: its dump, if made."""
    if _unchanged(known_good.get(d.name), d) or item.manifest.literal_secrets():
        return None
    return ToStore(d, document)


async def remember_known_good(store: Store, desired: Desired) -> None:
    """Keep the valid versions for the next pass (only `apply` and the daemon write).
    The documents not dumped yet are dumped on a thread: the event loop goes on."""
    if desired.remember:
        entries = await asyncio.to_thread(lambda: [r.known_good() for r in desired.remember])
    else:
        entries = []
    await store.remember_known_good(entries, desired.forget)


async def observe(
    store: Store,
    desired: Desired,
    executor: Executor | None = None,
    apps: frozenset[str] | None = None,
) -> ActualState:
    """The actual state from the store; with an executor, Agora's notifications kept for
    these sessions are acted on, and running sessions (and ended ones whose end is not
    confirmed) are queried first (`query`, one per session: the resync that notices idle
    and abnormal exits, and failovers taken for exits). `apps`: only the sessions of
    these App IDs (a replica's own; None: all). What `desired` could not read keeps
    its sessions: its files that do not load (or cannot be read), the manifests it
    holds (`Desired.held`)."""

    def mine(sessions: list[SessionRecord]) -> list[SessionRecord]:
        return sessions if apps is None else [s for s in sessions if s.app_id in apps]

    live = mine(await store.live_sessions())
    problems: list[str] = []
    if executor is not None:
        await executor.act_on_notices(apps)
        queried = live + mine(await store.unconfirmed_sessions())
        if queried:
            problems = await executor.refresh(queried)
            live = mine(await store.live_sessions())
    invalid_files, unreadable = desired.invalid_files, desired.unreadable
    if unreadable:  # sessions of files that cannot be read now are kept, not stopped
        invalid_files = invalid_files | {
            s.source_file for s in live if s.source_file and under(s.source_file, unreadable)
        }
    latest = await store.latest_ended(apps)
    return ActualState(
        live=tuple(live),
        latest_ended=latest,
        manifest_states=await store.manifest_states(),
        invalid_files=invalid_files,
        problems=tuple(problems),
        held=desired.held,
    )


@dataclass(frozen=True)
class PassResult:
    plan: Plan
    results: tuple[ActionResult, ...] = field(default=())
    # Live sessions that could not be queried (nothing was concluded about them).
    problems: tuple[str, ...] = ()
    # Recordings found live on Agora that the store does not know (see `untracked`).
    untracked: tuple[SessionRecord, ...] = ()

    @property
    def ok(self) -> bool:
        """Every action succeeded and every live session could be queried."""
        return all(r.ok for r in self.results) and not self.problems


async def reconcile_once(
    desired: Desired,
    store: Store,
    executor: Executor,
    now: datetime,
    policy: PlanPolicy | None = None,
    *,
    refresh: bool = True,
    apps: frozenset[str] | None = None,
) -> PassResult:
    """Observe (querying live sessions when `refresh`), plan at `now`, execute.

    A recording found ended by the refresh is restarted in this same pass when it
    is still wanted. Passes at window boundaries skip the refresh, so that their
    starts and stops are not queued behind one query per live session. `apps`: act
    on these App IDs only (what a replica owns; None: all).
    """
    the_plan, actual = await plan_once(
        desired, store, now, policy, executor=executor if refresh else None, apps=apps
    )
    results = await executor.execute(the_plan, {d.name: d for d in desired.recordings})
    # As observed before this pass's actions: what they changed shows in the next pass.
    found = untracked(actual, desired.recordings, now)
    # A one-off pass ends here: what the store refused is written now, or said.
    left = await executor.outbox.settle_all()
    return PassResult(the_plan, tuple(results), actual.problems + left, found)


async def plan_once(
    desired: Desired,
    store: Store,
    now: datetime,
    policy: PlanPolicy | None = None,
    *,
    executor: Executor | None = None,
    apps: frozenset[str] | None = None,
) -> tuple[Plan, ActualState]:
    """Observe (querying live sessions first when given an executor) and plan at `now`;
    `apps`: for these App IDs only (a replica plans what it owns; None: everything)."""
    actual = await observe(store, desired, executor, apps)
    recordings = desired.recordings
    if apps is not None:
        recordings = tuple(d for d in recordings if d.app_id in apps)
    return plan(recordings, actual, now, policy), actual


def untracked(
    actual: ActualState, recordings: Iterable[DesiredRecording], now: datetime
) -> tuple[SessionRecord, ...]:
    """Manifests wanted at `now` whose last start met 53 with no session of ours on the
    target: a recording the store does not know is live there (never silently
    ignored). Each is the failed session that met it. A later successful start clears
    it, and so does no longer wanting it (removed, suspended, its window over): then
    nothing tries that target again, and what the 53 met is not known to be there."""
    met = {n: s for n, s in actual.latest_ended.items() if s.end_kind is EndKind.UNTRACKED}
    if not met:  # as in nearly every pass: no schedule is looked at
        return ()
    recording = {s.manifest for s in actual.live}
    wanted = {d.name for d in recordings if d.name in met and d.wanted_at(now)}
    return tuple(met[name] for name in sorted(wanted - recording))
