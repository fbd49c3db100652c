"""Findings as users read them: where (file, line, column), which field, what is wrong.

A `Diagnostic` is the one form every manifest problem takes, from a YAML syntax
error to a clash between two files. This module turns pydantic's errors into
messages that say what is wrong and what would be valid (`diagnose`), and finds
where a field path stands in a file (`position_tree`, `locate`). The daemon
config uses the same walk over pydantic's errors (`explain_each`), the same finder
and the same unknown-key sentence (`unknown_key`).

A message must never contain a secret value: the input is not quoted when the
field is a secret (`orchestrator.secrets.SECRET_KEYS`, `SECRET_TAGS`), and a key
written inside a secret reference of no known form is neither quoted nor shown in
the field path, since it may be the secret itself (`token: {s3cr3t: x}`).
"""

from __future__ import annotations

import difflib
import typing
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, fields
from typing import Any, Literal

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from orchestrator.contract import MAX_SIDE, MIN_UID, UINT32_MAX
from orchestrator.manifest.model import Manifest
from orchestrator.manifest.reading import ReadFailure, blank_tabs
from orchestrator.manifest.rules import Loc, dotted_path
from orchestrator.secrets import SECRET_TAGS, is_secret_key

__all__ = [
    "SECRET_FORMS",
    "Diagnostic",
    "Explained",
    "Finding",
    "Severity",
    "diagnose",
    "explain_each",
    "locate",
    "one_line",
    "place",
    "position_tree",
    "printable",
    "unknown_key",
]

# "note": information only (the CLI's notes, e.g. an App ID another replica owns);
# a note never fails a command.
Severity = Literal["error", "warning", "note"]


@dataclass(frozen=True)
class Diagnostic:
    """One finding: where (1-based), which field, what is wrong and what is valid.

    `kind` is what code decides on, never the message: None for a finding about
    what a file says (it was read) or where it stands (a symlink loop, a name that
    is not UTF-8), or why a path was not read (`ReadFailure`): it could not be (what
    it holds is unknown), it is not a regular file (skipped), or it is too big.

    `file` is always printable (`printable`): whatever made the finding, showing,
    logging or storing it never fails on a file name that is not UTF-8.
    """

    file: str
    line: int
    column: int
    field: str
    message: str
    severity: Severity = "error"
    kind: ReadFailure | None = None

    def __post_init__(self) -> None:
        if not self.file.isascii():
            object.__setattr__(self, "file", printable(self.file))

    @classmethod
    def general(cls, message: str, severity: Severity = "error") -> Diagnostic:
        """A finding about no place in a file (the store, an app profile, a query)."""
        return cls(file="", line=0, column=0, field="", message=message, severity=severity)

    def text(self) -> str:
        """One line: `file:line:column: severity: field: message`; without a file,
        `note: ...` / `warning: ...`, and an error as its bare message."""
        if not self.file:
            line = self.message if self.severity == "error" else f"{self.severity}: {self.message}"
            return one_line(line)
        field = f"{self.field}: " if self.field else ""
        return one_line(
            f"{self.file}:{self.line}:{self.column}: {self.severity}: {field}{self.message}"
        )

    def as_dict(self) -> dict[str, Any]:
        """The finding as JSON output shows it: every field but `kind` (which code reads)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "kind"}


#: What a terminal acts on instead of showing (C0 controls but tab, DEL, C1) and the
#: bidirectional controls that reorder what follows them on screen (U+202A-U+202E,
#: U+2066-U+2069): a file name, a key or an answer from outside may hold them.
_CONTROLS = {
    c: f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}"
    for c in (
        *range(0x20),
        0x7F,
        *range(0x80, 0xA0),
        *range(0x202A, 0x202F),
        *range(0x2066, 0x206A),
    )
    if c != 0x09
}


def one_line(text: str) -> str:
    """`text` as one line that shows what it says: each control character written as
    its escape (`\\x1b`, `\\x0a`, `\\u202e`), so that none moves the cursor, recolours
    or retitles the terminal, reorders the line or starts one of its own."""
    return text.translate(_CONTROLS)


def printable(path: str) -> str:
    """`path` as text that can be printed, logged and stored: a byte of its name that is
    not UTF-8 (which Python holds as a lone surrogate, see `os.fsdecode`) is shown as
    `\\xe9`. A path that is UTF-8 is returned as it is."""
    try:
        raw = path.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate that stands for no byte: not from a file name
        return path.encode("utf-8", "backslashreplace").decode("utf-8")
    return raw.decode("utf-8", "backslashreplace")


SECRET_FORMS = "{env: NAME}, {file: PATH} or {credential: NAME}"  # noqa: S105 (a hint)
"""How a secret is written, for messages."""

KEY_MARK = "[key]"
"""What pydantic puts after a mapping's key in the path of an error about the key."""

