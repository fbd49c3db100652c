"""Equal parts of the loaded manifests held once: `share`.

A fleet's manifests are written from a few templates: thousands of them name the
same storage, the same recording settings, the same secret references, the same
keys in the same places. Held as parsed, each holds its own copy of all of it, and
every pydantic section its own set of the fields it was given: 10,000 manifests
took some 100 MB, twice that while a reload of all of them had the old and the new
versions alive together (and the process keeps the pages of its largest heap).

`share` replaces, in freshly loaded manifests, each section equal to one already
held by another manifest with that one, each set of given fields with the one
equal set, and each map of key positions with the one equal map. The sections are
frozen, so nothing can tell a shared one from a copy, except by identity: equal
here means the same type, the same set of given fields and field values alike in
type and in how they are written (`_alike`: an offset of a time, the sign of a
zero), so that a shared section dumps to the very same document. A table holds
what it shares only weakly: what no manifest holds any longer leaves it.

It must only be given manifests nothing else holds yet (a load's own, before the
load answers), and must never change what any of them means or dumps to.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel

from orchestrator.manifest.loaded import LoadedManifest

__all__ = ["share"]

_sections: weakref.WeakValueDictionary[tuple[Any, ...], BaseModel] = weakref.WeakValueDictionary()
_field_sets: weakref.WeakValueDictionary[frozenset[str], set[str]] = weakref.WeakValueDictionary()
_positions: weakref.WeakValueDictionary[tuple[Any, ...], _Positions] = weakref.WeakValueDictionary()

_set_attribute = object.__setattr__
# Values equal and of the same type are written alike (a float's sign and a time's
# offset are looked at on their own); any other type is shared only when identical.
_PLAIN = frozenset({str, int, bool, type(None), timedelta})


class _Positions(dict[str, tuple[int, int]]):
    """A manifest's key positions, as a dict that a table can hold weakly."""

    __slots__ = ("__weakref__",)


def share(loaded: Iterable[LoadedManifest]) -> None:
    """Make `loaded` hold equal parts once (see the module's docstring)."""
    for item in loaded:
        _share_model(item.manifest)  # a manifest's name is its own: not in the table
        _set_attribute(item, "key_positions", _shared_positions(item.key_positions))


def _share_model(model: BaseModel) -> None:
    """`model`'s sections replaced by the shared equal ones, its given fields by the
    shared equal set."""
    values = model.__dict__
    changed: dict[str, Any] | None = None
    for name, value in values.items():
        new = _shared_value(value)
        if new is not value:
            changed = changed or {}
            changed[name] = new
    if changed:
        values.update(changed)  # equal and frozen: the model means what it meant
    given = model.__pydantic_fields_set__
    key = frozenset(given)
    held = _field_sets.get(key)
    if held is None:
        _field_sets[key] = given
    elif held is not given:
        _set_attribute(model, "__pydantic_fields_set__", held)


def _shared_value(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return _shared_section(value)
    if type(value) is tuple and any(isinstance(v, BaseModel) for v in value):
        items = tuple(_shared_value(v) for v in value)
        return value if all(a is b for a, b in zip(items, value, strict=True)) else items
    return value


def _shared_section(section: BaseModel) -> BaseModel:
    _share_model(section)
    key = (type(section), *section.__dict__.values())
    try:
        held = _sections.get(key)
    except TypeError:  # a field holds a mapping or a list: not shared
        return section
    if held is None:
        _sections[key] = section
        return section
    if held.__pydantic_fields_set__ is section.__pydantic_fields_set__ and all(
        _alike(a, b) for a, b in zip(held.__dict__.values(), section.__dict__.values(), strict=True)
    ):
        return held
    return section


def _alike(a: Any, b: Any) -> bool:
    """Whether two equal values are also written alike."""
    kind = type(a)
    if kind is not type(b):
        return False
    if kind in _PLAIN:
        return True
    if kind is float:
        return bool(a.hex() == b.hex())  # 0.0 == -0.0
    if kind is tuple:
        return all(_alike(x, y) for x, y in zip(a, b, strict=True))
    if kind is datetime:  # equal: the same instant, perhaps at another offset
        zone, other = a.tzinfo, b.tzinfo
        return (
            type(zone) is type(other)
            and bool(zone == other)
            and a.tzname() == b.tzname()
            and a.fold == b.fold
        )
    return a is b  # a section (the shared one), an enum's member, anything else


def _shared_positions(positions: Mapping[str, tuple[int, int]]) -> _Positions:
    key = tuple(part for item in positions.items() for part in item)
    held = _positions.get(key)
    if held is None:
        held = _Positions(positions)
        _positions[key] = held
    return held
