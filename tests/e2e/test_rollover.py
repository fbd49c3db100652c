"""Minted tokens and rollover: `orchestrator run` as a process against the emulator
with an App Certificate, 60 s tokens and a 29 s `rolloverLead` (the longest lead a
60 s token allows: less than half its life), so a rollover comes about every 31 s.

Covers: an always-on recording becomes a chain of sessions that rolls over at least
three times, with no moment of the channel unrecorded (each successor records
before its predecessor ends), every overlap at most the lead plus 5 s, at most two
sessions live at any time, no 53, each start's token minted for its own uid and
verified by the emulator; `status` shows the chain and /metrics counts the
rollovers; SIGTERM leaves exactly one session recording. Windows: each window's
start carries a fresh token valid through the window's end (plus the margin) and
no longer than the lifetime. A wrong certificate: every start is refused by the
emulator, the daemon warns `token.refused` naming the profile and the
certificate's reference (never its value) and restarts under the backoff, not in
a tight loop.

The emulator runs in the test's process (its clock is the wall clock here); every
wait is bounded and waits for an event or a state of the emulator.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any

import httpx
import pytest

from orchestrator.agora.token import parse_token, verify_rtc_token
from tests.e2e.conftest import DaemonEnv
from tests.e2e.test_daemon import write
from tests.harness import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

CERTIFICATE = "5cfd2fd1755d40ecb72977518be15d3b"
WRONG = "0123456789abcdef0123456789abcdef"
CERTIFICATE_VARIABLE = "AGORA_APP_CERTIFICATE"
LIFETIME = 60.0
LEAD = 29.0  # the config model wants less than half of LIFETIME; the longest is soonest
UID, OTHER = 101, 202
CHANNEL = "room-r"
PUBLISHER = "7"


def minted(name: str, *, schedule: str = "always", channel: str = CHANNEL) -> str:
    """A manifest without a `token` (its profile mints one per start)."""
    return (
        f"name: {name}\napp: main\nchannel: {channel}\nuid: {UID}\nrolloverUid: {OTHER}\n"
        f"mode: mix\nschedule: {schedule}\n"
        "recording: {channelType: live, streams: audio+video, maxIdleTime: 300}\n"
        "storage:\n  vendor: aws-s3\n  region: us-east-1\n  bucket: rec\n"
        "  accessKey: {env: S3_KEY}\n  secretKey: {env: S3_SECRET}\n"
    )


def certified(env: DaemonEnv, *, daemon_knows: str = CERTIFICATE, lead: float = LEAD) -> None:
    """The emulator verifies tokens with CERTIFICATE; the daemon mints with
    `daemon_knows`, 60 s tokens, the rollover `lead` seconds before expiry."""
    emulator = env.cli.emulator
    emulator.emu.set_app_certificate(CERTIFICATE, emulator.app_id)
    emulator.emu.join(emulator.app_id, CHANNEL, PUBLISHER)  # someone to record
    env.cli.env[CERTIFICATE_VARIABLE] = daemon_knows
    env.reconfigure(
        {
            "apps": {
                "main": {
                    "appCertificate": {"env": CERTIFICATE_VARIABLE},
                    "tokenLifetime": "1m",
                }
            },
            "reconcile": {"rolloverLead": f"{int(lead)}s"},
        }
    )


def sessions(env: DaemonEnv, channel: str = CHANNEL) -> list[dict[str, Any]]:
    """The emulator's sessions of `channel`, oldest first."""
    found = [s for s in env.cli.emulator.emu.sessions() if s["cname"] == channel]
    return sorted(found, key=lambda s: float(s["started_at"]))


def live(env: DaemonEnv, channel: str = CHANNEL) -> list[dict[str, Any]]:
    return [s for s in sessions(env, channel) if s["live"]]


def starts(env: DaemonEnv, channel: str = CHANNEL) -> list[dict[str, Any]]:
    return [r for r in env.cli.emulator.emu.requests("start") if r["body"]["cname"] == channel]


def coverage_gaps(chain: list[dict[str, Any]], warmup: float, until: float) -> list[float]:
    """Seconds of each moment nobody recorded between the first session's recording
    and `until`: a session records from its start plus the warmup to its end."""
    gaps: list[float] = []
    covered = float(chain[0]["started_at"]) + warmup
    for session in chain:
        begins = float(session["started_at"]) + warmup
        if begins > covered:
            gaps.append(begins - covered)
        ends = until if session["ended_at"] is None else float(session["ended_at"])
        covered = max(covered, ends)
    if until > covered:
        gaps.append(until - covered)
    return gaps


def most_live_at_once(chain: list[dict[str, Any]], until: float) -> int:
    moments = sorted(
        [(float(s["started_at"]), 1) for s in chain]
        + [(until if s["ended_at"] is None else float(s["ended_at"]), -1) for s in chain]
    )
    best = now = 0
    for _, step in moments:
        now += step
        best = max(best, now)
    return best


