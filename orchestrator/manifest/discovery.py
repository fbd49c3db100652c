"""Finding manifest files: directories walked, symlinks followed, loops and unreadable paths.

`discover` lists the `*.yaml`/`*.yml` files under the paths given, in a stable
order, and says what cannot be read. It must never take what it cannot read for
what is not there: a path, directory or symlink that cannot be read is an error at
that path (listed in `Found.unreadable`), never an empty tree, so that whatever
stood there keeps its last known good version. Nor may it hand on a path whose
name is not UTF-8: nothing could show, log or store it (a manifest's file is kept
with it), so it is an error under a printable name, and never read or entered. It
never opens a file: the loader checks each one (`reading`).
`Discovery(remember=True)` is the cache's: it lists a directory again only when it
may have changed (`RACY_NS`).
"""

from __future__ import annotations

import operator
import os
import stat
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from orchestrator.manifest.diagnostics import Diagnostic, printable
from orchestrator.manifest.reading import ReadFailure

__all__ = [
    "RACY_NS",
    "YAML_SUFFIXES",
    "Discovery",
    "FileKey",
    "Found",
    "cannot_read",
    "discover",
    "file_key",
    "holds_at_least",
    "is_racy",
    "racy_after",
]

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


def racy_after() -> int:
    """The time (ns since the epoch) from which a change is too recent to trust a key."""
    return time.time_ns() - RACY_NS


FileKey = tuple[int, int, int, int]
"""(st_mtime_ns, st_size, st_ino, st_ctime_ns): a file whose key is unchanged is unchanged.

ctime is in it because mtime can be set back (`cp -p`, `rsync -t`, `tar x`) while
ctime cannot; the inode because an editor that saves by renaming makes a new file.
"""


def file_key(st: os.stat_result) -> FileKey:
    return (st.st_mtime_ns, st.st_size, st.st_ino, st.st_ctime_ns)


def is_racy(st: os.stat_result, cutoff: int) -> bool:
    """Whether what `st` describes changed at or after `cutoff` (`racy_after`, taken
    before the stat): too recently for its key to be trusted."""
    return max(st.st_mtime_ns, st.st_ctime_ns) >= cutoff


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

    A path whose name is not UTF-8 (a file, a directory, a symlink or a path given)
    is an error under its printable name (`printable`) and is not taken or entered.
    """
    found = Discovery(remember=False).discover(paths)
    return found.files, found.problems


@dataclass(frozen=True, slots=True)
class Found:
    """What `Discovery.discover` found: files in order, problems, paths that cannot be read."""

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
    misnamed: list[str]  # paths of the files and directories whose names are not UTF-8
    linked: bool  # some entry is a symlink (classified at each walk: its target may change)


class Discovery:
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

    def discover(self, paths: Sequence[str | Path]) -> Found:
        files: list[str] = []
        problems: list[Diagnostic] = []
        unreadable: set[str] = set()
        seen: set[str] = set()  # real paths of the files taken
        walked: set[tuple[int, int]] = set()  # (st_dev, st_ino) of the directories walked
        above: set[tuple[int, int]] = set()  # ... of those being walked: the current path
        ends: dict[str, tuple[int, int]] = {}  # directory being walked -> its identity
        listings: dict[str, _Listing] = {}
        racy_cutoff = racy_after()
        self.listed = 0

        def unreadable_at(path: str, what: str, exc: OSError) -> None:
            problems.append(cannot_read(path, what, exc.strerror or type(exc).__name__))
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
                        unreadable_at(directory, "the directory", exc)
                        continue
                ident = (st.st_dev, st.st_ino)
                if ident in above:
                    kind = "symlink loop" if link else "directory loop (a bind mount?)"
                    message = (
                        f"{kind}: this is {printable(real)}, which contains it; not entered again"
                    )
                    problems.append(Diagnostic(directory, 1, 1, "", message, "warning"))
                    continue
                if ident in walked:
                    continue  # reached before through another path: its files are taken
                walked.add(ident)
                listing = self._list(directory, real, st, racy_cutoff)
                if isinstance(listing, OSError):
                    unreadable_at(directory, "the directory", listing)
                    continue
                listings[directory] = listing
                subdirs = take_files(listing)
                above.add(ident)
                ends[directory] = ident
                pending.append((directory, "", None, False))
                pending.extend((path, sub, None, via) for path, sub, via in reversed(subdirs))

        def take_files(listing: _Listing) -> list[tuple[str, str, bool]]:
            """Take a directory's files; its subdirectories: (path, real path, via a link)."""
            problems.extend(map(_misnamed, listing.misnamed))
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
                if not _utf8(name):
                    problems.append(_misnamed(path))
                elif manifest:  # the loader reports it as a file that cannot be read
                    take(path, path)
                else:
                    unreadable_at(path, "the symlink's target", exc)
                return
            if (manifest or stat.S_ISDIR(target.st_mode)) and not _utf8(name):
                problems.append(_misnamed(path))
            elif stat.S_ISDIR(target.st_mode):
                subdirs.append((path, os.path.realpath(path), True))
            elif manifest:
                take(path, os.path.realpath(path))

        for raw in paths:
            path = str(raw)
            if not _utf8(path):
                problems.append(_misnamed(path))
                continue
            try:
                st = os.stat(path)
            except OSError as exc:
                unreadable_at(path, "this path", exc)
                continue
            if stat.S_ISDIR(st.st_mode):
                walk(path, os.path.realpath(path), st)
            else:
                take(path, os.path.realpath(path))
        if self._remember:
            self._listings = listings
        return Found(files, problems, frozenset(unreadable))

    def _list(
        self, directory: str, real: str, st: os.stat_result, racy_cutoff: int
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
        bad_names: list[str] = []
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
            manifest = not is_dir and name.endswith(YAML_SUFFIXES)
            if (is_dir or manifest) and not _utf8(name):
                bad_names.append(prefix + name)
            elif is_dir:
                entries.append((name, _DIR))
                subdirs.append(name)
            elif manifest:  # not opened here: the loader checks its type
                entries.append((name, _FILE))
                files.append(prefix + name)
                reals.append(real_prefix + name)
        racy = is_racy(st, racy_cutoff)
        return _Listing(
            key, racy, prefix, real_prefix, entries, files, reals, subdirs, bad_names, linked
        )


def holds_at_least(directory: str | Path, count: int) -> bool:
    """Whether `directory` holds `count` manifest files or more: a quick look, which stops
    once it found them (hidden entries skipped, links below it not followed, what cannot
    be read passed over), for a hint such as whether a load will be a bulk one; never a
    listing (`Discovery` is)."""
    found = 0
    for _root, dirs, files in os.walk(directory):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found += sum(1 for f in files if f.endswith(YAML_SUFFIXES) and not f.startswith("."))
        if found >= count:
            return True
    return False


def _misnamed(path: str) -> Diagnostic:
    """An error at a path whose name is not UTF-8, under its printable name: it is not
    read, since nothing could show, log or store its name."""
    return Diagnostic(path, 1, 1, "", "its name is not valid UTF-8: rename it")


def _utf8(name: str) -> bool:
    """Whether a name (as `os` gives it: a byte that is not UTF-8 as a lone surrogate)
    is UTF-8."""
    if name.isascii():
        return True
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def cannot_read(path: str, what: str, reason: str) -> Diagnostic:
    """An error at a path that could not be read: what it holds is unknown."""
    message = f"cannot read {what}: {reason}"
    return Diagnostic(path, 1, 1, "", message, kind=ReadFailure.UNREADABLE)


_entry_name = operator.attrgetter("name")
