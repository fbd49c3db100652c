"""The manifest's JSON Schema, for editors (yaml-language-server) and other tools."""

from __future__ import annotations

from typing import Any

from orchestrator.manifest.model import Manifest

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def manifest_json_schema() -> dict[str, Any]:
    """A JSON Schema (2020-12) of one manifest document, keys as written in YAML."""
    schema = Manifest.model_json_schema(by_alias=True, mode="validation")
    defs = schema.get("$defs", {})
    # In YAML a literal secret is a plain string (accepted with a warning).
    defs["LiteralSecret"] = {
        "type": "string",
        "description": "A literal secret value: a warning, an error under --strict.",
    }
    # `schedule: always` is shorthand for `schedule: {always: true}`.
    schema["properties"]["schedule"] = {
        "anyOf": [{"$ref": "#/$defs/ScheduleSpec"}, {"const": "always"}],
        "description": "cron + timezone + duration, windows, or always.",
    }
    return {
        "$schema": SCHEMA_DIALECT,
        "title": "orchestrator recording manifest",
        "description": (
            "One Agora Cloud Recording to orchestrate. Cross-field rules (mode "
            "restrictions, exclusions) are checked by `orchestrator validate`."
        ),
        **{k: v for k, v in schema.items() if k not in ("title", "description")},
    }
