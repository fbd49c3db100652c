"""Wanted recordings that are not recording leave a trace, against the emulator.

Covers: a start whose secret cannot be resolved is recorded as a failed attempt
(nothing sent), waits a doubling backoff and shows in the overview with its last
error and next attempt; a session the API no longer recognises (1001 on query,
after the emulator forgot it) becomes unmanageable and, while it is wanted, a fresh
start replaces it; a stop answered 1001 is not resent forever.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from orchestrator.manifest.loader import load_manifests
from orchestrator.reconcile.overview import Overview, Reason, overview
from orchestrator.reconcile.plan import PlanPolicy, plan
from orchestrator.reconcile.reconciler import desired_recordings, observe
from orchestrator.state import EndKind, Phase
from tests.integration.reconcile.conftest import SECRETS, World, manifest

BACKOFF = PlanPolicy(restart_backoff_initial=timedelta(seconds=10))


async def test_an_unresolvable_secret_is_a_failed_start_with_backoff(world: World) -> None:
    world.policy = BACKOFF
    world.write("a.yaml", manifest("alpha", "room-a", 101).replace("AGORA_TOKEN", "NO_SUCH_VAR"))
    t0 = datetime.now(UTC)

    first = await world.apply(t0)
    assert [r.ok for r in first.results] == [False]
    assert world.requests("acquire") == []  # nothing was sent
    failed = (await world.store.history(5))[0]
    assert failed.phase is Phase.FAILED and failed.end_kind is EndKind.FAILED
    assert "NO_SUCH_VAR" in (failed.end_reason or "")
    assert not any(value in (failed.end_reason or "") for value in SECRETS.values())

    # One second later the next attempt waits its backoff; the overview says why.
    waiting = await world.apply(t0 + timedelta(seconds=1))
    assert waiting.results == ()
    view = await _look(world, t0 + timedelta(seconds=1))
    (status,) = view.not_recording
    assert status.reason is Reason.FAILING
    assert status.last_error == failed.end_reason
    assert failed.ended_at is not None
    assert status.next_attempt == failed.ended_at + timedelta(seconds=10)

    # Once due it is tried again (and fails again): the wait doubles.
    again = await world.apply(t0 + timedelta(seconds=15))
    assert [r.ok for r in again.results] == [False]
    second = (await world.store.history(5))[0]
    assert second.id != failed.id and second.restart_count == 1
    view = await _look(world, t0 + timedelta(seconds=16))
    assert second.ended_at is not None
    assert view.not_recording[0].next_attempt == second.ended_at + timedelta(seconds=20)


async def test_a_session_the_api_forgot_is_unmanageable_and_replaced(world: World) -> None:
    world.write("a.yaml", manifest("alpha", "room-a", 101))
    await world.apply()
    (first,) = await world.store.live_sessions()
    world.emulator.emu.state.resources.clear()  # the server no longer knows the resource ID
    world.emulator.emu.state.sessions.clear()

    result = await world.apply()
    assert [r.action.kind.value for r in result.results] == ["start"]
    assert all(r.ok for r in result.results)
    replaced = await world.store.get_session(first.id)
    assert replaced.phase is Phase.ENDED
    assert "superseded" in (replaced.end_reason or "")
    (live,) = await world.store.live_sessions()
    assert live.phase is Phase.RUNNING and live.id != first.id
    assert len(world.recording()) == 1


async def test_a_forgotten_session_out_of_its_window_stays_listed(world: World) -> None:
    now = datetime.now(UTC)
    window = (
        f"{{windows: [{{start: '{(now - timedelta(minutes=5)).isoformat()}', "
        f"end: '{(now + timedelta(minutes=5)).isoformat()}'}}]}}"
    )
    world.write("a.yaml", manifest("alpha", "room-a", 101, schedule=window))
    await world.apply(now)
    world.emulator.emu.fail_next("query", "answer", status=400, code=1001)
    await world.apply(now + timedelta(seconds=1))
    (stuck,) = await world.store.live_sessions()
    assert stuck.phase is Phase.UNMANAGEABLE
    assert "no longer recognises" in (stuck.error or "") and "1001" in (stuck.error or "")

    # After the window: no stop can reach it (nothing is sent), it is listed.
    before = len(world.requests("stop"))
    later = now + timedelta(minutes=6)
    result = await world.apply(later)
    assert result.results == () and len(world.requests("stop")) == before
    view = await _look(world, later)
    assert [s.id for s in view.unmanageable] == [stuck.id] and not view.ok


async def test_a_stop_answered_1001_is_not_resent(world: World) -> None:
    world.write("a.yaml", manifest("alpha", "room-a", 101))
    await world.apply()
    world.remove("a.yaml")
    world.emulator.emu.fail_next("stop", "answer", status=400, code=1001)
    first = await world.apply()
    assert [r.ok for r in first.results] == [False]
    (stuck,) = await world.store.live_sessions()
    assert stuck.phase is Phase.UNMANAGEABLE and stuck.intent is None
    stops = len(world.requests("stop"))
    await world.apply()
    assert len(world.requests("stop")) == stops


async def _look(world: World, now: datetime) -> Overview:
    loaded = load_manifests([world.manifests], now=now)
    app_ids = {name: p.app_id for name, p in world.runtime.config.apps.items()}
    desired = desired_recordings(
        loaded.manifests, app_ids, loaded.failed_files, await world.store.known_good()
    )
    actual = await observe(world.store, desired)
    return overview(
        desired.recordings, actual, plan(desired.recordings, actual, now, world.policy), now
    )
