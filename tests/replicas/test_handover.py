"""A hand-over cancels a call that outlives the drain timeout, and writes nothing after.

Covers, with two daemons on one PostgreSQL store and the emulator: the first daemon
owns both App IDs; once its recording is live, the window is edited to have ended,
and its stop is held by the emulator (the stop takes effect at once, its answer
comes 30 s later). A second daemon joins; the first hands over the App ID of that
stop (its balancing picks it), waits
`shutdown.drainTimeout` (1 s), cancels the call and only then releases the lock. No
outcome of that stop is written by the first daemon: the second adopts the session
with its stop intent and resumes it (Agora: already stopped), and the session's end
is the second daemon's.
"""

from __future__ import annotations

import hashlib
import time

import pytest

from orchestrator.state import Intent, Phase
from tests.harness import wait_until
from tests.reliability.rig import (
    LISTENER_UID,
    Rig,
    event_time,
    owned,
    recording_manifest,
    windows_schedule,
)

pytestmark = [pytest.mark.postgres, pytest.mark.e2e, pytest.mark.slow]


async def test_a_hand_over_cancels_a_call_past_the_drain_and_writes_nothing_after(
    rig: Rig,
) -> None:
    await rig.start_emulator(apps=2, seed=17)
    rig.write_config(resync="10m", claim_interval="1s", drain="1s", log_level="debug")
    assert (await rig.cli("init", "--config", str(rig.config))).code == 0
    # The App ID the first daemon will hand over: its balancing picks the largest hash.
    victim = max(rig.apps, key=lambda p: hashlib.sha256(rig.apps[p].encode()).digest())
    other = next(p for p in rig.apps if p != victim)
    began = time.time() - 60

    def held_until(end: float) -> str:
        return recording_manifest(
            "held", victim, "held-room", 501, windows_schedule([(began, end)])
        )

    rig.write_manifest("held.yaml", held_until(time.time() + 3600))
    rig.write_manifest(
        "steady.yaml", recording_manifest("steady", other, "steady-room", 502, "always")
    )
    await rig.set_users(rig.apps[victim], "held-room", [LISTENER_UID])
    await rig.set_users(rig.apps[other], "steady-room", [LISTENER_UID])

    first = await rig.start_daemon(within=60)
    await wait_until(lambda: owned(first) == set(rig.apps.values()), within=30, what="owns all")

    async def at_agora(live: bool) -> bool:
        return any(s["cname"] == "held-room" and s["live"] is live for s in await rig.sessions())

    await wait_until(lambda: at_agora(True), within=30, what="the held recording started")
    # Held for longer than anything here takes: the stop must still be out when the
    # hand-over comes, however long the second daemon's start takes on a busy machine
    # (with 30 s, a start slowed by load let the answer come first, and nothing was
    # left to cancel).
    hold = {"endpoint": "stop", "kind": "hold", "seconds": 600}
    await rig.control("POST", "/faults/next", hold)
    # Its window ends now (an edit, not a clock: however long the start-up took, the
    # stop comes after the fault is armed). The hold acts at once: Agora stops it.
    rig.write_manifest("held.yaml", held_until(time.time() - 1))

    async def stopped_at_agora() -> bool:
        return await at_agora(False)

    await wait_until(stopped_at_agora, within=30, what="the held stop took effect")
    second = await rig.start_daemon(within=60)

    def released() -> bool:
        return any(e["app_id"] == rig.apps[victim] for e in first.log.named("ownership.released"))

    await wait_until(released, within=30, what="the first daemon released the App ID")
    (cancelled,) = [
        e
        for e in first.log.named("ownership.handover_cancelled")
        if e["app_id"] == rig.apps[victim]
    ]
    (release,) = [
        e for e in first.log.named("ownership.released") if e["app_id"] == rig.apps[victim]
    ]
    assert cancelled["unfinished"] == 1
    assert event_time(cancelled) <= event_time(release)

    async def ended_by_the_second() -> bool:
        sessions, _ = await rig.store_view()
        held = [s for s in sessions if s.manifest == "held"]
        return bool(held) and all(s.phase is Phase.ENDED for s in held)

    await wait_until(ended_by_the_second, within=60, what="the stop resumed by the new owner")
    sessions, _ = await rig.store_view()
    (session,) = [s for s in sessions if s.manifest == "held"]
    # The first daemon's stop would have recorded Agora's answer (files, upload
    # status); the second's resumed stop met a session already stopped.
    assert "already ended" in (session.end_reason or ""), session.end_reason
    assert session.intent is None and session.uploading_status is None
    assert not [
        e
        for e in first.log.named("reconcile.action")
        if e.get("manifest") == "held" and e.get("action") == "stop"
    ]  # the cancelled stop recorded no outcome
    (resumed,) = [
        e
        for e in second.log.named("reconcile.action")
        if e.get("manifest") == "held" and e.get("action") == "resume"
    ]
    assert resumed["outcome"] == "ok" and event_time(resumed) > event_time(release)
    assert session.updated_at.timestamp() >= event_time(release)
    assert Intent.STOP.value in str(resumed.get("reason"))
    assert await rig.stop_daemon(second) == 0
    assert await rig.stop_daemon(first) == 0
    # The emulator still holds the cancelled stop's answer (600 s from the stop): it would
    # exit on SIGTERM only once that answer went out. Nothing of it is needed any more.
    await rig.emulator.child.kill()
