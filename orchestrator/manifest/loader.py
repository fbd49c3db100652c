"""Reading manifests from files and directories into models, or into positioned diagnostics.

The fast path (`fastyaml`) parses with ruamel.yaml's C parser (libyaml) and
this module validates with the pydantic model. Only a file that has something
to report is parsed again with the round-trip loader, whose nodes know their
line and column, to place each error on its field (`diagnostics`).

It must never raise on bad input or print a traceback: every problem (broken
YAML, binary garbage, huge files, wrong types, unknown keys) becomes a
`Diagnostic`. Messages never contain a secret value. It must never take what it
cannot read for what is not there: a path, directory or file that cannot be read
is an error at that path and is listed in `LoadResult.unreadable`, so that
whatever stood there keeps its last known good version. Nor may hostile input
crash or hang it: nesting is bounded from the raw text before libyaml composes
anything (`nesting`), alias expansion is bounded before anything is built from
the nodes, and a file is opened only when it is a regular file (a FIFO would
block the read forever).

`ManifestCache` is the one way many files are loaded: the daemon keeps one for
its whole life and reloads through it, parsing only the files that changed;
`load_manifests` is one load of a fresh cache. A cache must never answer
differently from a fresh load of the same files at the same `now`; to keep a
reload of 10,000 manifests within about 100 ms it trusts a file's stat key
(`FileKey`, with the `RACY_NS` guard) and pauses, then freezes, the cyclic
garbage collector (`_GcControl`).
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import operator
import os
import stat
import threading
import time
import typing
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

from pydantic import ValidationError

from orchestrator.manifest.diagnostics import (
    SECRET_FORMS,
    Diagnostic,
    Finding,
    Severity,
    diagnose,
    place,
    position_tree,
)
from orchestrator.manifest.fastyaml import (
    MAX_DEPTH,
    MAX_EXPANDED_NODES,
    TOO_DEEP,
    fast_documents,
    yaml_failure,
)
from orchestrator.manifest.model import Manifest, section_violations
from orchestrator.manifest.nesting import nesting_overflow
from orchestrator.manifest.rules import Loc

__all__ = [
    "MAX_DEPTH",
    "MAX_EXPANDED_NODES",
    "MAX_FILE_BYTES",
    "RACY_NS",
    "TOO_DEEP",
    "YAML_SUFFIXES",
    "Diagnostic",
    "FileKey",
    "LoadResult",
    "LoadStats",
    "LoadedManifest",
    "Loc",
    "ManifestCache",
    "Severity",
    "Target",
    "discover",
    "load_file",
    "load_manifests",
]

MAX_FILE_BYTES = 1024 * 1024
"""Larger files are refused: a manifest is a few hundred bytes; split big sets into files."""


RACY_NS = 2_000_000_000
"""A file (or directory) whose mtime or ctime is this close to the moment it was
looked at is read (listed) again at the next load, whatever its key says.

