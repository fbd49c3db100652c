"""Desired recordings for the planner's tables: a real translated manifest whose
fingerprints each test sets by name (`spec_hash="spec2"`), as the planner sees them;
and the live session of that recording (`session_record`), as the store holds it."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

from orchestrator.manifest.model import Manifest
from orchestrator.reconcile.plan import DesiredRecording
from orchestrator.reconcile.translate import Fingerprints
from orchestrator.schedule import always_schedule
from orchestrator.state import Phase, SessionRecord

MANIFEST = Manifest.model_validate(
    {
        "name": "standup",
        "app": "main",
        "channel": "room",
        "uid": 527841,
        "mode": "mix",
        "schedule": "always",
    }
)
_HASHES = {
    "spec_hash": "spec",
    "subscription_hash": "subscription",
    "layout_hash": "layout",
    "restart_hash": "restart",
}


def desired_recording(**changes: Any) -> DesiredRecording:
    """A DesiredRecording; fingerprints are given as `spec_hash=`, `restart_hash=`, ..."""
    prints = {"spec": "spec1", "subscription": "sub1", "layout": "lay1", "restart": "rst1"}
    for key, name in _HASHES.items():
        if key in changes:
            prints[name] = changes.pop(key)
    base = DesiredRecording(
        name="standup",
        app="main",
        app_id="app1",
        channel="room",
        uid=527841,
        mode=MANIFEST.mode,
        schedule=always_schedule(),
        manifest=MANIFEST,
        spec_hash=prints["spec"],
        given=Fingerprints(**prints),
        source_file="recordings.d/standup.yaml",
    )
    return replace(base, **changes)


def session_record(started: datetime, **changes: Any) -> SessionRecord:
    """Session 7 of `desired_recording()`, running since `started`, with its
    fingerprints; `changes` replace any field."""
    base = SessionRecord(
        id=7,
        manifest="standup",
        app="main",
        app_id="app1",
        channel="room",
        uid=527841,
        mode="mix",
        phase=Phase.RUNNING,
        created_at=started,
        updated_at=started,
        resource_id="R",
        sid="S",
        source_file="recordings.d/standup.yaml",
        spec_hash="spec1",
        subscription_hash="sub1",
        layout_hash="lay1",
        restart_hash="rst1",
        started_at=started,
    )
    return replace(base, **changes)
