"""Equal parts of the loaded manifests held once: `Sharer`.

A fleet's manifests are written from a few templates: thousands of them name the
same storage, the same recording settings, the same secret references, the same
keys in the same places. Held as parsed, each holds its own copy of all of it, and
every pydantic section its own set of the fields it was given: 10,000 manifests
took some 100 MB, twice that while a reload of all of them had the old and the new
versions alive together (and the process keeps the pages of its largest heap).

`Sharer.share` replaces, in freshly loaded manifests, each section equal to one
already held by another manifest with that one, each set of given fields with the
one equal set, and each map of key positions with the one equal map. The sections
are frozen, so nothing can tell a shared one from a copy, except by identity: equal
here means the same class, the same fields given and values of the same types written
alike (`_key`: equal texts, numbers and durations, or else the same JSON of what was
given, pydantic's own serialization, which writes a float's sign and a time's offset
as they are), so a shared section dumps to the very same document. Tables hold what they share only
weakly: what no manifest holds any longer leaves them.

Manifests that come from one pickle (the snapshot, the bulk load's worker) already
hold their equal parts once among themselves: a `Sharer` made to `remember` (one per
load) keeps what it made of each part it met, so that the same part met again costs a
lookup. Freshly parsed manifests share no part with each other: remembering theirs
would only keep their copies alive until the load ends.

It must only be given manifests nothing else holds yet (a load's own, before the
load answers), and must never change what any of them means or dumps to.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Any

from pydantic import BaseModel

from orchestrator.manifest.loaded import LoadedManifest

__all__ = ["Sharer"]

_Sections = weakref.WeakValueDictionary[tuple[Any, ...], BaseModel]
_sections: _Sections = weakref.WeakValueDictionary()
_field_sets: weakref.WeakValueDictionary[frozenset[str], set[str]] = weakref.WeakValueDictionary()
_positions: weakref.WeakValueDictionary[tuple[Any, ...], _Positions] = weakref.WeakValueDictionary()

_set_attribute = object.__setattr__
_MODEL_CLASS = type(BaseModel)  # every section's class is one of its instances
# Values of these types, equal and of one type, are written alike (not a float: 0.0 and
# -0.0; not a time: one instant at two offsets).
_PLAIN = frozenset({str, int, bool, type(None), timedelta})


class _Positions(dict[str, tuple[int, int]]):
    """A manifest's key positions, as a dict that a table can hold weakly."""

    __slots__ = ("__weakref__",)


class Sharer:
    """Shares the equal parts of manifests (`share`, as each file comes); `remember`:
    for manifests of one pickle, as described in the module's docstring."""

    def __init__(self, *, remember: bool = False) -> None:
        # id of a part met -> (that part, what it became); the part is held, so that
        # its id cannot stand for another object meanwhile. Nothing without `remember`.
        self._met: dict[int, tuple[object, Any]] = {}
        self._remember = remember

    def share(self, loaded: Iterable[LoadedManifest]) -> None:
        """Make `loaded` hold equal parts once (see the module's docstring)."""
        for item in loaded:
            manifest = item.manifest  # its name is its own: not in the table
            self._share_children(manifest.__dict__)
            self._share_given(manifest)
            _set_attribute(item, "key_positions", self._shared_positions(item.key_positions))

    def _share_children(self, values: dict[str, Any]) -> None:
        """The sections among a model's `values` replaced by the shared equal ones (the
        model means what it meant: they are equal and frozen)."""
        changed: dict[str, Any] | None = None
        for name, value in values.items():
            kind = type(value)
            new: Any
            if type(kind) is _MODEL_CLASS:
                new = self._shared_section(value)
                if new is value:
                    continue
            elif kind is tuple and value and type(type(value[0])) is _MODEL_CLASS:
                new = tuple(map(self._shared_section, value))
                if all(a is b for a, b in zip(new, value, strict=True)):
                    continue
            else:
                continue
            if changed is None:
                changed = {}
            changed[name] = new
        if changed:
            values.update(changed)

    def _shared_section(self, section: BaseModel) -> BaseModel:
        """The held section equal to `section`, or `section` itself, held from now on
        with its own parts shared."""
        met = self._met.get(id(section))
        if met is not None and met[0] is section:
            held: BaseModel = met[1]
            return held
        found = _sections.get(key := _key(section))
        if found is None:
            self._share_children(section.__dict__)
            self._share_given(section)
            _sections[key] = found = section
        if self._remember:
            self._met[id(section)] = (section, found)
        return found

    def _share_given(self, model: BaseModel) -> None:
        """`model`'s set of given fields replaced by the shared equal one."""
        given = model.__pydantic_fields_set__
        met = self._met.get(id(given))
        if met is not None and met[0] is given:
            held = met[1]
        else:
            key = frozenset(given)
            held = _field_sets.get(key)
            if held is None:
                _field_sets[key] = held = given
            if self._remember:
                self._met[id(given)] = (given, held)
        if held is not given:
            _set_attribute(model, "__pydantic_fields_set__", held)

    def _shared_positions(self, positions: Mapping[str, tuple[int, int]]) -> _Positions:
        met = self._met.get(id(positions))
        if met is not None and met[0] is positions:
            done: _Positions = met[1]
            return done
        key = (*positions, *positions.values())
        held = _positions.get(key)
        if held is None:
            _positions[key] = held = _Positions(positions)
        if self._remember:
            self._met[id(positions)] = (positions, held)
        return held


def _key(section: BaseModel) -> tuple[Any, ...]:
    """What decides `section` whole: its class, which fields were given and their
    values, when each is a text, an integer, a truth value, a duration or None (with
    their types: True == 1); else (a float, a time, an enum's member, a section, a
    tuple, ...) what was given of it as pydantic writes it in JSON (`_written`)."""
    values = tuple(section.__dict__.values())
    kinds = tuple(map(type, values))
    if _PLAIN.issuperset(kinds):
        return (type(section), frozenset(section.__pydantic_fields_set__), values, kinds)
    return (type(section), _written(section))


def _written(section: BaseModel) -> bytes:
    """What was given of `section`, as pydantic writes it in JSON: with the class, it
    decides every value (the rest are the class's defaults) and which were given, and
    it writes a float's sign and a time's offset as they are."""
    return section.__pydantic_serializer__.to_json(section, exclude_unset=True)