File times have a granularity (a clock tick locally, a second or two on some
network and old filesystems): a second write of the same size within the tick of
the first leaves the key as it was. Git has the same problem ("racily clean"
index entries) and the same answer. Reading such a file again costs a read, not a
parse, unless its bytes really differ.
"""

YAML_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class LoadedManifest:
    """A valid manifest and where its document starts."""

    manifest: Manifest
    file: str
    line: int
    column: int
    document: int = 0
    key_positions: Mapping[str, tuple[int, int]] = field(default_factory=dict, compare=False)

    def position_of(self, key: str) -> tuple[int, int]:
        """Line and column of a top-level key, or of the document when it is absent."""
        return self.key_positions.get(key, (self.line, self.column))


@dataclass(frozen=True)
class LoadResult:
    manifests: list[LoadedManifest]  # every valid document of files without errors
    diagnostics: list[Diagnostic]  # errors and warnings, all files
    failed_files: frozenset[str]  # files (and paths that cannot be read) with an error
    files: tuple[str, ...] = ()  # every file that was read
    # added, modified or removed since the cache's previous load (a fresh load: every file),
    # and paths that became unreadable or readable again; history, not content, so not compared
    changed: frozenset[str] = field(default=frozenset(), compare=False)
    # Paths (given paths, directories, symlinks, files) that could not be read, each with
    # an error diagnostic. What they held is unknown, not gone: a manifest last loaded from
    # a file at or under one of them failed to load, it was not removed.
    unreadable: frozenset[str] = frozenset()

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "error"]

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "warning"]

    @property
    def ok(self) -> bool:
        return not self.failed_files


# --- discovery -----------------------------------------------------------------------


def discover(paths: Sequence[str | Path]) -> tuple[list[str], list[Diagnostic]]:
    """Files named directly, and `*.yaml`/`*.yml` under directories (recursively, sorted).

    Hidden files and directories (a leading dot) are skipped inside directories.
    Symlinks are followed, to files and to directories; a directory met again
    below itself (a symlink loop) is a warning and is not entered again, and one
    reached a second time elsewhere is not walked twice. A file reached twice
    (through two arguments, or a symlink) is read once, at its first path.

    What cannot be read is an error at its path, never an empty tree: a given
    path that does not exist or cannot be examined, a directory that cannot be
    listed, a symlink that leads nowhere (it may have been a directory of
    manifests). Files are not opened here; the loader checks each one.
    """
    found = _Discovery(remember=False).discover(paths)
    return found.files, found.problems


@dataclass(frozen=True, slots=True)
class _Found:
    files: list[str]
    problems: list[Diagnostic]
    unreadable: frozenset[str]


_FILE, _DIR, _LINK = 0, 1, 2  # what a directory entry is, as listed


@dataclass(eq=False, slots=True)
class _Listing:
    """What `discover` takes from one directory, and the directory's key when listed."""

    key: tuple[int, int, int, int]  # st_mtime_ns, st_ctime_ns, st_ino, st_dev
    racy: bool  # listed within RACY_NS of its last change: list it again next time
    prefix: str  # the directory's path and its real path, each with a trailing separator
    real_prefix: str
    entries: list[tuple[str, int]]  # (name, _FILE | _DIR | _LINK), sorted by name
    files: list[str]  # paths of the _FILE entries
    reals: list[str]  # their real paths
    subdirs: list[str]  # names of the _DIR entries
    linked: bool  # some entry is a symlink (classified at each walk: its target may change)


