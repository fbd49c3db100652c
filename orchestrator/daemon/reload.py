"""What the daemon wants: the manifests, loaded again when they change.

The one owner of the desired recordings (`desired`, `by_name`), the errors of the
files that do not load, the index of last known good versions and the versions the
store has not taken yet. A reload parses only the files that changed (in a thread)
and rebuilds the desired recordings from them (in a thread too: a full rebuild
makes one for every manifest); a file that fails to load keeps its last known good
version, and its errors are logged with file, line and column.

What the loads parsed is kept on disk (`snapshot`, in the state directory) a little
after each change and at shutdown, so that the next start takes every file whose
bytes are unchanged from there instead of parsing it again.

This module must never plan or act: it tells the daemon what changed (`Delta`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path

import structlog

from orchestrator.config import Config
from orchestrator.daemon.gcpolicy import GC_POLICY
from orchestrator.manifest.diagnostics import Diagnostic
from orchestrator.manifest.helper import ParseHelper
from orchestrator.manifest.loader import LoadResult, ManifestCache
from orchestrator.manifest.model import canonical_digest
from orchestrator.manifest.snapshot import SNAPSHOT_FILE, Saved, Snapshot, SnapshotError
from orchestrator.reconcile.plan import DesiredRecording
from orchestrator.reconcile.reconciler import (
    Delta,
    Desired,
    DesiredCache,
    remember_known_good,
    under,
)
from orchestrator.runtime import Runtime
from orchestrator.secrets import describe_secrets_in
from orchestrator.state import KnownGood, StoreError

log = structlog.get_logger("orchestrator.daemon")

SNAPSHOT_DELAY = 10.0
"""Seconds without a reload that parsed something before the snapshot is written: edits
come in bursts (a `git checkout`), and one write follows the burst, not inside it."""


UNCHANGED = Delta()
"""What a `quiet` reload that found nothing changed gives (nothing else is done)."""


def _snapshot_of(config: Config) -> tuple[Path, bytes]:
    """Where the snapshot is, and what it depends on besides the program: the whole
    configuration, each secret as its reference's description (no secret value), but
    the replica's name (by default it holds the process id)."""
    exclude = {"replica": {"name"}}
    dump = config.model_dump(mode="json", by_alias=True, warnings=False, exclude=exclude)
    key = canonical_digest(describe_secrets_in(dump, config.secret_refs())).encode()
    return config.state.dir / SNAPSHOT_FILE, key


def few(names: Sequence[str], limit: int = 20) -> list[str]:
    """A log-sized list: the first `limit` names, then how many more."""
    shown = list(names[:limit])
    if len(names) > limit:
        shown.append(f"... and {len(names) - limit} more")
    return shown


def describe_diagnostic(d: Diagnostic) -> str:
    return f"{d.file}:{d.line}:{d.column}: {d.field + ': ' if d.field else ''}{d.message}"


