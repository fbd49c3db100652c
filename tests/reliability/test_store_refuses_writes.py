"""Round three, defect 1: an API answer is never lost to a store that refuses writes.

The daemon as a process, the emulator, and another process's exclusive lock on the
SQLite store (an operator's `sqlite3` shell in a transaction; a full disk behaves
the same for writes) taken while a start's answer is on its way: the answer's sid
is kept, not lost. While the store refuses writes `/readyz` says so and does not
flap; nothing is replayed (exactly one start reaches the emulator, no code 7, no
unmanageable session); once the lock goes the sid is written within one pass, and
the recording is stopped at its window's end.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time

import pytest

from orchestrator.state import Phase
from tests.harness import wait_until
from tests.reliability.rig import LISTENER_UID, Rig, recording_manifest, windows_schedule

pytestmark = [pytest.mark.reliability, pytest.mark.slow]

LOCKED_FOR = 8.0  # longer than the store's 5 s busy timeout: a write is refused


async def test_a_start_answered_while_the_store_is_locked_keeps_its_sid(rig: Rig) -> None:
    await rig.start_emulator(apps=1, seed=31)
    rig.write_config(resync="10m", backoff=("1s", "5s"), metrics=True)
    app = next(iter(rig.apps))
    await rig.set_users(rig.apps[app], "held-room", [LISTENER_UID])
    daemon = await rig.start_daemon(within=60)
    assert await rig.health("/readyz") == 200
    # The start takes effect at once; its answer comes 2 s later.
    await rig.control("POST", "/faults/next", {"endpoint": "start", "kind": "hold", "seconds": 2})
    # The window opens once the daemon is up and the fault is set, however slow the
    # machine was to start it (a window open at start-up is started before the fault).
    opens, closes = time.time() + 3.0, time.time() + 21.0
    rig.write_manifest(
        "a.yaml",
        recording_manifest("held", app, "held-room", 601, windows_schedule([(opens, closes)])),
    )

    def start_out() -> bool:  # the store says the start is out (WAL: readers see it)
        with sqlite3.connect(f"file:{rig.state_db}?mode=ro", uri=True, timeout=5) as db:
            return bool(db.execute("SELECT 1 FROM sessions WHERE intent = 'start'").fetchall())

    await wait_until(start_out, within=30, what="the start sent")
    other = sqlite3.connect(str(rig.state_db), isolation_level=None, timeout=10)
    other.execute("BEGIN EXCLUSIVE")
    samples: list[tuple[float, int]] = []
    locked_until = time.monotonic() + LOCKED_FOR
    try:
        while time.monotonic() < locked_until:
            samples.append((time.monotonic(), await rig.health("/readyz")))
            await asyncio.sleep(0.25)
    finally:
        other.execute("ROLLBACK")
        other.close()
    released = time.monotonic()
    kept = daemon.log.named("store.outcome_kept")
    assert kept and kept[0]["manifest"] == "held", "the start's answer was not kept"
    sid = kept[0]["sid"]
    # Not ready once a write was refused, and never ready again while the lock held.
    codes = [code for _, code in samples]
    assert 503 in codes, codes
    assert 200 not in codes[codes.index(503) :], codes

    async def written() -> bool:
        sessions, _ = await rig.store_view()
        return any(s.manifest == "held" and s.sid == sid for s in sessions)

    await wait_until(written, within=30, what="the kept sid written once the lock went")

    async def ready() -> bool:
        return await rig.health("/readyz") == 200

    await wait_until(ready, within=30, what="ready again")
    assert time.monotonic() - released < 30
    starts = await rig.requests("start")
    assert len(starts) == 1, starts  # never replayed
    assert not [r for r in await rig.requests() if r.get("code") == 7]

    # It stays manageable: stopped at its window's end.
    async def stopped() -> bool:
        sessions, _ = await rig.store_view()
        return any(s.manifest == "held" and s.phase is Phase.ENDED for s in sessions)

    await wait_until(stopped, within=closes - time.time() + 30, what="stopped at window end")
    sessions, _ = await rig.store_view()
    assert [s.phase for s in sessions if s.manifest == "held"] == [Phase.ENDED]
    assert len(await rig.requests("stop")) == 1
    assert await rig.stop_daemon() == 0
