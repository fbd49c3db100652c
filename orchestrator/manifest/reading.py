"""The one bounded reader of our YAML files: the manifests and the daemon config.

Whatever a file holds, reading it costs bounded time and memory and ends in text
to parse or in a problem with a position. The manifest loader (through its fast
libyaml path) and the daemon config (through ruamel's round-trip loader, whose
nodes know their positions: `read_document`) both go through here, so they have
one set of limits and say each problem in the same words:

- only a regular file is opened, without blocking, and at most `MAX_FILE_BYTES`
  are read (`files.read_regular`, which secret files share);
- the text is UTF-8 (a byte order mark is dropped), or the first bad byte is
  named by line and column;
- `check_bounds` refuses, before anything is built, nesting deeper than
  `MAX_DEPTH` and aliases that would add more than `MAX_ALIAS_NODES` nodes, an
  alias inside the node it names, an alias to no anchor, and an anchor defined
  twice in a document;
- a key written twice is one sentence (`duplicate_key`), whichever loader finds it.

It must never block, read past the limit, let a parser build what the bounds
refuse, or quote a value of a file in a message: any value may be a secret, so a
message names keys, positions and limits only (`without_values` rewords ruamel's).
Nor an anchor, an alias or a tag: a secret written unquoted that starts with `&`,
`*` or `!` is read as one (`accessKey: *S3cr3t`).
"""

from __future__ import annotations

import functools
import io
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from orchestrator.files import ReadError, ReadFailure, file_kind, read_regular
from orchestrator.manifest.nesting import nesting_overflow

__all__ = [
    "MAX_ALIAS_NODES",
    "MAX_DEPTH",
    "MAX_FILE_BYTES",
    "UNBUILDABLE",
    "ReadError",
    "ReadFailure",
    "YamlProblem",
    "blank_tabs",
    "check_bounds",
    "decode",
    "duplicate_key",
    "file_kind",
    "not_text",
    "not_valid",
    "position",
    "read_document",
    "read_file",
    "split_lines",
    "without_values",
]

MAX_FILE_BYTES = 1 << 20
"""Larger files are refused unread (1 MiB): a manifest is a few hundred bytes and the
config a few kilobytes; a big set of manifests is split into files."""

MAX_DEPTH = 64
"""Deeper nesting is refused: a manifest needs about six levels, the config four.
libyaml's composer recurses on the C stack once per level (see `nesting`), ruamel's
constructors and pydantic on the Python stack. Nesting that aliases make (an alias
of a deep node, deep inside another) counts as if written out."""

MAX_ALIAS_NODES = 10_000
"""The nodes aliases may add to one file, every alias counted as the node it names
written out; the one alias bound of the manifests and the config.

Without a bound, 300 bytes of nested aliases ("billion laughs") stand for 10^9
nodes; merge keys (`<<: [*a, *a]`) are flattened pair by pair and validation walks
a shared value once per reference, so each added node costs time even though the
parser shares one object. Real files use aliases to share a secret reference, a
storage block or a subscription list: tens of nodes. 10,000 is a hundred times
that, and keeps the worst a file of a few hundred bytes can cost to what about
40 KB of plain values cost. (Manifests used to allow 100,000 nodes counted over the
whole document, the config 10,000 added nodes: the smaller bound, counted the
config's way, which does not hold a big file of plain values against its aliases.)"""


