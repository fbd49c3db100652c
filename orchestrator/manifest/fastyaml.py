"""The fast path of manifest parsing: libyaml's parser, ruamel's safe constructor.

Every manifest file goes through here, so it is built for 10,000 files a reload:
ruamel.yaml's C parser (libyaml) with a tag resolver that caches plain scalars,
and a constructor that builds maps, lists and text itself. The node tree gives
the position of each document and of its top-level keys; finer positions are
the round-trip parser's (`diagnostics.position_tree`), only for files with
findings.

A bad document must never hide the others: one that cannot be built is yielded
with its `failure` (a position and a message that quotes no value), and a key
written twice or a key that is not text is recorded and left out, not raised, so
that every other finding of the file is still reported; only a syntax error ends
the stream (the caller turns it into a finding with `yaml_failure`). It must never
be given a text that `reading.check_bounds` has not passed (with `fast_events`
when `may_anchor`): that is what keeps hostile input from crashing libyaml's
composer, or from making the build hang or exhaust memory.
"""

from __future__ import annotations

import functools
import io
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, NamedTuple

from orchestrator.manifest.reading import (
    UNBUILDABLE,
    YamlProblem,
    duplicate_key,
    not_text,
    not_valid,
    without_values,
)
from orchestrator.manifest.rules import Loc

__all__ = [
    "Document",
    "Duplicate",
    "NotText",
    "fast_documents",
    "fast_events",
    "fast_loader",
    "forget_scalars",
    "may_anchor",
    "yaml_failure",
]


@dataclass(frozen=True)
class Duplicate:
    """A key written twice in one mapping (the first one is kept)."""

    loc: Loc  # the key's field path
    key: str  # as written
    first: tuple[int, int]  # line and column, 1-based
    again: tuple[int, int]


@dataclass(frozen=True)
class NotText:
    """A key that is not text (`~`, `true`, `1`, `[a, b]`), left out of the data."""

    loc: Loc  # the field path of its mapping
    at: tuple[int, int]  # the key's line and column, 1-based


@dataclass
class Document:
    """One document as built: its data, its position and those of its top-level keys."""

    data: Any
    line: int
    column: int
    keys: dict[str, tuple[int, int]]
    duplicates: list[Duplicate] = field(default_factory=list)
    not_text: list[NotText] = field(default_factory=list)
    failure: YamlProblem | None = None  # the document could not be built: why


_BUILT_DIRECTLY = ("null", "bool", "int", "float", "timestamp")
"""The implicit tags of plain scalars that `_Builder` builds by calling SafeConstructor's
function for the tag itself, once per text (`_Resolved.values`)."""

_LONGEST_KEPT = 200
"""Texts of this length or more are never kept (below)."""

_TAGS_KEPT = 50_000
"""Plain scalars whose tag is kept by their text, at most."""

_VALUES_KEPT = 10_000
"""Values kept by their text, at most, per tag of `_BUILT_DIRECTLY`: the numbers a
fleet repeats fit, and unique ones (uids, the instants of explicit windows) cannot
hold more than a few MB between loads."""


class _Resolved(NamedTuple):
    """The resolver of every file's loader, and the tags it gives.

    `tags`: the one `Tag` object of each tag the resolver gives a plain scalar, so
    that a tag is recognised by identity. `values`: by the id of such a tag (they
    live as long as the process), its tag string and the values built so far by
    their text, for the tags of `_BUILT_DIRECTLY`. `texts`: the tag of each plain
    scalar's text met so far.
    """

    resolver: Any
    tags: Mapping[str, Any]
    values: Mapping[int, tuple[str, dict[str, Any]]]
    texts: dict[str, Any]


def forget_scalars() -> None:
    """Forget the texts and values kept since the last call (`_Resolved`); a loader of
    many files calls it after each load. What a load kept was made among that load's
    objects: kept for good, it would hold their memory pages after they are freed (a
    daemon's RSS after a full reload of 10,000 manifests: 40 MB more)."""
    resolved = _resolved()
    resolved.texts.clear()
    for _, built in resolved.values.values():
        built.clear()


