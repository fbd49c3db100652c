"""The error policy of DESIGN.md section 4, code by code, against the emulator.

Each row injects one answer from the reference's error table at one endpoint
(the emulator's `answer` fault answers without acting, as Agora does for an
error) and checks what the pass does, what the store records, and what the next
pass does: permanent errors mark the manifest failed and are never repeated;
retryable ones are retried with the same resource ID and sid; 433 acquires again;
53 and 7 are conflicts held by backoff; 49, 404 and 435 on stop end the session;
404 on query or update ends it and the next pass starts a new one; a stop or
start that outlasts the client's retries is resumed by the next pass.

Only Agora's own answer decides (the 404 rule): a proxy's `404 <html>nginx</html>`
or an empty 404 on stop, query, update or updateLayout (the `answer` fault with a raw
`body`) is a failed call, retried, after which the session is still live in the
store and still recording in the emulator; a proxy's 400 page on acquire or start
holds nothing and ends nothing the way Agora's code would.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta

import pytest

from orchestrator.reconcile.plan import PlanPolicy
from orchestrator.state import EndKind, Intent, Phase
from tests.integration.conftest import FAST_RETRY
from tests.integration.reconcile.conftest import World, manifest

LAYOUT = "layout: {type: adaptive, background: '#000000'}\n"
ATTEMPTS = FAST_RETRY.max_attempts
NGINX_404 = "<html><head><title>404 Not Found</title></head><center>nginx</center></html>"
JSON = "application/json"
NGINX_400 = "<html><head><title>400 Bad Request</title></head><center>nginx</center></html>"


@dataclass(frozen=True)
class Row:
    name: str
    endpoint: str
    status: int
    code: int | None
    count: int = 1
    ok: bool = False  # did the action reach its goal in this pass
    phase: Phase | None = None  # phase of alpha's newest session after the pass
    failed: bool = False  # is the manifest held as failed
    recording: int = 1  # emulator sessions recording alpha's channel after the pass
    next_pass: str = "nothing"  # what the following pass does: an action kind, a note kind
    body: str | None = None  # a raw answer that is not Agora's (a proxy's), instead of a code


# Faults at the first pass: acquire and start.
START_ROWS = [
    Row(
        "acquire 2 invalid parameter",
        "acquire",
        400,
        2,
        phase=Phase.FAILED,
        failed=True,
        recording=0,
        next_pass="failed",
    ),
    Row(
        # An app-level failure belongs to the app: retried with backoff (never held
        # for the manifest), so fixed credentials take effect without a spec change.
        "acquire 401 bad credentials is the app's, retried with backoff",
        "acquire",
        401,
        None,
        phase=Phase.FAILED,
        recording=0,
        next_pass="backoff",
    ),
    Row(
        "acquire 400 without code",
        "acquire",
        400,
        None,
        phase=Phase.FAILED,
        failed=True,
        recording=0,
        next_pass="failed",
    ),
    Row(
        "acquire 62 recording not enabled is the app's, retried with backoff",
        "acquire",
        400,
        62,
        phase=Phase.FAILED,
        recording=0,
        next_pass="backoff",
    ),
    Row("acquire 429 is retried", "acquire", 429, None, ok=True, phase=Phase.RUNNING),
    Row("acquire 503 is retried", "acquire", 503, None, count=2, ok=True, phase=Phase.RUNNING),
    Row(
        "start 2 invalid parameter",
        "start",
        400,
        2,
        phase=Phase.FAILED,
        failed=True,
        recording=0,
        next_pass="failed",
    ),
    Row(
        "start 432 mismatch",
        "start",
        400,
        432,
        phase=Phase.FAILED,
        failed=True,
        recording=0,
        next_pass="failed",
    ),
    Row(
        "start 1001 undecodable resource",
        "start",
        400,
        1001,
        phase=Phase.FAILED,
        failed=True,
        recording=0,
        next_pass="failed",
    ),
    Row(
        "start 1003 id mismatch",
        "start",
        400,
        1003,
        phase=Phase.FAILED,
        failed=True,
        recording=0,
        next_pass="failed",
    ),
    Row(
        "start 1013 bad channel name",
        "start",
        400,
        1013,
        phase=Phase.FAILED,
        failed=True,
        recording=0,
        next_pass="failed",
    ),
    Row(
        "start 65 is retried with the same resource",
        "start",
        400,
        65,
        count=2,
        ok=True,
        phase=Phase.RUNNING,
    ),
    Row("start 433 acquires again", "start", 400, 433, ok=True, phase=Phase.RUNNING),
    Row(
        "start 53 is a conflict held by backoff",
        "start",
        400,
        53,
        phase=Phase.FAILED,
        recording=0,
        next_pass="backoff",
    ),
    Row(
        "start 7 without an earlier attempt",
        "start",
        400,
        7,
        phase=Phase.FAILED,
        recording=0,
        next_pass="backoff",
    ),
    Row(
        "start 500 past every retry is resumed",
        "start",
        500,
        None,
        count=ATTEMPTS,
        phase=Phase.STARTING,
        recording=0,
        next_pass="resume",
    ),
    Row(
        # Not Agora's: no manifest is held for a proxy's page, the app backs off.
        "acquire: a proxy's 400 page past every retry holds nothing",
        "acquire",
        400,
        None,
        count=ATTEMPTS,
        phase=Phase.FAILED,
        recording=0,
        next_pass="backoff",
        body=NGINX_400,
    ),
    Row(
        "start: a proxy's 404 past every retry is resumed",
        "start",
        404,
        None,
        count=ATTEMPTS,
        phase=Phase.STARTING,
        recording=0,
        next_pass="resume",
        body=NGINX_404,
    ),
]


def _newest(sessions: list[object]) -> object:
    return max(sessions, key=lambda s: s.id)  # type: ignore[attr-defined]


async def _alpha_sessions(world: World) -> list[object]:
    return [*await world.store.live_sessions(), *await world.store.history()]


def _next_kinds(result: object) -> list[str]:
    plan = result.plan  # type: ignore[attr-defined]
    return [a.kind.value for a in plan.actions] + [n.kind.value for n in plan.notes]


@pytest.mark.parametrize("row", START_ROWS, ids=lambda r: r.name)
async def test_start_errors(world: World, row: Row) -> None:
    world.policy = PlanPolicy(restart_backoff_initial=timedelta(hours=1))
    world.write("a.yaml", manifest("alpha", "room-a", 101))
    world.emulator.emu.fail_next(
        row.endpoint, "answer", row.count, status=row.status, code=row.code, body=row.body
    )
    result = await world.apply()
    (outcome,) = result.results
    assert outcome.ok is row.ok, outcome.message
    newest = _newest(await _alpha_sessions(world))
    assert newest.phase is row.phase  # type: ignore[attr-defined]
    failed = (await world.store.manifest_states()).get("alpha")
    assert (failed is not None and failed.failed_spec_hash is not None) is row.failed
    assert len(world.recording()) == row.recording
    if row.code == 433:
        assert len(world.requests("acquire")) == 2
    if row.code == 65:
        assert len({r["path"] for r in world.requests("start")}) == 1  # one resource ID
    requests_before = len(world.requests())

    following = await world.apply()
    assert _next_kinds(following) == ([row.next_pass] if row.next_pass != "nothing" else [])
    if row.next_pass == "failed":
        # Permanent: nothing was sent again for it.
        assert [r["endpoint"] for r in world.requests()[requests_before:]] == []
    if row.next_pass == "resume":
        assert newest.intent is Intent.START  # type: ignore[attr-defined]
        assert following.results[0].ok
        assert len(world.recording()) == 1
        assert len(world.requests("acquire")) == 1  # the same resource ID was started


@dataclass(frozen=True)
class LiveRow:
    name: str
    change: str  # "layout", "subscription", "remove", "none"
    endpoint: str
    status: int
    code: int | None
    count: int = 1
    ok: bool = False
    phase: Phase = Phase.RUNNING
    failed: bool = False
    recording: int = 1
    next_pass: str = "nothing"
    same_pass: tuple[str, ...] = ()  # actions of the pass that met the error ("none" rows)
    body: str | None = None  # a raw answer that is not Agora's (a proxy's), instead of a code


LIVE_ROWS = [
    LiveRow(
        "updateLayout 1028 is permanent",
        "layout",
        "updateLayout",
        400,
        1028,
        failed=True,
        next_pass="failed",
    ),
    LiveRow(
        "update 2 is permanent", "subscription", "update", 400, 2, failed=True, next_pass="failed"
    ),
    LiveRow("update 65 is retried with the same sid", "subscription", "update", 400, 65, ok=True),
    # A 404 ends a session unconfirmed (it may be Agora's failover): the next pass
    # queries it again. Here the 404 was injected and the recording goes on, so it
    # answers, is taken back, and what was to be done is done.
    LiveRow(
        "update 404: unconfirmed end; it answers again, taken back and updated",
        "subscription",
        "update",
        404,
        404,
        phase=Phase.ENDED,
        next_pass="update",
    ),
    LiveRow("stop 49: already stopped", "remove", "stop", 400, 49, ok=True, phase=Phase.ENDED),
    LiveRow(
        "stop 404: unconfirmed end; it answers again, taken back and stopped",
        "remove",
        "stop",
        404,
        404,
        ok=True,
        phase=Phase.ENDED,
        next_pass="stop",
    ),
    LiveRow(
        "stop 435: stopped with no files",
        "remove",
        "stop",
        400,
        435,
        ok=True,
        phase=Phase.ENDED,
        recording=1,
    ),
    LiveRow(
        "stop 500 past every retry is resumed",
        "remove",
        "stop",
        500,
        None,
        count=ATTEMPTS,
        phase=Phase.STOPPING,
        next_pass="resume",
    ),
    LiveRow(
        # The pass that notices the end restarts it at once on the manifest's other
        # uid (no gap, should it have ended); here the emulator's recording never
        # ended (the 404 was injected), so for a moment two record, until the next
        # pass takes the first back, confirms the second records and stops the first
        # as the duplicate.
        "query 404: unconfirmed end, restarted in the same pass on the other uid",
        "none",
        "query",
        404,
        404,
        phase=Phase.ENDED,
        recording=2,
        next_pass="rollover",
        same_pass=("start",),
    ),
    LiveRow("query 500: nothing is concluded", "none", "query", 500, None, count=ATTEMPTS, ok=True),
    LiveRow(
        "updateLayout 404: unconfirmed end; it answers again, taken back and updated",
        "layout",
        "updateLayout",
        404,
        404,
        phase=Phase.ENDED,
        next_pass="updateLayout",
    ),
    # The 404 rule: a 404 that is not Agora's (no JSON body with code 404) is a failed
    # call, retried; once the retries are spent the session is still live.
    *(
        row
        for body, what in ((NGINX_404, "a proxy's 404 page"), ("", "an empty 404"))
        for row in (
            LiveRow(
                f"stop: {what} past every retry is resumed, never an end",
                "remove",
                "stop",
                404,
                None,
                count=ATTEMPTS,
                phase=Phase.STOPPING,
                next_pass="resume",
                body=body,
            ),
            LiveRow(
                f"query: {what} past every retry concludes nothing",
                "none",
                "query",
                404,
                None,
                count=ATTEMPTS,
                body=body,
            ),
            LiveRow(
                f"updateLayout: {what} past every retry is tried again",
                "layout",
                "updateLayout",
                404,
                None,
                count=ATTEMPTS,
                next_pass="updateLayout",
                body=body,
            ),
            LiveRow(
                f"update: {what} past every retry is tried again",
                "subscription",
                "update",
                404,
                None,
                count=ATTEMPTS,
                next_pass="update",
                body=body,
            ),
        )
    ),
]


@pytest.mark.parametrize("row", LIVE_ROWS, ids=lambda r: r.name)
async def test_live_session_errors(world: World, row: LiveRow) -> None:
    world.policy = PlanPolicy(restart_backoff_initial=timedelta(hours=1))
    subscribe = "  subscribe: {audio: [7]}\n"
    base = manifest("alpha", "room-a", 101, extra=LAYOUT).replace(
        "  maxIdleTime: 30\n", "  maxIdleTime: 30\n" + subscribe
    )
    world.write("a.yaml", base)
    await world.apply()
    if row.change == "layout":
        world.write("a.yaml", base.replace("type: adaptive", "type: floating"))
    elif row.change == "subscription":
        world.write("a.yaml", base.replace("[7]", "[7, 8]"))
    elif row.change == "remove":
        world.remove("a.yaml")
    world.emulator.emu.fail_next(
        row.endpoint, "answer", row.count, status=row.status, code=row.code, body=row.body
    )
    result = await world.apply()
    if row.body is not None:  # every attempt was made, and met the proxy
        assert [r["status"] for r in world.requests(row.endpoint)] == [row.status] * ATTEMPTS
    if row.change == "none":
        assert tuple(r.action.kind.value for r in result.results) == row.same_pass
    else:
        (outcome,) = result.results
        assert outcome.ok is row.ok, outcome.message
    first = min(await _alpha_sessions(world), key=lambda s: s.id)  # type: ignore[attr-defined]
    assert first.phase is row.phase  # type: ignore[attr-defined]
    failed = (await world.store.manifest_states()).get("alpha")
    assert (failed is not None and failed.failed_spec_hash is not None) is row.failed
    # The emulator never acted on the injected answer: the recording is still there.
    assert len(world.recording()) == row.recording
    if row.body is not None:  # still live in the store, its sid kept, and why it is said
        live = await world.store.live_sessions()
        assert first.id in {s.id for s in live}  # type: ignore[attr-defined]
        assert first.ended_at is None and first.end_kind is None  # type: ignore[attr-defined]
        assert first.sid == world.recording()[0]["sid"]  # type: ignore[attr-defined]
        if row.endpoint != "query":
            assert "not Agora's answer" in first.error  # type: ignore[attr-defined]
    following = await world.apply()
    kinds = _next_kinds(following)
    if row.next_pass == "resume":
        assert kinds == ["resume"] and following.results[0].ok
        assert world.recording() == []
    else:
        assert kinds == ([row.next_pass] if row.next_pass != "nothing" else [])
    if row.next_pass in ("rollover", "stop") and row.status == 404:
        # The session taken back after its 404: its duplicate (or itself, no longer
        # wanted) is stopped by the next pass, and nothing records twice after it.
        assert all(r.ok for r in following.results), following.results
        assert len(world.recording()) == (0 if row.change == "remove" else 1)
        assert len(await world.store.live_sessions()) == len(world.recording())


async def test_a_stop_answered_206_is_stopped_with_what_206_means(world: World) -> None:
    world.write("a.yaml", manifest("alpha", "room-a", 101))
    await world.apply()
    (live,) = await world.store.live_sessions()
    world.remove("a.yaml")
    body = {"resourceId": live.resource_id, "sid": live.sid, "serverResponse": {}}
    world.emulator.emu.fail_next(
        "stop", "answer", status=206, body=json.dumps(body), content_type=JSON
    )
    (outcome,) = (await world.apply()).results
    assert outcome.ok, outcome.message
    ended = await world.store.get_session(live.id)
    assert ended.phase is Phase.ENDED and ended.end_kind is EndKind.STOPPED
    assert ended.end_reason == (
        "stopped: manifest removed (HTTP 206: nobody sent streams, or some files were not uploaded)"
    )
    # A body that is not a stop's answer names the status it came with.
    world.write("b.yaml", manifest("beta", "room-b", 102))
    await world.apply()
    world.remove("b.yaml")
    world.emulator.emu.fail_next(
        "stop", "answer", ATTEMPTS, status=206, body='{"code": 435}', content_type=JSON
    )
    (refused,) = (await world.apply()).results
    assert not refused.ok and "stop: HTTP 206, unexpected response" in refused.message
