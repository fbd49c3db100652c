"""The base of every mapping people write in YAML: a manifest's sections, the daemon config's.

Its own module so that the manifest's sections (`model`, `outputs`) and the config
share one model configuration without importing each other. It must never hold a
rule: those are the sections'.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

__all__ = ["Section"]


class Section(BaseModel):
    """A mapping of a YAML file people write: a manifest's sections, the daemon config's.

    Frozen, unknown keys refused, keys camelCase in the file; `str()` of a
    validation error must not carry a mistyped secret into a log line.
    """

    model_config = ConfigDict(
        frozen=True, extra="forbid", alias_generator=to_camel, hide_input_in_errors=True
    )
