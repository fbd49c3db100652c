"""A window boundary that falls while a pass is running must still be acted on.

Defect D1 of docs/reliability.md (fixed in a6e8f6d), found by scenario 2 (API
faults: passes of several seconds), reproduced here without any fault: 20
recordings whose windows open at the same instant T make one boundary pass of
about 3 s (40 calls at 10 per second); two more windows open 1 s and 2 s after T,
inside that pass, and close inside the pass that stops the 20.
`reconcile.resyncInterval` is 30 s, so a boundary the daemon drops is only
noticed by the next resync pass, 20 s or more later. Each of the two must start
no later than the busy pass allows (`START_BOUND` after it opens: the 40 calls
ahead of it at the rate limit, plus slack) and stop within 5 s of its end.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.reliability.invariants import Desired, check
from tests.reliability.rig import (
    LISTENER_UID,
    Rig,
    recording_manifest,
    windows_schedule,
)

pytestmark = [pytest.mark.reliability, pytest.mark.slow]

BURST = 20
START_BOUND = 2 * BURST / 10 + 2.0  # the burst's calls at 10 per second, plus slack
STOP_BOUND = 5.0


async def test_boundaries_inside_a_long_pass_are_not_dropped(
    rig: Rig, figures: dict[str, object]
) -> None:
    await rig.start_emulator(apps=1, seed=11)
    rig.write_config(resync="30s", backoff=("1s", "5s"))
    app, app_id = next(iter(rig.apps.items()))
    daemon = await rig.start_daemon()
    assert daemon.ready_at is not None
    opens = time.time() + 8.0
    desired: list[Desired] = []
    plan = [(f"burst-{i:02d}", opens, opens + 15.0) for i in range(BURST)]
    plan += [("inside-1", opens + 1.0, opens + 16.0), ("inside-2", opens + 2.0, opens + 15.5)]
    for i, (name, start, end) in enumerate(plan):
        channel, uid = f"{name}-room", 40_000 + i
        await rig.set_users(app_id, channel, [LISTENER_UID])
        schedule = windows_schedule([(start, end)])
        rig.write_manifest(f"{name}.yaml", recording_manifest(name, app, channel, uid, schedule))
        desired.append(Desired(name, app_id, channel, uid, ((start, end),)))
    last_end = max(end for _, _, end in plan)
    await asyncio.sleep(max(0.0, last_end + 30.0 - time.time()))  # past one resync
    assert daemon.alive, rig.tail(daemon)
    assert await rig.stop_daemon() == 0

    evidence = await rig.evidence(desired, first_ready=daemon.ready_at)
    report = check(evidence, min_coverage=0.0, late_stop=STOP_BOUND)
    by_target = {d.target: d for d in desired}
    lateness: dict[str, dict[str, float | None]] = {}
    for name, start, end in plan:
        if not name.startswith("inside"):
            continue
        d = next(x for x in desired if x.name == name)
        sessions = [s for s in evidence.sessions if by_target.get(s.target) is d]
        first = min((s.started_at for s in sessions), default=None)
        ended = max((s.ended_at or evidence.observed_until for s in sessions), default=None)
        lateness[name] = {
            "start_late_s": None if first is None else round(first - start, 2),
            "stop_late_s": None if ended is None else round(ended - end, 2),
        }
    figures.update(report.figures())
    figures.update(inside=lateness, start_bound_s=START_BOUND, stop_bound_s=STOP_BOUND)
    problems = [
        f"{name}: started {v['start_late_s']}s after its window opened (bound {START_BOUND}s)"
        for name, v in lateness.items()
        if v["start_late_s"] is None or v["start_late_s"] > START_BOUND
    ]
    problems += [
        f"{name}: stopped {v['stop_late_s']}s after its window closed (bound {STOP_BOUND}s)"
        for name, v in lateness.items()
        if v["stop_late_s"] is None or v["stop_late_s"] > STOP_BOUND
    ]
    assert not problems, "\n".join(problems)
    report.assert_ok()
