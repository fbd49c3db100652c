"""What the daemon wants: the manifests, loaded again when they change.

The one owner of the desired recordings (`desired`, `by_name`), the errors of the
files that do not load, the index of last known good versions and the versions the
store has not taken yet. A reload parses only the files that changed (in a thread)
and rebuilds the desired recordings from them (in a thread too: a full rebuild
translates every manifest); a file that fails to load keeps its last known good
version, and its errors are logged with file, line and column.

This module must never plan or act: it tells the daemon what changed (`Delta`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path

import structlog

from orchestrator.daemon.gcpolicy import GC_POLICY
from orchestrator.manifest.diagnostics import Diagnostic
from orchestrator.manifest.loader import LoadResult, ManifestCache
from orchestrator.reconcile.plan import DesiredRecording
from orchestrator.reconcile.reconciler import (
    Delta,
    Desired,
    DesiredCache,
    remember_known_good,
    under,
)
from orchestrator.runtime import Runtime
from orchestrator.state import KnownGood, StoreError

log = structlog.get_logger("orchestrator.daemon")


def few(names: Sequence[str], limit: int = 20) -> list[str]:
    """A log-sized list: the first `limit` names, then how many more."""
    shown = list(names[:limit])
    if len(names) > limit:
        shown.append(f"... and {len(names) - limit} more")
    return shown


def describe_diagnostic(d: Diagnostic) -> str:
    return f"{d.file}:{d.line}:{d.column}: {d.field + ': ' if d.field else ''}{d.message}"


class Reloader:
    def __init__(self, runtime: Runtime, manifests: Path) -> None:
        self._rt = runtime
        self._app_ids = {name: p.app_id for name, p in runtime.config.apps.items()}
        # The App IDs key the schedule-clash check (two profiles of one App ID clash);
        # the process's collector policy runs around each load.
        self._cache = ManifestCache([manifests], app_ids=self._app_ids, hooks=GC_POLICY)
        self._desired_cache = DesiredCache()
        self._known: dict[str, KnownGood] = {}
        self._unremembered: list[Desired] = []
        self.desired = Desired((), frozenset())
        self.by_name: dict[str, DesiredRecording] = {}
        self.file_errors: tuple[Diagnostic, ...] = ()

    def move(self, manifests: Path) -> None:
        """Load from another manifests directory from now on (`manifests.dir` changed by a
        SIGHUP): the next reload reads it whole; what it no longer holds is removed."""
        self._cache = ManifestCache([manifests], app_ids=self._app_ids, hooks=GC_POLICY)

    def app_of(self, manifest: str) -> str | None:
        d = self.by_name.get(manifest)
        return d.app_id if d is not None else None

    async def start(self) -> None:
        """Read the index of last known good versions (names, files, hashes)."""
        self._known = await self._rt.store.known_good(documents=False)

    async def reload(self, trigger: str, paths: set[str] | None = None) -> Delta | None:
        """Load what changed (`paths`: only these files; None: look at everything) and
        rebuild the desired recordings; None when the reload could not be done (the
        previous manifests stay in effect)."""
        started = time.monotonic()
        now = self._rt.clock()
        try:
            loaded = await asyncio.to_thread(self._cache.load, now=now, hint=paths)
            app_ids = self._app_ids
            # The stored documents of what fails to load stand in for it; the index in
            # memory has none, so they are read for those files only.
            known = await self._with_documents(loaded.failed_files, loaded.unreadable)
            build = self._desired_cache.build
            desired, delta = await asyncio.to_thread(build, loaded, app_ids, known)
            if desired.invalid_files - loaded.failed_files:  # an unknown app profile
                known = await self._with_documents(desired.invalid_files, loaded.unreadable)
                desired, delta = await asyncio.to_thread(build, loaded, app_ids, known)
        except StoreError as exc:
            log.error("manifests.reload_failed", trigger=trigger, error=str(exc))
            return None
        except Exception:
            log.exception("manifests.reload_failed", trigger=trigger)
            return None
        self._unremembered.append(desired)
        await self.remember()
        for entry in desired.remember:  # the index only: documents stay in the store
            self._known[entry.name] = KnownGood(entry.name, entry.source_file, entry.spec_hash, {})
        for name in desired.forget:
            self._known.pop(name, None)
        self.desired = desired
        self.by_name = {d.name: d for d in desired.recordings}
        self.file_errors = tuple(loaded.errors)
        self._log_diagnostics(loaded, first=trigger == "start")
        for problem in desired.problems:
            log.warning("manifests.problem", problem=problem)
        log.info(
            "manifests.reloaded",
            trigger=trigger,
            manifests=len(desired.recordings),
            added=few(delta.added),
            changed=few(delta.changed),
            removed=few(delta.removed),
            files_changed=len(loaded.changed),
            failing=few(sorted(desired.invalid_files)),
            duration_ms=round((time.monotonic() - started) * 1000, 1),
        )
        return delta

    async def remember(self) -> None:
        """Store the reloads' new last known good versions, in order; when the store
        does not answer, they stay in effect and are stored at a later pass."""
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
        self, files: frozenset[str], unreadable: frozenset[str]
    ) -> dict[str, KnownGood]:
        known = self._known
        if not files and not unreadable:
            return known
        wanted = [
            name
            for name, entry in known.items()
            if entry.source_file in files or under(entry.source_file, unreadable)
        ]
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
