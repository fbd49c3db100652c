"""Several daemons on one PostgreSQL store, against the emulator on loopback.

Covers: the work splits by App ID and every window is recorded exactly once;
only the owner of an App ID talks to the API for it (a hand-over is a clean
handover: the old owner's last call precedes the new owner's first); a third
replica joining takes its share without a recording being cut.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import defaultdict
from typing import Any

import pytest

from tests.harness import wait_until
from tests.reliability.invariants import assert_invariants, check
from tests.reliability.rig import (
    LISTENER_UID,
    MUTATING,
    Daemon,
    Rig,
    event_time,
    owned,
    workload,
    write_workload,
)

pytestmark = [pytest.mark.postgres, pytest.mark.e2e, pytest.mark.slow]


def app_of(call: dict[str, Any]) -> str:
    return str(call.get("app_id"))


def calls_by_app(daemon: Daemon) -> dict[str, list[float]]:
    out: dict[str, list[float]] = defaultdict(list)
    for e in daemon.log.named("api.call"):
        out[app_of(e)].append(event_time(e))
    return out


def speakers(daemons: list[Daemon], until: float) -> dict[str, list[int]]:
    """Per App ID, the daemons that called the API for it before `until`, in turn
    (consecutive calls of one daemon collapsed)."""
    points: dict[str, list[tuple[float, int]]] = defaultdict(list)
    for d in daemons:
        for app_id, times in calls_by_app(d).items():
            points[app_id] += [(t, d.number) for t in times if t < until]
    out: dict[str, list[int]] = {}
    for app_id, seen in points.items():
        turns: list[int] = []
        for _, number in sorted(seen):
            if not turns or turns[-1] != number:
                turns.append(number)
        out[app_id] = turns
    return out


def first_calls(daemon: Daemon, app_id: str, after: float) -> list[str]:
    return [
        str(e["endpoint"])
        for e in daemon.log.named("api.call")
        if e.get("app_id") == app_id and event_time(e) >= after
    ]


async def test_two_replicas_split_the_work_and_record_every_window_once(rig: Rig) -> None:
    await rig.start_emulator(apps=3, seed=11)
    rig.write_config(resync="5s", claim_interval="1s", log_level="debug")
    init = await rig.cli("init", "--config", str(rig.config))
    assert init.code == 0, init.stderr
    t0 = time.time()
    planned = workload(
        rig,
        random.Random(5),
        12,
        prefix="rep",
        t0=t0,
        first_open=(6.0, 20.0),
        length=(15.0, 20.0),
        always_every=4,
    )
    write_workload(rig, planned)
    desired = [p.desired for p in planned]
    for d in desired:
        await rig.set_users(d.app_id, d.channel, [LISTENER_UID])
    first = await rig.start_daemon(within=60)
    second = await rig.start_daemon(within=60)
    await wait_until(
        lambda: owned(first) and owned(second), within=30, what="both replicas own an App ID"
    )
    assert owned(first) | owned(second) == set(rig.apps.values())
    assert not owned(first) & owned(second)
    await rig.windows_closed(desired)
    assert first.alive and second.alive
    # A daemon that stops hands its App IDs over: count the calls made before that.
    stopping = time.time()
    assert await rig.stop_daemon(second) == 0
    assert await rig.stop_daemon(first) == 0
    evidence = await rig.evidence(
        desired, first_ready=min(first.ready_at or 0, second.ready_at or 0)
    )
    report = check(evidence)
    figures: dict[str, Any] = report.figures()
    assert report.duplicates == 0
    assert_invariants(report, figures)
    assert sum(1 for r in evidence.requests if r.get("code") == 53) == 0
    # Only the owner talks to the API for an App ID: per App ID one daemon, or one
    # hand-over (the first daemon owned everything until the second joined).
    turns = speakers([first, second], until=stopping)
    assert set(turns) == set(rig.apps.values())
    assert all(t in ([0], [1], [0, 1]) for t in turns.values()), turns
    handed = [app_id for app_id, t in turns.items() if t == [0, 1]]
    assert len(handed) == 1, turns
    # The new owner adopted what was live there: it queried, and sent no acquire or
    # start for a recording that was running (its always-on one).
    (gained,) = [e for e in second.log.named("ownership.gained") if handed[0] in e["app_ids"]]
    calls = first_calls(second, handed[0], event_time(gained))
    assert calls and calls[0] == "query", calls
    always = [d for d in desired if d.app_id == handed[0] and d.windows[0][1] == float("inf")]
    started_there = [
        e
        for e in second.log.named("reconcile.action")
        if e.get("action") == "start" and e.get("manifest") in {d.name for d in always}
    ]
    assert always and not started_there


async def test_a_third_replica_takes_its_share_without_cutting_a_recording(rig: Rig) -> None:
    await rig.start_emulator(apps=3, seed=13)
    rig.write_config(resync="2s", claim_interval="1s", log_level="debug")
    init = await rig.cli("init", "--config", str(rig.config))
    assert init.code == 0, init.stderr
    planned = workload(
        rig,
        random.Random(7),
        6,
        prefix="third",
        t0=time.time(),
        first_open=(0.0, 0.0),
        length=(0.0, 0.0),
        always_every=1,  # every recording always on: two per App ID
    )
    write_workload(rig, planned)
    desired = [p.desired for p in planned]
    for d in desired:
        await rig.set_users(d.app_id, d.channel, [LISTENER_UID])
    first = await rig.start_daemon(within=60)
    second = await rig.start_daemon(within=60)
    await wait_until(
        lambda: owned(first) and owned(second), within=30, what="both replicas own an App ID"
    )

    async def live() -> dict[tuple[str, str, str], str]:
        return {
            (str(s["app_id"]), str(s["cname"]), str(s["uid"])): str(s["sid"])
            for s in await rig.sessions()
            if s["ended_at"] is None
        }

    async def all_live() -> bool:
        return not {d.target for d in desired} - set(await live())

    await wait_until(all_live, within=30, what="the always-on recordings all live")
    before = await live()
    before_owned = {d.number: owned(d) for d in (first, second)}

    joined = time.time()
    third = await rig.start_daemon(within=60)
    daemons = [first, second, third]

    def one_each() -> bool:
        mine = [owned(d) for d in daemons]
        return all(len(m) == 1 for m in mine) and set().union(*mine) == set(rig.apps.values())

    await wait_until(one_each, within=30, what="every replica owns exactly one App ID")
    settled = time.time()
    # The split holds: a resync pass of each began after it (claim rounds every 1 s,
    # resync every 2 s: two rounds or more each).
    await asyncio.gather(*(d.pass_after(settled) for d in daemons))
    assert one_each(), [owned(d) for d in daemons]
    assert all(d.alive for d in daemons)

    # No recording cut: the same sessions live, none ended, no mutating call since the
    # third replica joined.
    sessions = await rig.sessions()
    assert len(sessions) == len(desired), sessions
    assert all(s["ended_at"] is None for s in sessions)
    assert await live() == before
    since = [r for r in await rig.requests() if float(r["time"]) >= joined]
    assert not [r for r in since if r["endpoint"] in MUTATING], since
    # The App ID the third one took was handed over by its owner, which released it,
    # and the third adopted its recordings with queries.
    (mine,) = owned(third)
    giver = next(d for d in (first, second) if mine in before_owned[d.number])
    assert giver.log.named("ownership.released", app_id=mine)
    calls = first_calls(third, mine, joined)
    assert calls and set(calls) == {"query"}, calls
    print(f"\nthird replica: split {settled - joined:.2f}s after it was launched")

    for daemon in reversed(daemons):
        assert await rig.stop_daemon(daemon) == 0
    evidence = await rig.evidence(desired, first_ready=first.ready_at or 0)
    report = check(evidence)
    assert report.duplicates == 0
    assert sum(1 for r in evidence.requests if r.get("code") == 53) == 0
    assert_invariants(report, report.figures())


async def test_two_replicas_under_one_name_split_the_work_once_and_say_so(rig: Rig) -> None:
    """Defect: a replica counted what a replica of the same `replica.name` held as its
    own, thought the other short, and the two handed an App ID back and forth every
    claim round. They are told apart by their locks now, and the name is said taken."""
    await rig.start_emulator(apps=3, seed=17)
    rig.write_config(resync="2s", claim_interval="1s")
    init = await rig.cli("init", "--config", str(rig.config))
    assert init.code == 0, init.stderr
    twin = {"ORCHESTRATOR_REPLICA__NAME": "twin"}
    first = await rig.start_daemon(within=60, env=twin)
    await wait_until(lambda: len(owned(first)) == 3, within=30, what="the first owns all")
    second = await rig.start_daemon(within=60, env=twin)
    daemons = (first, second)

    def split() -> bool:
        mine = [owned(d) for d in daemons]
        return sorted(map(len, mine)) == [1, 2] and set().union(*mine) == set(rig.apps.values())

    await wait_until(split, within=30, what="the App IDs split two and one")
    # Two resync passes of each (at 2 s) are four claim rounds or more: the flapping
    # handed one over every other round. The split took one hand-over, the first's.
    for _ in range(2):
        await asyncio.gather(*(d.pass_after(time.time()) for d in daemons))
    assert split(), [owned(d) for d in daemons]
    released = [e for d in daemons for e in d.log.named("ownership.released")]
    assert len(released) == 1 and first.log.named("ownership.released"), released
    taken = [e for d in daemons for e in d.log.named("replica.name_taken")]
    assert taken and all(e["name"] == "twin" and e["level"] == "error" for e in taken)