@functools.cache
def _resolved() -> _Resolved:
    """ruamel's resolver, made once for every file: the implicit tag of a plain scalar
    is looked up in ruamel's rules, prepared once, and kept by its text.

    With the C parser, ruamel never sees a `%YAML` directive: its
    `processing_version` falls back to the default (1.2) after two caught
    AttributeErrors per scalar, which was half of the parse time. So a plain
    scalar's tag depends on its text alone. ruamel's own `resolve` registers its
    rules again in each new loader (8 calls a file) and goes through a lazy
    wrapper for each pattern; this one reads the same rules, registered by ruamel
    once per version and kept read-only, in the same order (first character, then
    the rules for any character), so a loader carries nothing to the next file.
    ruamel's `resolve` still answers if a path resolver was ever registered (none
    is, here). Tags are shared objects already (`DEFAULT_SCALAR_TAG`); one shared
    `Tag` per tag string is as safe.
    """
    from ruamel.yaml.nodes import MappingNode, ScalarNode, SequenceNode
    from ruamel.yaml.resolver import BaseResolver, VersionedResolver, implicit_resolvers
    from ruamel.yaml.tag import Tag

    defaults = {
        ScalarNode: BaseResolver.DEFAULT_SCALAR_TAG,
        SequenceNode: BaseResolver.DEFAULT_SEQUENCE_TAG,
        MappingNode: BaseResolver.DEFAULT_MAPPING_TAG,
    }
    text_tag = BaseResolver.DEFAULT_SCALAR_TAG
    tags: dict[str, Any] = {tag.suffix: tag for tag in defaults.values()}
    for _, suffix, _, _ in implicit_resolvers:
        tags.setdefault(suffix, Tag(suffix=suffix))
    rules: dict[Any, Mapping[Any, tuple[tuple[Any, Any], ...]]] = {}
    for version in sorted({version for rule in implicit_resolvers for version in rule[0]}):
        # ruamel's rules for the version as it registers them in a loader: by first
        # character ("" for the empty text), and under None those for any character
        registered = VersionedResolver(version=version).versioned_resolver
        prepared = {
            first: tuple((tags[suffix], pattern.match) for suffix, pattern in found)
            for first, found in registered.items()
        }
        anywhere = prepared.pop(None, ())
        rules[version] = MappingProxyType(
            {None: anywhere, **{first: found + anywhere for first, found in prepared.items()}}
        )
    cache: dict[str, Any] = {}

    class CachedResolver(VersionedResolver):
        @property
        def processing_version(self) -> Any:
            return self._loader_version or (1, 2)

        def resolve(self, kind: Any, value: Any, implicit: Any) -> Any:
            if self.yaml_path_resolvers:
                return super().resolve(kind, value, implicit)
            if kind is not ScalarNode or not implicit[0]:
                return defaults.get(kind)
            tag = cache.get(value)
            if tag is None:
                by_first = rules[self.processing_version]
                found = by_first.get(value[:1], by_first[None])
                tag = next((tag for tag, match in found if match(value)), text_tag)
                if len(cache) < _TAGS_KEPT and len(value) < _LONGEST_KEPT:
                    cache[value] = tag
            return tag

    prefix = "tag:yaml.org,2002:"
    values: dict[int, tuple[str, dict[str, Any]]] = {
        id(tags[prefix + name]): (prefix + name, {}) for name in _BUILT_DIRECTLY
    }
    return _Resolved(CachedResolver, MappingProxyType(tags), MappingProxyType(values), cache)


