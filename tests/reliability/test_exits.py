"""Scenario 3, exits: recordings that end on their own are restarted within one resync.

8 recordings (6 always on, 2 with a window of a few minutes) on one App ID,
`reconcile.resyncInterval: 3s`, maxIdleTime 5 s, `restartBackoff` 1 s .. 5 s. The
emulator ends sessions in two ways, alternately: an abnormal exit
(`POST /_emulator/sessions/{sid}/abort`, query status 20) and an idle exit (the
channel is emptied; after maxIdleTime the emulator ends the session, status 8; the
broadcaster comes back once it has ended). Each recording is hit at most once per
`SPACING` seconds, longer than `restartBackoff.max`, so the README's rule is that
every restart is immediate: the next resync pass notices the exit and restarts in
that same pass. Every exit must be followed by exactly one new session on its
target (none before the old one ended); the time from each exit to its restart is
excused from coverage, the rest must be covered. The restart delay (emulator: end
of the old session to the start of the new one) is a figure, measured and reported
(`restart_delay_s`; docs/reliability.md, from benchmarks/reliability_bench.py), not
asserted: `resyncInterval` plus one pass, `PASS_BOUND`, is what it should stay near.
16 exits at the `full` scale, 8 at `ci`.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass

import pytest

from tests.harness import wait_until
from tests.reliability.conftest import Scale
from tests.reliability.invariants import (
    FOREVER,
    Desired,
    EmuSession,
    assert_invariants,
    check,
    quantiles,
)
from tests.reliability.rig import (
    LISTENER_UID,
    Rig,
    recording_manifest,
    windows_schedule,
)

pytestmark = [pytest.mark.reliability, pytest.mark.slow]

SEED = 7031
RESYNC = 3.0
PASS_BOUND = 1.5  # one resync pass: 8 queries under 10 requests/s, then acquire + start
MAX_IDLE = 5
SPACING = 12.0  # seconds between two exits of one recording (> restartBackoff.max)


@dataclass
class Exit:
    manifest: str
    kind: str  # "abort" | "idle"
    sid: str
    ended_at: float
    restart_delay: float | None = None


async def _live_session(rig: Rig, d: Desired, within: float = 15) -> dict[str, object]:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        for s in await rig.sessions():
            if (s["app_id"], s["cname"], s["uid"]) == d.target and s["live"]:
                return s
        await asyncio.sleep(0.1)
    raise AssertionError(f"{d.name}: no live session within {within}s")


async def _inject(rig: Rig, d: Desired, kind: str) -> Exit:
    session = await _live_session(rig, d)
    sid = str(session["sid"])
    if kind == "abort":
        await rig.control("POST", f"/sessions/{sid}/abort")
    else:
        await rig.set_users(d.app_id, d.channel, [])
    deadline = time.monotonic() + MAX_IDLE + 15
    ended: float | None = None
    while time.monotonic() < deadline:
        found = next(s for s in await rig.sessions() if s["sid"] == sid)
        if found["ended_at"] is not None:
            ended = float(found["ended_at"])
            break
        await asyncio.sleep(0.1)
    if kind == "idle":
        await rig.set_users(d.app_id, d.channel, [LISTENER_UID])
    assert ended is not None, f"{d.name}: the emulator did not end {sid[:8]} ({kind})"
    return Exit(d.name, kind, sid, ended)


async def test_idle_and_abnormal_exits_are_restarted_within_one_resync(
    rig: Rig, scale: Scale, figures: dict[str, object]
) -> None:
    rng = random.Random(SEED)
    await rig.start_emulator(apps=1, seed=SEED)
    rig.write_config(resync=f"{RESYNC:g}s", backoff=("1s", "5s"))
    app, app_id = next(iter(rig.apps.items()))
    t0 = time.time()
    run_for = 60.0 * scale.duration + 10 * scale.kills
    count = scale.times(16)
    desired: list[Desired] = []
    for i in range(8):
        name, channel, uid = f"exit-{i}", f"exit-room-{i}", 20_000 + i
        if i < 6:
            schedule, windows = "always", ((t0 - 3600.0, FOREVER),)
        else:
            start, end = t0 - 5.0 + 10.0 * (i - 6), t0 + run_for + 30.0
            schedule, windows = windows_schedule([(start, end)]), ((start, end),)
        rig.write_manifest(
            f"{name}.yaml", recording_manifest(name, app, channel, uid, schedule, max_idle=MAX_IDLE)
        )
        desired.append(Desired(name, app_id, channel, uid, windows))
        await rig.set_users(app_id, channel, [LISTENER_UID])
    daemon = await rig.start_daemon()
    assert daemon.ready_at is not None
    for d in desired:
        await _live_session(rig, d)

    last_hit: dict[str, float] = {}
    injections: list[asyncio.Task[Exit]] = []
    kinds = ("abort", "idle")
    deadline = time.monotonic() + run_for + 60  # bounded even if exits come slowly
    while len(injections) < count and time.monotonic() < deadline:
        now = time.time()
        ready = [
            d
            for d in desired
            if now - last_hit.get(d.name, 0.0) >= SPACING
            and any(a <= now and now + 15 < b for a, b in d.windows)
        ]
        if ready:
            d = rng.choice(ready)
            last_hit[d.name] = now + MAX_IDLE  # an idle exit comes MAX_IDLE later
            kind = kinds[len(injections) % 2]
            injections.append(asyncio.create_task(_inject(rig, d, kind)))
        await asyncio.sleep(rng.uniform(1.0, 3.0))
    exits = await asyncio.wait_for(asyncio.gather(*injections), 60)
    target_of = {d.name: d.target for d in desired}

    async def restarted() -> bool:
        sessions = await rig.sessions()
        return all(
            any(
                (s["app_id"], s["cname"], s["uid"]) == target_of[e.manifest]
                and float(s["started_at"]) >= e.ended_at
                for s in sessions
            )
            for e in exits
        )

    # Bounded generously (a hang, not a figure): every exit has been restarted.
    await wait_until(restarted, within=RESYNC + 30, what="every exit restarted", alive=daemon)
    assert await rig.stop_daemon() == 0

    bound = RESYNC + PASS_BOUND
    evidence_sessions = [EmuSession.from_json(s) for s in await rig.sessions()]
    for e in exits:
        following = sorted(
            s.started_at
            for s in evidence_sessions
            if s.target == target_of[e.manifest] and s.started_at >= e.ended_at
        )
        e.restart_delay = following[0] - e.ended_at
    excused: dict[str, list[tuple[float, float]]] = {}
    for e in exits:
        assert e.restart_delay is not None
        excused.setdefault(e.manifest, []).append((e.ended_at, e.ended_at + e.restart_delay))
    evidence = await rig.evidence(desired, first_ready=daemon.ready_at, excused=excused)
    report = check(evidence)
    passes = [
        float(p["duration_ms"]) / 1000
        for p in rig.named("reconcile.pass")
        if p["trigger"] == "resync"
    ]
    delays = [e.restart_delay for e in exits if e.restart_delay is not None]
    figures.update(report.figures())
    figures.update(
        exits=len(exits),
        aborts=sum(1 for e in exits if e.kind == "abort"),
        idle_exits=sum(1 for e in exits if e.kind == "idle"),
        restart_delay_s=quantiles(delays),
        restart_delay_abort_s=quantiles(
            [e.restart_delay for e in exits if e.kind == "abort" and e.restart_delay is not None]
        ),
        restart_delay_idle_s=quantiles(
            [e.restart_delay for e in exits if e.kind == "idle" and e.restart_delay is not None]
        ),
        resync_pass_s=quantiles(passes),
        bound_s=bound,
    )
    assert report.duplicates == 0
    assert_invariants(report, figures)
