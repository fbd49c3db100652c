"""The daemon config's validation errors as sentences: what is wrong, what would be valid.

pydantic's errors are turned into the manifests' words: an unknown key with the
closest valid one and all of them (`unknown_key`, shared with the manifests), a
wrong choice with the allowed values and a did-you-mean, a number with its range,
the field path as the file spells it; a rule between fields (`Rules`, as in the
manifests) becomes one line per violation, at its own field. Kept apart from the
models (`config`), which pass their root model in.

A message must never quote a value of the file or the environment (any of them
may be a secret): only keys and the model's own limits. `error["input"]` is read
only to pick a did-you-mean among the valid values, never shown.
"""

from __future__ import annotations

from typing import Any, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails

from orchestrator.manifest.diagnostics import SECRET_FORMS, Explained, explain_each, unknown_key
from orchestrator.manifest.rules import Loc, did_you_mean
from orchestrator.manifest.scalars import DURATION_RULE
from orchestrator.secrets import SECRET_TAGS

__all__ = ["Explained", "annotation_at", "explain"]


def explain(exc: ValidationError, root: type[BaseModel]) -> list[Explained]:
    """Every error worth a line of `exc`, raised by validating the model `root`."""
    return list(explain_each(exc, lambda error, loc, raw_loc: _explain(root, error, loc, raw_loc)))


def _field(model: type[BaseModel], key: str | int) -> FieldInfo | None:
    """The field a key of the file names (its camelCase alias, or the name)."""
    return next(
        (info for name, info in model.model_fields.items() if (info.alias or name) == key), None
    )


def annotation_at(root: type[BaseModel], loc: Loc) -> Any:
    """The annotation at `loc` (file spelling, secret tags removed): `root` for `()`,
    the profile model for ("apps", "main") in the config, None when `loc` leaves it."""
    node: Any = root
    for part in loc:
        if isinstance(node, type) and issubclass(node, BaseModel):
            info = _field(node, part)
            if info is None:
                return None
            node = info.annotation
        elif get_origin(node) is dict:  # `apps`: any name, then a profile
            node = get_args(node)[1]
        else:
            return None
    return node


def _keys(node: Any) -> list[str]:
    if isinstance(node, type) and issubclass(node, BaseModel):
        return [info.alias or name for name, info in node.model_fields.items()]
    return []


def _field_at(root: type[BaseModel], loc: Loc) -> FieldInfo | None:
    owner = annotation_at(root, loc[:-1]) if loc else None
    if isinstance(owner, type) and issubclass(owner, BaseModel):
        return _field(owner, loc[-1])
    return None


_BOUND_WORDS = {"ge": "at least", "gt": "more than", "le": "at most", "lt": "less than"}


def _bounds(info: FieldInfo | None) -> str:
    """A number field's range in words: ` from 1 to 1024`, ` of at least 1`, or nothing."""
    metadata = info.metadata if info is not None else []
    limits = {name: getattr(m, name) for m in metadata for name in _BOUND_WORDS if hasattr(m, name)}
    if limits.keys() == {"ge", "le"}:
        return f" from {limits['ge']} to {limits['le']}"
    words = [f"{_BOUND_WORDS[name]} {limit}" for name, limit in limits.items()]
    return f" of {' and '.join(words)}" if words else ""


_REQUIRED_HINTS = {
    "appId": "the App ID of the Agora project",
    "customerId": f"a secret: {SECRET_FORMS}",
    "customerSecret": f"a secret: {SECRET_FORMS}",
}

_PATTERN_HINTS = {
    "appId": "an App ID without blanks",
    "env": "an environment variable name like AGORA_CUSTOMER_ID",
    "credential": "a credential name: letters, digits, '_', '.', '@' or '-'",
}


def _explain(root: type[BaseModel], error: ErrorDetails, loc: Loc, raw_loc: Loc) -> str:
    """One error as "what is wrong; what would be valid". `error["input"]` is read only
    to pick a did-you-mean among the valid values, never shown."""
    kind = error["type"]
    ctx = error.get("ctx") or {}
    last = str(loc[-1]) if loc else ""
    if any(part in SECRET_TAGS for part in raw_loc) and kind in ("missing", "model_type"):
        return f"a secret is a reference: {SECRET_FORMS} (or, with a warning, a plain string)"
    info = _field_at(root, loc)
    annotation = info.annotation if info is not None else None
    match kind:
        case "extra_forbidden":
            return unknown_key(last, _keys(annotation_at(root, loc[:-1])))
        case "missing":
            hint = _REQUIRED_HINTS.get(last)
            return f"'{last}' is required: {hint}" if hint else f"'{last}' is required"
        case "literal_error":
            allowed = [str(value) for value in get_args(annotation)]
            value = error.get("input")
            hint = did_you_mean(value, allowed) if isinstance(value, str) else ""
            return f"must be one of {', '.join(allowed)}{hint}"
        case "model_type" | "model_attributes_type" | "dict_type":
            if get_origin(annotation) is dict:
                profile = ", ".join(_keys(get_args(annotation)[1]))
                return f"must be a mapping of names to mappings with keys {profile}"
            return f"must be a mapping with keys {', '.join(_keys(annotation_at(root, loc)))}"
        case (
            "int_parsing"
            | "int_type"
            | "int_from_float"
            | "greater_than_equal"
            | "less_than_equal"
            | "greater_than"
            | "less_than"
        ):  # the same sentence for a bad number and one out of range: the valid ones
            return f"must be a whole number{_bounds(info)}"
        case "bool_parsing" | "bool_type":
            return "must be true or false"
        case "string_type":
            return "must be text; quote it if YAML reads it as a number or date"
        case "string_too_short" if ctx.get("min_length") == 1:
            return "must not be empty"
        case "string_too_short":
            return f"must be at least {ctx.get('min_length')} characters long"
        case "string_too_long":
            return f"must be at most {ctx.get('max_length')} characters long"
        case "string_pattern_mismatch" if last in _PATTERN_HINTS:
            return f"must be {_PATTERN_HINTS[last]}"
        case "path_type":
            return "must be a path (text)"
        case "duration":  # parse_duration's own message quotes the value
            return f"invalid duration: use {DURATION_RULE}"
        case "value_error":  # our validators' messages already say what is valid
            return str(error["msg"]).removeprefix("Value error, ")
        case _:
            return str(error["msg"]).replace("Input should be", "must be")