@functools.cache
def fast_loader() -> Any:
    """A factory `stream -> loader` built once: libyaml's parser and composer (ruamel's
    CParser), ruamel's SafeConstructor and the cached resolver, combined exactly as
    `YAML(typ="safe", pure=False)` combines them, but without building a YAML object
    and a loader class for every file (that was a third of the time per small file).
    Without the C extension, ruamel's pure reader, scanner, parser and composer.
    """
    from ruamel.yaml import YAML
    from ruamel.yaml.constructor import SafeConstructor

    yaml = YAML(typ="safe", pure=False)
    parser: Any = yaml.Parser
    resolver = _resolved().resolver
    # Without ruamel.yaml.clib, ruamel's pure parts stand in: slower, and a syntax
    # error is worded as the pure parser words it; the documents are the same.
    pure = parser.__name__ != "CParser"
    parts: tuple[type, ...] = (parser,)
    if pure:
        from ruamel.yaml.composer import Composer
        from ruamel.yaml.reader import Reader
        from ruamel.yaml.scanner import Scanner

        parts = (Reader, Scanner, parser, Composer)

    class FastLoader(*parts, SafeConstructor, resolver):  # type: ignore[misc, valid-type]
        def __init__(self, stream: Any) -> None:
            if pure:  # as ruamel's own SafeLoader
                self.comment_handling = None
                self.max_depth = None  # nesting is bounded before (`reading.check_bounds`)
                Reader.__init__(self, stream, loader=self)
                Scanner.__init__(self, loader=self)
                parser.__init__(self, loader=self)
                Composer.__init__(self, loader=self)
            else:
                parser.__init__(self, stream)
                self._parser = self._composer = self
            SafeConstructor.__init__(self, loader=self)
            self.allow_duplicate_keys = False
            resolver.__init__(self, version=None, loadumper=self)

        def construct_object(self, node: Any, deep: bool = False) -> Any:
            # A value its tag cannot build escapes SafeConstructor as a bare error
            # (`2027-02-30T00:00:00Z`, `!!int abc`): placed here, where the node is known.
            try:
                return SafeConstructor.construct_object(self, node, deep=deep)
            except UNBUILDABLE:
                raise not_valid(node.start_mark, node.tag) from None

        def dispose(self) -> None:
            parser.dispose(self)
            # The loader refers to itself (as its own parser, composer and constructor):
            # a reference cycle holding the node tree. Breaking it frees all of that at
            # once, by refcounting, instead of leaving ~100 objects per file to the
            # cyclic collector (which `ManifestCache` pauses during a load).
            self.__dict__.clear()

    return FastLoader


def _construct(loader: Any, root: Any) -> tuple[Any, list[Duplicate], list[NotText]]:
    """A document's data: untagged maps, lists, text and the common plain scalars built
    here, the rest by ruamel; the keys written twice (the first of them is kept), and
    the keys that are not text (left out).

    ruamel's SafeConstructor sends every node through generic machinery (tag
    strings, generators, merge-key flattening). Manifests are almost only maps,
    lists, strings and a few numbers, booleans and timestamps, which this builds
    directly: maps, lists and text itself, and a plain scalar of an implicit tag of
    `_BUILT_DIRECTLY` with SafeConstructor's own function for that tag, as
    `construct_object` would call it, once per distinct text. Every other node
    (explicit tags, merge keys, a mapping with a key that is not text) is built by
    SafeConstructor's `construct_object`, so the data, and the errors, are the same.
    Aliases share one object, as there.

    A duplicate key is not an exception here (ruamel raises one, which hid every
    other finding of the file): it is recorded with both of its positions and
    the rest of the document is built and validated. So is a key that is not text
    (every key of a manifest is a name), which the model would report with the key
    as its field and no position.
    """
    builder = _Builder(loader)
    try:
        data = builder.build(root)
    finally:  # what SafeConstructor.construct_document resets after each document
        loader.constructed_objects = {}
        loader.recursive_objects = {}
        loader.deep_construct = False
    if not builder.duplicates and not builder.not_text:
        return data, [], []
    paths = _node_paths(root)
    duplicates = [
        Duplicate(
            (*paths.get(id(mapping), ()), key.value),
            str(key.value),
            (first.start_mark.line + 1, first.start_mark.column + 1),
            (key.start_mark.line + 1, key.start_mark.column + 1),
        )
        for mapping, first, key in builder.duplicates
    ]
    not_text = [
        NotText(paths.get(id(mapping), ()), (key.start_mark.line + 1, key.start_mark.column + 1))
        for mapping, key in builder.not_text
    ]
    return data, duplicates, not_text


_NOT_CACHED = object()


