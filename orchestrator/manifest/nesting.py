"""How deeply a YAML text can nest, bounded before any parser sees it.

libyaml's composer, as ruamel.yaml.clib drives it, recurses once per nesting
level on the C stack: a 100 KB document nested 50,000 levels deep kills the
process (SIGSEGV) before any check on the composed nodes can run, and libyaml's
scanner alone takes seconds on it. So the loader bounds the depth from the raw
text first and refuses what could be deeper than its limit.

The bound may be higher than the real depth (a strange document is then refused
as too deep) but must never be lower: a document that reaches libyaml is at most
`limit` deep. It must cost next to nothing for ordinary manifests:

1. A static bound per document (`---` and `...` at column 0 end every open
   collection, or make libyaml fail): each `[` opens at most two collections
   (the sequence, and the single-pair mapping of an entry written `[a: b]`),
   each `{` one. Block collections along one chain start at non-decreasing
   columns, at most two per column (a mapping, and a sequence written at the
   mapping's own indentation: `key:` then `- item`), and never right of a
   line's leading run of spaces and `-`, `?`, `:` indicators. Counting brackets
   and finding a long leading run are a few C-speed string operations.
2. Only a document whose static bound exceeds the limit is followed token by
   token with libyaml's scanner rules (comments, quoted, plain and block
   scalars, simple keys, indentation, the parser's single-pair mappings and
   indentless sequences), stopping where the depth first exceeds the limit.

Where libyaml would stop with an error, what the scan does afterwards does not
matter (nothing after that point is composed), so the scan never stops early
for that reason except at the end of the text. The rules followed are those of
the libyaml bundled with ruamel.yaml.clib (0.1.7); `test_nesting.py` checks the
bound against that parser's own events on generated documents.

Pure and total: no parser, no I/O, never raises on any text.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field

__all__ = ["nesting_overflow"]

_BREAKS = "\n\r\x85\u2028\u2029"
_BLANKZ = " \t" + _BREAKS  # and the end of the text
# a document marker after a line break (one at the very start splits nothing)
_DOCUMENT_MARK = re.compile(r"[\n\r\x85\u2028\u2029](?:---|\.\.\.)(?=[ \t\n\r\x85\u2028\u2029]|\Z)")
_BREAK = re.compile(r"\r\n|[\n\r\x85\u2028\u2029]")
_TO_BREAK = re.compile(r"[^\n\r\x85\u2028\u2029]*")
_SINGLE_QUOTED = re.compile(r"'[^']*(?:''[^']*)*'")
_DOUBLE_QUOTED = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)
_ANCHOR_NAME = re.compile(r"[0-9A-Za-z_-]*")
_NON_BLANK = re.compile(r"[^ \t\n\r\x85\u2028\u2029]*")
# A plain scalar's run of characters up to a blank or an indicator that ends it:
# in block context `: ` (a ':' followed by a blank or the end); in flow context
# also `,`, `?`, `[`, `]`, `{`, `}` and `:` before a blank or one of `,[]{}`.
_PLAIN_BLOCK = re.compile(r"(?:[^ \t\n\r\x85\u2028\u2029:]|:(?=[^ \t\n\r\x85\u2028\u2029]))*")
_PLAIN_FLOW = re.compile(
    r"(?:[^ \t\n\r\x85\u2028\u2029,?\[\]{}:]|:(?=[^ \t\n\r\x85\u2028\u2029,\[\]{}]))*"
)


@functools.lru_cache(maxsize=256)
def _long_run(length: int, newlines_only: bool) -> tuple[re.Pattern[str], re.Pattern[str]]:
    """A leading run of blanks and block indicators `length` or longer: at the start
    of a text, and after a line break. Two patterns, and the break a literal `\n` when
    the text has no other kind: a look-behind or a class at every position is seven
    times slower, and this runs on every file."""
    run = f"[ \t?:\\-\ufeff]{{{length}}}"
    after = "\n" if newlines_only else "[\n\r\x85\u2028\u2029]"
    return re.compile(run), re.compile(after + run)


def nesting_overflow(text: str, limit: int) -> tuple[int, int] | None:
    """Where (line, column, 1-based) a document of `text` could first nest deeper
    than `limit` collections; None when no document can."""
    plain = not any(c in text for c in "\r\x85\u2028\u2029")  # only \n ends lines
    end = len(text)
    if _runs_within(text, 0, end, _longest_run_allowed(text, 0, end, limit), plain):
        return None
    starts = _document_starts(text, plain)
    if len(starts) > 1:
        spans = list(zip(starts, [*starts[1:], end], strict=True))
        allowed = [_longest_run_allowed(text, a, b, limit) for a, b in spans]
        # one search of the whole text for the strictest document first: most files
        # of many documents end here
        if _runs_within(text, 0, end, min(allowed), plain):
            return None
        regions = [
            span
            for span, longest in zip(spans, allowed, strict=True)
            if not _runs_within(text, *span, longest, plain)
        ]
    else:
        regions = [(0, end)]
    for start, stop in regions:
        at = _Scan(text, start, stop, limit).run()
        if at is not None:
            return _line_column(text, at)
    return None


def _document_starts(text: str, newlines_only: bool) -> list[int]:
    """0 and the start of every line that is a document marker (`---` or `...`)."""
    if not newlines_only:
        return [0] + [m.start() + 1 for m in _DOCUMENT_MARK.finditer(text)]
    found = [0]
    for mark in ("\n---", "\n..."):
        at = text.find(mark)
        while at >= 0:
            after = at + 4
            if after >= len(text) or text[after] in _BLANKZ:
                found.append(at + 1)
            at = text.find(mark, at + 1)
    return sorted(found)


def _longest_run_allowed(text: str, start: int, end: int, limit: int) -> int:
    """The longest leading run (of blanks and block indicators, see the module docstring)
    that keeps the static bound of text[start:end] within `limit`; -1 if none does.

    Block levels are at most 2 * (columns 0 .. the longest run); brackets take the rest.
    """
    budget = limit - 2 * text.count("[", start, end) - text.count("{", start, end)
    return max(budget // 2 - 1, -1)


def _runs_within(text: str, start: int, end: int, longest: int, newlines_only: bool) -> bool:
    """No line of text[start:end] has a leading run longer than `longest`."""
    if longest < 0:
        return False
    at_start, after_break = _long_run(longest + 1, newlines_only)
    return at_start.match(text, start, end) is None and after_break.search(text, start, end) is None


def _line_column(text: str, index: int) -> tuple[int, int]:
    line, line_start = 1, 0
    for m in _BREAK.finditer(text, 0, index):
        line, line_start = line + 1, m.end()
    return line, index - line_start + 1


@dataclass(slots=True)
class _Flow:
    """One open flow collection."""

    sequence: bool
    entry_peak: int  # the deepest point reached inside the current entry
    peak: int  # the deepest point reached inside the collection
    pair: bool = False  # the current entry of a sequence is a single-pair mapping (`[a: b]`)


@dataclass(slots=True)
class _Key:
    """A possible simple key of the block context (libyaml's `simple_keys[0]`)."""

    index: int
    line: int
    column: int
    peak: int  # the deepest point reached since it started (a flow collection as a key)


@dataclass
class _Scan:
    """libyaml's scanner over text[start:end], reduced to what decides the nesting depth.

    Depth = block collections (libyaml's indentation stack) + the parser's
    indentless sequences + flow collections + the single-pair mappings of flow
    sequence entries. A mapping whose key is a flow collection (`[a]: b`,
    `[[a]: b]`) starts before that key: when its `:` arrives, the depth reached
    inside the key counts one more.
    """

    text: str
    start: int
    end: int
    limit: int
    pos: int = 0
    line: int = 0  # line breaks passed (for the staleness of a simple key)
    line_start: int = 0
    indents: list[int] = field(default_factory=list)  # columns of the open block collections
    mappings: list[bool] = field(default_factory=list)  # per block level: is a mapping
    indentless: list[bool] = field(default_factory=list)  # per level: a `- ` sequence at its column
    flows: list[_Flow] = field(default_factory=list)
    key: _Key | None = None
    key_allowed: bool = True
    after_sequence_key: bool = False  # the last token was a `?` opening a pair in a sequence
    depth: int = 0
    over: int | None = None  # where the depth first exceeded the limit

    def run(self) -> int | None:
        text, end = self.text, self.end
        self.pos = self.line_start = self.start
        if self.start == 0 and text.startswith("\ufeff"):  # the reader drops the stream's BOM
            self.pos = self.line_start = 1
        while self.over is None:
            self._skip_to_token()
            pos = self.pos
            if pos >= end:
                return None
            if self.key is not None and (self.key.line != self.line or pos > self.key.index + 1024):
                self.key = None  # stale: at most one line and 1024 characters
            column = pos - self.line_start
            if not self.flows:
                self._unroll(column)
            c = text[pos]
            blank_after = pos + 1 >= end or text[pos + 1] in _BLANKZ
            if self.after_sequence_key:
                self.after_sequence_key = False
                if c == "]":
                    # libyaml 0.1's parser skips the token after such a `?` when it is
                    # `,`, `:` or `]`: a `]` then closes nothing it sees, while the scanner
                    # leaves that flow level. The sequence and its pair stay open for
                    # the rest of the document, as far as this bound is concerned.
                    self._deeper(2, pos)
            if column == 0 and c == "%":  # a directive: the rest of the line
                self._reset()
                self.pos = _TO_BREAK.match(text, pos, end).end()  # type: ignore[union-attr]
            elif column == 0 and text.startswith(("---", "..."), pos) and self._blank_at(pos + 3):
                self._reset()
                self.pos = pos + 3
            elif c in "[{":
                self._flow_start(c == "[", column)
            elif c in "]}":
                self._flow_end()
            elif c == ",":
                self._flow_entry()
            elif c == "-" and blank_after:
                if not self.flows:
                    self._block_entry(column)
                self.key_allowed = True
                self.pos += 1
            elif c == "?" and (self.flows or blank_after):
                self._explicit_key(column)
            elif c == ":" and (self.flows or blank_after):
                self._value(column)
            elif c in "*&":
                self._node_start(column)
                self.pos = _ANCHOR_NAME.match(text, pos + 1, end).end()  # type: ignore[union-attr]
            elif c == "!":  # a tag runs to the next blank (its URI may hold brackets)
                self._node_start(column)
                self.pos = _NON_BLANK.match(text, pos, end).end()  # type: ignore[union-attr]
            elif c in "|>" and not self.flows:
                self._block_scalar()
            elif c in "'\"":
                self._quoted(column)
            elif c in "|>%@`":
                return self.over  # libyaml: "found character that cannot start any token"
            else:
                self._plain(column)
        return self.over

    # -- depth

    def _deeper(self, by: int, at: int) -> None:
        self.depth += by
        if self.flows:
            top = self.flows[-1]
            top.entry_peak = max(top.entry_peak, self.depth)
            top.peak = max(top.peak, self.depth)
        if self.key is not None:
            self.key.peak = max(self.key.peak, self.depth)
        if self.depth > self.limit and self.over is None:
            self.over = at

    def _reached(self, depth: int, at: int) -> None:
        """A depth reached earlier, known only now (a key turned out to be a mapping's)."""
        if depth > self.limit and self.over is None:
            self.over = at

    # -- block context

    def _reset(self) -> None:
        """A document boundary: every collection ends (or libyaml fails)."""
        self.indents.clear()
        self.mappings.clear()
        self.indentless.clear()
        self.flows.clear()
        self.key = None
        self.key_allowed = False
        self.depth = 0

    def _unroll(self, column: int) -> None:
        while self.indents and self.indents[-1] > column:
            self.indents.pop()
            self.mappings.pop()
            self.depth -= 1 + self.indentless.pop()

    def _roll(self, column: int, mapping: bool, at: int) -> bool:
        """A block collection starts at `column` if it is right of the current one."""
        if self.indents and self.indents[-1] >= column:
            return False
        self.indents.append(column)
        self.mappings.append(mapping)
        self.indentless.append(False)
        self._deeper(1, at)
        return True

    def _block_entry(self, column: int) -> None:
        self.key = None
        if self._roll(column, False, self.pos):
            return
        if self.indents[-1] == column and self.mappings[-1] and not self.indentless[-1]:
            self.indentless[-1] = True  # `key:` then `- item` at the key's own column
            self._deeper(1, self.pos)

    def _mapping_key_at(self, column: int, at: int, key_peak: int | None) -> None:
        """A mapping key (or value) at `column`: a new mapping, or the next key of one."""
        if self._roll(column, True, at):
            if key_peak is not None:
                self._reached(key_peak + 1, at)
        elif self.indents and self.indents[-1] == column and self.indentless[-1]:
            self.indentless[-1] = False  # the next key ends the indentless sequence
            self.depth -= 1

    def _explicit_key(self, column: int) -> None:
        if not self.flows:
            self.key = None
            self._mapping_key_at(column, self.pos, None)
        else:
            top = self.flows[-1]
            self.after_sequence_key = top.sequence and not top.pair
            self._pair_in_sequence(self.pos)
        self.key_allowed = not self.flows
        self.pos += 1

    def _value(self, column: int) -> None:
        if not self.flows:
            key = self.key
            if key is not None:
                self.key = None
                self._mapping_key_at(key.column, key.index, key.peak)
                self.key_allowed = False
            else:
                self._mapping_key_at(column, self.pos, None)
                self.key_allowed = True
        else:
            self._pair_in_sequence(self.pos)
            self.key_allowed = False
        self.pos += 1

    # -- flow context

    def _pair_in_sequence(self, at: int) -> None:
        """`?` or `:` inside a flow sequence: the entry is a single-pair mapping, which
        began with the entry (so whatever its key reached is one deeper)."""
        top = self.flows[-1]
        if top.sequence and not top.pair:
            top.pair = True
            self._reached(top.entry_peak + 1, at)
            top.entry_peak += 1
            top.peak = max(top.peak, top.entry_peak)
            self._deeper(1, at)

    def _flow_start(self, sequence: bool, column: int) -> None:
        if not self.flows:
            self._save_key(column)
        self.flows.append(_Flow(sequence, self.depth + 1, self.depth + 1))
        self._deeper(1, self.pos)
        self.key_allowed = True
        self.pos += 1

    def _flow_end(self) -> None:
        if self.flows:
            done = self.flows.pop()
            self.depth -= 1 + done.pair
            if self.flows:
                parent = self.flows[-1]
                parent.entry_peak = max(parent.entry_peak, done.peak)
                parent.peak = max(parent.peak, done.peak)
            elif self.key is not None:  # what a key reached counts when its `:` comes
                self.key.peak = max(self.key.peak, done.peak)
        else:
            self.key = None
        self.key_allowed = False
        self.pos += 1

    def _flow_entry(self) -> None:
        if self.flows:
            top = self.flows[-1]
            if top.pair:
                top.pair = False
                self.depth -= 1
            top.entry_peak = self.depth
        else:
            self.key = None
        self.key_allowed = True
        self.pos += 1

    # -- nodes

    def _save_key(self, column: int) -> None:
        if not self.flows and self.key_allowed:
            self.key = _Key(self.pos, self.line, column, self.depth)

    def _node_start(self, column: int) -> None:
        """A scalar, an alias, an anchor or a tag: it may start a simple key."""
        self._save_key(column)
        self.key_allowed = False

    def _quoted(self, column: int) -> None:
        self._node_start(column)
        pattern = _SINGLE_QUOTED if self.text[self.pos] == "'" else _DOUBLE_QUOTED
        found = pattern.match(self.text, self.pos, self.end)
        if found is None:  # unterminated: libyaml fails at the end of the text
            self.pos = self.end
            return
        self._pass(found.end())

    def _plain(self, column: int) -> None:
        self._node_start(column)
        text, end = self.text, self.end
        flow = bool(self.flows)
        run = _PLAIN_FLOW if flow else _PLAIN_BLOCK
        indent = (self.indents[-1] if self.indents else -1) + 1
        pos = self.pos
        leading_break = False
        while pos < end:
            at_mark = pos == self.line_start and text.startswith(("---", "..."), pos)
            if at_mark and self._blank_at(pos + 3):
                break
            if text[pos] == "#":
                break
            pos = run.match(text, pos, end).end()  # type: ignore[union-attr]
            if pos >= end or text[pos] not in _BLANKZ:
                break  # ended by an indicator
            while pos < end and text[pos] in _BLANKZ:
                if text[pos] in _BREAKS:
                    pos = self._break(pos)
                    leading_break = True
                else:
                    pos += 1
            if not flow and pos - self.line_start < indent:
                break
        self.pos = pos
        if leading_break:
            self.key_allowed = True

    def _block_scalar(self) -> None:
        """`|` or `>`: the header line, then every line indented at least as the content."""
        text, end = self.text, self.end
        self.key = None
        pos = self.pos + 1
        header = re.match(r"[+-]?([1-9]?)[+-]?", text[pos : pos + 3])
        increment = int(header.group(1)) if header and header.group(1) else 0
        pos = _TO_BREAK.match(text, pos, end).end()  # type: ignore[union-attr]
        if pos < end:
            pos = self._break(pos)
        current = self.indents[-1] if self.indents else -1
        indent = (current + increment if current >= 0 else increment) if increment else 0
        pos, deepest = self._scalar_breaks(pos, indent)
        if not indent:
            indent = max(deepest, current + 1, 1)
        while pos < end and pos - self.line_start == indent:
            pos = _TO_BREAK.match(text, pos, end).end()  # type: ignore[union-attr]
            if pos >= end:
                break
            pos = self._break(pos)
            pos, _ = self._scalar_breaks(pos, indent)
        self.pos = pos
        self.key_allowed = True

    def _scalar_breaks(self, pos: int, indent: int) -> tuple[int, int]:
        """Past the empty lines and the indentation of a block scalar's next line."""
        text, end = self.text, self.end
        deepest = 0
        while True:
            while pos < end and text[pos] == " " and (not indent or pos - self.line_start < indent):
                pos += 1
            deepest = max(deepest, pos - self.line_start)
            if pos < end and text[pos] in _BREAKS:
                pos = self._break(pos)
                continue
            return pos, deepest

    # -- characters

    def _skip_to_token(self) -> None:
        text, end = self.text, self.end
        pos = self.pos
        while pos < end:
            c = text[pos]
            if c == " " or c == "\t" or (c == "\ufeff" and pos == self.line_start):
                pos += 1
            elif c == "#":
                pos = _TO_BREAK.match(text, pos, end).end()  # type: ignore[union-attr]
            elif c in _BREAKS:
                pos = self._break(pos)
                if not self.flows:
                    self.key_allowed = True
            else:
                break
        self.pos = pos

    def _break(self, pos: int) -> int:
        """Past the line break at `pos` (CR LF is one)."""
        pos += 2 if self.text.startswith("\r\n", pos) else 1
        self.line += 1
        self.line_start = pos
        return pos

    def _pass(self, to: int) -> None:
        """Past a multi-line token, counting its line breaks."""
        for m in _BREAK.finditer(self.text, self.pos, to):
            self.line += 1
            self.line_start = m.end()
        self.pos = to

    def _blank_at(self, pos: int) -> bool:
        return pos >= self.end or self.text[pos] in _BLANKZ
