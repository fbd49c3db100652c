"""A window boundary that falls while a pass is running must still be acted on.

Defect D1 of docs/reliability.md (fixed in a6e8f6d), found by scenario 2 (API
faults: passes of several seconds), reproduced here without any fault: 20
recordings whose windows open at the same instant T make one boundary pass of
about 4 s (40 calls at 10 per second); two more windows open 1 s and 2 s after T,
inside that pass, and close inside the pass that stops the 20.
`reconcile.resyncInterval` is 10 minutes, so a boundary the daemon drops is acted
on only at the next boundary of another manifest (the 20 stops) or never.

Asserted: each of the two starts before the 20 stops begin (its own boundary woke
the daemon, not the next one), and each is stopped (its end falls inside the stop
pass: no other boundary follows, so a dropped end is never acted on and the bounded
wait fails). How late each was is a figure (`inside`), measured and reported, not
asserted: it is the busy pass's length on this machine.
"""

from __future__ import annotations

import time

import pytest

from tests.harness import event_time
from tests.reliability.invariants import Desired, check
from tests.reliability.rig import (
    LISTENER_UID,
    Rig,
    recording_manifest,
    windows_schedule,
)

pytestmark = [pytest.mark.reliability, pytest.mark.slow]

BURST = 20
LENGTH = 10.0  # seconds the burst's windows last: longer than its start pass


async def test_boundaries_inside_a_long_pass_are_not_dropped(
    rig: Rig, figures: dict[str, object]
) -> None:
    await rig.start_emulator(apps=1, seed=11)
    rig.write_config(resync="10m", backoff=("1s", "5s"))
    app, app_id = next(iter(rig.apps.items()))
    daemon = await rig.start_daemon()
    assert daemon.ready_at is not None
    opens = time.time() + 5.0
    desired: list[Desired] = []
    plan = [(f"burst-{i:02d}", opens, opens + LENGTH) for i in range(BURST)]
    plan += [
        ("inside-1", opens + 1.0, opens + LENGTH + 1.0),
        ("inside-2", opens + 2.0, opens + LENGTH + 0.5),
    ]
    for i, (name, start, end) in enumerate(plan):
        channel, uid = f"{name}-room", 40_000 + i
        await rig.set_users(app_id, channel, [LISTENER_UID])
        schedule = windows_schedule([(start, end)])
        rig.write_manifest(f"{name}.yaml", recording_manifest(name, app, channel, uid, schedule))
        desired.append(Desired(name, app_id, channel, uid, ((start, end),)))
    loaded = await daemon.wait_event("manifests.reloaded", manifests=len(plan), within=30)
    await rig.windows_closed(desired)  # each stop reached the API (the daemon stays up)
    assert await rig.stop_daemon() == 0

    evidence = await rig.evidence(desired, first_ready=daemon.ready_at)
    report = check(evidence, min_coverage=0.0)
    requests = evidence.requests

    def arrivals(endpoint: str, prefix: str) -> list[float]:
        return sorted(
            float(r["time"])
            for r in requests
            if r["endpoint"] == endpoint
            and isinstance(r.get("body"), dict)
            and str(r["body"].get("cname", "")).startswith(prefix)
        )

    first_burst_stop = min(arrivals("stop", "burst-"))
    lateness: dict[str, dict[str, float | None]] = {}
    problems = []
    for name, start, end in plan[BURST:]:
        d = next(x for x in desired if x.name == name)
        sessions = [s for s in evidence.sessions if s.target == d.target]
        first = min((s.started_at for s in sessions), default=None)
        ended = max((s.ended_at or evidence.observed_until for s in sessions), default=None)
        lateness[name] = {
            "start_late_s": None if first is None else round(first - start, 2),
            "stop_late_s": None if ended is None else round(ended - end, 2),
        }
        (started,) = arrivals("start", name)
        if started >= first_burst_stop:
            problems.append(f"{name}: started only with the next boundary's pass (dropped)")
        if not any(s.ended_at is not None for s in sessions):
            problems.append(f"{name}: never stopped")
    figures.update(report.figures())
    figures.update(inside=lateness, loaded_before_open_s=round(opens - event_time(loaded), 2))
    assert not problems, "\n".join(problems)
    report.assert_ok()
