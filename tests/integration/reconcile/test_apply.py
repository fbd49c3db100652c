"""`apply` passes against the emulator over loopback with a real SQLite store.

Covers: the first pass starts exactly the expected sessions with exactly the
expected bodies; a second pass does nothing; a layout change gives one
updateLayout with the whole layout; a subscription change gives one update; a
restart-only change restarts (or waits, under `defer`); an idle exit is noticed
and restarted; removing a manifest stops its session; a broken manifest file
never stops what it had running; a permanent error marks the manifest failed and
is not retried until the spec changes; a failing manifest does not block others;
no secret value reaches the store; a start whose answer was lost takes the sid a
notification names once the API confirms it for its resource ID (not a sid it
does not; not before it answers), and is then managed (stopped) like any other.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from orchestrator.agora import ncs
from orchestrator.daemon.receiver import NoticeReceiver
from orchestrator.manifest.loader import load_manifests
from orchestrator.reconcile.reconciler import desired_recordings, reconcile_once
from orchestrator.state import EndKind, Phase
from tests.integration.reconcile.conftest import SECRETS, World, manifest

NCS_SECRET = "ncs-secret-of-the-world"

LAYOUT = """\
layout:
  type: custom
  background: "#102030"
  regions:
    - {uid: 11, x: 0.0, y: 0.0, width: 0.5, height: 1.0}
    - {uid: 22, x: 0.5, y: 0.0, width: 0.5, height: 1.0}
