"""Reading manifests from files and directories into models, or into positioned diagnostics.

The fast path parses with ruamel.yaml's C parser (libyaml, `typ="safe"`,
`pure=False`) and validates with the pydantic model. Only a file that has
something to report is parsed again with the round-trip loader, whose nodes
know their line and column, to place each error on its field.

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
import difflib
import functools
import gc
import hashlib
import io
import operator
import os
import re
import stat
import threading
import time
import typing
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

from orchestrator.manifest.model import Manifest, dotted_path, section_violations
from orchestrator.manifest.nesting import nesting_overflow

MAX_FILE_BYTES = 1024 * 1024
"""Larger files are refused: a manifest is a few hundred bytes; split big sets into files."""

MAX_DEPTH = 64
"""Deeper nesting is refused (a manifest needs about six levels)."""

MAX_EXPANDED_NODES = 100_000
"""A document whose aliases would expand it to more nodes than this is refused
(a manifest has about a hundred). Aliases share one object when built, but merge
keys (`<<: [*a, *a]`) are flattened pair by pair and validation walks shared
values once per reference: a few hundred bytes of anchors can stand for 10^9 nodes."""

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
Severity = Literal["error", "warning"]
Loc = tuple[str | int, ...]


@dataclass(frozen=True)
class Diagnostic:
    """One finding: where (1-based), which field, what is wrong and what is valid."""

    file: str
    line: int
    column: int
    field: str
    message: str
    severity: Severity = "error"

    def as_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "line": self.line,
            "column": self.column,
            "field": self.field,
            "message": self.message,
            "severity": self.severity,
        }


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


# --- parsing -------------------------------------------------------------------------


class _ParseFailure(Exception):
    def __init__(self, line: int, column: int, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.column = column
        self.message = message


@dataclass(frozen=True)
class _Duplicate:
    """A key written twice in one mapping (the first one is kept)."""

    loc: Loc  # the key's field path
    key: str  # as written
    first: tuple[int, int]  # line and column, 1-based
    again: tuple[int, int]


@dataclass
class _Document:
    data: Any
    line: int
    column: int
    keys: dict[str, tuple[int, int]]
    duplicates: list[_Duplicate] = field(default_factory=list)
    failure: _ParseFailure | None = None  # the document could not be built: why
    imprecise: bool = False  # no positions for this file beyond the findings' own


@functools.cache
def _cached_resolver() -> Any:
    """ruamel's resolver, with the implicit tag of plain scalars cached by their text.

    With the C parser, ruamel never sees a `%YAML` directive: its
    `processing_version` falls back to the default (1.2) after two caught
    AttributeErrors per scalar, which was half of the parse time. So a plain
    scalar's tag depends on its text alone. Tags are shared objects already
    (`DEFAULT_SCALAR_TAG`); sharing cached ones is as safe.
    """
    from ruamel.yaml.nodes import ScalarNode
    from ruamel.yaml.resolver import VersionedResolver

    cache: dict[str, Any] = {}

    class CachedResolver(VersionedResolver):
        @property
        def processing_version(self) -> Any:
            return self._loader_version or (1, 2)

        def resolve(self, kind: Any, value: Any, implicit: Any) -> Any:
            if kind is ScalarNode and implicit[0]:
                tag = cache.get(value)
                if tag is None:
                    tag = super().resolve(kind, value, implicit)
                    if len(cache) < 50_000 and len(value) < 200:
                        cache[value] = tag
                return tag
            return super().resolve(kind, value, implicit)

    return CachedResolver


@functools.cache
def _fast_loader() -> Any:
    """A factory `stream -> loader` built once: libyaml's parser and composer (ruamel's
    CParser), ruamel's SafeConstructor and the cached resolver, combined exactly as
    `YAML(typ="safe", pure=False)` combines them, but without building a YAML object
    and a loader class for every file (that was a third of the time per small file).
    Without the C extension, ruamel's own (pure) safe loader is used.
    """
    from ruamel.yaml import YAML
    from ruamel.yaml.constructor import SafeConstructor

    yaml = YAML(typ="safe", pure=False)
    parser: Any = yaml.Parser
    resolver = _cached_resolver()
    if parser.__name__ != "CParser":  # no ruamel.yaml.clib: slower, same results
        yaml.Resolver = resolver
        return lambda stream: yaml.get_constructor_parser(stream)[0]

    class FastLoader(parser, SafeConstructor, resolver):  # type: ignore[misc, valid-type]
        def __init__(self, stream: Any) -> None:
            parser.__init__(self, stream)
            self._parser = self._composer = self
            SafeConstructor.__init__(self, loader=self)
            self.allow_duplicate_keys = False
            resolver.__init__(self, version=None, loadumper=self)

        def dispose(self) -> None:
            parser.dispose(self)
            # The loader refers to itself (as its own parser, composer and constructor):
            # a reference cycle holding the node tree. Breaking it frees all of that at
            # once, by refcounting, instead of leaving ~100 objects per file to the
            # cyclic collector (which `ManifestCache` pauses during a load).
            self.__dict__.clear()

    return FastLoader


class _TooDeep(Exception):
    """A document nested deeper than MAX_DEPTH."""


TOO_DEEP: Any = object()
"""Stands for the data of a document nested deeper than MAX_DEPTH."""


def _construct(loader: Any, root: Any) -> tuple[Any, list[_Duplicate]]:
    """A document's data: untagged maps, lists and text built here, the rest by ruamel,
    and the keys written twice (the first of them is kept).

    ruamel's SafeConstructor sends every node through generic machinery (tag
    strings, generators, merge-key flattening). Manifests are almost only maps,
    lists and strings, which this builds directly: a fifth less time for 10,000
    manifests. Every other node (numbers, booleans, null, timestamps, explicit
    tags, merge keys) is built by SafeConstructor, so the data, and the errors,
    are the same. Aliases share one object, as there.

    A duplicate key is not an exception here (ruamel raises one, which hid every
    other finding of the file): it is recorded with both of its positions and
    the rest of the document is built and validated.
    """
    builder = _Builder(loader)
    try:
        data = builder.build(root, 1)
    finally:  # what SafeConstructor.construct_document resets after each document
        loader.constructed_objects = {}
        loader.recursive_objects = {}
        loader.deep_construct = False
    if not builder.duplicates:
        return data, []
    paths = _node_paths(root)
    return data, [
        _Duplicate(
            (*paths.get(id(mapping), ()), key.value),
            str(key.value),
            (first.start_mark.line + 1, first.start_mark.column + 1),
            (key.start_mark.line + 1, key.start_mark.column + 1),
        )
        for mapping, first, key in builder.duplicates
    ]


class _Builder:
    """`_construct`'s recursion. An object rather than a nested function, which would
    refer to itself through its closure: a cycle per document, left to the cyclic
    collector (paused during bulk loads)."""

    __slots__ = ("duplicates", "loader", "map_tag", "memo", "seq_tag", "text_tag")

    def __init__(self, loader: Any) -> None:
        from ruamel.yaml.resolver import BaseResolver

        self.loader = loader
        self.text_tag = BaseResolver.DEFAULT_SCALAR_TAG
        self.map_tag = BaseResolver.DEFAULT_MAPPING_TAG
        self.seq_tag = BaseResolver.DEFAULT_SEQUENCE_TAG
        self.memo: dict[int, Any] = {}
        self.duplicates: list[tuple[Any, Any, Any]] = []  # (mapping, first key, repeated key)

    def build(self, node: Any, depth: int) -> Any:
        tag = node.ctag
        if tag is self.text_tag:
            return node.value
        if tag is not self.map_tag and tag is not self.seq_tag:
            return self._by_ruamel(node)
        if depth > MAX_DEPTH:
            raise _TooDeep
        memo = self.memo
        known = memo.get(id(node))
        if known is not None:
            return known
        if tag is self.seq_tag:
            items: list[Any] = []
            memo[id(node)] = items
            items.extend(self.build(child, depth + 1) for child in node.value)
            return items
        mapping: dict[Any, Any] = {}
        memo[id(node)] = mapping
        text_tag = self.text_tag
        repeated: list[Any] = []
        for key_node, value_node in node.value:
            key = key_node.value
            if key_node.ctag is not text_tag:
                del memo[id(node)]  # let ruamel build it
                self.duplicates = [d for d in self.duplicates if d[0] is not node]
                return self._by_ruamel(node)
            if key in mapping:
                first = next(k for k, _ in node.value if k.ctag is text_tag and k.value == key)
                self.duplicates.append((node, first, key_node))
                repeated.append(key_node)
                continue
            mapping[key] = self.build(value_node, depth + 1)
        if repeated:  # as ruamel would see it, should an alias lead there again
            node.value = [pair for pair in node.value if not any(pair[0] is k for k in repeated)]
        return mapping

    def _by_ruamel(self, node: Any) -> Any:
        """SafeConstructor's data for a node, once every mapping in it has no key twice."""
        pending, visited = [node], set()
        while pending:
            current = pending.pop()
            if id(current) in visited or not isinstance(current.value, list):
                continue
            visited.add(id(current))
            if current.id == "mapping":
                self._drop_duplicates(current)
                pending.extend(n for pair in current.value for n in pair)
            else:
                pending.extend(current.value)
        return self.loader.construct_object(node, deep=True)

    def _drop_duplicates(self, node: Any) -> None:
        """Keys are compared as SafeConstructor compares them (by their values)."""
        seen: dict[Any, Any] = {}
        kept = []
        for pair in node.value:
            key_node = pair[0]
            if key_node.id == "scalar" and not key_node.tag.endswith(":merge"):
                try:
                    key = (
                        key_node.value
                        if key_node.ctag is self.text_tag
                        else self.loader.construct_object(key_node, deep=True)
                    )
                    first = seen.get(key)
                except Exception:  # unbuildable or unhashable: ruamel reports it
                    kept.append(pair)
                    continue
                if first is not None:
                    self.duplicates.append((node, first, key_node))
                    continue
                seen[key] = key_node
            kept.append(pair)
        if len(kept) != len(node.value):
            node.value = kept


