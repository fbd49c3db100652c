"""A recording the store does not know, as the daemon's passes report it; in-process
against the emulator, with a real SQLite store.

Covers: a manifest whose target is already recording at Agora (started by someone
else) fails its start with 53 and is untracked; the pass that tried the start saw
nothing untracked before it acted, and every pass after it (the resyncs, with
nothing to do: their untracked sessions are the status view's, made of the same
state) reports the manifest as untracked, in its `reconcile.pass` event and in what
/readyz serves, while the recording goes on and is never started twice.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from structlog.testing import capture_logs

from tests.harness import wait_until
from tests.integration.conftest import EmulatorHandle
from tests.integration.daemon.conftest import daemon_runtime, manifest, ready


async def test_every_pass_after_a_53_reports_the_recording_untracked(
    emulator: EmulatorHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = emulator.client()
    body = {"cname": "hall", "uid": "101", "clientRequest": {}}
    rid = await client.acquire(emulator.app_id, body)
    start = {**body, "clientRequest": {"recordingConfig": {"channelType": 1}}}
    await client.start(emulator.app_id, rid, "mix", start)
    files = {"hall.yaml": manifest("hall", "hall", uid="101")}
    reconcile = {"resyncInterval": "1s"}
    async with daemon_runtime(emulator, tmp_path, monkeypatch, files, reconcile=reconcile) as rt:
        with capture_logs() as logs:
            async with ready(rt) as daemon:

                def passes() -> list[dict[str, object]]:
                    return [e for e in logs if e["event"] == "reconcile.pass"]

                await wait_until(
                    lambda: len([p for p in passes() if p["actions"] == 0]) >= 2,
                    within=30,
                    what="two passes with nothing to do after the start",
                )
                facts = daemon.readiness().facts
    acted, *after = passes()
    assert (acted["actions"], acted["failed"], acted["untracked"]) == (1, 1, [])
    assert after and all(p["untracked"] == ["hall"] for p in after if p["actions"] == 0)
    untracked = facts["untracked"]
    assert isinstance(untracked, list) and [s["manifest"] for s in untracked] == ["hall"]
    assert len(emulator.emu.requests("start")) == 2  # ours was refused (53): never twice
