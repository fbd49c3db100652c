"""Scenario 5, two writers: one store, one writer at a time, whatever is started.

8 recordings (4 always on, 4 with windows opening and closing during the test)
on one App ID, a running daemon. Repeatedly, at once: `apply`, `apply
--retry-failed`, `plan` (which takes the writer lock to record what its queries
find) and a second `run`: each must exit 3 and name the daemon's pid, while
`status` (a reader) still works. Then a race: the daemon is SIGKILLed and two
`run`s are started at the same instant: exactly one becomes READY, the other
exits 3. Nothing may be duplicated (no 53, one session at a time per target) or
forgotten (the invariants).
"""

from __future__ import annotations

import asyncio
import random
import time

import pytest

from tests.harness import Daemon, wait_until
from tests.reliability.conftest import Scale
from tests.reliability.invariants import FOREVER, Desired, assert_invariants, check
from tests.reliability.rig import (
    LISTENER_UID,
    Rig,
    recording_manifest,
    windows_schedule,
)

pytestmark = [pytest.mark.reliability, pytest.mark.slow]

SEED = 5150
WRITERS = (("apply",), ("apply", "--retry-failed"), ("plan",), ("run",))


async def _race(rig: Rig) -> tuple[Daemon, int]:
    """Two `run`s at once: (the one that became READY, the other's exit status)."""
    first, second = await asyncio.gather(
        rig.start_daemon(ready=False), rig.start_daemon(ready=False)
    )

    def settled() -> bool:
        ready = [d for d in (first, second) if d.log.named("daemon.ready")]
        exited = [d for d in (first, second) if not d.alive]
        return bool(ready and exited) or len(exited) == 2

    await wait_until(settled, within=60, what="one racing daemon ready, the other gone")
    winners = [d for d in (first, second) if d.alive and d.log.named("daemon.ready")]
    losers = [d for d in (first, second) if d not in winners]
    assert len(winners) == 1, f"{len(winners)} of two racing daemons became ready"
    (loser,) = losers
    code = await loser.exited(30)
    winner = winners[0]
    await winner.ready()
    # the winner must be the rig's current daemon
    rig.daemons.remove(winner)
    rig.daemons.append(winner)
    return winner, code


async def test_second_writers_are_refused_and_change_nothing(
    rig: Rig, scale: Scale, figures: dict[str, object]
) -> None:
    rng = random.Random(SEED)
    await rig.start_emulator(apps=1, seed=SEED)
    rig.write_config(resync="3s", backoff=("1s", "5s"))
    app, app_id = next(iter(rig.apps.items()))
    t0 = time.time()
    desired: list[Desired] = []
    for i in range(8):
        name, channel, uid = f"writer-{i}", f"writer-room-{i}", 30_000 + i
        if i < 4:
            schedule, windows = "always", ((t0 - 3600.0, FOREVER),)
        else:
            start = t0 + 6.0 + 5.0 * (i - 4)
            end = start + 20.0
            schedule, windows = windows_schedule([(start, end)]), ((start, end),)
        rig.write_manifest(f"{name}.yaml", recording_manifest(name, app, channel, uid, schedule))
        desired.append(Desired(name, app_id, channel, uid, windows))
        await rig.set_users(app_id, channel, [LISTENER_UID])
    first = await rig.start_daemon()
    assert first.ready_at is not None

    refused: dict[str, int] = {}
    wrong: list[str] = []
    kills: list[float] = []
    race_codes: list[int] = []
    for _ in range(scale.times(3, least=2)):
        for _ in range(2):
            daemon = rig.daemon
            results = await asyncio.gather(
                *(rig.cli(*args, "--config", str(rig.config)) for args in WRITERS),
                rig.cli("status", "--config", str(rig.config)),
            )
            for args, done in zip(WRITERS, results[:-1], strict=True):
                label = " ".join(args)
                if done.code == 3 and f"pid {daemon.pid}" in done.stderr:
                    refused[label] = refused.get(label, 0) + 1
                else:
                    wrong.append(f"{label}: exit {done.code}: {done.stderr.strip()[-300:]}")
            status = results[-1]
            if status.code != 0:
                wrong.append(f"status: exit {status.code}: {status.stderr.strip()[-300:]}")
            await asyncio.sleep(rng.uniform(0.5, 1.5))
        await rig.kill_daemon()
        kills.append(time.time())
        _, code = await _race(rig)
        race_codes.append(code)

    await rig.windows_closed(desired)
    assert await rig.stop_daemon() == 0

    report = check(await rig.evidence(desired, first_ready=first.ready_at, kills=kills))
    figures.update(report.figures())
    figures.update(
        refused=refused,
        races=len(race_codes),
        race_loser_exits=sorted(set(race_codes)),
        wrong=wrong[:5],
    )
    assert not wrong, "\n".join(wrong)
    assert all(code == 3 for code in race_codes), race_codes
    assert report.answers.get("code53", 0) == 0
    assert report.duplicates == 0
    assert_invariants(report, figures)