class _Builder:
    """`_construct`'s recursion (as deep as the document, which `check_bounds` bounded).
    An object rather than a nested function, which would refer to itself through its
    closure: a cycle per document, left to the cyclic collector."""

    __slots__ = (
        "duplicates",
        "loader",
        "map_tag",
        "memo",
        "not_text",
        "scalars",
        "seq_tag",
        "text_tag",
    )

    def __init__(self, loader: Any) -> None:
        resolved = _resolved()
        self.loader = loader
        self.text_tag = resolved.tags["tag:yaml.org,2002:str"]
        self.map_tag = resolved.tags["tag:yaml.org,2002:map"]
        self.seq_tag = resolved.tags["tag:yaml.org,2002:seq"]
        self.scalars = resolved.values
        self.memo: dict[int, Any] = {}
        self.duplicates: list[tuple[Any, Any, Any]] = []  # (mapping, first key, repeated key)
        self.not_text: list[tuple[Any, Any]] = []  # (mapping, key)

    def build(self, node: Any) -> Any:
        tag = node.ctag
        text_tag = self.text_tag
        if tag is text_tag:
            return node.value
        if tag is not self.map_tag and tag is not self.seq_tag:
            direct = self.scalars.get(id(tag))
            if direct is None:
                return self._by_ruamel(node)
            return self._scalar(node, *direct)
        memo = self.memo
        known = memo.get(id(node))
        if known is not None:
            return known
        build = self.build
        if tag is self.seq_tag:
            items: list[Any] = []
            memo[id(node)] = items
            items.extend(
                [child.value if child.ctag is text_tag else build(child) for child in node.value]
            )
            return items
        mapping: dict[Any, Any] = {}
        memo[id(node)] = mapping
        repeated: list[Any] = []
        for key_node, value_node in node.value:
            key = key_node.value
            if key_node.ctag is not text_tag:
                if not _usable_key(key_node):
                    self.not_text.append((node, key_node))
                    repeated.append(key_node)
                    continue
                del memo[id(node)]  # let ruamel build it (a merge key, a tagged text)
                self.duplicates = [d for d in self.duplicates if d[0] is not node]
                self.not_text = [d for d in self.not_text if d[0] is not node]
                return self._by_ruamel(node)
            if key in mapping:
                first = next(k for k, _ in node.value if k.ctag is text_tag and k.value == key)
                self.duplicates.append((node, first, key_node))
                repeated.append(key_node)
                continue
            mapping[key] = value_node.value if value_node.ctag is text_tag else build(value_node)
        if repeated:  # as ruamel would see it, should an alias lead there again (left out)
            node.value = [pair for pair in node.value if not any(pair[0] is k for k in repeated)]
        return mapping

    def _scalar(self, node: Any, tag: str, values: dict[str, Any]) -> Any:
        """A plain scalar of a tag of `_BUILT_DIRECTLY`: what `construct_object` gives,
        by the same function (its value depends on the tag and the text alone, and it
        is immutable, so one value serves every scalar of the same text)."""
        text = node.value
        data = values.get(text, _NOT_CACHED)
        if data is _NOT_CACHED:
            loader = self.loader
            try:
                data = loader.yaml_constructors[tag](loader, node)
            except UNBUILDABLE:  # as `construct_object` says it
                raise not_valid(node.start_mark, tag) from None
            if len(values) < _VALUES_KEPT and len(text) < _LONGEST_KEPT:
                values[text] = data
        return data

    def _by_ruamel(self, node: Any) -> Any:
        """SafeConstructor's data for a node, once every mapping in it has no key twice
        and every tag in it is one SafeConstructor builds (YamlProblem otherwise)."""
        known = type(self.loader).yaml_constructors
        pending, visited = [node], set()
        while pending:
            current = pending.pop()
            if id(current) in visited:
                continue
            tag = current.tag
            if tag not in known and not tag.endswith(":merge"):  # merge keys are flattened
                # the tag is not named: an unquoted secret that starts with '!' is one
                raise YamlProblem.at(
                    current.start_mark, "an unsupported YAML tag (!...): plain values only"
                )
            if not isinstance(current.value, list):
                continue
            visited.add(id(current))
            if current.id == "mapping":
                self._drop_duplicates(current)
                pending.extend(n for pair in current.value for n in pair)
            else:
                pending.extend(current.value)
        return self.loader.construct_object(node, deep=True)

    def _drop_duplicates(self, node: Any) -> None:
        """Keys are compared as SafeConstructor compares them (by their values); a key
        that is not text is left out too."""
        seen: dict[Any, Any] = {}
        kept = []
        for pair in node.value:
            key_node = pair[0]
            if not _usable_key(key_node):
                self.not_text.append((node, key_node))
                continue
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


_TEXT_TAG = "tag:yaml.org,2002:str"


def _usable_key(node: Any) -> bool:
    """Whether a key node is text (plain, quoted or tagged `!!str`) or a merge key (`<<`)."""
    tag = str(node.tag)
    return bool(node.id == "scalar" and (tag == _TEXT_TAG or tag.endswith(":merge")))


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


