"""One manifest file: read within bounds, parsed, validated, each finding placed.

The fast path (`fastyaml`) parses with ruamel.yaml's C parser (libyaml) and this
module validates with the pydantic model. Only a file that has something to
report is parsed again with the round-trip loader, whose nodes know their line
and column, to place each error on its field (`diagnostics`).

It must never raise on bad input or print a traceback: every problem (broken
YAML, binary garbage, huge files, wrong types, unknown keys) becomes a
`Diagnostic`, and messages never contain a secret value. Nor may hostile input
crash or hang it: the bytes and the text go through the bounded reader
(`reading`) before libyaml composes anything. A file that could not be read is a
diagnostic whose `kind` says why, for the cache to decide on.
"""

from __future__ import annotations

import copy
import os
import re
from typing import Any, NamedTuple

from pydantic import ValidationError

from orchestrator.manifest.diagnostics import (
    SECRET_FORMS,
    Diagnostic,
    Explained,
    Finding,
    Severity,
    diagnose,
    place,
    position_tree,
)
from orchestrator.manifest.discovery import cannot_read
from orchestrator.manifest.fastyaml import fast_documents, fast_events, may_anchor, yaml_failure
from orchestrator.manifest.loaded import LoadedManifest
from orchestrator.manifest.model import Manifest, section_violations
from orchestrator.manifest.reading import (
    ReadError,
    ReadFailure,
    YamlProblem,
    check_bounds,
    decode,
    duplicate_key,
    read_file,
    split_lines,
)
from orchestrator.manifest.rules import dotted_path

__all__ = ["Parsed", "parse_file", "read_manifest_file"]


def read_manifest_file(
    path: str, st: os.stat_result | None = None, *, strict: bool
) -> bytes | Diagnostic:
    """The bytes of a manifest file, or why they were not read, as a diagnostic of the
    file whose `kind` says it: it cannot be read (an error), it is not a regular file
    (never opened: a warning, an error under `strict`), or it is too big (an error).
    `st`: the caller's `stat` of the path, if it has one."""
    try:
        return read_file(path, st)
    except ReadError as exc:
        match exc.failure:
            case ReadFailure.UNREADABLE:
                return cannot_read(path, "the file", exc.reason)
            case ReadFailure.NOT_REGULAR:
                message = f"{exc.reason}: skipped, not read"
                severity: Severity = "error" if strict else "warning"
                return Diagnostic(path, 1, 1, "", message, severity, exc.failure)
            case ReadFailure.TOO_BIG:
                message = f"{exc.reason}: split it into several files"
                return Diagnostic(path, 1, 1, "", message, "error", exc.failure)


_MARKER = re.compile(r"---(?:[ \t]|$)")


def _document_start(text: str, line: int, column: int) -> tuple[int, int]:
    """Where the document whose (empty) node is at (`line`, `column`) begins: its
    `---`. The node's place is that of the next token: on the marker's own line after
    it, or past the comments that follow, at the next document's `---` or past the
    end of the file; so the marker is on that line only when the node is after a
    marker there, else the nearest one before it."""
    lines = split_lines(text, libyaml=True)
    if line <= len(lines) and column > 1 and _MARKER.match(lines[line - 1]):
        return line, 1
    for number in range(min(line - 1, len(lines)), 0, -1):
        if _MARKER.match(lines[number - 1]):
            return number, 1
    return line, column


class Parsed(NamedTuple):
    """What `parse_file` found in a file's bytes."""

    manifests: list[LoadedManifest]
    diagnostics: list[Diagnostic]
    positioned: bool  # parsed again with the round-trip loader to place findings


