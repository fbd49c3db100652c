"""Minted tokens and rollovers, through real passes against the emulator with an App
Certificate (it verifies each start's token as Agora does and removes a recorder whose
token expires).

`world.advance` moves time for the runtime (plans, executor, minted tokens) and the
emulator (token checks, expiries) together, so a rollover's due time is reached
without waiting and every token is verified at the time it was minted for.
"""

from __future__ import annotations

import textwrap
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import structlog

from orchestrator.agora.token import build_rtc_token, parse_token, verify_rtc_token
from orchestrator.contract import ErrorCode, ServiceStatus
from orchestrator.reconcile.plan import NoteKind, PlanPolicy
from orchestrator.reconcile.translate import stop_request
from orchestrator.state import EndKind, Phase, SessionRecord
from tests.integration.conftest import EmulatorHandle
from tests.integration.reconcile.conftest import CERTIFICATE, World, manifest, opened_world

UID, OTHER = 101, 202
LIFETIME = timedelta(minutes=2)
LEAD = timedelta(seconds=30)
POLICY = PlanPolicy(restart_backoff_initial=timedelta(seconds=10), rollover_lead=LEAD)


def minted(name: str, channel: str, *, schedule: str = "always") -> str:
    """A manifest without a fixed token (its profile mints one), with a rollover uid."""
    text = manifest(name, channel, UID, schedule=schedule, extra=f"rolloverUid: {OTHER}\n")
    return text.replace("token: {env: AGORA_TOKEN}\n", "")