class _Discovery:
    """`discover`, optionally remembering each directory's listing between calls.

    A directory's entries change only with its mtime and ctime (creating, removing
    or renaming an entry updates both), so a directory whose key is unchanged, and
    was not listed within `RACY_NS` of a change, is not listed again: a reload that
    changes nothing costs one `stat` per directory instead of a listing, a sort and
    a real path per file. Symlinks are the exception: what they lead to can change
    (or become unreachable) without their directory changing, so they are followed
    again at every walk.
    """

    def __init__(self, *, remember: bool) -> None:
        self._remember = remember
        self._listings: dict[str, _Listing] = {}
        self.listed = 0
        """Directories listed by the last call (the others were remembered)."""

    def discover(self, paths: Sequence[str | Path]) -> _Found:
        files: list[str] = []
        problems: list[Diagnostic] = []
        unreadable: set[str] = set()
        seen: set[str] = set()  # real paths of the files taken
        walked: set[tuple[int, int]] = set()  # (st_dev, st_ino) of the directories walked
        above: set[tuple[int, int]] = set()  # ... of those being walked: the current path
        ends: dict[str, tuple[int, int]] = {}  # directory being walked -> its identity
        listings: dict[str, _Listing] = {}
        racy_after = time.time_ns() - RACY_NS
        self.listed = 0

        def cannot_read(path: str, what: str, exc: OSError) -> None:
            problems.append(_cannot_read(path, what, exc))
            unreadable.add(path)

        def take(path: str, real: str) -> None:
            if real not in seen:
                seen.add(real)
                files.append(path)

        def walk(root: str, real_root: str, root_st: os.stat_result) -> None:
            """Depth first, a directory's files before its subdirectories (each in name
            order), with a stack rather than recursion: any depth is fine."""
            # (path, real path, its stat or None to take it now, through a symlink); a
            # (path, "", None, False) item marks the end of that directory's subtree
            pending: list[tuple[str, str, os.stat_result | None, bool]] = [
                (root, real_root, root_st, False)
            ]
            while pending:
                directory, real, st, link = pending.pop()
                if not real:
                    above.discard(ends.pop(directory))
                    continue
                if st is None:
                    try:
                        st = os.stat(directory)
                    except OSError as exc:
                        cannot_read(directory, "the directory", exc)
                        continue
                ident = (st.st_dev, st.st_ino)
                if ident in above:
                    kind = "symlink loop" if link else "directory loop (a bind mount?)"
                    message = f"{kind}: this is {real}, which contains it; not entered again"
                    problems.append(Diagnostic(directory, 1, 1, "", message, "warning"))
                    continue
                if ident in walked:
                    continue  # reached before through another path: its files are taken
                walked.add(ident)
                listing = self._list(directory, real, st, racy_after)
                if isinstance(listing, OSError):
                    cannot_read(directory, "the directory", listing)
                    continue
                listings[directory] = listing
                subdirs = take_files(listing)
                above.add(ident)
                ends[directory] = ident
                pending.append((directory, "", None, False))
                pending.extend((path, sub, None, via) for path, sub, via in reversed(subdirs))

        def take_files(listing: _Listing) -> list[tuple[str, str, bool]]:
            """Take a directory's files; its subdirectories: (path, real path, via a link)."""
            if listing.linked:
                subdirs: list[tuple[str, str, bool]] = []
                for name, kind in listing.entries:
                    path = listing.prefix + name
                    if kind == _FILE:
                        take(path, listing.real_prefix + name)
                    elif kind == _DIR:
                        subdirs.append((path, listing.real_prefix + name, False))
                    else:
                        follow(path, name, subdirs)
                return subdirs
            if seen.isdisjoint(listing.reals):
                files.extend(listing.files)  # the common case, without a loop in Python
                seen.update(listing.reals)
            else:
                for path, known in zip(listing.files, listing.reals, strict=True):
                    take(path, known)
            return [
                (listing.prefix + name, listing.real_prefix + name, False)
                for name in listing.subdirs
            ]

        def follow(path: str, name: str, subdirs: list[tuple[str, str, bool]]) -> None:
            """A symlink found in a directory: to a directory, a file, or nowhere."""
            manifest = name.endswith(YAML_SUFFIXES)
            try:
                target = os.stat(path)
            except OSError as exc:
                if manifest:  # the loader reports it as a file that cannot be read
                    take(path, path)
                else:
                    cannot_read(path, "the symlink's target", exc)
                return
            if stat.S_ISDIR(target.st_mode):
                subdirs.append((path, os.path.realpath(path), True))
            elif manifest:
                take(path, os.path.realpath(path))

        for raw in paths:
            path = str(raw)
            try:
                st = os.stat(path)
            except OSError as exc:
                cannot_read(path, "this path", exc)
                continue
            if stat.S_ISDIR(st.st_mode):
                walk(path, os.path.realpath(path), st)
            else:
                take(path, os.path.realpath(path))
        if self._remember:
            self._listings = listings
        return _Found(files, problems, frozenset(unreadable))

    def _list(
        self, directory: str, real: str, st: os.stat_result, racy_after: int
    ) -> _Listing | OSError:
        """The directory's listing, as remembered if it cannot have changed, or why it
        cannot be listed. `st`: its `stat`, taken before listing (a change after it
        shows next time)."""
        prefix = directory if directory.endswith(os.sep) else directory + os.sep
        real_prefix = real if real.endswith(os.sep) else real + os.sep
        key = (st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev)
        known = self._listings.get(directory)
        if (
            known is not None
            and known.key == key
            and not known.racy
            and known.real_prefix == real_prefix
        ):
            return known
        try:
            with os.scandir(directory) as listing:
                found = sorted(listing, key=_entry_name)
        except OSError as exc:
            return exc
        self.listed += 1
        entries: list[tuple[str, int]] = []
        files: list[str] = []
        reals: list[str] = []
        subdirs: list[str] = []
        linked = False
        for entry in found:
            name = entry.name
            if name.startswith("."):
                continue
            try:
                if entry.is_symlink():
                    entries.append((name, _LINK))
                    linked = True
                    continue
                is_dir = entry.is_dir(follow_symlinks=False)
            except OSError:  # vanished since the listing, or cannot be examined
                is_dir = False
            if is_dir:
                entries.append((name, _DIR))
                subdirs.append(name)
            elif name.endswith(YAML_SUFFIXES):  # not opened here: the loader checks its type
                entries.append((name, _FILE))
                files.append(prefix + name)
                reals.append(real_prefix + name)
        racy = max(st.st_mtime_ns, st.st_ctime_ns) >= racy_after
        return _Listing(key, racy, prefix, real_prefix, entries, files, reals, subdirs, linked)