class Reloader:
    def __init__(self, runtime: Runtime, manifests: Path, helper: ParseHelper) -> None:
        self._rt = runtime
        self._app_ids = {name: p.app_id for name, p in runtime.config.apps.items()}
        # The App IDs key the schedule-clash check (two profiles of one App ID clash);
        # the process's collector policy runs around each load.
        self._manifests = manifests
        self._helper = helper  # part of a bulk load parsed in a worker process
        self._cache = self._new_cache(manifests)
        self._snapshot = Snapshot(*_snapshot_of(runtime.config))
        self._snapshot_due = asyncio.Event()
        self._parsed = asyncio.Event()  # a reload parsed something (the debounce's)
        self._desired_cache = DesiredCache()
        self._known: dict[str, KnownGood] = {}
        self._unremembered: list[Desired] = []
        self._remembering = asyncio.Lock()
        self.desired = Desired((), frozenset())
        self.by_name: dict[str, DesiredRecording] = {}
        self.file_errors: tuple[Diagnostic, ...] = ()

    def move(self, manifests: Path) -> None:
        """Load from another manifests directory from now on (`manifests.dir` changed by a
        SIGHUP): the next reload reads it whole; what it no longer holds is removed."""
        self._manifests = manifests
        self._cache = self._new_cache(manifests)
        self._snapshot_due.set()

    def app_of(self, manifest: str) -> str | None:
        d = self.by_name.get(manifest)
        return d.app_id if d is not None else None

    async def start(self) -> None:
        """Read the index of last known good versions (names, files, hashes), and what
        the last process saved of its loads (`snapshot`)."""
        self._known = await self._rt.store.known_good(documents=False)
        saved = await asyncio.to_thread(self._read_snapshot)
        if saved:
            self._cache = self._new_cache(self._manifests, saved)

    def _new_cache(self, manifests: Path, saved: dict[str, Saved] | None = None) -> ManifestCache:
        return ManifestCache(
            [manifests],
            app_ids=self._app_ids,
            hooks=GC_POLICY,
            saved=saved,
            helper=self._helper,
            share_parts=True,  # kept for days: their equal parts held once (`sharing`)
        )

    def _read_snapshot(self) -> dict[str, Saved]:
        started = time.monotonic()
        try:
            with GC_POLICY.loading():  # a bulk of objects made at once, kept for long
                saved = self._snapshot.read()
        except SnapshotError as exc:
            log.warning(
                "manifests.snapshot_unused",
                error=str(exc),
                detail="every manifest file is parsed this time",
            )
            return {}
        log.info(
            "manifests.snapshot_read",
            files=len(saved),
            duration_ms=round((time.monotonic() - started) * 1000, 1),
        )
        return saved

    async def keep_snapshot(self) -> None:
        """Write the snapshot once `SNAPSHOT_DELAY` passed without a reload that parsed
        something (one write a burst, none in the middle of it, where it would slow the
        next reload down); runs until cancelled (at shutdown, `write_snapshot` follows)."""
        while True:
            await self._snapshot_due.wait()
            quiet = False
            while not quiet:
                self._parsed.clear()
                try:
                    await asyncio.wait_for(self._parsed.wait(), SNAPSHOT_DELAY)
                except TimeoutError:
                    quiet = True
            await self.write_snapshot()

    async def write_snapshot(self) -> None:
        """Write what the loads gave now, if that changed since the last write. A
        failure is logged: the next start parses more, and nothing else changes."""
        if not self._snapshot_due.is_set():
            return
        self._snapshot_due.clear()
        path, key = _snapshot_of(self._rt.config)
        if (path, key) != (self._snapshot.path, self._snapshot.depends_on):
            self._snapshot = Snapshot(path, key)  # a SIGHUP changed the config
        started = time.monotonic()
        try:
            size = await asyncio.to_thread(lambda: self._snapshot.write(self._cache.saved()))
        except SnapshotError as exc:
            log.warning("manifests.snapshot_failed", error=str(exc))
            return
        log.info(
            "manifests.snapshot_written",
            path=str(self._snapshot.path),
            bytes=size,
            duration_ms=round((time.monotonic() - started) * 1000, 1),
        )

    async def reload(
        self, trigger: str, paths: set[str] | None = None, *, quiet: bool = False
    ) -> Delta | None:
        """Load what changed (`paths`: only these files; None: look at everything) and
        rebuild the desired recordings; None when the reload could not be done (the
        previous manifests stay in effect). `quiet`: a load that found no file changed
        and the same errors is not logged, and gives `UNCHANGED`."""
        started = time.monotonic()
        now = self._rt.clock()
        # The collector paused for the whole reload, the desired recordings' build
        # included, and what it made frozen once at its end (`gcpolicy`).
        with GC_POLICY.loading():
            return await self._reload(trigger, paths, started, now, quiet)

    async def _reload(
        self, trigger: str, paths: set[str] | None, started: float, now: datetime, quiet: bool
    ) -> Delta | None:
        try:
            loaded = await asyncio.to_thread(self._cache.load, now=now, hint=paths)
            self._helper.release()  # a worker started ahead that this load did not want
            if quiet and not loaded.changed and tuple(loaded.errors) == self.file_errors:
                return UNCHANGED
            app_ids = self._app_ids
            # The stored documents of what fails to load stand in for it; the index in
            # memory has none, so they are read for those files only, and for any other
            # version the build found it wants (an unknown app profile, a manifest moved
            # into a file that does not load).
            failed, unreadable = loaded.failed_files, loaded.unreadable
            known = await self._with_documents(
                name
                for name, entry in self._known.items()
                if entry.source_file in failed or under(entry.source_file, unreadable)
            )
            build = self._desired_cache.build
            desired, delta = await asyncio.to_thread(build, loaded, app_ids, known)
            if desired.wanting:
                known = await self._with_documents(desired.wanting, known)
                desired, delta = await asyncio.to_thread(build, loaded, app_ids, known)
        except StoreError as exc:
            log.error("manifests.reload_failed", trigger=trigger, error=str(exc))
            return None
        except Exception:
            log.exception("manifests.reload_failed", trigger=trigger)
            return None
        # Stored by the pass that follows: before it acts, or beside it when it has
        # nothing to do, after READY at start-up (`Passes.run_pass`); until then they
        # wait in `_unremembered`, not in `desired` (on a first start they are a
        # document for each manifest).
        self._unremembered.append(desired)
        for entry in desired.remember:  # the index only: documents stay in the store
            d = entry.recording
            self._known[d.name] = KnownGood(d.name, d.source_file, d.spec_hash, {})
        for name in desired.forget:
            self._known.pop(name, None)
        self.desired = desired.kept()
        self.by_name = {d.name: d for d in desired.recordings}
        stats = self._cache.last
        if stats is not None and (stats.parsed or stats.removed):
            self._parsed.set()
            self._snapshot_due.set()
        self.file_errors = tuple(loaded.errors)
        self._log_diagnostics(loaded, first=trigger == "start")
        for problem in (*(d.text() for d in desired.file_errors), *desired.problems):
            log.warning("manifests.problem", problem=problem)
        log.info(
            "manifests.reloaded",
            trigger=trigger,
            manifests=len(desired.recordings),
            added=few(delta.added),
            changed=few(delta.changed),
            removed=few(delta.removed),
            files_changed=len(loaded.changed),
            parsed=stats.parsed if stats is not None else 0,
            restored=stats.restored if stats is not None else 0,
            helped=stats.helped if stats is not None else 0,
            # The files that fail (not the gone paths whose manifests stand in).
            failing=few(sorted({*loaded.failed_files, *(d.file for d in desired.file_errors)})),
            duration_ms=round((time.monotonic() - started) * 1000, 1),
        )
        return delta

    @property
    def unremembered(self) -> bool:
        """Whether last known good versions wait to be stored."""
        return bool(self._unremembered)

    async def remember(self) -> None:
        """Store the reloads' new last known good versions, in order; when the store
        does not answer, they stay in effect and are stored at a later pass. One
        caller at a time: a pass that waits for them waits for one storing them."""
        async with self._remembering:
            await self._remember()

    async def _remember(self) -> None:
        while self._unremembered:
            try:
                await remember_known_good(self._rt.store, self._unremembered[0])
            except StoreError as exc:
                log.error(
                    "manifests.remember_failed",
                    error=str(exc),
                    detail="the reloaded manifests are in effect; their last known good "
                    "versions are stored once the store answers",
                )
                return
            self._unremembered.pop(0)

    async def _with_documents(
        self, names: Iterable[str], known: Mapping[str, KnownGood] | None = None
    ) -> Mapping[str, KnownGood]:
        """`known` (default: the index) with the stored documents of `names`."""
        known = self._known if known is None else known
        wanted = list(names)
        if not wanted:
            return known
        await self.remember()  # what the store is asked for must be in it
        return {**known, **await self._rt.store.known_good(wanted)}

    @staticmethod
    def _log_diagnostics(loaded: LoadResult, *, first: bool) -> None:
        for d in loaded.diagnostics:
            if not first and d.file not in loaded.changed:
                continue  # reported when its file last changed
            event = "manifest.invalid" if d.severity == "error" else "manifest.warning"
            emit = log.error if d.severity == "error" else log.warning
            emit(
                event,
                file=d.file,
                line=d.line,
                column=d.column,
                field=d.field,
                message=d.message,
                detail=describe_diagnostic(d),
            )