def parse_file(path: str, raw: bytes, *, strict: bool) -> Parsed:
    """The valid manifests and the diagnostics of a file's bytes.

    Valid documents are returned even when another document of the file has an
    error (so cross-file checks can see them); a load leaves them out.
    """
    try:
        text = decode(raw)
        check_bounds(text, fast_events(text) if may_anchor(text) else None)
    except YamlProblem as problem:  # never handed to libyaml, nor positioned
        where = Diagnostic(path, problem.line, problem.column, "", problem.message)
        return Parsed([], [where], False)

    loaded: list[LoadedManifest] = []
    pending: list[Finding] = []
    documents = empty = 0
    try:
        for index, doc in enumerate(fast_documents(text)):
            documents += 1
            position = (doc.line, doc.column)
            if doc.failure is not None:
                at = (doc.failure.line, doc.failure.column)
                pending.append(Finding(index, (), False, doc.failure.message, "error", at))
                continue
            for duplicate in doc.duplicates:
                message = duplicate_key(duplicate.key, duplicate.first[0])
                pending.append(
                    Finding(index, duplicate.loc, True, message, "error", duplicate.again)
                )
            for key in doc.not_text:  # the key is not named: it may be anything
                message = "a key must be text: quote it"
                pending.append(Finding(index, key.loc, True, message, "error", key.at))
            if doc.data is None:
                empty += 1
                at = _document_start(text, doc.line, doc.column)
                message = "empty document (a stray '---'?)"
                pending.append(Finding(index, (), False, message, "warning", at))
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
            unknown_keys = False
            try:
                manifest = Manifest.model_validate(doc.data)
            except ValidationError as exc:
                found = list(diagnose(exc))
                known = {(e.loc, e.message) for e in found}
                found += [
                    Explained(loc, dotted_path(loc), message, True)
                    for loc, message in section_violations(doc.data)
                    if (loc, message) not in known
                ]
                for e in found:
                    pending.append(
                        Finding(index, e.loc, e.at_key, e.message, "error", None, position, e.field)
                    )
                without = _without_unknown_keys(doc.data, exc)
                if without is None:
                    continue
                manifest, unknown_keys = without, True  # its other findings are reported too
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
            if doc.duplicates or doc.not_text or unknown_keys:
                continue  # valid once a key is dropped, but not as written
            loaded.append(LoadedManifest(manifest, path, doc.line, doc.column, index, doc.keys))
    except Exception as exc:  # any parse failure of any kind becomes a diagnostic
        failure = yaml_failure(exc, text)
        pending.append(
            Finding(documents, (), False, failure.message, "error", (failure.line, failure.column))
        )
    if empty == documents == len(pending):
        # Nothing but empty documents (a lone '---', `null`, a manifest commented out) is
        # no manifest at all, as an empty file: an error, so that whatever the file held
        # keeps its last known good version, never a warning that lets it count as removed.
        what = "it is empty" if documents == 0 else "only empty documents"
        message = f"no manifest in this file ({what})"
        pending = [Finding(0, (), False, message, "error", (1, 1))]

    if strict:
        for item in pending:
            item.severity = "error"
    positioned = any(item.position is None for item in pending)
    trees = position_tree(text) if positioned else []
    return Parsed(loaded, place(path, pending, trees), positioned)


def _without_unknown_keys(data: dict[str, Any], exc: ValidationError) -> Manifest | None:
    """The manifest `data` makes without its unknown keys, when they are all that is
    wrong with it (else None): its other checks, which need a manifest, then run too,
    so that an unknown key hides no literal secret or ineffective setting. What is
    present is checked as written, so no finding can come from a key left out."""
    errors = exc.errors(include_url=False)
    if any(e["type"] != "extra_forbidden" for e in errors):
        return None
    stripped = copy.deepcopy(data)
    for error in errors:
        *parents, key = error["loc"]
        node: Any = stripped
        for part in parents:  # a path through a union names a member, not a key: give up
            in_list = isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
            if not in_list and not (isinstance(node, dict) and part in node):
                return None
            node = node[part]
        if not isinstance(node, dict) or key not in node:
            return None
        del node[key]
    try:
        return Manifest.model_validate(stripped)
    except ValidationError:
        return None


def _describe_type(value: Any) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str | int | float | bool):
        return "a single value"
    return f"a {type(value).__name__}"
