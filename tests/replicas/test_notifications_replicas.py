"""Agora's notifications with two replicas: any replica may receive, the owner acts.

Covers, with two daemons on one PostgreSQL store (each with its own notification
receiver on 127.0.0.1:0, one secret) and the emulator (its own notifications off, so
that only the notifications posted here reach the daemons): two always-on recordings,
one per App ID, the App IDs split one per replica. Each round aborts a recording's
session at the emulator (a real exit, which nothing tells the daemons of) and posts a
signed `session_exit` (event 11) of its sid to the replica that does not own its App
ID. That replica keeps it and never acts on it; the owner, woken through PostgreSQL
LISTEN/NOTIFY, ends the session within 1 s of the 200 answer (`session.exited`;
`notice.acted` "ended the session") and starts the recording anew. The resync
(`resyncInterval` 10 m) does not do it: no query reached the aborted sid before the
exit. The same notification posted again, to either replica, is a duplicate and
changes nothing. The secret appears in no log. How long the owner took after each
answer is a figure (`acted_s`, printed). A replica without a receiver of its own
listens all the same: the exit of a recording of its App ID, posted to the other
replica, is acted on by it within the same bound (it listened only when it had a
receiver, and acted at its next pass, tens of seconds later).
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from orchestrator.agora import ncs
from orchestrator.state import Phase, SessionRecord
from tests.harness import wait_until
from tests.reliability.invariants import Desired
from tests.reliability.rig import MUTATING, Daemon, Rig, event_time, owned
from tests.replicas.test_failover import always_on, split, wait_live, write_recordings

pytestmark = [pytest.mark.postgres, pytest.mark.e2e, pytest.mark.slow]

SECRET = "ncs-replicas-secret-71c3e9"  # a placeholder, distinctive enough to find a leak
PATH = "/agora/ncs"
ROUNDS = 5
ACT_BOUND = 1.0  # s: the 200 answer to the owner's `session.exited` (issue 19)
HANG = 30.0  # s: a bound on any wait here that only catches a hang


# -- helpers --------------------------------------------------------------------------


def notification(notice_id: str, event: int, session: dict[str, Any], **details: Any) -> bytes:
    """The body NCS would post about an emulator session."""
    now_ms = int(time.time() * 1000)
    return ncs.dumps(
        ncs.Notification(
            noticeId=notice_id,
            productId=ncs.CLOUD_RECORDING,
            eventType=event,
            notifyMs=now_ms,
            payload=ncs.Payload(
                cname=str(session["cname"]),
                uid=str(session["uid"]),
                sid=str(session["sid"]),
                sendts=now_ms,
                details=details,
            ),
        )
    )


async def post(url: str, body: bytes) -> tuple[httpx.Response, float]:
    """POST a signed notification; the answer and when it came (epoch seconds)."""
    headers = {"Content-Type": "application/json", ncs.SIGNATURE_HEADER: ncs.sign(SECRET, body)}
    async with httpx.AsyncClient(timeout=httpx.Timeout(10.0), trust_env=False) as http:
        answer = await http.post(url, content=body, headers=headers)
    return answer, time.time()


async def recording(rig: Rig, d: Desired, *, not_sid: str = "") -> tuple[dict[str, Any], int]:
    """The live emulator session of `d` (other than `not_sid`) once the store holds it
    running with no action under way: it and its store row's id."""

    async def found() -> tuple[dict[str, Any], int] | None:
        live = [
            s
            for s in await rig.sessions()
            if s["live"] and (s["app_id"], s["cname"]) == (d.app_id, d.channel)
        ]
        if len(live) != 1 or live[0]["sid"] == not_sid:
            return None
        rows, _ = await rig.store_view()
        row = _row(rows, str(live[0]["sid"]))
        if row is None or row.phase is not Phase.RUNNING or row.intent is not None:
            return None
        return live[0], row.id

    return await wait_until(found, within=HANG, what=f"{d.name} recording", every=0.1)


def _row(rows: list[SessionRecord], sid: str) -> SessionRecord | None:
    return next((r for r in rows if r.sid == sid), None)


def failed_tasks(replicas: list[Daemon]) -> list[dict[str, Any]]:
    """Tasks that died (the `listen` task among them: without it no replica is woken
    by another's notice)."""
    return [e for r in replicas for e in r.named("daemon.task_failed")]