def _cannot_read(path: str, what: str, exc: OSError) -> Diagnostic:
    reason = exc.strerror or type(exc).__name__
    return Diagnostic(path, 1, 1, "", f"cannot read {what}: {reason}")


_entry_name = operator.attrgetter("name")


# --- one file ------------------------------------------------------------------------


def _describe_type(value: Any) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str | int | float | bool):
        return "a single value"
    return f"a {type(value).__name__}"


def load_file(path: str, *, strict: bool = False) -> tuple[list[LoadedManifest], list[Diagnostic]]:
    """The valid manifests of one file and its diagnostics; never raises on the content.

    Valid documents are returned even when another document of the file has an
    error (so cross-file checks can see them); `load_manifests` drops them. A
    path that is not a regular file (a FIFO, a socket, a device) is never read:
    a warning (an error under `strict`).
    """
    try:
        st = os.stat(path)
    except OSError as exc:
        return [], [_unreadable(path, exc)]
    if not stat.S_ISREG(st.st_mode):
        return [], [_not_regular(path, st.st_mode, strict=strict)]
    raw = _read(path, st.st_size, strict=strict)
    if isinstance(raw, _NotRead):
        return [], [raw.diagnostic]
    parsed = _parse(path, raw, strict=strict)
    return parsed.manifests, parsed.diagnostics


def _unreadable(path: str, exc: OSError) -> Diagnostic:
    return _cannot_read(path, "the file", exc)


def _too_big(path: str, size: int) -> Diagnostic:
    return Diagnostic(
        path,
        1,
        1,
        "",
        f"file is {size} bytes; the limit is {MAX_FILE_BYTES} bytes (1 MiB): "
        "split it into several files",
    )


_FILE_KINDS = (
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISDIR, "a directory"),
)


def _not_regular(path: str, mode: int, *, strict: bool) -> Diagnostic:
    kind = next((name for test, name in _FILE_KINDS if test(mode)), "not a plain file")
    return Diagnostic(
        path,
        1,
        1,
        "",
        f"not a regular file ({kind}): skipped, not read",
        "error" if strict else "warning",
    )


@dataclass(frozen=True, slots=True)
class _NotRead:
    """Why a file's bytes were not taken: its diagnostic, and whether the file could
    not be read (as opposed to being too big, or not a regular file)."""

    diagnostic: Diagnostic
    unreadable: bool


_READ_FLAGS = (
    os.O_RDONLY
    | getattr(os, "O_NONBLOCK", 0)  # a FIFO put in the file's place opens without a writer
    | getattr(os, "O_NOCTTY", 0)  # ... and a terminal never becomes ours
    | getattr(os, "O_CLOEXEC", 0)
)


def _read(path: str, size: int, *, strict: bool) -> bytes | _NotRead:
    """The bytes of a regular file whose `stat` said `size`, or why they cannot be used.

    The type is checked again on the open descriptor: the path may have been
    replaced since it was examined, and a FIFO read would block forever.
    """
    if size > MAX_FILE_BYTES:
        return _NotRead(_too_big(path, size), unreadable=False)
    try:
        fd = os.open(path, _READ_FLAGS)
    except OSError as exc:
        return _NotRead(_unreadable(path, exc), unreadable=True)
    with open(fd, "rb") as handle:
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                return _NotRead(_not_regular(path, st.st_mode, strict=strict), unreadable=False)
            raw = handle.read(MAX_FILE_BYTES + 1)
        except OSError as exc:
            return _NotRead(_unreadable(path, exc), unreadable=True)
        if len(raw) > MAX_FILE_BYTES:  # it grew since it was measured
            return _NotRead(_too_big(path, os.fstat(fd).st_size), unreadable=False)
    return raw


