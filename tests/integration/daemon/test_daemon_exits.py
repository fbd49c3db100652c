"""A recording that a resync finds ended is restarted at once; in-process against the
emulator, with a real SQLite store.

Covers: the resync's queries are spread over most of `resyncInterval` (here 120 s:
the second of two sessions is queried about 48 s after the first); the first one,
aborted at Agora, is restarted by a pass that runs as soon as its query's answer is
recorded, while the round still waits to query the second (it did not wait for the
round's end, which a 60 s resync made up to 48 s later). Once a shutdown begins the
daemon is no longer ready (it said ready through the whole drain).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.state import SessionRecord
from tests.harness import wait_until
from tests.integration.conftest import EmulatorHandle
from tests.integration.daemon.conftest import daemon_runtime, manifest, ready


async def test_a_session_a_resync_finds_ended_is_restarted_before_the_round_ends(
    emulator: EmulatorHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = {f"{name}.yaml": manifest(name, name) for name in ("first", "second")}
    reconcile = {"resyncInterval": "120s", "restartBackoff": {"initial": "1s", "max": "2s"}}
    emu = emulator.emu
    runtime = daemon_runtime(emulator, tmp_path, monkeypatch, files, reconcile=reconcile)
    async with runtime as rt, ready(rt) as daemon:

        async def both_started() -> list[SessionRecord] | None:
            live = sorted(await rt.store.live_sessions(), key=lambda s: s.id)
            return live if len(live) == 2 and all(s.sid for s in live) else None

        # In the order the round queries them.
        first, second = await wait_until(both_started, within=30, what="both started")
        assert first.sid is not None and second.sid is not None
        assert emu.abort(first.sid)
        queried_before = len(emu.requests("query"))
        daemon._passes.request_refresh("resync")

        def restarted() -> bool:
            return any(r["body"]["cname"] == first.channel for r in emu.requests("start")[2:])

        await wait_until(restarted, within=30, what="the aborted recording restarted")
        queries = emu.requests("query")[queried_before:]
        assert [q["path"] for q in queries if second.sid in q["path"]] == []
        assert any(first.sid in q["path"] for q in queries)


async def test_a_shutdown_is_not_ready_from_its_first_moment(
    emulator: EmulatorHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = {"lobby.yaml": manifest("lobby", "lobby")}
    async with daemon_runtime(emulator, tmp_path, monkeypatch, files) as rt, ready(rt) as daemon:
        assert daemon.readiness().ready
        daemon.shutdown("SIGTERM")
        report = daemon.readiness()
        assert (report.ready, report.detail) == (
            False,
            "shutting down: finishing what is in flight",
        )
        assert daemon.status_document()["ready"] is False