def ownership_changes(daemon: Daemon) -> int:
    return sum(
        len(daemon.named(name))
        for name in ("ownership.gained", "ownership.lost", "ownership.released")
    )


# -- the test -----------------------------------------------------------------------------


async def prepared(rig: Rig, seed: int, prefix: str) -> list[Desired]:
    """The emulator (two App IDs, its own notifications off: ours reach the daemons
    only), the config with a receiver, the store, and one always-on recording per App
    ID, for daemons to start."""
    await rig.start_emulator(apps=2, seed=seed)
    assert (await rig.control("GET", "/notify"))["enabled"] is False
    secret_file = rig.root / "ncs-secret"
    secret_file.write_text(f"{SECRET}\n", encoding="utf-8")
    secret_file.chmod(0o600)
    rig.write_config(
        resync="10m",  # no resync within the test: only a notification explains an end
        claim_interval="1s",
        changes={
            "notifications": {
                "address": "127.0.0.1:0",
                "path": PATH,
                "secret": {"file": str(secret_file)},
            }
        },
    )
    init = await rig.cli("init", "--config", str(rig.config))
    assert init.code == 0, init.stderr
    desired, texts = always_on(rig, prefix, 1)
    await write_recordings(rig, "always.yaml", desired, texts)
    return desired


async def test_a_notice_posted_to_the_non_owner_is_acted_on_by_the_owner(rig: Rig) -> None:
    desired = await prepared(rig, 19, "ncs")
    replicas = [await rig.start_daemon(within=60), await rig.start_daemon(within=60)]
    await split(rig, replicas, HANG)
    await wait_live(rig, desired, HANG)
    assert not failed_tasks(replicas), failed_tasks(replicas)
    urls = {d.number: await d.notifications_url(within=HANG) for d in replicas}
    assert len(set(urls.values())) == 2, urls  # each its own port
    owner_of = {app_id: d for d in replicas for app_id in owned(d)}
    changes = [ownership_changes(d) for d in replicas]

    acted_s: list[float] = []
    last: tuple[bytes, Daemon, Daemon, Desired, str] | None = None
    posted: list[tuple[Daemon, str]] = []  # (the replica posted to, the noticeId)
    for n in range(ROUNDS):
        d = desired[n % len(desired)]
        owner = owner_of[d.app_id]
        (other,) = [r for r in replicas if r is not owner]
        session, session_id = await recording(rig, d)
        sid = str(session["sid"])

        # A real exit at the emulator, which tells nobody (its notifications are off).
        await rig.control("POST", f"/sessions/{sid}/abort")
        aborted = time.time()
        notice_id = f"replicas-exit-{n}-{sid}"
        body = notification(
            notice_id,
            ncs.EventType.SESSION_EXIT,
            session,
            msgName="session_exit",
            exitStatus=1,
        )
        answer, answered = await post(urls[other.number], body)
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"ok": True, "noticeId": notice_id}
        posted.append((other, notice_id))

        exited = await owner.wait_event("session.exited", within=HANG, session_id=session_id)
        acted_s.append(round(event_time(exited) - answered, 3))
        acted = await owner.wait_event("notice.acted", within=HANG, notice_id=notice_id)
        assert len(owner.named("notice.acted", notice_id=notice_id)) == 1
        assert acted["outcome"] == "ended the session", acted
        assert acted["session_id"] == session_id and acted["manifest"] == d.name
        assert "session_exit" in str(exited.get("detail")), exited
        # The receiving replica kept it (the owner acted on it) and acted on none itself.
        assert not other.named("notice.acted", notice_id=notice_id)

        # Not the resync: no query reached the aborted session before it was ended.
        queried = [
            r
            for r in await rig.requests("query")
            if f"/sid/{sid}/" in str(r.get("path")) and aborted <= r["time"] <= event_time(exited)
        ]
        assert not queried, queried
        rows, _ = await rig.store_view()
        ended = _row(rows, sid)
        assert ended is not None and ended.phase is Phase.ENDED, ended
        assert "session_exit" in (ended.end_reason or ""), ended.end_reason

        # The owner starts the recording anew (a new session at the emulator).
        await recording(rig, d, not_sid=sid)
        starts = {
            r.number: [
                e
                for e in r.named("api.call", endpoint="start", app_id=d.app_id)
                if event_time(e) >= answered
            ]
            for r in replicas
        }
        assert starts[owner.number] and not starts[other.number], starts
        last = (body, owner, other, d, notice_id)

    print(f"\nnotifications across replicas: acted_s={acted_s} max={max(acted_s):.3f}")
    assert max(acted_s) <= ACT_BOUND, acted_s

    # A replay (NCS resends; any replica may get it) changes nothing.
    assert last is not None
    body, owner, other, d, notice_id = last
    session, _ = await recording(rig, d)
    replayed = time.time()
    for target in (owner, other):
        answer, _ = await post(urls[target.number], body)
        assert answer.status_code == 200, answer.text
        await target.wait_event("notice.duplicate", within=HANG, notice_id=notice_id)
    # A notice to act on that starts and stops nothing (a file list) wakes the owner:
    # its pass acts on every notice kept for its App IDs, so had the replay been kept,
    # it would be acted on in that pass.
    probe_id = f"replicas-probe-{session['sid']}"
    probe = notification(
        probe_id,
        ncs.EventType.UPLOADED,
        session,
        msgName="uploaded",
        status=0,
        fileList=[{"fileName": "probe.m3u8"}],
    )
    sent = time.time()
    answer, _ = await post(urls[other.number], probe)
    assert answer.status_code == 200, answer.text
    probed = await owner.wait_event("notice.acted", within=HANG, notice_id=probe_id)
    assert probed["outcome"] == "file list stored", probed
    woken = await owner.pass_after(sent, trigger="notice", within=HANG)
    assert woken["actions"] == 0, woken
    assert len([e for r in replicas for e in r.named("notice.acted", notice_id=notice_id)]) == 1
    still = [s for s in await rig.sessions() if s["sid"] == session["sid"]]
    assert still and still[0]["live"], still
    mutating_since = [
        r for r in await rig.requests() if r["time"] >= replayed and r["endpoint"] in MUTATING
    ]
    assert not mutating_since, mutating_since

    # No replica acted on a notice of an App ID it does not own; no task died; the
    # split held throughout; the secret reached no log or output.
    assert not [i for r, i in posted if r.named("notice.acted", notice_id=i)], posted
    assert not failed_tasks(replicas), failed_tasks(replicas)
    assert [ownership_changes(r) for r in replicas] == changes
    assert {a: owner_of[a] for a in owned(replicas[0]) | owned(replicas[1])} == owner_of
    for name, text in rig.texts():
        assert SECRET not in text, name
    for r in replicas:
        assert await rig.stop_daemon(r) == 0