class _Parsed(NamedTuple):
    """What `_parse` found in a file's bytes."""

    manifests: list[LoadedManifest]
    diagnostics: list[Diagnostic]
    positioned: bool  # parsed again with the round-trip loader to place findings


def _parse(path: str, raw: bytes, *, strict: bool) -> _Parsed:
    """`load_file` after reading: the manifests and diagnostics of a file's bytes."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        message = "not a UTF-8 text file (binary content?)"
        return _Parsed([], [Diagnostic(path, line, column, "", message)], False)

    overflow = nesting_overflow(text, MAX_DEPTH)
    if overflow is not None:  # never handed to libyaml, whose composer would crash on it
        line, column = overflow
        message = f"nested more than {MAX_DEPTH} levels deep: not a manifest"
        return _Parsed([], [Diagnostic(path, line, column, "", message)], False)

    loaded: list[LoadedManifest] = []
    pending: list[Finding] = []
    documents = 0
    precise = True
    try:
        for index, doc in enumerate(fast_documents(text)):
            documents += 1
            position = (doc.line, doc.column)
            if doc.failure is not None:
                precise = precise and not doc.imprecise
                at = (doc.failure.line, doc.failure.column)
                pending.append(Finding(index, (), False, doc.failure.message, "error", at))
                continue
            for duplicate in doc.duplicates:
                first, again = duplicate.first[0], duplicate.again[0]
                message = (
                    f"duplicate key '{duplicate.key}' (first at line {first}, again at line "
                    f"{again}); keep only one"
                )
                pending.append(
                    Finding(index, duplicate.loc, True, message, "error", duplicate.again)
                )
            if doc.data is TOO_DEEP:
                # the round-trip parser is slow on deep nesting: no positions
                # for this file beyond the documents' own
                precise = False
                message = f"nested more than {MAX_DEPTH} levels deep: not a manifest"
                pending.append(Finding(index, (), False, message, "error", position))
                continue
            if doc.data is None:
                pending.append(
                    Finding(
                        index, (), False, "empty document (a stray '---'?)", "warning", position
                    )
                )
                continue
            if not isinstance(doc.data, dict):
                pending.append(
                    Finding(
                        index,
                        (),
                        False,
                        f"a manifest is a mapping (name: ..., app: ..., ...), "
                        f"not {_describe_type(doc.data)}",
                        "error",
                        position,
                    )
                )
                continue
            try:
                manifest = Manifest.model_validate(doc.data)
            except ValidationError as exc:
                if _too_deep(doc.data):
                    # the round-trip parser is slow on deep nesting: no positions
                    # for this file beyond the documents' own
                    precise = False
                    message = f"nested more than {MAX_DEPTH} levels deep: not a manifest"
                    pending.append(Finding(index, (), False, message, "error", position))
                    continue
                found = list(diagnose(exc))
                known = {(loc, message) for loc, message, _ in found}
                found += [
                    (loc, message, True)
                    for loc, message in section_violations(doc.data)
                    if (loc, message) not in known
                ]
                for loc, message, at_key in found:
                    pending.append(Finding(index, loc, at_key, message, "error", None, position))
                continue
            for secret_path in manifest.literal_secrets():
                pending.append(
                    Finding(
                        index,
                        tuple(secret_path.split(".")),
                        False,
                        f"a literal secret in the file: use {SECRET_FORMS}",
                        "error" if strict else "warning",
                        None,
                        position,
                    )
                )
            for loc, message in manifest.ineffective_settings():
                severity: Severity = "error" if strict else "warning"
                # a top-level key: placed from the fast path's key positions, so that a
                # warning does not cost the round-trip parse of the whole file
                placed = doc.keys.get(str(loc[0])) if len(loc) == 1 else None
                pending.append(Finding(index, loc, True, message, severity, placed, position))
            if doc.duplicates:
                continue  # valid once a key is dropped, but not as written
            loaded.append(LoadedManifest(manifest, path, doc.line, doc.column, index, doc.keys))
    except Exception as exc:  # any parse failure of any kind becomes a diagnostic
        failure = yaml_failure(exc, text)
        pending.append(
            Finding(documents, (), False, failure.message, "error", (failure.line, failure.column))
        )
    if documents == 0 and not pending:
        pending.append(
            Finding(0, (), False, "no manifest in this file (it is empty)", "error", (1, 1))
        )

    if strict:
        for item in pending:
            item.severity = "error"
    positioned = precise and any(item.position is None for item in pending)
    trees = position_tree(text) if positioned else []
    return _Parsed(loaded, place(path, pending, trees), positioned)


def _too_deep(data: Any) -> bool:
    """Nesting deeper than MAX_DEPTH (each container visited once: aliases stay cheap)."""
    seen: set[int] = set()
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            return True
        if isinstance(node, dict | list) and id(node) not in seen:
            seen.add(id(node))
            children = node.values() if isinstance(node, dict) else node
            stack.extend((child, depth + 1) for child in children)
    return False


# --- many files ----------------------------------------------------------------------


def load_manifests(
    paths: Sequence[str | Path], *, strict: bool = False, now: datetime | None = None
) -> LoadResult:
    """Load every manifest under `paths` and check them together.

    Every file is read even when others fail. Cross-file checks (duplicate names,
    `auto` uids that collide, and, when `now` is given, two manifests that could
    record the same app, channel and uid at the same time) mark the files involved
    as failed. One load of a fresh `ManifestCache`: the same code path as the daemon's.
    """
    return ManifestCache(paths, strict=strict, freeze=False).load(now=now)


FileKey = tuple[int, int, int, int]
"""(st_mtime_ns, st_size, st_ino, st_ctime_ns): a file whose key is unchanged is unchanged.

