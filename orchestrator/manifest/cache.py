"""Many manifest files, loaded again cheaply: `ManifestCache` and `load_manifests`.

`ManifestCache` is the one way many files are loaded: the daemon keeps one for
its whole life and reloads through it, parsing only the files that changed;
`load_manifests` is one load of a fresh cache. A cache must never answer
differently from a fresh load of the same files at the same `now`; to keep a
reload of 10,000 manifests within about 100 ms it trusts a file's stat key
(`FileKey`, with the `RACY_NS` guard), keeps each directory's listing
(`Discovery`) and the clash searches (`OverlapMemo`) between loads.

It must never take what it cannot read for what is not there (see `discovery`),
and never touches the garbage collector itself: a long-lived process that wants
the collector paused and the loaded objects frozen passes `LoadHooks` (the
daemon's `orchestrator.daemon.gcpolicy`).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
import time
import typing
from collections.abc import Collection, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from orchestrator.manifest.crosscheck import OverlapMemo, cross_check
from orchestrator.manifest.diagnostics import Diagnostic
from orchestrator.manifest.discovery import (
    YAML_SUFFIXES,
    Discovery,
    FileKey,
    cannot_read,
    file_key,
    is_racy,
    racy_after,
)
from orchestrator.manifest.fastyaml import forget_scalars
from orchestrator.manifest.loaded import LoadedManifest, LoadResult, LoadStats, Target, targets_of
from orchestrator.manifest.parsing import parse_file, read_manifest_file
from orchestrator.manifest.reading import ReadFailure
from orchestrator.manifest.sharing import Sharer
from orchestrator.manifest.snapshot import Saved

if TYPE_CHECKING:  # a load with a helper was given one; `validate` never needs the module
    from orchestrator.manifest.helper import Help, Helped, ParseHelper

__all__ = ["FileKey", "LoadHooks", "ManifestCache", "load_manifests"]

_FRESH = Sharer()  # freshly parsed manifests share nothing among themselves yet


def load_manifests(
    paths: Sequence[str | Path],
    *,
    strict: bool = False,
    now: datetime | None = None,
    app_ids: Mapping[str, str] | None = None,
) -> LoadResult:
    """Load every manifest under `paths` and check them together.

    Every file is read even when others fail. Cross-file checks (duplicate names,
    `auto` uids that collide, and, when `now` is given, two manifests that could
    record the same channel and uid of an App ID at the same time; `app_ids`:
    profile name -> App ID, see `cross_check`) mark the files involved as failed.
    One load of a fresh `ManifestCache`: the same code path as the daemon's.
    """
    return ManifestCache(paths, strict=strict, app_ids=app_ids).load(now=now)


class LoadHooks(Protocol):
    """What a long-lived process runs around each `ManifestCache.load`.

    The daemon passes its garbage collector policy
    (`orchestrator.daemon.gcpolicy.GC_POLICY`): the collector paused during a load,
    young objects collected every few hundred parses, what was loaded frozen after.
    Called with the cache's lock held, from the thread that loads.
    """

    def loading(self) -> AbstractContextManager[object]:
        """Entered before a load looks at anything, left when it has its answer."""
        ...

    def parsed(self, count: int) -> None:
        """After each file parsed by this load; `count`: files parsed by it so far."""
        ...

    def loaded(self, stats: LoadStats) -> None:
        """After the load, with what it did (inside `loading`)."""
        ...


_K = typing.TypeVar("_K", str, Target)


@dataclass(eq=False, slots=True)
class _Entry:
    """One file as last loaded."""

    key: FileKey | None  # None: it could not be examined; look again next time
    racy: bool
    content: bytes | Diagnostic  # digest of the bytes parsed, or why they were not read
    manifests: list[LoadedManifest]
    diagnostics: list[Diagnostic]
    failed: bool
    names: list[str]  # per manifest, for the cross-file checks
    targets: list[tuple[Target, ...]]  # per manifest: its uid's and its rolloverUid's
    unreadable: bool = False  # it could not be read: what it holds is unknown
    # not a regular file: not read, not one of `LoadResult.files`; unreadable to a load
    # all the same (`LoadResult.unreadable`): what the path holds is unknown
    skipped: bool = False
    # manifests with explicit windows and the end of their last window ("ended" warnings),
    # and the earliest of those ends (before it, nothing has ended)
    last_ends: list[tuple[LoadedManifest, datetime]] = field(default_factory=list)
    earliest_end: datetime | None = None


def _unread_entry(key: FileKey | None, problem: Diagnostic) -> _Entry:
    """A file whose bytes were not taken: `problem.kind` says why."""
    unreadable = problem.kind is ReadFailure.UNREADABLE
    skipped = problem.kind is ReadFailure.NOT_REGULAR
    key = None if unreadable else key  # try again next time, whatever the key
    failed = problem.severity == "error"
    return _Entry(key, False, problem, [], [problem], failed, [], [], unreadable, skipped)


class ManifestCache:
    """The manifests under `paths`, loaded again cheaply: only changed files are parsed.

    Each `load()` discovers the files again and looks at each one's `FileKey`; a
    file whose key changed, or that is new, is read, and parsed only if its bytes
    differ from the version held (a `touch` costs a read). Deleted files drop out.
    The cross-file checks see every manifest each time, but only groups of two or
    more (by name, by target) can yield a finding, and only those are checked,
    with clash searches kept between loads (`OverlapMemo`). The result is what
    `load_manifests` returns for the same files at the same `now`.

    Thread-safe (one load at a time). `app_ids` (profile name -> App ID, when the
    caller has the config) keys the clash check on App IDs (see `cross_check`);
    it is fixed for the cache's life. `hooks` run around each load (see
    `LoadHooks`); without them the cache leaves the garbage collector alone.
    `saved`: what an earlier process parsed (`snapshot`), by path: a file whose
    bytes have the digest saved is taken from it instead of being parsed, once.
    `helper`: a load that parses as many files as it `wants` shares them with a worker
    process (`helper`); its results are taken for bytes of the same digest only.
    `share_parts`: the manifests' equal parts are held once (`sharing`), for a holder
    that keeps them for long (the daemon): it costs a command that loads once and
    exits some time for memory it frees at its exit anyway.
    """

    def __init__(
        self,
        paths: Sequence[str | Path],
        *,
        strict: bool = False,
        app_ids: Mapping[str, str] | None = None,
        hooks: LoadHooks | None = None,
        saved: Mapping[str, Saved] | None = None,
        helper: ParseHelper | None = None,
        share_parts: bool = False,
    ) -> None:
        self.paths: tuple[str, ...] = tuple(str(p) for p in paths)
        self.share_parts = share_parts
        self.strict = strict
        self.app_ids: Mapping[str, str] | None = dict(app_ids) if app_ids is not None else None
        self.hooks = hooks
        self.parsed_files = 0
        """Files parsed over the cache's life (a file parsed at two loads counts twice)."""
        self.read_files = 0
        """Files read over the cache's life."""
        self._saved: dict[str, Saved] = dict(saved) if saved else {}
        self.helper = helper
        self._helped: Helped = {}
        self.last: LoadStats | None = None
        """What the last `load()` did."""
        self._entries: dict[str, _Entry] = {}
        self._discovery = Discovery(remember=True)
        # The last full discovery: a hinted load re-uses it (see `load`).
        self._files: list[str] | None = None
        self._discovery_problems: list[Diagnostic] = []
        self._discovery_unreadable: frozenset[str] = frozenset()
        self._unreadable: frozenset[str] = frozenset()  # as the last load reported it
        self._memo = OverlapMemo()
        self._lock = threading.Lock()
        # how many manifests have each name and each target; the keys held more than once
        self._name_count: dict[str, int] = {}
        self._target_count: dict[Target, int] = {}
        self._shared_names: set[str] = set()
        self._shared_targets: set[Target] = set()

    def load(
        self, *, now: datetime | None = None, hint: Collection[str] | None = None
    ) -> LoadResult:
        """Load again; `result.changed` names the files added, modified or removed.

        `hint`: the only paths that changed since the last load (what the watch
        reported). Then the tree is not discovered again and only those files are
        looked at, so a reload after one edit costs that file, not a `stat` of every
        file. A hint naming anything but a known manifest file (a new file, a
        directory) falls back to a full load, as does `hint=None`.
        """
        with self._lock:
            hooks = self.hooks
            with hooks.loading() if hooks is not None else contextlib.nullcontext():
                result, stats = self._load(now, self._usable(hint))
                self.last = stats
                if hooks is not None:
                    hooks.loaded(stats)
            return result

    def _usable(self, hint: Collection[str] | None) -> frozenset[str] | None:
        """The hint, when a load may trust it; None: discover everything."""
        if hint is None or self._files is None:
            return None
        known = self._entries
        for path in hint:
            if path in known:
                continue
            if not path.endswith(YAML_SUFFIXES) or os.path.lexists(path):
                return None  # a new file or a directory: its place in the order is unknown
        return frozenset(hint)

    def _discover(self, hint: frozenset[str] | None) -> tuple[list[str], list[Diagnostic]]:
        if hint is None or self._files is None:
            found = self._discovery.discover(self.paths)
            problems = found.problems
            if self.strict:  # warnings (symlink loops) are errors under --strict
                problems = [replace(d, severity="error") for d in problems]
            self._files, self._discovery_problems = found.files, problems
            self._discovery_unreadable = found.unreadable
            return found.files, list(problems)
        self._discovery.listed = 0
        gone = {p for p in hint if p in self._entries and not os.path.lexists(p)}
        if gone:
            self._files = [f for f in self._files if f not in gone]
        return self._files, list(self._discovery_problems)

    def _load(
        self, now: datetime | None, hint: frozenset[str] | None
    ) -> tuple[LoadResult, LoadStats]:
        started = time.perf_counter()
        files, diagnostics = self._discover(hint)
        failed: set[str] = {d.file for d in diagnostics if d.severity == "error"}
        unreadable: set[str] = set(self._discovery_unreadable)
        skipped: set[str] = set()  # not regular files: not read
        old = self._entries
        entries: dict[str, _Entry] = {}
        valid: list[LoadedManifest] = []
        added: set[str] = set()
        modified: set[str] = set()
        replaced: list[tuple[_Entry | None, _Entry]] = []
        read = parsed = positioned = restored = helped = 0
        racy_cutoff = racy_after()
        stat_of = os.stat
        hooks = self.hooks
        worker, seen = self._share(files, hint)
        try:
            helped_files = worker.chunk_of if worker is not None else {}
            unpickled = Sharer(remember=True)  # for this load only
            for path in files:
                before = old.get(path)
                if hint is not None and before is not None and path not in hint:
                    entry = before  # the watch saw no change here
                else:
                    try:
                        st = seen.pop(path, None) or stat_of(path)  # `_share` took some
                    except OSError as exc:
                        reason = exc.strerror or type(exc).__name__
                        entry = _unread_entry(None, cannot_read(path, "the file", reason))
                    else:
                        key = file_key(st)
                        if before is not None and not before.racy and before.key == key:
                            entry = before  # the common case: nothing to do
                        else:
                            racy = is_racy(st, racy_cutoff)
                            if path in helped_files and worker is not None:
                                # A new file is parsed in any case: its worker's result is
                                # waited for now (it may spare the read); a known one may only
                                # have been touched: what has come is taken, and the rest is
                                # waited for only if its bytes changed (below).
                                self._helped.update(worker.take(path, wait=before is None))
                            # the bytes the worker read, when the file's key is still the one
                            # it saw then (and was to be trusted then): not read again here
                            raw: bytes | Saved | Diagnostic | None = self._read_by_worker(path, key)
                            if raw is None:
                                raw = read_manifest_file(path, st, strict=self.strict)
                            if isinstance(raw, Diagnostic):
                                entry = _unread_entry(key, raw)
                            else:
                                read += 1
                                if isinstance(raw, bytes):
                                    digest = hashlib.blake2b(raw, digest_size=16).digest()
                                else:
                                    digest = raw.digest
                                if before is not None and before.content == digest:
                                    before.key, before.racy = key, racy  # touched, not changed
                                    entry = before
                                else:
                                    if path in helped_files and worker is not None:
                                        self._helped.update(worker.take(path))
                                    entry, placed, by_worker = self._parse(
                                        path, raw, key, racy, digest, unpickled
                                    )
                                    if placed is None:
                                        restored += 1
                                    else:
                                        parsed += 1
                                        helped += by_worker
                                        positioned += placed
                                        if hooks is not None:
                                            hooks.parsed(parsed)
                entries[path] = entry
                if entry is not before:
                    replaced.append((before, entry))
                    if before is None:
                        added.add(path)
                    elif entry.content != before.content:
                        modified.add(path)
                if entry.skipped or entry.unreadable:
                    # Neither was read: what the path holds is unknown, not gone (a FIFO
                    # put in a manifest's place must not stop its recording).
                    unreadable.add(path)
                    if entry.skipped:
                        skipped.add(path)
                found = entry.diagnostics
                if entry.earliest_end is not None and now is not None and now >= entry.earliest_end:
                    found = sorted([*found, *_ended(entry, now, strict=self.strict)], key=_position)
                    ended = True
                else:
                    ended = False
                if entry.failed or (self.strict and ended):
                    failed.add(path)
                    diagnostics.extend(found)
                else:
                    valid += entry.manifests
                    if found:
                        diagnostics.extend(found)
        finally:
            if worker is not None:
                worker.cancel()  # what this load did not reach (or, cut short, will not)
        removed = old.keys() - entries.keys()
        # the state changes only once every file has been looked at
        for before, entry in replaced:
            if before is not None:
                self._count(before, -1)
            self._count(entry, 1)
        for path in removed:
            self._count(old[path], -1)
        self._entries = entries
        self._saved.clear()  # the first load took what it could: the rest is stale
        self._helped.clear()
        if parsed:
            forget_scalars()  # kept among this load's objects, they would pin their pages
        self.read_files += read
        self.parsed_files += parsed

        cross = cross_check(self._in_groups(files), now=now, memo=self._memo, app_ids=self.app_ids)
        diagnostics.extend(cross)
        clashing = {d.file for d in cross if d.severity == "error"} - failed
        if clashing:
            failed |= clashing
            valid = [m for m in valid if m.file not in clashing]
        now_unreadable = frozenset(unreadable)
        changed = frozenset(added | modified | removed) | (now_unreadable ^ self._unreadable)
        self._unreadable = now_unreadable
        read_files = [p for p in files if p not in skipped] if skipped else files
        result = LoadResult(
            valid,
            diagnostics,
            frozenset(failed),
            tuple(read_files),
            changed,
            unreadable=now_unreadable,
        )
        stats = LoadStats(
            len(read_files),
            frozenset(added),
            frozenset(modified),
            frozenset(removed),
            read,
            parsed,
            self._discovery.listed,
            time.perf_counter() - started,
            positioned,
            restored,
            helped,
        )
        return result, stats

    def _read_by_worker(self, path: str, key: FileKey) -> Saved | None:
        """What the worker parsed of `path`, when the file's key is the one the worker
        took before reading it, and that key could be trusted then (not `RACY_NS`
        recent): the file holds the bytes it parsed, as a file whose key is unchanged
        between loads does."""
        helped = self._helped.get(path) if self._helped else None
        if helped is None or helped[2] is None or helped[2] != key:
            return None
        return helped[0]

    def _parse(
        self,
        path: str,
        raw: bytes | Saved,
        key: FileKey,
        racy: bool,
        digest: bytes,
        unpickled: Sharer,
    ) -> tuple[_Entry, bool | None, bool]:
        """The file's new entry, whether its findings were placed by a second parse
        (None: taken from what was saved for these very bytes, not parsed), and whether
        the worker parsed it. `raw`: the file's bytes, or what the worker parsed of the
        same bytes (`_read_by_worker`). `unpickled` shares the parts of what was saved
        or parsed by the worker (`Sharer`, remembering for this load)."""
        saved = self._saved.pop(path, None) if self._saved else None
        helped = self._helped.pop(path, None) if self._helped else None
        positioned: bool | None
        by_worker = False
        sharer = unpickled  # a snapshot's or a worker's: of one pickle, copies too
        if saved is not None and saved.digest == digest:
            loaded, found, positioned = saved.manifests, saved.diagnostics, None
        elif helped is not None and helped[0].digest == digest:
            (_, loaded, found), positioned, _ = helped
            by_worker = True
        else:
            assert isinstance(raw, bytes)  # the worker's result has this very digest
            loaded, found, positioned = parse_file(path, raw, strict=self.strict)
            sharer = _FRESH
        if self.share_parts:
            sharer.share(loaded)
        last_ends = [(m, end) for m in loaded if (end := m.manifest.last_window_end()) is not None]
        entry = _Entry(
            key,
            racy,
            digest,
            loaded,
            found,
            any(d.severity == "error" for d in found),
            [m.manifest.name for m in loaded],
            [targets_of(m, self.app_ids) for m in loaded],
            last_ends=last_ends,
            earliest_end=min((end for _, end in last_ends), default=None),
        )
        return entry, positioned, by_worker

    def _share(
        self, files: list[str], hint: frozenset[str] | None
    ) -> tuple[Help | None, dict[str, os.stat_result]]:
        """The worker's part of this load (see `ParseHelper.start`), when it will parse
        `BULK` files or more; nothing without a helper. A hinted load (a `git checkout`
        the watch reported) shares the hinted files. The `stat` results taken to tell,
        by path, for the load to use."""
        seen: dict[str, os.stat_result] = {}
        if self.helper is None or (hint is not None and not self.helper.wants(len(hint))):
            return None, seen
        old, saved = self._entries, self._saved
        todo = [
            p
            for p in files
            if (hint is None or p in hint)
            and p not in saved
            and _may_have_changed(old.get(p), p, seen)
        ]
        if not self.helper.wants(len(todo), lambda: _size_of(todo, seen)):
            return None, seen
        return self.helper.start(todo, strict=self.strict), seen

    def saved(self) -> dict[str, Saved]:
        """What the last load gave for each file read, for a `Snapshot`: files with a
        literal secret are left out (a secret is never written elsewhere)."""
        with self._lock:
            entries = list(self._entries.items())
        return {
            path: Saved(e.content, e.manifests, e.diagnostics)
            for path, e in entries
            if isinstance(e.content, bytes)
            and not any(m.manifest.literal_secrets() for m in e.manifests)
        }

    def _count(self, entry: _Entry, delta: int) -> None:
        """Add (1) or take away (-1) an entry's names and targets from the counts."""
        _recount(self._name_count, self._shared_names, entry.names, delta)
        targets = [target for occupied in entry.targets for target in occupied]
        _recount(self._target_count, self._shared_targets, targets, delta)

    def _in_groups(self, files: list[str]) -> list[LoadedManifest]:
        """The manifests sharing a name or a target with another, in load order.

        Only those can be part of a cross-file finding (see `cross_check`); the
        others are most of 10,000 and need not be looked at.
        """
        names, targets = self._shared_names, self._shared_targets
        if not names and not targets:
            return []
        out: list[LoadedManifest] = []
        for path in files:
            entry = self._entries[path]
            if names.isdisjoint(entry.names) and all(map(targets.isdisjoint, entry.targets)):
                continue
            for m, name, occupied in zip(entry.manifests, entry.names, entry.targets, strict=True):
                if name in names or not targets.isdisjoint(occupied):
                    out.append(m)
        return out


