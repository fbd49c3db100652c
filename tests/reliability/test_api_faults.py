"""Scenario 2, API faults: a flaky, slow Agora that sometimes acts and does not say so.

The emulator answers (per request, seeded) 20 % with a 5xx, 10 % with code 65 and
5 % with a 504 after the action took effect (a "lost" answer), each after 0-300 ms
of latency, on every endpoint. The workload is scenario 1's (40 recordings on 4 App
IDs, windows of 20-60 s over two minutes at the `full` scale, 20-40 s over 45 s at
`ci`); maxIdleTime is 5 s and `restartBackoff` 1 s .. 5 s.

A lost `start` answer makes the retry meet 7: the recording is live with an
unknown sid and the daemon must mark it unmanageable, never start a duplicate.
For each such session the test checks that it shows in the logs
(`session.unmanageable`), in the metrics (`orchestrator_sessions{phase=
"unmanageable"}` or `orchestrator_manifests_held{reason="unmanageable"}`) and in
`orchestrator status --format json`; then it empties the channel so the emulator
idles the session out after maxIdleTime (the only way such a session ends), puts
the broadcaster back once it has ended, and the checker measures how long the
recording was blocked: it must be recording again within the backoff's maximum
plus the time fault-ridden retries take (`RECOVERY_BOUND`, 20 s). That bound is the
recovery's invariant, so the recovery gap (up to it) is excused from coverage: the
daemon cannot know the session ended before it tries again.

Coverage does not hold against the daemon the time the API itself refused a
recording's `acquire` or `start` (a 5xx, code 65 or a lost answer), up to the
answer's latency and the client's backoff ceiling after that many refusals in a
row (`invariants.refused`): at 35 % refusals a start now and then meets five in a
row, whatever the daemon does. Its own delays (planning, waiting behind other
manifests, a slow retry) stay counted; the raw figure is reported beside the net.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from dataclasses import dataclass, field
from typing import Any

import pytest

from orchestrator.agora.client import RetryPolicy
from tests.reliability.conftest import Scale
from tests.reliability.invariants import (
    FOREVER,
    Desired,
    assert_invariants,
    check,
    refused,
)
from tests.reliability.rig import LISTENER_UID, Rig, event_time, workload, write_workload

pytestmark = [pytest.mark.reliability, pytest.mark.slow]

SEED = 424242
MAX_IDLE = 5
HOLD = 8.0  # seconds an unmanageable session is left recording before its channel empties
BACKOFF_MAX = 5.0
RECOVERY_BOUND = BACKOFF_MAX + 15.0
# error, then code 65, then lost are drawn in turn per request (see FaultConfig):
# these rates give 20 %, 10 % and 5 % of all requests.
FAULTS = {
    "error_rate": 0.20,
    "error_status": 503,
    "code65_rate": 0.10 / 0.80,
    "lost_rate": 0.05 / 0.70,
    "latency": [0.0, 0.3],
    "seed": SEED,
}


@dataclass
class Sighting:
    manifest: str
    session_id: int
    logged_at: float
    in_metrics: bool = False
    in_status: bool = False
    ended_at: float | None = None
    notes: list[str] = field(default_factory=list)


async def _follow_unmanageable(
    rig: Rig, event: dict[str, Any], desired: dict[str, Desired]
) -> Sighting:
    """Check one unmanageable session everywhere, then let the emulator idle it out."""
    name = str(event["manifest"])
    d = desired[name]
    seen = Sighting(name, int(event["session_id"]), event_time(event))
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not seen.in_metrics:
        with contextlib.suppress(Exception):  # the daemon may be between passes
            metrics = await rig.metrics()
            seen.in_metrics = (
                metrics.get('orchestrator_sessions{phase="unmanageable"}', 0) >= 1
                or metrics.get('orchestrator_manifests_held{reason="unmanageable"}', 0) >= 1
            )
        await asyncio.sleep(0.25)
    status = await rig.cli("status", "--config", str(rig.config), "--format", "json")
    # 1: a wanted recording is not recording (this one, blocked by the session), as
    # the status then says; the JSON is the same either way.
    if status.code in (0, 1) and status.stdout.strip():
        live = json.loads(status.stdout)["live"]
        seen.in_status = any(
            s["manifest"] == name and s["phase"] == "unmanageable" and s["id"] == seen.session_id
            for s in live
        )
    else:
        seen.notes.append(f"status exited {status.code}: {status.stderr[-300:]}")
    # Let the daemon meet it a while (its fresh starts are answered 53), then empty the
    # channel: the session idles out after maxIdleTime; then the broadcaster comes back
    # for whatever the daemon starts next.
    await asyncio.sleep(max(0.0, seen.logged_at + HOLD - time.time()))
    await rig.set_users(d.app_id, d.channel, [])
    deadline = time.monotonic() + MAX_IDLE + 30
    while time.monotonic() < deadline:
        live = [
            s
            for s in await rig.sessions()
            if (s["app_id"], s["cname"], s["uid"]) == d.target and s["live"]
        ]
        if not live:
            break
        await asyncio.sleep(0.25)
    else:
        seen.notes.append("the session did not idle out")
    seen.ended_at = time.time()
    await rig.set_users(d.app_id, d.channel, [LISTENER_UID])
    return seen


async def test_faulty_api_duplicates_nothing_and_unmanageable_recovers(
    rig: Rig, scale: Scale, figures: dict[str, object]
) -> None:
    rng = random.Random(SEED)
    await rig.start_emulator(apps=4 * scale.manifests, seed=SEED)
    rig.write_config(resync="5s", backoff=("1s", f"{BACKOFF_MAX:g}s"), metrics=True)
    await rig.control("PUT", "/faults", FAULTS)
    t0 = time.time()
    planned = workload(
        rig,
        rng,
        40 * scale.manifests,
        prefix="fault",
        t0=t0,
        first_open=(-8.0, 120.0 * scale.duration),
        length=scale.lengths,
        max_idle=MAX_IDLE,
    )
    write_workload(rig, planned)
    desired = {p.desired.name: p.desired for p in planned}
    for d in desired.values():
        await rig.set_users(d.app_id, d.channel, [LISTENER_UID])

    daemon = await rig.start_daemon(within=120)
    assert daemon.ready_at is not None
    last_end = max(w[1] for d in desired.values() for w in d.windows if w[1] != FOREVER)
    deadline = last_end + 8.0
    followers: list[asyncio.Task[Sighting]] = []
    handled = 0
    try:
        while time.time() < deadline:  # bounded by the last window's end
            assert daemon.alive, "the daemon died:\n" + rig.tail(daemon)
            events = rig.named("session.unmanageable")
            for event in events[handled:]:
                followers.append(asyncio.create_task(_follow_unmanageable(rig, event, desired)))
            handled = len(events)
            await asyncio.sleep(0.25)
        sightings = await asyncio.wait_for(asyncio.gather(*followers), MAX_IDLE + 90)
    finally:
        for task in followers:
            task.cancel()
    await rig.control("DELETE", "/faults")
    assert await rig.stop_daemon() == 0

    # The time the API itself refused a recording's acquire or start (and the backoff
    # the client owes it) is not held against the daemon: at 35 % refusals a start
    # meets a run of them now and then, whatever the daemon does.
    requests = await rig.requests()
    name_of = {d.target: d.name for d in desired.values()}
    policy = RetryPolicy()
    excused = {
        name_of[target]: spans
        for target, spans in refused(
            requests,
            latency=FAULTS["latency"][1],
            base_delay=policy.base_delay,
            max_delay=policy.max_delay,
        ).items()
        if target in name_of
    }
    evidence = await rig.evidence(
        list(desired.values()), first_ready=daemon.ready_at, excused=excused
    )
    # A window's start needs an acquire and a start, each answered up to 0.3 s late by
    # the faults, a lost answer's retry, and the App ID's rate limit when several
    # windows open at once: up to 2 s even on an idle machine (the full-size run's
    # start latency, docs/reliability.md). Less than that uncovered is not a
    # violation, even of a 20 s window; the latency itself is a reported figure.
    report = check(
        evidence,
        unmanageable_bound=RECOVERY_BOUND,
        excuse_recovery=RECOVERY_BOUND,
        slack=2.0,
    )
    figures.update(report.figures())
    figures.update(
        requests=len(requests),
        injected_5xx=sum(1 for r in requests if r["status"] == 503),
        injected_code65=sum(1 for r in requests if r["code"] == 65),
        injected_lost=sum(1 for r in requests if r["status"] == 504),
        refused_seconds_excused=round(sum(b - a for v in excused.values() for a, b in v), 2),
        unmanageable_logged=len(sightings),
        unmanageable_in_metrics=sum(s.in_metrics for s in sightings),
        unmanageable_in_status=sum(s.in_status for s in sightings),
        ambiguous_starts=sum(
            1 for e in rig.named("api.call") if e.get("outcome") == "ambiguous_start"
        ),
        pass_failed=len(rig.named("reconcile.pass_failed")),
    )
    problems = [
        f"{s.manifest} (session {s.session_id}): metrics={s.in_metrics} status={s.in_status} "
        f"{'; '.join(s.notes)}"
        for s in sightings
        if not (s.in_metrics and s.in_status) or s.notes
    ]
    assert not problems, "unmanageable sessions not shown everywhere:\n" + "\n".join(problems)
    assert report.duplicates == 0
    assert_invariants(report, figures)
