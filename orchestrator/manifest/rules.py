"""Rule plumbing of the manifest model: how a broken rule becomes an error users can act on.

A scalar type raises `fail(kind, message)`; a section collects its cross-field
violations in `Rules` and raises them as one `manifest_rules` error whose context
lists every violation with its own location, so that the loader can point at
each offending key. `section_rules` are the reference's rules about which
sections a mode allows together; the model applies them to a valid manifest and
to a raw document whose fields failed validation.

This module knows no field of any section and never reads a value itself.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable

from pydantic_core import PydanticCustomError

from orchestrator.contract import Mode

Loc = tuple[str | int, ...]
"""A field path inside a document: keys as written in YAML, list indexes."""


def norm(word: str) -> str:
    """A word as compared with a table: lower case, without `-`, `_` or blanks."""
    return re.sub(r"[\s_-]", "", word.lower())


def fail(kind: str, message: str) -> PydanticCustomError:
    """The error a field's own check raises: `message` says what is wrong and what is valid."""
    return PydanticCustomError(kind, message)


def did_you_mean(value: str, candidates: list[str]) -> str:
    """`; did you mean 'x'?` for the closest candidate, or nothing."""
    close = difflib.get_close_matches(value, candidates, n=1, cutoff=0.6)
    if not close:
        by_norm = {norm(c): c for c in candidates}
        close = [by_norm[c] for c in difflib.get_close_matches(norm(value), list(by_norm), n=1)]
    return f"; did you mean '{close[0]}'?" if close else ""


class Rules:
    """Cross-field violations of one model, each with its location inside that model."""

    def __init__(self) -> None:
        self.items: list[tuple[Loc, str]] = []

    def add(self, loc: Loc, message: str) -> None:
        self.items.append((loc, message))

    def raise_if_any(self) -> None:
        if self.items:
            summary = "; ".join(
                f"{dotted_path(loc) or 'manifest'}: {message}" for loc, message in self.items
            )
            raise PydanticCustomError(
                "manifest_rules", summary, {"violations": [list(v) for v in self.items]}
            )


def dotted_path(loc: Loc) -> str:
    """A field path as users write it: `layout.regions[3].width`."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def section_rules(rules: Rules, mode: Mode | None, present: Callable[[str], bool]) -> None:
    """The rules that depend only on the mode and on which sections are written."""
    if mode is Mode.INDIVIDUAL:
        for key in ("transcoding", "layout", "aliyunVod"):
            if present(key):
                rules.add((key,), "only allowed in mix mode (mode is individual)")
    if present("snapshots"):
        if mode is Mode.MIX:
            rules.add(("snapshots",), "only allowed in individual mode (mode is mix)")
        if present("recordingFiles"):
            rules.add(("snapshots",), "use either snapshots or recordingFiles, not both")
    if present("aliyunVod"):
        if present("storage"):
            rules.add(("storage",), "not allowed with aliyunVod (VOD uploads the recording)")
        if present("snapshots"):
            rules.add(("aliyunVod",), "not allowed with snapshots")