ctime is in it because mtime can be set back (`cp -p`, `rsync -t`, `tar x`) while
ctime cannot; the inode because an editor that saves by renaming makes a new file.
"""

_BULK_COLLECT_EVERY = 500
"""While the collector is paused, young objects are collected after this many parses,
so that the cycles a broken file leaves behind (exceptions, the round-trip parser's
objects) cannot pile up over a bulk load of thousands of broken files."""


@dataclass(frozen=True)
class LoadStats:
    """What one `ManifestCache.load` did: which files came, went or changed, and the work."""

    files: int
    added: frozenset[str]
    modified: frozenset[str]  # bytes (or readability) differ from the version held
    removed: frozenset[str]
    read: int  # files whose bytes were read (new, key changed, or racy)
    parsed: int  # files parsed and validated (new, or bytes changed)
    listed: int  # directories listed (new, key changed, or racy)
    seconds: float
    # files of `parsed` parsed a second time, with the round-trip loader, to place their
    # findings: only files with something to report that the fast path could not place
    positioned: int = 0

    @property
    def changed(self) -> frozenset[str]:
        return self.added | self.modified | self.removed


Target = tuple[str, str, int]
"""(app, channel, uid), as `crosscheck.target_of` gives it."""
_K = typing.TypeVar("_K", str, Target)


@dataclass(eq=False, slots=True)
class _Entry:
    """One file as last loaded."""

    key: FileKey | None  # None: it could not be examined; look again next time
    racy: bool
    content: bytes | str  # digest of the bytes parsed, or why they could not be read
    manifests: list[LoadedManifest]
    diagnostics: list[Diagnostic]
    failed: bool
    names: list[str]  # per manifest, for the cross-file checks
    targets: list[Target]
    unreadable: bool = False  # it could not be read: what it holds is unknown
    skipped: bool = False  # not a regular file: not read, not one of `LoadResult.files`
    # manifests with explicit windows and the end of their last window ("ended" warnings),
    # and the earliest of those ends (before it, nothing has ended)
    last_ends: list[tuple[LoadedManifest, datetime]] = field(default_factory=list)
    earliest_end: datetime | None = None


def _unread_entry(key: FileKey | None, problem: _NotRead) -> _Entry:
    d = problem.diagnostic
    skipped = d.severity == "warning" or d.message.startswith("not a regular file")
    key = None if problem.unreadable else key  # try again next time, whatever the key
    return _Entry(
        key, False, d.message, [], [d], d.severity == "error", [], [], problem.unreadable, skipped
    )


class _GcControl:
    """The cyclic garbage collector around loads: one per process, as the collector is.

    Pausing: a load allocates hundreds of thousands of long-lived objects, and the
    collector, triggered by allocations, traverses the growing heap again and again
    (about a quarter of a 10,000-manifest load). Parsing a valid file leaves no
    cycles behind (the loader breaks its own), so little piles up meanwhile, and
    young objects are collected every `_BULK_COLLECT_EVERY` parses. Nested or
    concurrent loads pause once; the last one out restores the previous state.

    Freezing: the daemon keeps what it loaded for days. `gc.freeze()` moves every
    object alive into a permanent generation that collections skip, so the
    collector stops rescanning 10,000 manifests. Before freezing, what is not
    frozen yet is collected (cheap: what was made since the last freeze), so fresh
    garbage is not frozen. Something frozen that later becomes cyclic garbage is
    not collected while frozen, so everything is unfrozen and collected once (a
    few hundred ms at 10,000 manifests) after a bulk reload, or when the objects
    frozen since the last full collection exceed a quarter of those frozen by it:
    Python's own rule for its oldest generation. This is process-wide: other
    long-lived objects of the process are frozen too, which spares them the same
    rescans.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._depth = 0
        self._was_enabled = False
        self._at_full = -1  # objects frozen by the last full collection; -1: none yet
        self._since_full = 0

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        with self._lock:
            if self._depth == 0:
                self._was_enabled = gc.isenabled()
                gc.disable()
            self._depth += 1
        try:
            yield
        finally:
            with self._lock:
                self._depth -= 1
                if self._depth == 0 and self._was_enabled:
                    gc.enable()

    def settle(self, *, bulk: bool) -> None:
        """Collect what is not frozen, then freeze it; a full collection when one is due."""
        with self._lock:
            full = bulk or self._at_full < 0 or self._since_full > self._at_full // 4
            if full:
                gc.unfreeze()
            gc.collect()
            # after a collection of the oldest generation, every object not frozen is
            # in it (`gc.get_freeze_count()` would walk all the frozen ones)
            fresh = len(gc.get_objects(generation=2))
            gc.freeze()
            if full:
                self._at_full, self._since_full = fresh, 0
            else:
                self._since_full += fresh