def _node_paths(root: Any) -> dict[int, Loc]:
    """The field path of every collection node of a document (the first path found)."""
    paths: dict[int, Loc] = {}
    pending: list[tuple[Any, Loc]] = [(root, ())]
    while pending:
        node, loc = pending.pop()
        if id(node) in paths or not isinstance(node.value, list):
            continue
        paths[id(node)] = loc
        if node.id == "mapping":
            pending.extend((value, (*loc, key.value)) for key, value in node.value)
        else:
            pending.extend((item, (*loc, i)) for i, item in enumerate(node.value))
    return paths


_ALIAS = re.compile(r"\*[0-9A-Za-z_-]")
"""Could the text hold an alias? (Cron's `*` is followed by a blank, `/`, `,` or a quote.)"""


def _expansion_overflow(root: Any) -> Any | None:
    """The first node (in post-order) whose aliases expand it to more than
    MAX_EXPANDED_NODES nodes, or None. Each node is sized once: linear in the nodes
    as composed, whatever they expand to. An alias to a node still being built (a
    recursive anchor) counts as one node."""
    sizes: dict[int, int] = {}
    started: set[int] = set()
    stack: list[Any] = [root]
    while stack:
        node = stack[-1]
        value = node.value
        if id(node) in sizes or not isinstance(value, list):
            sizes.setdefault(id(node), 1)
            stack.pop()
            continue
        children = [n for pair in value for n in pair] if node.id == "mapping" else value
        if id(node) not in started:
            started.add(id(node))
            stack.extend(c for c in children if id(c) not in started)
            continue
        stack.pop()
        size = 1 + sum(sizes.get(id(c), 1) for c in children)
        if size > MAX_EXPANDED_NODES:
            return node
        sizes[id(node)] = size
    return None


