"""A replica that takes an App ID over finishes a rollover in progress.

Two replicas on one PostgreSQL store, the emulator verifying tokens with an App
Certificate, 60 s tokens and a 29 s `rolloverLead`: one always-on recording. When its
first session is due to roll over, the owner sends the successor's `start`; the
emulator holds the answer (the successor records, its sid is never learnt) and the
owner is SIGKILLed. The survivor takes the App ID over and finishes the rollover:
the replayed start is answered 7 (the successor records; it is kept as unmanageable
until its token expires), the predecessor is stopped. Then exactly one session of the
channel is live, the recording never had a gap, and no start met 53.
"""

from __future__ import annotations

import json
import time

import pytest

from tests.e2e.test_rollover import coverage_gaps, most_live_at_once
from tests.harness import wait_until
from tests.reliability.invariants import FOREVER, Desired
from tests.reliability.rig import Rig, owned, recording_manifest
from tests.replicas.test_failover import write_recordings

pytestmark = [pytest.mark.postgres, pytest.mark.e2e, pytest.mark.slow]

CERTIFICATE = "5cfd2fd1755d40ecb72977518be15d3b"
CERTIFICATE_VARIABLE = "REL_APP_CERTIFICATE"
LEAD = 29.0  # the longest a 60 s token allows (less than half its life): the soonest rollover


def minted(name: str, profile: str, channel: str, uid: int) -> str:
    """An always-on manifest without a fixed token (the profile mints one per start)."""
    text = recording_manifest(name, profile, channel, uid, "always")
    return text.replace("token: {env: REL_TOKEN}\n", "")


async def test_a_takeover_finishes_a_rollover_in_progress(rig: Rig) -> None:
    await rig.start_emulator(apps=1, seed=41, certificate=CERTIFICATE)
    rig.processes.env[CERTIFICATE_VARIABLE] = CERTIFICATE
    ((profile, app_id),) = rig.apps.items()
    rig.write_config(
        resync="5s",
        claim_interval="1s",
        changes={
            "apps": {
                profile: {
                    "appCertificate": {"env": CERTIFICATE_VARIABLE},
                    "tokenLifetime": "1m",
                }
            },
            "reconcile": {"rolloverLead": f"{int(LEAD)}s"},
        },
    )
    assert (await rig.cli("init", "--config", str(rig.config))).code == 0
    channel = "takeover-room"
    desired = [Desired("rolling", app_id, channel, 40_001, ((0.0, FOREVER),))]
    await write_recordings(rig, "r.yaml", desired, [minted("rolling", profile, channel, 40_001)])
    first, second = await rig.start_daemon(), await rig.start_daemon()

    async def live() -> list[dict[str, object]]:
        return [s for s in await rig.sessions() if s["live"] and s["cname"] == channel]

    async def one_live() -> bool:
        return len(await live()) == 1

    owner = await wait_until(
        lambda: next((d for d in (first, second) if app_id in owned(d)), None),
        within=30,
        what="an owner of the App ID",
    )
    survivor = second if owner is first else first
    await wait_until(one_live, within=30, what="the first session")
    await rig.control("POST", "/faults/next", {"endpoint": "start", "kind": "hold", "seconds": 15})

    async def successor_started() -> bool:  # the held start arrived (its fault is used)
        return not (await rig.control("GET", "/faults"))["next"]

    # The rollover is due 31 s after the first start (60 s token, 29 s lead).
    await wait_until(successor_started, within=90, what="the successor's start")
    killed = time.monotonic()
    await rig.kill_daemon(owner)
    await wait_until(lambda: app_id in owned(survivor), within=30, what="the takeover")
    taken = time.monotonic()
    await wait_until(one_live, within=LEAD + 30, what="one live session")
    settled = time.monotonic()
    assert await rig.stop_daemon(survivor) == 0
    ended = time.time()

    sessions = sorted(
        (s for s in await rig.sessions() if s["cname"] == channel),
        key=lambda s: float(s["started_at"]),  # type: ignore[arg-type]
    )
    warmup = float((await rig.control("GET", "/settings"))["warmup"])
    gaps = coverage_gaps(sessions, warmup, ended)
    print(
        "rollover takeover figures:",
        json.dumps(
            {
                "takeover_s": round(taken - killed, 1),
                "one_live_after_s": round(settled - killed, 1),
                "gaps_s": gaps,
            }
        ),
    )
    assert gaps == []  # the predecessor recorded on until the successor did
    assert most_live_at_once(sessions, ended) <= 2
    assert len([s for s in sessions if s["live"]]) == 1
    codes = [r.get("code") for r in await rig.requests()]
    assert 53 not in codes
    assert 7 in codes  # the survivor's replayed start: the successor had started
    stops = [e for e in survivor.log.named("reconcile.action") if e.get("action") == "stop"]
    assert stops and "rolled over" in str(stops[0].get("reason"))
