"""Shared builders for manifest tests: a minimal valid document per mode.

Imported by the test modules of this directory (pytest puts it on sys.path).
"""

from __future__ import annotations

import copy
from typing import Any

MIX: dict[str, Any] = {
    "name": "standup",
    "app": "main",
    "channel": "room-1",
    "uid": 527841,
    "mode": "mix",
    "schedule": {"cron": "0 9 * * MON-FRI", "timezone": "Europe/Berlin", "duration": "30m"},
}
INDIVIDUAL: dict[str, Any] = {**MIX, "mode": "individual", "recording": {"subscribeUidGroup": 0}}

GOOD_TEXT = """\
name: {name}
app: main
channel: {channel}
uid: 527841
mode: mix
schedule:
  cron: "0 9 * * 1-5"
  timezone: UTC
  duration: 30m
"""
"""A valid manifest file (uid on line 4, schedule on line 6); fill in name and channel."""


def with_(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """A deep copy of `base` with top-level keys replaced (None removes a key)."""
    doc = copy.deepcopy(base)
    for key, value in changes.items():
        if value is None:
            doc.pop(key, None)
        else:
            doc[key] = value
    return doc


def errors_of(doc: Any) -> list[tuple[str, str]]:
    """(dotted field, message) of every error the model reports, violations unpacked."""
    from pydantic import ValidationError

    from orchestrator.manifest.diagnostics import diagnose
    from orchestrator.manifest.model import Manifest

    try:
        Manifest.model_validate(doc)
    except ValidationError as exc:
        return [(e.field, e.message) for e in diagnose(exc)]
    return []