def _fast_documents(text: str) -> Iterator[_Document]:
    """Documents via libyaml; the node tree gives document and top-level key positions.

    A document that cannot be built (an unsupported tag, a value of the wrong
    form, aliases that expand too far) is yielded with its `failure`, and the
    following documents are still read: only a syntax error ends the stream.
    """
    loader = _fast_loader()(io.StringIO(text))
    aliases = _ALIAS.search(text) is not None
    try:
        while loader.check_node():
            node = loader.get_node()
            keys: dict[str, tuple[int, int]] = {}
            if node is not None and isinstance(node.value, list) and node.tag.endswith(":map"):
                for pair in node.value:
                    if isinstance(pair, tuple) and isinstance(pair[0].value, str):
                        mark = pair[0].start_mark
                        keys.setdefault(pair[0].value, (mark.line + 1, mark.column + 1))
                        if pair[0].value == "schedule":
                            _nested_key_position(pair[1], "windows", "schedule.windows", keys)
            mark = node.start_mark if node is not None else None
            line, column = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
            if node is None:
                yield _Document(None, line, column, keys)
                continue
            bomb = _expansion_overflow(node) if aliases else None
            if bomb is not None:
                at = bomb.start_mark
                message = (
                    f"aliases here expand to more than {MAX_EXPANDED_NODES} nodes "
                    "(an alias bomb?): not a manifest"
                )
                failure = _ParseFailure(at.line + 1, at.column + 1, message)
                yield _Document(None, line, column, keys, failure=failure, imprecise=True)
                continue
            try:
                data, duplicates = _construct(loader, node)
            except _TooDeep:
                data, duplicates = TOO_DEEP, []
            except Exception as exc:  # this document cannot be built; the others still can
                yield _Document(None, line, column, keys, failure=_yaml_failure(exc, text))
                continue
            yield _Document(data, line, column, keys, duplicates)
    finally:
        dispose = getattr(loader, "dispose", None)
        if dispose is not None:
            dispose()