async def test_a_replica_without_a_receiver_is_woken_by_one_that_has_it(rig: Rig) -> None:
    desired = await prepared(rig, 23, "quiet")
    receiving = await rig.start_daemon(within=60)
    # Behind the load balancer only the first: the second's receiver is off.
    quiet = await rig.start_daemon(within=60, env={"ORCHESTRATOR_NOTIFICATIONS__ADDRESS": "null"})
    await split(rig, [receiving, quiet], HANG)
    await wait_live(rig, desired, HANG)
    url = await receiving.notifications_url(within=HANG)
    (d,) = [x for x in desired if x.app_id in owned(quiet)]
    session, session_id = await recording(rig, d)
    await rig.control("POST", f"/sessions/{session['sid']}/abort")
    notice_id = f"quiet-exit-{session['sid']}"
    body = notification(notice_id, ncs.EventType.SESSION_EXIT, session, exitStatus=1)
    answer, answered = await post(url, body)
    assert answer.status_code == 200, answer.text
    exited = await quiet.wait_event("session.exited", within=HANG, session_id=session_id)
    acted = await quiet.wait_event("notice.acted", within=HANG, notice_id=notice_id)
    assert acted["outcome"] == "ended the session", acted
    assert event_time(exited) - answered <= ACT_BOUND, (event_time(exited), answered)
    assert not receiving.named("notice.acted", notice_id=notice_id)
    assert not failed_tasks([receiving, quiet]), failed_tasks([receiving, quiet])
    for r in (receiving, quiet):
        assert await rig.stop_daemon(r) == 0