_GC = _GcControl()


class ManifestCache:
    """The manifests under `paths`, loaded again cheaply: only changed files are parsed.

    Each `load()` discovers the files again and looks at each one's `FileKey`; a
    file whose key changed, or that is new, is read, and parsed only if its bytes
    differ from the version held (a `touch` costs a read). Deleted files drop out.
    The cross-file checks see every manifest each time, but only groups of two or
    more (by name, by target) can yield a finding, and only those are checked,
    with clash searches kept between loads (`OverlapMemo`). The result is what
    `load_manifests` returns for the same files at the same `now`.

    Thread-safe (one load at a time). The cyclic garbage collector is paused during
    a load and, with `freeze=True` (for a long-lived process), the loaded objects
    are frozen afterwards (see `_GcControl`).
    """

    def __init__(
        self, paths: Sequence[str | Path], *, strict: bool = False, freeze: bool = True
    ) -> None:
        from orchestrator.manifest.crosscheck import OverlapMemo

        self.paths: tuple[str, ...] = tuple(str(p) for p in paths)
        self.strict = strict
        self.freeze = freeze
        self.parsed_files = 0
        """Files parsed over the cache's life (a file parsed at two loads counts twice)."""
        self.read_files = 0
        """Files read over the cache's life."""
        self.last: LoadStats | None = None
        """What the last `load()` did."""
        self._entries: dict[str, _Entry] = {}
        self._discovery = _Discovery(remember=True)
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
            with _GC.paused():
                result, stats = self._load(now, self._usable(hint))
            self.last = stats
            if self.freeze:
                _GC.settle(bulk=stats.parsed * 10 > stats.files)
            return result

    def _usable(self, hint: Collection[str] | None) -> frozenset[str] | None:
        """The hint, when a load may trust it; None: discover everything."""
        if hint is None or self._files is None:
            return None
        known = self._entries
        for path in hint:
            if path in known:
                continue
            if not path.endswith((".yaml", ".yml")) or os.path.lexists(path):
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
        from orchestrator.manifest.crosscheck import cross_check

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
        read = parsed = positioned = 0
        racy_after = time.time_ns() - RACY_NS
        stat_of = os.stat
        for path in files:
            before = old.get(path)
            if hint is not None and before is not None and path not in hint:
                entry = before  # the watch saw no change here
            else:
                try:
                    st = stat_of(path)
                except OSError as exc:
                    problem = _unreadable(path, exc)
                    entry = _Entry(None, False, problem.message, [], [problem], True, [], [], True)
                else:
                    key = (st.st_mtime_ns, st.st_size, st.st_ino, st.st_ctime_ns)
                    if before is not None and not before.racy and before.key == key:
                        entry = before  # the common case: nothing to do
                    elif not stat.S_ISREG(st.st_mode):  # never opened (a FIFO would block)
                        problem = _not_regular(path, st.st_mode, strict=self.strict)
                        entry = _unread_entry(key, _NotRead(problem, unreadable=False))
                    else:
                        read += 1
                        racy = max(st.st_mtime_ns, st.st_ctime_ns) >= racy_after
                        raw = _read(path, st.st_size, strict=self.strict)
                        if isinstance(raw, _NotRead):
                            entry = _unread_entry(key, raw)
                        else:
                            digest = hashlib.blake2b(raw, digest_size=16).digest()
                            if before is not None and before.content == digest:
                                before.key, before.racy = key, racy  # touched, not changed
                                entry = before
                            else:
                                parsed += 1
                                entry, placed = self._parse(path, raw, key, racy, digest)
                                positioned += placed
                                if parsed % _BULK_COLLECT_EVERY == 0:
                                    gc.collect(0)
            entries[path] = entry
            if entry is not before:
                replaced.append((before, entry))
                if before is None:
                    added.add(path)
                elif entry.content != before.content:
                    modified.add(path)
            if entry.skipped or entry.unreadable:
                if entry.skipped:
                    skipped.add(path)
                else:
                    unreadable.add(path)
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
        removed = old.keys() - entries.keys()
        # the state changes only once every file has been looked at
        for before, entry in replaced:
            if before is not None:
                self._count(before, -1)
            self._count(entry, 1)
        for path in removed:
            self._count(old[path], -1)
        self._entries = entries
        self.read_files += read
        self.parsed_files += parsed

        cross = cross_check(self._in_groups(files), now=now, memo=self._memo)
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
        )
        return result, stats

    def _parse(
        self, path: str, raw: bytes, key: FileKey, racy: bool, digest: bytes
    ) -> tuple[_Entry, bool]:
        """The file's new entry, and whether its findings were placed by a second parse."""
        from orchestrator.manifest.crosscheck import target_of

        loaded, found, positioned = _parse(path, raw, strict=self.strict)
        last_ends = [(m, end) for m in loaded if (end := m.manifest.last_window_end()) is not None]
        entry = _Entry(
            key,
            racy,
            digest,
            loaded,
            found,
            any(d.severity == "error" for d in found),
            [m.manifest.name for m in loaded],
            [target_of(m) for m in loaded],
            last_ends=last_ends,
            earliest_end=min((end for _, end in last_ends), default=None),
        )
        return entry, positioned

    def _count(self, entry: _Entry, delta: int) -> None:
        """Add (1) or take away (-1) an entry's names and targets from the counts."""
        _recount(self._name_count, self._shared_names, entry.names, delta)
        _recount(self._target_count, self._shared_targets, entry.targets, delta)

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
            if names.isdisjoint(entry.names) and targets.isdisjoint(entry.targets):
                continue
            for m, name, target in zip(entry.manifests, entry.names, entry.targets, strict=True):
                if name in names or target in targets:
                    out.append(m)
        return out


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