async def test_an_always_on_recording_rolls_over_without_a_gap(daemon_env: DaemonEnv) -> None:
    certified(daemon_env)
    write(daemon_env, "r.yaml", minted("rolling"))
    daemon = await daemon_env.start()
    warmup = daemon_env.cli.emulator.emu.settings.warmup
    try:
        # Tokens of 60 s with a 29 s lead: a rollover about every 31 s.
        for n in range(3):
            await daemon.wait_event("session.rolled_over", within=120, after=n, manifest="rolling")
        await wait_until(lambda: len(live(daemon_env)) == 1, within=30, what="one live session")
        url = await daemon.metrics_url()
        async with httpx.AsyncClient(timeout=10) as http:
            metrics = (await http.get(f"{url}/metrics")).text
        status = await daemon_env.cli.run("status", "--config", str(daemon_env.cli.config))
    finally:
        assert await daemon.stop() == 0
    ended = time.time()
    chain = sessions(daemon_env)
    assert len(chain) >= 4
    assert coverage_gaps(chain, warmup, ended) == []  # no moment unrecorded
    assert most_live_at_once(chain, ended) <= 2
    for before, after in pairwise(chain):
        assert before["uid"] != after["uid"]  # the two uids alternate
        overlap = float(before["ended_at"]) - float(after["started_at"])
        assert overlap <= LEAD + 5, (before, after)
        assert before["end_reason"] == "stopped"  # stopped by us, not expired
    assert [s for s in chain if s["live"]] == chain[-1:]  # SIGTERM: one records on
    # Every start's token was minted for its own uid; none was refused; no 53.
    for request in starts(daemon_env):
        body = request["body"]
        check = verify_rtc_token(
            body["clientRequest"]["token"],
            app_id=daemon_env.cli.emulator.app_id,
            certificate=CERTIFICATE,
            channel=CHANNEL,
            uid=int(body["uid"]),
            now=float(request["time"]),
        )
        assert check.ok, check
    assert all(r.get("code") != 53 for r in daemon_env.cli.emulator.emu.requests())
    # status shows the chain; the metrics count the rollovers and their overlaps.
    assert status.code == 0, status.stdout + status.stderr
    assert "(succeeds #" in status.stdout and "token expires" in status.stdout
    rollovers = [
        float(line.split()[-1])
        for line in metrics.splitlines()
        if line.startswith("orchestrator_rollovers_total ")
    ]
    assert rollovers and rollovers[0] >= 3
    assert "orchestrator_rollover_overlap_seconds_count" in metrics
    # No certificate and no token in the log, the metrics or status.
    for text in (daemon.log.text(), metrics, status.stdout):
        assert CERTIFICATE not in text
        assert not any(r["body"]["clientRequest"]["token"] in text for r in starts(daemon_env))


async def test_each_window_gets_a_fresh_token_valid_through_its_end(
    daemon_env: DaemonEnv,
) -> None:
    certified(daemon_env)
    daemon = await daemon_env.start()
    try:
        # Written once the daemon is up (the watch loads it within its 100 ms debounce):
        # both windows are ahead.
        now = datetime.now(UTC).replace(microsecond=0)
        pairs = [(now + timedelta(seconds=3), now + timedelta(seconds=6))]
        pairs.append((pairs[0][1] + timedelta(seconds=2), pairs[0][1] + timedelta(seconds=5)))
        inner = ", ".join(f"{{start: '{a.isoformat()}', end: '{b.isoformat()}'}}" for a, b in pairs)
        write(daemon_env, "w.yaml", minted("daily", schedule=f"{{windows: [{inner}]}}"))
        await wait_until(
            lambda: len(daemon_env.cli.emulator.emu.requests("stop")) == 2,
            within=60,
            what="both windows' stops",
        )
    finally:
        assert await daemon.stop() == 0
    tokens = [r["body"]["clientRequest"]["token"] for r in starts(daemon_env)]
    assert len(tokens) == 2 and tokens[0] != tokens[1]  # one fresh token per window
    for token, (opens, closes) in zip(tokens, pairs, strict=True):
        parsed = parse_token(token)
        assert parsed.issued_at >= int(opens.timestamp()) - 1  # minted when sent
        # valid through the window's end, never past the lifetime
        assert closes.timestamp() <= parsed.expires_at <= parsed.issued_at + LIFETIME
    assert all(s["end_reason"] == "stopped" for s in sessions(daemon_env))


async def test_a_wrong_certificate_is_said_plainly_and_backed_off(daemon_env: DaemonEnv) -> None:
    certified(daemon_env, daemon_knows=WRONG)
    daemon_env.reconfigure({"reconcile": {"restartBackoff": {"initial": "4s", "max": "8s"}}})
    write(daemon_env, "r.yaml", minted("refused"))
    daemon = await daemon_env.start()
    try:
        warnings = [
            await daemon.wait_event("token.refused", within=60, after=n, manifest="refused")
            for n in range(2)
        ]
    finally:
        assert await daemon.stop() == 0
    refusal = warnings[0]
    assert "apps.main.appCertificate" in str(refusal["detail"])
    assert CERTIFICATE_VARIABLE in str(refusal["detail"])  # the reference, not the value
    assert WRONG not in daemon.log.text() and CERTIFICATE not in daemon.log.text()
    # Every recorder was refused: none ever recorded.
    assert all(str(s["end_reason"]).startswith("token refused") for s in sessions(daemon_env))
    # The restarts wait the backoff (4 s, then 8 s): no tight loop.
    times = [float(r["time"]) for r in starts(daemon_env)]
    assert len(times) >= 2
    assert all(b - a >= 4 for a, b in pairwise(times)), times