def _nested_key_position(node: Any, key: str, name: str, keys: dict[str, tuple[int, int]]) -> None:
    if isinstance(node.value, list) and node.tag.endswith(":map"):
        for pair in node.value:
            if isinstance(pair, tuple) and pair[0].value == key:
                mark = pair[0].start_mark
                keys.setdefault(name, (mark.line + 1, mark.column + 1))
                return


def _yaml_failure(exc: Exception, text: str) -> _ParseFailure:
    """A parse error as a position and a secret-free message."""
    from ruamel.yaml.error import MarkedYAMLError
    from ruamel.yaml.reader import ReaderError

    if isinstance(exc, ReaderError):
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        return _ParseFailure(
            line, column, f"not a text file: character {exc.character!r} is not allowed in YAML"
        )
    if isinstance(exc, MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
        problem = str(exc.problem or "invalid YAML")
        if problem.startswith("found duplicate key"):
            # a key the loader could not compare before ruamel did; ruamel's context
            # mark is the mapping's start, not the first occurrence
            key = re.match(r'found duplicate key "(.*?)" with value', problem)
            mapping = exc.context_mark
            where = f" (in the mapping at line {mapping.line + 1})" if mapping is not None else ""
            name = f"'{key.group(1)}'" if key else "a key"
            return _ParseFailure(line, column, f"duplicate key {name}{where}; keep only one")
        if "could not determine a constructor for the tag" in problem:
            tag = problem.rsplit(" ", 1)[-1]
            return _ParseFailure(line, column, f"unsupported YAML tag {tag}; plain values only")
        context = f" ({exc.context})" if exc.context else ""
        hint = ""
        if "unexpected ':'" in problem:
            # libyaml refuses `{start: 2026-03-02T09:00:00Z}`: times inside {...} or [...]
            hint = "; inside {...} or [...], quote values that contain ':' (like times)"
        return _ParseFailure(line, column, f"invalid YAML: {problem}{context}{hint}")
    if isinstance(exc, RecursionError):
        return _ParseFailure(1, 1, "invalid YAML: nested too deeply")
    return _ParseFailure(1, 1, f"invalid YAML: a value could not be read ({type(exc).__name__})")


def _position_tree(text: str) -> list[Any]:
    """Round-trip documents (with .lc positions); stops quietly at a syntax error."""
    from ruamel.yaml import YAML

    yaml = YAML(typ="rt")
    yaml.allow_duplicate_keys = True  # the first is kept, as `_construct` keeps it
    docs: list[Any] = []
    try:
        for doc in yaml.load_all(text):
            docs.append(doc)
    except Exception:  # noqa: S110 -- positions are best effort; the error is already reported
        pass
    return docs


# --- pydantic errors to diagnostics --------------------------------------------------

_SECRET_TAGS = frozenset({"EnvSecret", "FileSecret", "CredentialSecret", "LiteralSecret"})
_SECRET_KEYS = frozenset({"token", "accessKey", "secretKey", "secret"})
_SECRET_FORMS = "{env: NAME}, {file: PATH} or {credential: NAME}"  # noqa: S105 (a hint)

_PATTERN_HINTS = {
    "name": "1 to 128 letters, digits, '.', '_' or '-', starting and ending with a letter or digit",
    "app": "an App ID profile name: letters, digits, '.', '_' or '-' (at most 64)",
    "fileNamePrefix": "letters and digits only (a-z, A-Z, 0-9), one directory per entry",
    "regionId": "an Aliyun region id like cn-shanghai",
    "env": "an environment variable name like S3_KEY",
    "credential": "a credential name: letters, digits, '_', '.', '@' or '-'",
    "labels": "label keys are letters, digits, '.', '_', '/' or '-' (at most 63)",
}


_REQUIRED_HINTS = {
    ("Manifest", "name"): "a unique name like weekly-standup",
    ("Manifest", "app"): "an App ID profile of the daemon config, like main",
    ("Manifest", "channel"): "the Agora channel to record",
    ("Manifest", "uid"): "the recorder's uid, 1 to 4294967295, or auto",
    ("Manifest", "mode"): "mix or individual",
    ("Manifest", "schedule"): "cron + timezone + duration, windows: [{start, end}], or always",
    ("Transcoding", "width"): "pixels, 1 to 1920",
    ("Transcoding", "height"): "pixels, 1 to 1920",
    ("Transcoding", "fps"): "frames per second, like 15",
    ("Transcoding", "bitrate"): "Kbps, like 500",
    ("Region", "x"): "the left edge, 0.0 to 1.0",
    ("Region", "y"): "the top edge, 0.0 to 1.0",
    ("Region", "width"): "a fraction of the canvas, 0.0 to 1.0",
    ("Region", "height"): "a fraction of the canvas, 0.0 to 1.0",
    ("Decryption", "mode"): "none, aes-128-xts, aes-128-ecb or aes-256-xts",
    ("Storage", "vendor"): "qiniu, aws-s3, aliyun-oss, tencent-cos or kingsoft-ks3",
    ("Storage", "region"): "a region name of the vendor (or its number)",
    ("Storage", "bucket"): "the bucket name",
    ("Storage", "accessKey"): "a secret: {env: NAME}, {file: PATH} or {credential: NAME}",
    ("Storage", "secretKey"): "a secret: {env: NAME}, {file: PATH} or {credential: NAME}",
    ("AliyunVod", "accessKey"): "a secret: {env: NAME}, {file: PATH} or {credential: NAME}",
    ("AliyunVod", "secretKey"): "a secret: {env: NAME}, {file: PATH} or {credential: NAME}",
    ("AliyunVod", "regionId"): "an Aliyun region id like cn-shanghai",
    ("AliyunVod", "videoData"): "at least {title: ...}",
    ("VideoData", "title"): "the video's title",
    ("WindowSpec", "start"): "an ISO-8601 date-time with an offset, like 2026-03-02T09:00:00+01:00",
    ("WindowSpec", "end"): "an ISO-8601 date-time with an offset, like 2026-03-02T10:00:00+01:00",
}


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The one pydantic model inside an annotation (Optional, tuple[...], Annotated)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    found = {m for arg in typing.get_args(annotation) if (m := _model_in(arg)) is not None}
    return found.pop() if len(found) == 1 else None


def _model_at(loc: Loc) -> type[BaseModel] | None:
    from orchestrator import secrets

    model: type[BaseModel] | None = Manifest
    for part in loc:
        if model is None:
            return None
        if isinstance(part, int):
            continue
        if part in _SECRET_TAGS:
            model = getattr(secrets, part)
            continue
        for name, info in model.model_fields.items():
            if (info.alias or name) == part:
                model = _model_in(info.annotation)
                break
        else:
            return None
    return model


def _keys_at(loc: Loc) -> list[str]:
    model = _model_at(loc)
    if model is None:
        return []
    return [info.alias or name for name, info in model.model_fields.items()]


def _input_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        text = repr(value)
        return text if len(text) <= 40 else text[:37] + "..."
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    if value is None:
        return "nothing (null)"
    return f"a {type(value).__name__}"


def _explain(error: Mapping[str, Any], loc: Loc, raw_loc: Loc) -> str:
    """A pydantic error as 'what is wrong; what would be valid'."""
    kind = str(error["type"])
    ctx = error.get("ctx") or {}
    value = error.get("input")
    secret = any(p in _SECRET_TAGS for p in raw_loc) or any(p in _SECRET_KEYS for p in loc)
    last = next((p for p in reversed(loc) if isinstance(p, str)), "")
    got = "" if secret else f" (got {_input_text(value)})"
    if kind == "missing":
        if not last:
            return "a required value is missing"
        owner = _model_at(raw_loc[:-1])
        hint = _REQUIRED_HINTS.get((owner.__name__ if owner else "", last), "")
        return f"'{last}' is required: {hint}" if hint else f"'{last}' is required"
    if kind == "extra_forbidden" and len(raw_loc) > 1 and raw_loc[-2] in _SECRET_TAGS:
        return f"unknown key '{loc[-1]}': a secret is {_SECRET_FORMS}"
    if kind == "extra_forbidden":
        key = str(loc[-1]) if loc else "?"
        valid = _keys_at(raw_loc[:-1])
        close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        listing = f"; valid keys here: {', '.join(valid)}" if valid else ""
        return f"unknown key '{key}'{hint}{listing}"
    if secret and kind in ("model_type", "model_attributes_type", "dict_type", "string_type"):
        return f"a secret is a reference: {_SECRET_FORMS} (or, with a warning, a plain string)"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        valid = _keys_at(raw_loc)
        keys = f" with keys {', '.join(valid)}" if valid else ""
        return f"must be a mapping{keys}{got}"
    if kind in ("tuple_type", "list_type"):
        return f"must be a list (one '- item' per line, or [a, b]){got}"
    if kind == "string_type":
        return f"must be text{got}; quote it if YAML reads it as a number or date"
    if kind == "string_pattern_mismatch":
        hint = _PATTERN_HINTS.get(last) or _PATTERN_HINTS.get(str(loc[0]) if loc else "", "")
        return f"invalid value{got}: use {hint}" if hint else f"invalid value{got}: {error['msg']}"
    if kind in ("string_too_short", "string_too_long"):
        return f"{error['msg'].replace('String', 'text')}{got}"
    if kind in ("too_short", "too_long"):
        low, high = ctx.get("min_length"), ctx.get("max_length")
        count = ctx.get("actual_length")
        bound = f"at least {low}" if kind == "too_short" else f"at most {high}"
        return f"needs {bound} item(s), found {count}"
    if kind in ("int_parsing", "int_type", "int_from_float"):
        return f"must be a whole number{got}"
    if kind in ("bool_parsing", "bool_type"):
        return f"must be true or false{got}"
    if kind in ("float_parsing", "float_type"):
        return f"must be a number{got}"
    if kind in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
        words = {
            "greater_than_equal": "at least",
            "less_than_equal": "at most",
            "greater_than": "more than",
            "less_than": "less than",
        }
        limit = next(iter(ctx.values()), "?")
        return f"must be {words[kind]} {limit}{got}"
    if kind == "timezone_aware":
        return "needs a UTC offset: like 2026-03-02T09:00:00+08:00 or 2026-03-02T01:00:00Z"
    if kind.startswith("datetime") or kind.startswith("date_"):
        return (
            f"must be an ISO-8601 date and time with an offset, like 2026-03-02T09:00:00+08:00{got}"
        )
    if kind == "literal_error":
        return f"{error['msg'].replace('Input should be', 'must be')}{got}"
    if kind == "dict_type" or kind == "dict_attributes_type":
        return f"must be a mapping{got}"
    # custom errors of the model already say what is wrong and what is valid
    return str(error["msg"])


def _diagnose(exc: ValidationError) -> Iterator[tuple[Loc, str, bool]]:
    """(field location, message, points-at-key) for every error, violations unpacked."""
    errors = exc.errors(include_url=False)
    # pydantic counts only the items that validated: a bad item also yields a
    # misleading "too short" on its list, which is dropped.
    item_parents = {
        tuple(e["loc"][:-1]) for e in errors if e["loc"] and isinstance(e["loc"][-1], int)
    }
    item_parents |= {
        tuple(e["loc"][:i]) for e in errors for i, p in enumerate(e["loc"]) if isinstance(p, int)
    }
    # `{vault: x}` is one mistake (not a known form), not also "env is missing"
    unknown_in_secret = {
        tuple(e["loc"][:-1])
        for e in errors
        if e["type"] == "extra_forbidden" and len(e["loc"]) > 1 and e["loc"][-2] in _SECRET_TAGS
    }
    for error in errors:
        raw_loc: Loc = tuple(error["loc"])
        if error["type"] == "too_short" and raw_loc in item_parents:
            continue
        if error["type"] == "missing" and raw_loc[:-1] in unknown_in_secret:
            continue
        loc = tuple(p for p in raw_loc if p not in _SECRET_TAGS)
        if error["type"] == "manifest_rules":
            for sub_loc, message in (error.get("ctx") or {}).get("violations", []):
                yield loc + tuple(sub_loc), str(message), True
        else:
            yield loc, _explain(error, loc, raw_loc), error["type"] == "extra_forbidden"


def _locate(root: Any, loc: Loc, at_key: bool, fallback: tuple[int, int]) -> tuple[int, int]:
    """Line and column (1-based) of `loc` in a round-trip tree, or its nearest parent."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    line, column = fallback
    if isinstance(root, CommentedMap | CommentedSeq):
        line, column = root.lc.line + 1, root.lc.col + 1
    node = root
    for index, part in enumerate(loc):
        is_last = index == len(loc) - 1
        try:
            if isinstance(node, CommentedMap) and part in node:
                child = node[part]
                collection = isinstance(child, CommentedMap | CommentedSeq)
                if (is_last and at_key) or collection:
                    key_line, key_col = node.lc.key(part)
                else:
                    key_line, key_col = node.lc.value(part)
                line, column = key_line + 1, key_col + 1
                node = child
            elif isinstance(node, CommentedSeq) and isinstance(part, int) and 0 <= part < len(node):
                item_line, item_col = node.lc.item(part)
                line, column = item_line + 1, item_col + 1
                node = node[part]
            else:
                break
        except (KeyError, IndexError, TypeError, AttributeError):
            break
    return line, column


# --- one file ------------------------------------------------------------------------


@dataclass
class _Pending:
    """A finding waiting for its position (known only after the round-trip parse)."""

    document: int
    loc: Loc
    at_key: bool
    message: str
    severity: Severity
    position: tuple[int, int] | None = None
    fallback: tuple[int, int] = (1, 1)


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
    return _parse(path, raw, strict=strict)


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


def _parse(path: str, raw: bytes, *, strict: bool) -> tuple[list[LoadedManifest], list[Diagnostic]]:
    """`load_file` after reading: the manifests and diagnostics of a file's bytes."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        return [], [Diagnostic(path, line, column, "", "not a UTF-8 text file (binary content?)")]

    overflow = nesting_overflow(text, MAX_DEPTH)
    if overflow is not None:  # never handed to libyaml, whose composer would crash on it
        line, column = overflow
        message = f"nested more than {MAX_DEPTH} levels deep: not a manifest"
        return [], [Diagnostic(path, line, column, "", message)]

    loaded: list[LoadedManifest] = []
    pending: list[_Pending] = []
    documents = 0
    precise = True
    try:
        for index, doc in enumerate(_fast_documents(text)):
            documents += 1
            position = (doc.line, doc.column)
            if doc.failure is not None:
                precise = precise and not doc.imprecise
                at = (doc.failure.line, doc.failure.column)
                pending.append(_Pending(index, (), False, doc.failure.message, "error", at))
                continue
            for duplicate in doc.duplicates:
                first, again = duplicate.first[0], duplicate.again[0]
                message = (
                    f"duplicate key '{duplicate.key}' (first at line {first}, again at line "
                    f"{again}); keep only one"
                )
                pending.append(
                    _Pending(index, duplicate.loc, True, message, "error", duplicate.again)
                )
            if doc.data is TOO_DEEP:
                # the round-trip parser is slow on deep nesting: no positions
                # for this file beyond the documents' own
                precise = False
                message = f"nested more than {MAX_DEPTH} levels deep: not a manifest"
                pending.append(_Pending(index, (), False, message, "error", position))
                continue
            if doc.data is None:
                pending.append(
                    _Pending(
                        index, (), False, "empty document (a stray '---'?)", "warning", position
                    )
                )
                continue
            if not isinstance(doc.data, dict):
                pending.append(
                    _Pending(
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
                    pending.append(_Pending(index, (), False, message, "error", position))
                    continue
                found = list(_diagnose(exc))
                known = {(loc, message) for loc, message, _ in found}
                found += [
                    (loc, message, True)
                    for loc, message in section_violations(doc.data)
                    if (loc, message) not in known
                ]
                for loc, message, at_key in found:
                    pending.append(_Pending(index, loc, at_key, message, "error", None, position))
                continue
            for secret_path in manifest.literal_secrets():
                pending.append(
                    _Pending(
                        index,
                        tuple(secret_path.split(".")),
                        False,
                        f"a literal secret in the file: use {_SECRET_FORMS}",
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
                pending.append(_Pending(index, loc, True, message, severity, placed, position))
            if doc.duplicates:
                continue  # valid once a key is dropped, but not as written
            loaded.append(LoadedManifest(manifest, path, doc.line, doc.column, index, doc.keys))
    except Exception as exc:  # any parse failure of any kind becomes a diagnostic
        failure = _yaml_failure(exc, text)
        pending.append(
            _Pending(documents, (), False, failure.message, "error", (failure.line, failure.column))
        )
    if documents == 0 and not pending:
        pending.append(
            _Pending(0, (), False, "no manifest in this file (it is empty)", "error", (1, 1))
        )

    if strict:
        for item in pending:
            item.severity = "error"
    return loaded, _place(path, text, pending, precise=precise)


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


def _place(path: str, text: str, pending: list[_Pending], *, precise: bool) -> list[Diagnostic]:
    if not pending:
        return []
    wanted = precise and any(p.position is None for p in pending)
    trees = _position_tree(text) if wanted else []
    out: list[Diagnostic] = []
    for item in pending:
        if item.position is not None:
            line, column = item.position
        else:
            root = trees[item.document] if item.document < len(trees) else None
            line, column = _locate(root, item.loc, item.at_key, item.fallback)
        out.append(
            Diagnostic(path, line, column, dotted_path(item.loc), item.message, item.severity)
        )
    out.sort(key=lambda d: (d.line, d.column))
    return out


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
        read = parsed = 0
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
                                entry = self._parse(path, raw, key, racy, digest)
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
        )
        return result, stats

    def _parse(self, path: str, raw: bytes, key: FileKey, racy: bool, digest: bytes) -> _Entry:
        from orchestrator.manifest.crosscheck import target_of

        loaded, found = _parse(path, raw, strict=self.strict)
        last_ends = [(m, end) for m in loaded if (end := m.manifest.last_window_end()) is not None]
        return _Entry(
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