_ANCHOR = re.compile(r"[&*][0-9A-Za-z_-]")
"""An anchor or an alias as libyaml scans one: `&` or `*`, then a letter, digit, `_` or
`-` (cron's `*` is followed by a blank, `/`, `,` or a quote)."""


def may_anchor(text: str) -> bool:
    """Could libyaml find an anchor or an alias in `text`? If not, `check_bounds` needs
    no events: without aliases nothing expands, and no anchor can be defined twice."""
    return _ANCHOR.search(text) is not None


def fast_events(text: str) -> Iterator[Any]:
    """libyaml's parse events of `text`, for `reading.check_bounds`: the parser that
    builds the documents, so that the bounds see what it will see."""
    loader = fast_loader()(io.StringIO(text))
    try:
        while loader.check_event():
            yield loader.get_event()
    finally:
        dispose = getattr(loader, "dispose", None)
        if dispose is not None:
            dispose()


def fast_documents(text: str) -> Iterator[Document]:
    """Documents via libyaml; the node tree gives document and top-level key positions.

    A document that cannot be built (an unsupported tag, a value of the wrong
    form) is yielded with its `failure`, and the following documents are still
    read: only a syntax error ends the stream. `text` must have passed
    `reading.check_bounds`.
    """
    loader = fast_loader()(io.StringIO(text))
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
                yield Document(None, line, column, keys)
                continue
            try:
                data, duplicates, not_text = _construct(loader, node)
            except Exception as exc:  # this document cannot be built; the others still can
                yield Document(None, line, column, keys, failure=yaml_failure(exc, text))
                continue
            yield Document(data, line, column, keys, duplicates, not_text)
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


def yaml_failure(exc: Exception, text: str) -> YamlProblem:
    """A parse error as a position and a message that quotes no value of the text."""
    from ruamel.yaml.constructor import DuplicateKeyError
    from ruamel.yaml.error import MarkedYAMLError
    from ruamel.yaml.reader import ReaderError
    from ruamel.yaml.scanner import ScannerError

    if isinstance(exc, YamlProblem):
        return exc
    if isinstance(exc, ReaderError):
        if exc.encoding == "unicode":  # ruamel's pure reader: a character's index
            return not_text(text, exc.position, exc.character)
        # libyaml's: a byte's offset in the UTF-8 it was given
        index = len(text.encode("utf-8")[: exc.position].decode("utf-8", "ignore"))
        return not_text(text, index, exc.character, libyaml=True)
    if isinstance(exc, MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
        if isinstance(exc, DuplicateKeyError):
            # a key the loader could not compare before ruamel did; ruamel's context
            # mark is the mapping's start, not the first occurrence
            mapping = exc.context_mark
            where = f" in the mapping at line {mapping.line + 1}" if mapping is not None else ""
            return YamlProblem(line, column, duplicate_key(None, None) + where)
        problem = without_values(str(exc.problem or "invalid YAML"))
        context = f" ({without_values(str(exc.context))})" if exc.context else ""
        hint = _hint(exc, text, mark) if isinstance(exc, ScannerError) else ""
        return YamlProblem(line, column, f"invalid YAML: {problem}{context}{hint}")
    if isinstance(exc, RecursionError):
        return YamlProblem(1, 1, "invalid YAML: nested too deeply")
    return YamlProblem(1, 1, f"invalid YAML: a value could not be read ({type(exc).__name__})")


def _hint(exc: Any, text: str, mark: Any) -> str:
    """What a scanner's error most likely means, where libyaml's words do not say."""
    here = _at(text, mark)
    if here == "\t":  # libyaml does not name the character
        return "; it is a tab: YAML indents with spaces, never tabs"
    if here == ":" and "unexpected ':'" in str(exc.problem):
        # libyaml refuses `{start: 2026-03-02T09:00:00Z}`: times inside {...} or [...]
        return "; inside {...} or [...], quote values that contain ':' (like times)"
    if "simple key" in str(exc.context) and getattr(mark, "column", 0) >= _LONGEST_KEY:
        return f"; a key is at most {_LONGEST_KEY} characters on its line (YAML's limit)"
    return ""


#: YAML's limit on a plain (simple) key's length: libyaml stops looking for its ':'.
_LONGEST_KEY = 1024


def _at(text: str, mark: Any) -> str:
    """The character a mark points at, or nothing."""
    index = getattr(mark, "index", None)
    return text[index] if isinstance(index, int) and 0 <= index < len(text) else ""
