"""Balancing hands over only an App ID with no window boundary due before the hand-over
is done: from the release to the next owner's claim and adoption nobody acts for it,
so a window opening then would start late (found by the replica test: a window opened
0.2 s after its App ID was released and started 1.8 s late).

Covers, in-process on the emulator: `Passes.next_boundary_of` is the first boundary of
the App ID's desired recordings; `Ownership._quiet` keeps an App ID whose next boundary
is beyond a claim interval and `HANDOVER_QUIET`, and leaves out one due sooner.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from orchestrator.daemon.ownership import HANDOVER_QUIET
from orchestrator.daemon.service import Daemon
from tests.harness import wait_until
from tests.integration.conftest import EmulatorHandle
from tests.integration.daemon.conftest import daemon_runtime, manifest, serving


def window_from(opens: datetime) -> str:
    """A schedule of one 30-minute window opening at `opens`."""
    start, end = opens.isoformat(), (opens + timedelta(minutes=30)).isoformat()
    return f"{{windows: [{{start: '{start}', end: '{end}'}}]}}"


@contextlib.asynccontextmanager
async def ready(
    emulator: EmulatorHandle, root: Path, monkeypatch: pytest.MonkeyPatch, opens: datetime
) -> AsyncIterator[Daemon]:
    files = {"soon.yaml": manifest("soon", "soon", schedule=window_from(opens))}
    async with (
        daemon_runtime(emulator, root, monkeypatch, files, replica={"claimInterval": "60s"}) as rt,
        serving(rt) as (daemon, running),
    ):
        await wait_until(
            lambda: daemon.readiness().ready or running.done(), within=30, what="READY"
        )
        assert not running.done(), running.result()
        yield daemon


# A claim interval of 60 s: a window opening in 45 s (after READY, which the test waits
# 30 s for at most) is due before a hand-over would be done; one in 60 + 2 + 60 s is not.
@pytest.mark.parametrize(("lead", "quiet"), [(45.0, False), (60 + HANDOVER_QUIET + 60, True)])
async def test_an_app_id_with_a_boundary_due_is_not_handed_over(
    emulator: EmulatorHandle,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    lead: float,
    quiet: bool,
) -> None:
    opens = (datetime.now(UTC) + timedelta(seconds=lead)).replace(microsecond=0)
    async with ready(emulator, tmp_path, monkeypatch, opens) as daemon:
        now = datetime.now(UTC)
        assert daemon._passes.next_boundary_of(emulator.app_id, now) == opens
        assert daemon._passes.next_boundary_of("another-app-id", now) is None
        assert daemon._ownership._quiet({emulator.app_id}) == ([emulator.app_id] if quiet else [])