"""


def kinds(result: object) -> list[tuple[str, str, bool]]:
    return [(r.action.kind.value, r.action.manifest, r.ok) for r in result.results]  # type: ignore[attr-defined]


async def test_first_apply_starts_exactly_what_is_desired_and_second_does_nothing(
    world: World,
) -> None:
    world.write("a.yaml", manifest("alpha", "room-a", 101, extra=LAYOUT))
    world.write("b.yaml", manifest("beta", "room-b", 202))
    began = world.clock()
    first = await world.apply()
    assert sorted(kinds(first)) == [("start", "alpha", True), ("start", "beta", True)]
    # Each result says when its action ended (the status page's last actions showed
    # the pass's end for every one of them).
    ended = [r.at for r in first.results]
    assert all(at is not None and began <= at <= world.clock() for at in ended), ended
    assert len(set(ended)) == 2, ended
    assert len(world.requests("acquire")) == 2 and len(world.requests("start")) == 2
    starts = {r["body"]["cname"]: r["body"] for r in world.requests("start")}
    alpha = starts["room-a"]
    assert alpha["uid"] == "101"
    request = alpha["clientRequest"]
    assert request["token"] == SECRETS["AGORA_TOKEN"]
    assert request["storageConfig"] == {
        "vendor": 1,
        "region": 0,
        "bucket": "rec",
        "accessKey": SECRETS["S3_KEY"],
        "secretKey": SECRETS["S3_SECRET"],
    }
    transcoding = request["recordingConfig"]["transcodingConfig"]
    assert transcoding["mixedVideoLayout"] == 3
    assert transcoding["backgroundColor"] == "#102030"
    assert [r["uid"] for r in transcoding["layoutConfig"]] == ["11", "22"]
    assert request["recordingConfig"]["channelType"] == 1
    assert request["recordingConfig"]["maxIdleTime"] == 30
    assert len(world.recording()) == 2

    live = await world.store.live_sessions()
    assert {(s.manifest, s.phase) for s in live} == {
        ("alpha", Phase.RUNNING),
        ("beta", Phase.RUNNING),
    }
    assert all(s.sid and s.resource_id and s.intent is None for s in live)

    before = len(world.requests())
    second = await world.apply()
    assert second.results == () and second.plan.actions == ()
    # The second pass only queried the two live sessions.
    assert [r["endpoint"] for r in world.requests()[before:]] == ["query", "query"]


async def test_layout_change_gives_one_update_layout_with_the_whole_layout(world: World) -> None:
    world.write("a.yaml", manifest("alpha", "room-a", 101, extra=LAYOUT))
    await world.apply()
    world.write(
        "a.yaml", manifest("alpha", "room-a", 101, extra=LAYOUT.replace("#102030", "#FFFFFF"))
    )
    result = await world.apply()
    assert kinds(result) == [("updateLayout", "alpha", True)]
    (sent,) = world.requests("updateLayout")
    body = sent["body"]["clientRequest"]
    assert body["backgroundColor"] == "#FFFFFF"
    assert body["mixedVideoLayout"] == 3
    assert len(body["layoutConfig"]) == 2
    assert len(world.requests("start")) == 1 and not world.requests("stop")
    assert (await world.apply()).results == ()


async def test_subscription_change_gives_one_update(world: World) -> None:
    subscribed = "  subscribe: {audio: [7, 8], video: [7]}\n"
    world.write(
        "a.yaml",
        manifest("alpha", "room-a", 101).replace(
            "  maxIdleTime: 30\n", "  maxIdleTime: 30\n" + subscribed
        ),
    )
    await world.apply()
    world.write(
        "a.yaml",
        manifest("alpha", "room-a", 101).replace(
            "  maxIdleTime: 30\n", "  maxIdleTime: 30\n" + subscribed.replace("[7, 8]", "[7, 8, 9]")
        ),
    )
    result = await world.apply()
    assert kinds(result) == [("update", "alpha", True)]
    (sent,) = world.requests("update")
    assert sent["body"]["clientRequest"]["streamSubscribe"]["audioUidList"] == {
        "subscribeAudioUids": ["7", "8", "9"]
    }
    assert len(world.requests("start")) == 1
    assert (await world.apply()).results == ()


async def test_restart_only_change_restarts_or_defers(world: World) -> None:
    world.write("a.yaml", manifest("alpha", "room-a", 101))
    world.write("b.yaml", manifest("beta", "room-b", 202, extra="updatePolicy: defer\n"))
    await world.apply()
    world.write("a.yaml", manifest("alpha", "room-a", 101).replace("bucket: rec", "bucket: other"))
    world.write(
        "b.yaml",
        manifest("beta", "room-b", 202, extra="updatePolicy: defer\n").replace(
            "bucket: rec", "bucket: other"
        ),
    )
    result = await world.apply()
    assert kinds(result) == [("restart", "alpha", True)]
    assert [n.manifest for n in result.plan.notes] == ["beta"]
    assert len(world.requests("stop")) == 1
    assert len(world.requests("start")) == 3
    assert (
        world.requests("start")[-1]["body"]["clientRequest"]["storageConfig"]["bucket"] == "other"
    )
    assert len(world.recording()) == 2
    history = await world.store.history()
    (ended,) = history
    assert ended.manifest == "alpha"
    assert ended.end_reason is not None
    assert ended.end_reason.startswith(
        "stopped: restart (spec changed in a way update cannot carry)"
    )


async def test_idle_exit_is_noticed_and_restarted(world: World) -> None:
    world.write("a.yaml", manifest("alpha", "room-a", 101))
    await world.apply()
    world.emulator.emu.advance(31)  # nobody joined: idle for longer than maxIdleTime
    assert world.recording() == []
    result = await world.apply()
    assert kinds(result) == [("start", "alpha", True)]
    assert result.results[0].action.reason.startswith("restart #1 after exited")
    (ended,) = await world.store.history()
    assert ended.end_reason is not None and ended.end_reason.startswith("exited:")
    (live,) = await world.store.live_sessions()
    assert live.restart_count == 1 and live.phase is Phase.RUNNING
    assert len(world.recording()) == 1


async def test_abnormal_exit_is_restarted_at_once_then_with_backoff(world: World) -> None:
    world.policy = world.policy.__class__(restart_backoff_initial=timedelta(hours=1))
    world.write("a.yaml", manifest("alpha", "room-a", 101))
    await world.apply()
    (session,) = world.recording()
    assert world.emulator.emu.abort(session["sid"])
    restarted = await world.apply()  # the pass that notices the end restarts it
    assert kinds(restarted) == [("start", "alpha", True)]
    (ended,) = await world.store.history()
    assert ended.end_reason == "exited: abnormal exit (status 20)"
    (session,) = world.recording()
    assert world.emulator.emu.abort(session["sid"])  # it ends again soon after: back off
    held = await world.apply()
    assert held.results == ()
    assert [n.kind.value for n in held.plan.notes] == ["backoff"]
    later = await world.apply(now=datetime.now(UTC) + timedelta(hours=2))
    assert kinds(later) == [("start", "alpha", True)]


async def test_removed_manifest_is_stopped_with_files_recorded(world: World) -> None:
    world.write("a.yaml", manifest("alpha", "room-a", 101))
    world.write("b.yaml", manifest("beta", "room-b", 202))
    await world.apply()
    world.emulator.emu.join(world.app_id, "room-a", "555")
    world.emulator.emu.advance(5)
    world.remove("a.yaml")
    result = await world.apply()
    assert kinds(result) == [("stop", "alpha", True)]
    (ended,) = await world.store.history()
    assert ended.manifest == "alpha" and ended.end_reason == "stopped: manifest removed"
    assert ended.uploading_status == "uploaded"
    assert ended.file_list
    assert [s["cname"] for s in world.recording()] == ["room-b"]


async def test_stop_of_a_session_nobody_joined_records_no_files(world: World) -> None:
    world.write("a.yaml", manifest("alpha", "room-a", 101))
    await world.apply()
    world.remove("a.yaml")
    result = await world.apply()
    assert kinds(result) == [("stop", "alpha", True)]
    (ended,) = await world.store.history()
    assert ended.end_reason is not None and "no files" in ended.end_reason


async def test_broken_manifest_file_follows_its_last_known_good_version(world: World) -> None:
    now = datetime.now(UTC)
    start, end = (now - timedelta(hours=1)).isoformat(), (now + timedelta(hours=1)).isoformat()
    window = f"{{windows: [{{start: '{start}', end: '{end}'}}]}}"
    world.write("a.yaml", manifest("alpha", "room-a", 101, schedule=window))
    await world.apply(now)
    world.write("a.yaml", manifest("alpha", "room-a", 101) + "transcoding: [not, a, mapping\n")
    result = await world.apply(now)
    assert result.results == () and result.plan.notes == ()
    assert not world.requests("stop")
    assert len(world.recording()) == 1
    # The broken edit does not stop the schedule: the stored version ends the window.
    later = await world.apply(now + timedelta(hours=2))
    assert kinds(later) == [("stop", "alpha", True)]
    (ended,) = await world.store.history()
    assert ended.end_reason is not None and ended.end_reason.startswith("stopped: window over")


async def test_broken_file_without_a_stored_version_keeps_its_recording(world: World) -> None:
    # Literal secrets are never stored, so there is no last known good version.
    world.write(
        "a.yaml", manifest("alpha", "room-a", 101).replace("{env: S3_SECRET}", "literal-secret")
    )
    await world.apply()
    assert await world.store.known_good() == {}
    world.write("a.yaml", "name: [broken\n")
    result = await world.apply()
    assert result.results == ()
    assert [n.kind.value for n in result.plan.notes] == ["kept"]
    assert not world.requests("stop")
    assert len(world.recording()) == 1


async def test_a_broken_file_renamed_keeps_its_recording(world: World) -> None:
    """A manifest that no file gives now, while a file that does not load may hold it
    (here: its own file, broken and renamed), is not removed: its last known good
    version stands in until every file loads."""
    world.write("a.yaml", manifest("alpha", "room-a", 101))
    await world.apply()
    world.remove("a.yaml")
    world.write("renamed.yaml", "name: alpha\nmode: [mix\n")
    result = await world.apply()
    assert result.results == () and not world.requests("stop")
    assert [s["cname"] for s in world.recording()] == ["room-a"]
    assert set(await world.store.known_good()) == {"alpha"}
    world.write("renamed.yaml", manifest("alpha", "room-a", 101))
    result = await world.apply()
    assert result.results == () and not world.requests("stop")
    world.remove("renamed.yaml")
    assert kinds(await world.apply()) == [("stop", "alpha", True)]


async def test_a_removal_waits_while_a_file_does_not_load(world: World) -> None:
    """What a file that does not load holds is unknown: a manifest removed meanwhile
    keeps recording until every file loads, then stops."""
    world.write("a.yaml", manifest("alpha", "room-a", 101))
    world.write("b.yaml", manifest("beta", "room-b", 202))
    await world.apply()
    world.write("b.yaml", "name: beta\nmode: [mix\n")
    world.remove("a.yaml")
    result = await world.apply()
    assert result.results == () and not world.requests("stop")
    assert sorted(s["cname"] for s in world.recording()) == ["room-a", "room-b"]
    world.write("b.yaml", manifest("beta", "room-b", 202))
    assert kinds(await world.apply()) == [("stop", "alpha", True)]
    (ended,) = await world.store.history()
    assert ended.end_reason is not None and ended.end_reason.startswith("stopped: manifest removed")


async def test_removed_manifest_is_forgotten(world: World) -> None:
    world.write("a.yaml", manifest("alpha", "room-a", 101))
    await world.apply()
    assert set(await world.store.known_good()) == {"alpha"}
    world.remove("a.yaml")
    await world.apply()
    assert await world.store.known_good() == {}


async def test_permanent_error_marks_failed_until_spec_changes_and_others_proceed(
    world: World,
) -> None:
    world.write("a.yaml", manifest("alpha", "room-a", 101))
    world.write("b.yaml", manifest("beta", "room-b", 202))
    world.emulator.emu.fail_next("acquire", "answer", 1, status=400, code=2)
    result = await world.apply()
    assert sorted(kinds(result)) == [("start", "alpha", False), ("start", "beta", True)]
    states = await world.store.manifest_states()
    failed = [name for name, state in states.items() if state.failed_spec_hash is not None]
    assert len(failed) == 1
    acquires = len(world.requests("acquire"))

    again = await world.apply()
    assert again.results == ()
    assert [(n.kind.value, n.manifest) for n in again.plan.notes] == [("failed", failed[0])]
    assert len(world.requests("acquire")) == acquires  # never hammered

    channel, uid = ("room-a", 101) if failed[0] == "alpha" else ("room-b", 202)
    changed = manifest(failed[0], channel, uid).replace("maxIdleTime: 30", "maxIdleTime: 31")
    world.write(f"{failed[0][0]}.yaml", changed)  # the spec changes: tried again
    fixed = await world.apply()
    assert kinds(fixed) == [("start", failed[0], True)]
    assert len(world.recording()) == 2


async def test_app_level_error_is_retried_with_backoff_not_held(world: World) -> None:
    """62 (recording not enabled), 401 and invalid App ID belong to the app: the
    manifest is not held as failed, so fixing the app needs no spec change; retries
    wait for the restart backoff, so the API is never hammered."""
    world.policy = world.policy.__class__(restart_backoff_initial=timedelta(minutes=5))
    # App profile "off" is an App ID without cloud recording: acquire answers 62.
    world.write("a.yaml", manifest("alpha", "room-a", 101).replace("app: main", "app: off"))
    result = await world.apply()
    assert kinds(result) == [("start", "alpha", False)]
    assert (await world.store.manifest_states()).get("alpha") is None
    acquires = len(world.requests("acquire"))
    waiting = await world.apply()
    assert [n.kind.value for n in waiting.plan.notes] == ["backoff"]
    assert len(world.requests("acquire")) == acquires
    later = await world.apply(now=datetime.now(UTC) + timedelta(minutes=6))
    assert kinds(later) == [("start", "alpha", False)]  # tried again, still refused
    assert len(world.requests("acquire")) == acquires + 1


async def test_retryable_errors_are_retried_with_the_same_resource_id(world: World) -> None:
    world.write("a.yaml", manifest("alpha", "room-a", 101))
    world.emulator.emu.fail_next("start", "code65", count=2)
    result = await world.apply()
    assert kinds(result) == [("start", "alpha", True)]
    starts = world.requests("start")
    assert len(starts) == 3
    assert len({r["path"] for r in starts}) == 1  # same resource ID every time
    assert len(world.requests("acquire")) == 1


async def test_lost_start_answer_is_unmanageable_never_duplicated(world: World) -> None:
    world.write("a.yaml", manifest("alpha", "room-a", 101))
    world.emulator.emu.fail_next("start", "lost")
    result = await world.apply()
    assert kinds(result) == [("start", "alpha", False)]
    (live,) = await world.store.live_sessions()
    assert live.phase is Phase.UNMANAGEABLE
    assert len(world.recording()) == 1
    # While wanted, a fresh start is tried: 53, the old session still records it.
    again = await world.apply()
    assert kinds(again) == [("start", "alpha", False)]
    assert [n.kind.value for n in again.plan.notes] == ["unmanageable"]
    assert "is still recording" in again.results[0].message
    assert len(world.recording()) == 1  # never duplicated
    # Once the old session has ended (idle), the next try starts it and closes the record.
    world.emulator.emu.advance(31)
    assert world.recording() == []
    recovered = await world.apply()
    assert kinds(recovered) == [("start", "alpha", True)]
    assert len(world.recording()) == 1
    (live,) = await world.store.live_sessions()
    assert live.phase is Phase.RUNNING
    closed = [
        s for s in await world.store.history() if s.end_reason and "superseded" in s.end_reason
    ]
    assert len(closed) == 1


async def notify(world: World, notice_id: str, sid: str, channel: str, uid: int) -> None:
    """Post a signed `recorder_started` of `sid` on (channel, uid) to a real receiver of
    the world's store, as Agora's NCS would, and wait until it is kept."""
    kept: list[asyncio.Future[None]] = []

    def spawn(work: Coroutine[Any, Any, None]) -> object:
        task = asyncio.ensure_future(work)
        kept.append(task)
        return task

    receiver = NoticeReceiver(
        world.store,
        NCS_SECRET,
        path="/ncs",
        max_body=4096,
        spawn=spawn,
        wake=lambda app_id: None,
        clock=lambda: datetime.now(UTC),
    )
    port = await receiver.start("127.0.0.1", 0)
    notice = ncs.Notification(
        noticeId=notice_id,
        productId=ncs.CLOUD_RECORDING,
        eventType=ncs.EventType.RECORDER_STARTED,
        payload=ncs.Payload(cname=channel, uid=str(uid), sid=sid),
    )
    content = ncs.dumps(notice)
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            answer = await client.post(
                f"http://127.0.0.1:{port}/ncs",
                content=content,
                headers={ncs.SIGNATURE_HEADER: ncs.sign(NCS_SECRET, content)},
            )
        assert answer.status_code == 200
        async with asyncio.timeout(10):
            await asyncio.gather(*kept)
    finally:
        await receiver.stop()


async def test_a_lost_starts_sid_named_by_a_notification_is_confirmed_then_managed(
    world: World,
) -> None:
    world.write("a.yaml", manifest("alpha", "room-a", 101))
    world.emulator.emu.fail_next("start", "lost")
    await world.apply()
    (lost,) = await world.store.live_sessions()
    assert (lost.phase, lost.sid) == (Phase.UNMANAGEABLE, None)
    (recording,) = world.recording()
    # A sid on its channel and uid that the API does not tie to its resource ID (1003):
    # not its sid. Nothing is taken.
    await notify(world, "n-forged", "SID-NOT-ITS", "room-a", 101)
    await world.apply()
    still = await world.store.get_session(lost.id)
    assert (still.phase, still.sid) == (Phase.UNMANAGEABLE, None)
    assert await world.store.pending_notices() == []  # settled, not tried again
    # The recording's own sid. While the API does not answer, nothing is taken and the
    # notice waits for the next pass.
    await notify(world, "n-started", recording["sid"], "room-a", 101)
    world.emulator.emu.fail_next("query", "error", count=4, status=503)  # every attempt
    await world.apply()
    assert (await world.store.get_session(lost.id)).sid is None
    assert [n.notice_id for n in await world.store.pending_notices()] == ["n-started"]
    # Answered: the session takes it.
    result = await world.apply()
    taken = await world.store.get_session(lost.id)
    assert (taken.phase, taken.sid, taken.error) == (Phase.RUNNING, recording["sid"], None)
    assert taken.started_at == taken.created_at
    assert kinds(result) == [] and result.plan.notes == ()  # recording, nothing held
    queries = [r for r in world.requests("query") if recording["sid"] in r["path"]]
    assert len(queries) == 5 and all(lost.resource_id in q["path"] for q in queries)
    # Managed again: removing the manifest stops that very recording.
    world.remove("a.yaml")
    stopped = await world.apply()
    assert kinds(stopped) == [("stop", "alpha", True)]
    assert world.recording() == []
    ended = await world.store.get_session(lost.id)
    assert (ended.phase, ended.end_kind) == (Phase.ENDED, EndKind.STOPPED)


async def test_a_recovered_sid_rolls_over_before_its_resource_id_expires(
    world: World,
) -> None:
    """The start's intent carries the resource ID's expiry at the latest (it lives
    `resourceExpiredHour` from the start, which comes after the intent): a session
    whose start answer was lost keeps it, and once its sid comes back it rolls over
    `rolloverLead` before then, as any session does, instead of being ended by Agora."""
    extra = "resourceExpiredHour: 1\nrolloverUid: 202\n"
    world.emulator.emu.join(world.app_id, "room-a", "123")  # someone to record: no idle exit
    world.write("a.yaml", manifest("alpha", "room-a", 101, extra=extra))
    world.emulator.emu.fail_next("start", "lost")
    before = world.clock()
    await world.apply()
    after = world.clock()
    (lost,) = await world.store.live_sessions()
    assert (lost.phase, lost.sid) == (Phase.UNMANAGEABLE, None)
    assert lost.resource_expires_at is not None
    assert before + timedelta(hours=1) <= lost.resource_expires_at <= after + timedelta(hours=1)
    (recording,) = world.recording()
    await notify(world, "n-started", recording["sid"], "room-a", 101)
    await world.apply()
    taken = await world.store.get_session(lost.id)
    assert (taken.phase, taken.sid) == (Phase.RUNNING, recording["sid"])
    assert taken.expires_at == lost.resource_expires_at
    lead = world.policy.rollover_lead
    world.advance(taken.expires_at - lead - world.clock() + timedelta(seconds=1))
    rolled = await world.apply()
    assert kinds(rolled) == [("rollover", "alpha", True)]
    successor = (await world.store.live_sessions())[-1]
    assert (successor.uid, successor.predecessor_id) == (202, lost.id)


async def test_no_secret_value_reaches_the_store(world: World) -> None:
    world.write("a.yaml", manifest("alpha", "room-a", 101))
    await world.apply()
    world.remove("a.yaml")
    await world.apply()
    raw = (world.root / "state.db").read_bytes() + (
        (world.root / "state.db-wal").read_bytes()
        if (world.root / "state.db-wal").exists()
        else b""
    )
    for value in SECRETS.values():
        assert value.encode() not in raw
    db = sqlite3.connect(world.root / "state.db")
    dump = "\n".join(db.iterdump())
    for value in SECRETS.values():
        assert value not in dump


async def test_expired_resource_id_is_acquired_again(world: World) -> None:
    world.write("a.yaml", manifest("alpha", "room-a", 101))
    world.emulator.emu.fail_next("acquire", "hold", seconds=0.3)
    task = asyncio.create_task(world.apply())
    for _ in range(200):  # bounded: the held acquire arrives within moments
        if not world.emulator.emu.next_faults:
            break
        await asyncio.sleep(0.01)
    world.emulator.emu.advance(301)  # the resource ID is older than five minutes at start
    result = await task
    assert kinds(result) == [("start", "alpha", True)]
    assert [r["code"] for r in world.requests("start")] == [433, None]
    assert len(world.requests("acquire")) == 2
    assert len(world.recording()) == 1


async def test_a_recording_the_store_does_not_know_is_untracked_with_backoff(
    world: World,
) -> None:
    client = world.emulator.client()
    rid = await client.acquire(world.app_id, {"cname": "room-a", "uid": "101", "clientRequest": {}})
    await client.start(
        world.app_id,
        rid,
        "mix",
        {"cname": "room-a", "uid": "101", "clientRequest": {"recordingConfig": {"channelType": 1}}},
    )
    world.policy = world.policy.__class__(restart_backoff_initial=timedelta(minutes=5))
    world.write("a.yaml", manifest("alpha", "room-a", 101))
    result = await world.apply()
    assert kinds(result) == [("start", "alpha", False)]
    assert "conflict" in result.results[0].message
    (failed,) = await world.store.history()
    assert failed.phase is Phase.FAILED and (failed.end_reason or "").startswith(
        "failed: untracked (53)"
    )
    again = await world.apply()
    assert again.results == () and [n.kind.value for n in again.plan.notes] == ["backoff"]
    assert [s.manifest for s in again.untracked] == ["alpha"]  # reported, never ignored
    assert len(world.recording()) == 1


async def test_a_moved_manifest_whose_app_profile_is_gone_keeps_its_recording(
    world: World,
) -> None:
    """Defect: a manifest moved to another file while it recorded, whose app profile
    was then removed from the config: its file fails (unknown app profile) and its
    last known good version names the gone profile, so nothing stood in for it, and
    its session (started from the old file) was stopped as "manifest removed". It is
    kept, as a failing file's sessions are."""
    world.write("a.yaml", manifest("alpha", "room-a", 101))
    await world.apply()
    world.remove("a.yaml")
    world.write("b.yaml", manifest("alpha", "room-a", 101))
    assert (await world.apply()).results == ()  # a move: nothing to do; b.yaml remembered
    (session,) = await world.store.live_sessions()
    assert session.source_file.endswith("a.yaml")
    loaded = load_manifests([world.manifests], now=world.clock())
    no_main: dict[str, str] = {}  # the config without profile `main`
    desired = desired_recordings(
        loaded.manifests, no_main, loaded.failed_files, await world.store.known_good()
    )
    assert desired.held == frozenset({"alpha"}) and "alpha" not in desired.forget
    result = await reconcile_once(desired, world.store, world.runtime.executor, world.clock())
    assert result.plan.actions == ()
    assert [n.kind.value for n in result.plan.notes] == ["kept"]
    assert [s.id for s in await world.store.live_sessions()] == [session.id]
    assert len(world.recording()) == 1