_PATTERN_HINTS = {
    "name": "1 to 128 letters, digits, '.', '_' or '-', starting and ending with a letter or digit",
    "app": "an App ID profile name: letters, digits, '.', '_' or '-' (at most 64)",
    "fileNamePrefix": "letters and digits only (a-z, A-Z, 0-9), one directory per entry",
    "regionId": "an Aliyun region id like cn-shanghai",
    "env": "an environment variable name like S3_KEY",
    "credential": "a credential name: letters, digits, '_', '.', '@' or '-'",
    "labels": "letters, digits, '.', '_', '/' or '-' (at most 63)",
}


_REQUIRED_HINTS = {
    ("Manifest", "name"): "a unique name like weekly-standup",
    ("Manifest", "app"): "an App ID profile of the daemon config, like main",
    ("Manifest", "channel"): "the Agora channel to record",
    ("Manifest", "uid"): f"the recorder's uid, {MIN_UID} to {UINT32_MAX}, or auto",
    ("Manifest", "mode"): "mix or individual",
    ("Manifest", "schedule"): "cron + timezone + duration, windows: [{start, end}], or always",
    ("Transcoding", "width"): f"pixels, 1 to {MAX_SIDE}",
    ("Transcoding", "height"): f"pixels, 1 to {MAX_SIDE}",
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
        if part in SECRET_TAGS:
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


def unknown_key(key: str, valid: Sequence[str]) -> str:
    """The one sentence for a key that is not allowed where it stands, in manifests
    and in the daemon config: the closest valid key, then all of them."""
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    listing = f"; valid keys here: {', '.join(valid)}" if valid else ""
    return f"unknown key '{key}'{hint}{listing}"


def _explain(error: ErrorDetails, loc: Loc, raw_loc: Loc) -> str:
    """A pydantic error as 'what is wrong; what would be valid'."""
    kind = str(error["type"])
    ctx = error.get("ctx") or {}
    value = error.get("input")
    secret = any(p in SECRET_TAGS for p in raw_loc) or any(
        isinstance(p, str) and is_secret_key(p) for p in loc
    )
    last = next((p for p in reversed(loc) if isinstance(p, str)), "")
    got = "" if secret else f" (got {_input_text(value)})"
    if kind == "missing":
        if not last:
            return "a required value is missing"
        owner = _model_at(raw_loc[:-1])
        hint = _REQUIRED_HINTS.get((owner.__name__ if owner else "", last), "")
        return f"'{last}' is required: {hint}" if hint else f"'{last}' is required"
    if kind == "extra_forbidden":
        return unknown_key(str(loc[-1]) if loc else "?", _keys_at(raw_loc[:-1]))
    if secret and kind in ("model_type", "model_attributes_type", "dict_type", "string_type"):
        return f"a secret is a reference: {SECRET_FORMS} (or, with a warning, a plain string)"
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
        what = "key" if raw_loc and raw_loc[-1] == KEY_MARK else "value"
        return f"invalid {what}{got}: " + (f"use {hint}" if hint else str(error["msg"]))
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


@dataclass(frozen=True, slots=True)
class Explained:
    """One validation error, ready to be placed and shown."""

    loc: Loc  # where it stands, in the file's spelling, secret tags removed
    field: str  # the dotted path to show (in a secret reference of no known form, the secret's own)
    message: str
    at_key: bool  # point at the key rather than the value: an unknown key, or a null


# Why one error is wrong, in words: given the error, its path without secret tags,
# and its path as pydantic gives it.
Reason = Callable[[ErrorDetails, Loc, Loc], str]

UNKNOWN_IN_SECRET = f"unknown key in a secret reference: a secret is {SECRET_FORMS}"


def explain_each(exc: ValidationError, reason: Reason) -> Iterator[Explained]:
    """Every error of `exc` worth a line, for manifests and the daemon config alike.

    A rule between fields (`Rules`) gives one line per violation, at its own field.
    A key written inside a secret reference of no known form (`token: {s3cr3t: x}`)
    may be the secret itself: the line names the secret's field and says what a
    secret is, and still points at the key. Every other error is `reason`'s.
    """
    errors = exc.errors(include_url=False)
    # pydantic counts only the items that validated: a bad item also yields a
    # misleading "too short" on its list, which is dropped.
    item_parents = {
        tuple(e["loc"][:i]) for e in errors for i, p in enumerate(e["loc"]) if isinstance(p, int)
    }
    # `{vault: x}` is one mistake (not a known form), not also "env is missing"
    unknown_in_secret = {
        tuple(e["loc"][:-1])
        for e in errors
        if e["type"] == "extra_forbidden" and len(e["loc"]) > 1 and e["loc"][-2] in SECRET_TAGS
    }
    for error in errors:
        raw_loc: Loc = tuple(error["loc"])
        kind = error["type"]
        if kind == "too_short" and raw_loc in item_parents:
            continue
        if kind == "missing" and raw_loc[:-1] in unknown_in_secret:
            continue
        # A mapping's key that fails its own check: at the key, named by its path.
        loc = tuple(p for p in raw_loc if p not in SECRET_TAGS and p != KEY_MARK)
        if kind == "manifest_rules":
            for sub_loc, message in (error.get("ctx") or {}).get("violations", []):
                place = loc + tuple(sub_loc)
                yield Explained(place, dotted_path(place), str(message), True)
            continue
        tag = next((i for i, p in enumerate(raw_loc) if p in SECRET_TAGS), None)
        if tag is not None and kind == "extra_forbidden":
            yield Explained(loc, dotted_path(raw_loc[:tag]), UNKNOWN_IN_SECRET, True)
            continue
        shown = raw_loc[:tag] if tag is not None and kind == "missing" else loc
        # A key without a value (null) is pointed at by its key: the null has no place.
        at_key = (
            kind == "extra_forbidden"
            or error.get("input", "") is None
            or (bool(raw_loc) and raw_loc[-1] == KEY_MARK)
        )
        yield Explained(loc, dotted_path(shown), reason(error, loc, raw_loc), at_key)


def diagnose(exc: ValidationError) -> Iterator[Explained]:
    """Every error of a manifest's validation, in the manifests' words."""
    return explain_each(exc, _explain)


def locate(
    root: Any, loc: Loc, at_key: bool = False, fallback: tuple[int, int] = (1, 1)
) -> tuple[int, int]:
    """Line and column (1-based) of `loc` in a round-trip tree, or of its nearest parent.

    The one position finder of manifests and of the daemon config. A mapping or
    a list is pointed at by the key that names it, and so is the last part of
    `loc` when `at_key` (an unknown key); any other value by the value itself. A
    part the tree does not have (a missing key) stops at its parent; a tree
    without positions (built in code, not read) gives `fallback`.
    """
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    line, column = fallback
    if isinstance(root, CommentedMap | CommentedSeq) and root.lc.line is not None:
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


def position_tree(text: str) -> list[Any]:
    """The documents of `text` as round-trip trees, whose nodes know their line and
    column (`.lc`), for `locate`. Slow next to the fast path: only files with a
    finding to place are parsed again with it. Stops quietly at a syntax error."""
    from ruamel.yaml import YAML

    yaml = YAML(typ="rt")
    yaml.allow_duplicate_keys = True  # the first is kept, as the fast path keeps it
    # ruamel's own scanner refuses a tab where libyaml takes it as a blank (before a
    # comment, after a value), and then no finding of the file had a position.
    text = blank_tabs(text)
    docs: list[Any] = []
    try:
        for doc in yaml.load_all(text):
            docs.append(doc)
    except Exception:  # noqa: S110 -- positions are best effort; the error is already reported
        pass
    return docs


@dataclass
class Finding:
    """A finding of one document, waiting for its position.

    `position` is known when the fast path could tell it (a document, a top-level
    key, a YAML error); otherwise `place` looks `loc` up in the document's
    round-trip tree, and falls back to `fallback` (the document's start).
    """

    document: int
    loc: Loc
    at_key: bool
    message: str
    severity: Severity
    position: tuple[int, int] | None = None
    fallback: tuple[int, int] = (1, 1)
    field: str | None = None  # the path to show, when not `loc`'s (`Explained.field`)


def place(path: str, findings: Sequence[Finding], trees: Sequence[Any]) -> list[Diagnostic]:
    """The findings of one file as diagnostics, in file order.

    `trees`: the file's `position_tree`, or nothing when every finding has its
    position (or positions cannot be had: each one is then at its fallback).
    """
    out: list[Diagnostic] = []
    for item in findings:
        if item.position is not None:
            line, column = item.position
        else:
            root = trees[item.document] if item.document < len(trees) else None
            line, column = locate(root, item.loc, item.at_key, item.fallback)
        out.append(
            Diagnostic(
                path,
                line,
                column,
                dotted_path(item.loc) if item.field is None else item.field,
                item.message,
                item.severity,
            )
        )
    out.sort(key=lambda d: (d.line, d.column))
    return out