@pytest.fixture
async def certified(
    emulator: EmulatorHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[World]:
    emulator.emu.set_app_certificate(CERTIFICATE, emulator.app_id)
    emulator.emu.join(emulator.app_id, "room-a", "123")  # someone to record: no idle exit
    async with opened_world(
        emulator,
        tmp_path,
        monkeypatch,
        certificate=CERTIFICATE,
        token_lifetime="2m",
        policy=POLICY,
    ) as world:
        yield world


def start_tokens(world: World) -> list[tuple[int, str]]:
    """(uid, token) of every start the emulator received, in order."""
    return [
        (int(r["body"]["uid"]), r["body"]["clientRequest"]["token"])
        for r in world.requests("start")
    ]


def intruder_start(app_id: str) -> dict[str, Any]:
    """A start of someone else's recorder on the rollover uid, with a valid token."""
    token = build_rtc_token(
        app_id, CERTIFICATE, "room-a", OTHER, expires_in=600, issued_at=int(time.time()), salt=1
    )
    return {
        "uid": str(OTHER),
        "cname": "room-a",
        "clientRequest": {
            "token": token,
            "recordingConfig": {
                "channelType": 1,
                "streamTypes": 2,
                "transcodingConfig": {"width": 640, "height": 360, "fps": 15, "bitrate": 500},
            },
            "storageConfig": {
                "vendor": 1,
                "region": 0,
                "bucket": "intruder",
                "accessKey": "intruder-key",
                "secretKey": "intruder-secret",
            },
        },
    }


def to_rollover(world: World, session: SessionRecord) -> None:
    """Move the world's time just past `session`'s rollover (its expiry - the lead)."""
    assert session.expires_at is not None
    world.advance(session.expires_at - LEAD - world.clock() + timedelta(seconds=1))


async def recording_alpha(world: World) -> SessionRecord:
    """Write the always-on `alpha` (minted tokens), apply: its one live session."""
    world.write("a.yaml", minted("alpha", "room-a"))
    await world.apply()
    (first,) = await world.store.live_sessions()
    return first


def answered(world: World, code: int) -> list[dict[str, object]]:
    return [r for r in world.requests() if r.get("code") == code]


async def test_each_start_carries_a_token_minted_for_its_channel_and_uid(
    certified: World,
) -> None:
    world = certified
    world.write("a.yaml", minted("alpha", "room-a"))
    before = int(world.clock().timestamp())
    result = await world.apply()
    assert [r.ok for r in result.results] == [True]
    ((uid, token),) = start_tokens(world)
    check = verify_rtc_token(
        token,
        app_id=world.app_id,
        certificate=CERTIFICATE,
        channel="room-a",
        uid=UID,
        now=world.clock().timestamp(),
    )
    assert check.ok and uid == UID
    parsed = parse_token(token)
    assert before <= parsed.issued_at <= int(world.clock().timestamp())
    assert parsed.expire == LIFETIME.total_seconds()  # `always`: the lifetime
    (session,) = await world.store.live_sessions()
    assert session.expires_at == datetime.fromtimestamp(parsed.expires_at, UTC)
    # Never kept: not in the store's file, not in the emulator's view of the session.
    assert token.encode() not in (world.root / "state.db").read_bytes()
    assert CERTIFICATE.encode() not in (world.root / "state.db").read_bytes()
    (described,) = world.emulator.emu.sessions()
    assert described["token_refused"] is None and token not in repr(described)


async def test_windows_get_a_fresh_token_each_valid_through_the_window_end(
    emulator: EmulatorHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    emulator.emu.set_app_certificate(CERTIFICATE, emulator.app_id)
    now = datetime.now(UTC).replace(microsecond=0)
    first = (now - timedelta(minutes=1), now + timedelta(minutes=30))
    second = (now + timedelta(minutes=40), now + timedelta(minutes=70))
    schedule = (
        "{windows: ["
        + ", ".join(
            f"{{start: '{a.isoformat()}', end: '{b.isoformat()}'}}" for a, b in (first, second)
        )
        + "]}"
    )
    async with opened_world(
        emulator, tmp_path, monkeypatch, certificate=CERTIFICATE, policy=POLICY
    ) as world:
        emulator.emu.join(emulator.app_id, "room-a", "123")  # no idle exit
        world.write("a.yaml", minted("alpha", "room-a", schedule=schedule))
        await world.apply()
        world.advance(timedelta(minutes=35))
        await world.apply()  # the first window's stop
        world.advance(timedelta(minutes=6))
        await world.apply()  # the second window's start
        tokens = [token for _, token in start_tokens(world)]
        assert len(tokens) == 2 and tokens[0] != tokens[1]
        for token, (_, end) in zip(tokens, (first, second), strict=True):
            # valid through the window's end (plus the stop's margin), not 24 h
            assert parse_token(token).expires_at == int((end + timedelta(minutes=5)).timestamp())
        # a token that outlives its window: no rollover is ever planned
        sessions = await world.store.live_sessions()
        assert [s.expires_at for s in sessions] == [second[1] + timedelta(minutes=5)]
        world.advance(timedelta(minutes=28))
        assert (await world.apply()).plan.actions == ()


async def test_a_rollover_starts_a_successor_confirms_it_then_stops_the_predecessor(
    certified: World,
) -> None:
    world = certified
    first = await recording_alpha(world)
    # Just past the due time (expiry - lead): one pass does the whole rollover.
    to_rollover(world, first)
    result = await world.apply()
    assert [(r.action.kind.value, r.ok) for r in result.results] == [("rollover", True)]
    (second,) = await world.store.live_sessions()
    assert (second.uid, second.predecessor_id, second.phase) == (OTHER, first.id, Phase.RUNNING)
    ended = await world.store.get_session(first.id)
    assert ended.end_kind is EndKind.STOPPED
    assert ended.end_reason == f"stopped: rolled over to session {second.id}"
    # Make before break, in this order: the successor starts, a query sees it
    # recording (status 5), then the predecessor's stop.
    calls = [(r["endpoint"], r["body"]["uid"] if r["body"] else None) for r in world.requests()]
    start_at = calls.index(("start", str(OTHER)))
    stop_at = calls.index(("stop", str(UID)))
    assert start_at < stop_at and ("query", None) in calls[start_at:stop_at]
    assert [s["uid"] for s in world.recording()] == [str(OTHER)]
    assert answered(world, ErrorCode.RECORDING_EXISTS) == []
    # The successor's own token is fresh, for its uid; the next rollover goes back.
    (_, token) = start_tokens(world)[-1]
    assert verify_rtc_token(
        token,
        app_id=world.app_id,
        certificate=CERTIFICATE,
        channel="room-a",
        uid=OTHER,
        now=world.clock().timestamp(),
    ).ok
    to_rollover(world, second)
    await world.apply()
    (third,) = await world.store.live_sessions()
    assert (third.uid, third.predecessor_id) == (UID, second.id)


async def test_a_recording_to_aliyun_vod_rolls_over_though_its_query_has_no_status(
    certified: World,
) -> None:
    """A recording with an extension service is queried for `subServiceStatus` and no
    `status` (the reference's "阿里视频点播" answer): `serviceInProgress` is recording,
    so its successor is confirmed and the predecessor stopped, not both left running."""
    world = certified
    vod = """\
        aliyunVod:
          accessKey: {env: S3_KEY}
          secretKey: {env: S3_SECRET}
          regionId: cn-shanghai
          videoData: {title: Monthly}
        """
    text = minted("alpha", "room-a")
    text = text[: text.index("storage:")] + textwrap.dedent(vod) + f"rolloverUid: {OTHER}\n"
    world.write("a.yaml", text)
    await world.apply()
    (first,) = await world.store.live_sessions()
    to_rollover(world, first)
    result = await world.apply()
    assert [(r.action.kind.value, r.ok) for r in result.results] == [("rollover", True)]
    (second,) = await world.store.live_sessions()
    assert (second.uid, second.predecessor_id) == (OTHER, first.id)
    assert second.last_status == ServiceStatus.RECORDING  # read from `recordingService`
    assert (await world.store.get_session(first.id)).end_kind is EndKind.STOPPED
    assert [s["uid"] for s in world.recording()] == [str(OTHER)]
    # Its abnormal exit (`serviceAbnormal`) is seen as one, with the word that said it.
    world.emulator.emu.abort(second.sid)
    await world.apply()
    ended = await world.store.get_session(second.id)
    assert ended.end_reason == "exited: abnormal exit (serviceAbnormal)"


async def test_a_successor_that_cannot_start_leaves_the_predecessor_and_backs_off(
    certified: World,
) -> None:
    world = certified
    first = await recording_alpha(world)
    to_rollover(world, first)
    # Someone else records the channel with the rollover uid: its start answers 53.
    intruder = world.emulator.client()
    resource = await intruder.acquire(
        world.app_id, {"cname": "room-a", "uid": str(OTHER), "clientRequest": {}}
    )
    sid = await intruder.start(world.app_id, resource, "mix", intruder_start(world.app_id))
    result = await world.apply()
    assert [(r.action.kind.value, r.ok) for r in result.results] == [("rollover", False)]
    assert "records on" in result.results[0].message
    assert [s.id for s in await world.store.live_sessions()] == [first.id]  # still recording
    assert len(answered(world, ErrorCode.RECORDING_EXISTS)) == 1
    failed = (await world.store.latest_ended())["alpha"]
    assert (failed.uid, failed.predecessor_id, failed.end_kind) == (
        OTHER,
        first.id,
        EndKind.UNTRACKED,
    )
    # The next attempt waits its backoff; the predecessor records meanwhile.
    world.advance(timedelta(seconds=5))
    held = await world.apply()
    assert held.plan.actions == ()
    assert [n.kind for n in held.plan.notes] == [NoteKind.ROLLOVER]
    # The channel is free again: the retry succeeds.
    await intruder.stop(world.app_id, resource, sid, "mix", stop_request("room-a", OTHER))
    world.advance(POLICY.restart_backoff_initial)
    result = await world.apply()
    assert [(r.action.kind.value, r.ok) for r in result.results] == [("rollover", True)]
    (second,) = await world.store.live_sessions()
    assert (second.uid, second.predecessor_id, second.restart_count) == (OTHER, first.id, 1)


async def test_a_session_seen_recording_that_ends_soon_is_no_refused_token(
    certified: World,
) -> None:
    """Defect: the query that found the end wrote its status (20) over the one an earlier
    query saw (5, recording), and the exit was said to be a refused token, pointing the
    operator at a certificate that is fine."""
    world = certified
    world.write("a.yaml", minted("alpha", "room-a"))
    assert [r.ok for r in (await world.apply()).results] == [True]
    world.advance(timedelta(seconds=5))
    await world.apply()  # its resync query sees it recording
    (session,) = await world.store.live_sessions()
    assert session.last_status == ServiceStatus.RECORDING
    assert world.emulator.emu.abort(session.sid or "")
    with structlog.testing.capture_logs() as logs:
        result = await world.apply()  # the query that finds it ended; restarted at once
    assert [e["event"] for e in logs if e["event"] == "session.exited"] == ["session.exited"]
    assert not [e for e in logs if e["event"] == "token.refused"]
    assert [a.kind.value for a in result.plan.actions] == ["start"]


async def test_a_session_the_api_lost_is_started_afresh_not_waited_out_to_its_token(
    certified: World,
) -> None:
    """Defect: a session whose query answered 1001 (the API no longer recognises it: an
    emulator restart, Agora losing it) was taken, having a token, to record until that
    expired: nothing recorded for up to 24 hours. It is started afresh, as without a
    token; the new session on its target supersedes the lost one."""
    world = certified
    first = await recording_alpha(world)
    world.emulator.emu.fail_next("query", "answer", 1, status=400, code=1001)
    assert world.emulator.emu.abort(first.sid or "")  # gone from the API indeed
    world.advance(timedelta(seconds=5))
    with structlog.testing.capture_logs() as logs:
        result = await world.apply()  # the resync's query: 1001; then the plan
    assert [e["session_id"] for e in logs if e["event"] == "session.unrecognised"] == [first.id]
    assert [(r.action.kind.value, r.ok) for r in result.results] == [("start", True)]
    (second,) = await world.store.live_sessions()
    assert second.id != first.id and second.uid == UID
    lost = await world.store.get_session(first.id)
    assert lost.end_kind is EndKind.EXITED and f"superseded by session {second.id}" in str(
        lost.end_reason
    )
    assert [s["uid"] for s in world.recording()] == [str(UID)]


async def test_a_refused_token_is_said_plainly_and_restarted_under_backoff(
    emulator: EmulatorHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    emulator.emu.set_app_certificate("0" * 32, emulator.app_id)  # not the profile's
    async with opened_world(
        emulator, tmp_path, monkeypatch, certificate=CERTIFICATE, policy=POLICY
    ) as world:
        world.write("a.yaml", minted("alpha", "room-a"))
        assert [r.ok for r in (await world.apply()).results] == [True]  # Agora says 200
        (described,) = emulator.emu.sessions()
        assert described["token_refused"] == "signature"
        world.advance(timedelta(seconds=5))  # the recorder gives up joining
        with structlog.testing.capture_logs() as logs:
            result = await world.apply()
        (warning,) = [e for e in logs if e["event"] == "token.refused"]
        assert warning["log_level"] == "warning" and warning["app"] == "main"
        assert "apps.main.appCertificate (file:" in warning["detail"]
        assert CERTIFICATE not in repr(logs)
        # The first exit restarts at once; when that one is refused too, the next
        # restart waits (10 s, doubling): never a tight loop.
        assert [a.kind.value for a in result.plan.actions] == ["start"]
        world.advance(timedelta(seconds=5))
        result = await world.apply()
        assert result.plan.actions == ()
        assert [n.kind for n in result.plan.notes] == [NoteKind.BACKOFF]