class YamlProblem(Exception):
    """Why a text cannot be read as YAML: a 1-based position and a message that quotes
    no value of the text."""

    def __init__(self, line: int, column: int, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.column = column
        self.message = message

    @classmethod
    def at(cls, mark: Any, message: str) -> YamlProblem:
        """A problem at a ruamel mark (0-based)."""
        return cls(mark.line + 1, mark.column + 1, message)


# --- the file ---------------------------------------------------------------------------


def read_file(path: str | os.PathLike[str], st: os.stat_result | None = None) -> bytes:
    """The bytes of a regular file of at most MAX_FILE_BYTES, or ReadError (the one
    bounded read of files.py)."""
    return read_regular(path, MAX_FILE_BYTES, st)


# --- the text ---------------------------------------------------------------------------

_BOM = b"\xef\xbb\xbf"


def decode(raw: bytes) -> str:
    """The text of UTF-8 bytes (without a byte order mark), or a YamlProblem at the first
    byte that is not UTF-8, its column counted in characters as an editor shows it."""
    raw = raw.removeprefix(_BOM)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        if raw.startswith(_UTF16_BOMS):
            raise YamlProblem(1, 1, f"not a UTF-8 text file: {_UTF16}") from None
        before = raw[: exc.start].decode("utf-8")  # valid up to it
        line, column = position(before, len(before))
        raise YamlProblem(line, column, "not a UTF-8 text file") from None


_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
_UTF16 = "it is UTF-16 (as some Windows editors save): save it as UTF-8"


# Line breaks as YAML 1.2 has them (ruamel's reader: the config): LF, CRLF, a lone CR;
# libyaml (the manifests) breaks at YAML 1.1's NEL, LS and PS as well.
_BREAK = re.compile(r"\r\n|\r|\n")
_BREAK_LIBYAML = re.compile("\r\n|[\r\n\x85\u2028\u2029]")


def _breaks(libyaml: bool) -> re.Pattern[str]:
    return _BREAK_LIBYAML if libyaml else _BREAK


def position(text: str, index: int, *, libyaml: bool = False) -> tuple[int, int]:
    """The 1-based (line, column) of `text[index]`, lines broken as the parser breaks
    them (a lone CR too: an old Mac's files), so that it agrees with the parser's
    own marks; `libyaml`: as the manifests' parser, else as the config's."""
    line, start = 1, 0
    for found in _breaks(libyaml).finditer(text, 0, index):
        line, start = line + 1, found.end()
    return line, index - start + 1


def split_lines(text: str, *, libyaml: bool = False) -> list[str]:
    """The lines of `text`, broken as `position` breaks them."""
    return _breaks(libyaml).split(text)


def not_text(text: str, index: int, character: object, *, libyaml: bool = False) -> YamlProblem:
    """The one problem for a character YAML does not allow in a file (a control
    character, a NUL: a binary file), at `text[index]`; its code, never its context."""
    line, column = position(text, min(index, len(text)), libyaml=libyaml)
    start = text[:64]
    if character == 0 and start.count("\0") * 3 >= len(start):  # every other one a NUL
        return YamlProblem(line, column, f"not a UTF-8 text file: {_UTF16}")
    return YamlProblem(
        line, column, f"not a text file: character {character!r} is not allowed in YAML"
    )


_TOO_DEEP = f"nested more than {MAX_DEPTH} levels deep"


def duplicate_key(key: object, first_line: int | None) -> str:
    """The one sentence for a key written twice in a mapping: the key (never a value)
    and the line of its first occurrence; the problem's position is the second."""
    label = f' "{key}"' if isinstance(key, str | int | float | bool) else ""
    where = f" (first at line {first_line})" if first_line else ""
    return f"duplicate key{label}{where}"


UNBUILDABLE = (ValueError, OverflowError, TypeError, KeyError)
"""What ruamel's constructors raise, bare (not a YAMLError, and with the value in its
words), for a value that its tag cannot build (`2027-02-30`, `!!int abc`, `!!bool
maybe`): each caller turns it into `not_valid` at the node."""


def not_valid(mark: Any, tag: Any) -> YamlProblem:
    """The one problem for a value that its tag, written or given by YAML's rules,
    says is a number, a date, ... but that is not one (`2027-02-30T00:00:00Z`,
    `!!int abc`): at its ruamel mark, with what it was taken for, never the value."""
    kind = str(tag).rsplit(":", 1)[-1]
    return YamlProblem.at(mark, f"not a valid {kind}: quote it if it is text")


@dataclass(slots=True)
class _Open:
    """A collection being parsed: its anchor, its nodes so far (itself included) and its
    height (levels, itself included), aliases counted as written out."""

    anchor: str | None
    size: int = 1
    height: int = 1


def check_bounds(text: str, events: Iterable[Any] | None) -> None:
    """Raise a YamlProblem where `text` first goes past a bound; before anything is built.

    `events`: the parse events of `text` by the parser that will build it (libyaml
    for the manifests, ruamel's own for the config), so that both see the same
    thing; None when the text can hold no anchor or alias (the nesting as
    written, bounded from the raw text, is then all there is to check).

    Refused: nesting deeper than MAX_DEPTH (from the raw text first: libyaml must
    never see it, see `nesting`), aliases that together stand for more than
    MAX_ALIAS_NODES nodes in the file, or that nest a node deeper than MAX_DEPTH,
    an alias inside the node it names (a recursive structure), an alias to no
    anchor, and an anchor defined twice in a document (legal YAML, but an alias
    then means what the reader least expects). Linear in the number of events: an
    alias counts as the size of its node, computed once. A syntax error ends the
    check quietly: the parse that builds the document stops at the same place and
    reports it.
    """
    overflow = nesting_overflow(text, MAX_DEPTH)
    if overflow is not None:
        raise YamlProblem(*overflow, _TOO_DEEP)
    if events is None:
        return
    from ruamel.yaml.error import YAMLError

    try:
        _check_events(events)
    except YAMLError:
        return


def _check_events(events: Iterable[Any]) -> None:
    from ruamel.yaml.events import (
        AliasEvent,
        CollectionEndEvent,
        CollectionStartEvent,
        DocumentStartEvent,
        ScalarEvent,
    )

    nodes: dict[str, tuple[int, int]] = {}  # anchor -> (size, height) of its node
    defined: dict[str, int] = {}  # anchor -> the line it is defined on (0-based)
    stack: list[_Open] = []  # the collections entered and not yet left
    added = 0
    for event in events:
        if isinstance(event, DocumentStartEvent):
            nodes.clear()
            defined.clear()
            continue
        if isinstance(event, AliasEvent):
            anchor = event.anchor
            if anchor not in defined:
                raise YamlProblem.at(event.start_mark, "an alias (*...) names no anchor before it")
            if anchor not in nodes:
                raise YamlProblem.at(
                    event.start_mark,
                    "an alias (*...) inside the node it names: a recursive structure",
                )
            size, height = nodes[anchor]
            added += size
            if added > MAX_ALIAS_NODES:
                raise YamlProblem.at(
                    event.start_mark,
                    f"aliases expand to more than {MAX_ALIAS_NODES} nodes "
                    "(an alias bomb?): write the values out",
                )
            if len(stack) + height > MAX_DEPTH:
                raise YamlProblem.at(event.start_mark, _TOO_DEEP)
        elif isinstance(event, ScalarEvent | CollectionStartEvent):
            anchor = event.anchor
            if anchor is not None:
                if anchor in defined:
                    raise YamlProblem.at(
                        event.start_mark,
                        "an anchor (&...) is defined twice "
                        f"(first at line {defined[anchor] + 1}): use another name",
                    )
                defined[anchor] = event.start_mark.line
            if isinstance(event, CollectionStartEvent):
                stack.append(_Open(anchor))
                if len(stack) > MAX_DEPTH:
                    raise YamlProblem.at(event.start_mark, _TOO_DEEP)
                continue
            size, height = 1, 1
            if anchor is not None:
                nodes[anchor] = (size, height)
        elif isinstance(event, CollectionEndEvent):
            done = stack.pop()
            size, height = done.size, done.height
            if done.anchor is not None:
                nodes[done.anchor] = (size, height)
        else:
            continue
        if stack:
            stack[-1].size += size
            stack[-1].height = max(stack[-1].height, height + 1)


# A quoted fragment of a ruamel message may be text of the file (`but found 'x'`,
# `from "2024-13-45"`); it stays only when it is syntax: punctuation, an escape such
# as '\t', a token such as '<block end>'.
_QUOTED = re.compile(r"'((?:[^'\\]|\\.)*)'|\"((?:[^\"\\]|\\.)*)\"")
_SYNTAX = re.compile(r"[^\w\s]{1,3}|\\[a-z]|\\x[0-9a-f]{2}| |<[a-z ]+>")


def without_values(problem: str) -> str:
    """A ruamel message with every quoted fragment that is not syntax replaced."""

    def keep_syntax(match: re.Match[str]) -> str:
        content = match.group(1) if match.group(1) is not None else match.group(2)
        return match.group(0) if _SYNTAX.fullmatch(content) else "(not shown)"

    return " ".join(_QUOTED.sub(keep_syntax, problem).split())


# --- one positioned document (the config) -----------------------------------------------


def read_document(path: str | os.PathLike[str]) -> Any:
    """The one document of a YAML file as a round-trip tree (its nodes know their line
    and column, for `diagnostics.locate`); None for an empty file.

    ReadError when the file cannot be read; YamlProblem, at its line and column,
    for anything else: bytes that are not UTF-8, a bound of `check_bounds`, a key
    written twice, a syntax error, a value that is not what its tag says.
    """
    text = decode(read_file(path))
    from ruamel.yaml import YAML
    from ruamel.yaml.error import MarkedYAMLError, YAMLError
    from ruamel.yaml.reader import ReaderError

    check_bounds(text, None)  # the nesting, before libyaml's scanner sees the text
    text = blank_tabs(text)
    check_bounds(text, YAML(typ="rt").parse(text))
    try:
        yaml = YAML(typ="rt")
        yaml.Constructor = _strict_constructor()
        return yaml.load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = without_values(exc.problem or exc.context or "invalid YAML")
        raise YamlProblem(line, column, problem) from None
    except ReaderError as exc:
        raise not_text(text, exc.position, exc.character) from None
    except YAMLError as exc:
        raise YamlProblem(1, 1, f"invalid YAML ({type(exc).__name__})") from None


def blank_tabs(text: str) -> str:
    """`text` with a space for each tab that separates tokens (after a colon or a
    value, before a comment), which YAML allows and libyaml (the manifests' reader)
    takes as a blank, but ruamel's round-trip scanner refuses. A tab inside a scalar
    is kept (it is part of the value), and so is every tab of a text libyaml cannot
    scan (the round-trip parse then reports the error). One character for one: every
    line and column stays where it was."""
    if "\t" not in text:
        return text
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError
    from ruamel.yaml.tokens import ScalarToken

    libyaml: Any = YAML(typ="safe", pure=False).Parser
    if libyaml.__name__ != "CParser":
        return text  # without ruamel.yaml.clib the manifests' reader refuses it too
    scalars: list[tuple[int, int]] = []
    parser = libyaml(io.StringIO(text))
    try:
        while (token := parser.get_token()) is not None:
            if isinstance(token, ScalarToken):
                scalars.append((token.start_mark.index, token.end_mark.index))
    except YAMLError:
        return text
    finally:
        parser.dispose()
    chars = list(text)
    spans = iter(scalars)
    span = next(spans, None)
    for index in (i for i, c in enumerate(chars) if c == "\t"):
        while span is not None and span[1] <= index:
            span = next(spans, None)
        if span is None or index < span[0]:
            chars[index] = " "
    return "".join(chars)


@functools.cache
def _strict_constructor() -> type[Any]:
    """ruamel's round-trip constructor, with errors that quote no value: its duplicate
    key error shows both values, and a value the resolver takes for a date or a number
    but that is not one escapes as a bare ValueError."""
    from ruamel.yaml.constructor import RoundTripConstructor
    from ruamel.yaml.error import YAMLError

    class StrictConstructor(RoundTripConstructor):
        def check_mapping_key(
            self, node: Any, key_node: Any, mapping: Any, key: Any, value: Any
        ) -> bool:
            if key not in mapping:
                return True
            positions = getattr(getattr(mapping, "lc", None), "data", None) or {}
            first = positions.get(key)
            message = duplicate_key(key, first[0] + 1 if first else None)
            raise YamlProblem.at(key_node.start_mark, message)

        def construct_object(self, node: Any, deep: bool = False) -> Any:
            try:
                return super().construct_object(node, deep=deep)
            except (YAMLError, YamlProblem):
                raise
            except UNBUILDABLE:
                raise not_valid(node.start_mark, node.tag) from None

    return StrictConstructor