def _may_have_changed(entry: _Entry | None, path: str, seen: dict[str, os.stat_result]) -> bool:
    """Whether a load may parse `path` (new, racy, or its stat key changed); the `stat`
    taken to tell goes into `seen`."""
    if entry is None or entry.racy or entry.key is None:
        return True
    try:
        st = seen[path] = os.stat(path)
    except OSError:
        return False  # reported by the load itself
    return entry.key != file_key(st)


def _size_of(paths: list[str], seen: dict[str, os.stat_result]) -> int:
    """The bytes of `paths` together, by `stat` (taken into `seen`, for the load to use;
    a file that cannot be stat'ed counts nothing: the load reports it)."""
    size = 0
    for path in paths:
        st = seen.get(path)
        if st is None:
            try:
                st = seen[path] = os.stat(path)
            except OSError:
                continue
        size += st.st_size
    return size


def _recount(counts: dict[_K, int], shared: set[_K], keys: Sequence[_K], delta: int) -> None:
    for key in keys:
        count = counts.get(key, 0) + delta
        if count > 0:
            counts[key] = count
        else:
            del counts[key]
        if count > 1:
            shared.add(key)
        else:
            shared.discard(key)


def _position(d: Diagnostic) -> tuple[int, int]:
    return d.line, d.column


def _ended(entry: _Entry, now: datetime, *, strict: bool) -> list[Diagnostic]:
    """A finding for each manifest of `entry` whose explicit windows have all ended by `now`.

    Computed at every load (it depends on `now`), from the ends kept with the entry.
    """
    out = []
    for m, end in entry.last_ends:
        if end <= now:
            line, column = m.position_of("schedule.windows")
            when = end.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            out.append(
                Diagnostic(
                    m.file,
                    line,
                    column,
                    "schedule.windows",
                    f"every window has ended: this manifest never records again "
                    f"(the last ended at {when})",
                    "error" if strict else "warning",
                )
            )
    return out
