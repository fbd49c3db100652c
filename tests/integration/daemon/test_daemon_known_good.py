"""When the daemon stores last known good versions; in-process against the emulator,
with a real SQLite store.

Covers: a pass with nothing to do does not wait for them (on a first start, a
document for each manifest): the daemon is READY before they are stored, which
begins only then (not beside the passes that lead to READY); a pass that acts
stores the versions first (none of its calls before they are in the store); a
reload that finds a file broken reads its stand-in from the store only once the
versions still waiting are in it (a version loaded a moment before stands in,
rather than "no longer validates"), and so does a FIFO put in a file's place or a
file of empty documents only; a manifest moved into a file that does not load (or
that names an unknown app profile) stands in its version, read from the store, and
is removed once every file loads; at shutdown, what waits is stored.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from orchestrator.runtime import Runtime
from orchestrator.state import KnownGood
from tests.harness import wait_until
from tests.integration.conftest import EmulatorHandle
from tests.integration.daemon.conftest import (
    daemon_runtime,
    manifest,
    ready,
    serving,
    started_reloader,
)


def later() -> str:
    """A window an hour away: nothing to do now."""
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)
    end = start + timedelta(minutes=30)
    return f"{{windows: [{{start: '{start.isoformat()}', end: '{end.isoformat()}'}}]}}"


class Gate:
    """Holds the store's `remember_known_good` until opened; counts what it stored, and
    notes what `probe` said when the first write came."""

    def __init__(
        self,
        runtime: Runtime,
        monkeypatch: pytest.MonkeyPatch,
        probe: Callable[[], object] = lambda: None,
    ) -> None:
        self.open = asyncio.Event()
        self.entered = asyncio.Event()
        self.stored: list[str] = []
        self.probed: list[object] = []
        store = runtime.store
        real = store.remember_known_good

        async def held(entries: Sequence[KnownGood], forget: Sequence[str] = ()) -> None:
            self.probed.append(probe())
            self.entered.set()
            await self.open.wait()
            await real(entries, forget)
            self.stored.extend(e.name for e in entries)

        monkeypatch.setattr(store, "remember_known_good", held)


@pytest.fixture
async def idle(
    emulator: EmulatorHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Runtime]:
    files = {f"m{i}.yaml": manifest(f"m{i}", f"room-{i}", later()) for i in range(3)}
    async with daemon_runtime(emulator, tmp_path, monkeypatch, files) as rt:
        yield rt


async def test_ready_does_not_wait_for_the_versions_of_a_pass_with_nothing_to_do(
    idle: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with serving(idle) as (daemon, running):
        gate = Gate(idle, monkeypatch, probe=lambda: daemon.readiness().ready)
        await wait_until(
            lambda: daemon.readiness().ready or running.done(), within=30, what="READY"
        )
        assert not running.done()
        await wait_until(gate.entered.is_set, within=30, what="the versions being stored")
        assert gate.probed == [True]  # not before READY, nor beside what led there
        assert not gate.stored
        assert await idle.store.known_good() == {}
        gate.open.set()
        await wait_until(lambda: len(gate.stored) == 3, within=30, what="the versions stored")
        stored = await idle.store.known_good()
    assert sorted(stored) == ["m0", "m1", "m2"]
    assert stored["m1"].document["channel"] == "room-1"  # dumped when stored


async def test_a_pass_that_acts_stores_the_versions_before_its_calls(
    emulator: EmulatorHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = {"lobby.yaml": manifest("lobby", "lobby")}
    async with daemon_runtime(emulator, tmp_path, monkeypatch, files) as rt:
        gate = Gate(rt, monkeypatch)
        gate.open.set()
        calls_when_stored: list[int] = []
        real = rt.store.remember_known_good

        async def stored_then_count(
            entries: Sequence[KnownGood], forget: Sequence[str] = ()
        ) -> None:
            await real(entries, forget)
            calls_when_stored.append(len(emulator.emu.requests()))

        monkeypatch.setattr(rt.store, "remember_known_good", stored_then_count)
        async with ready(rt):
            assert {r["body"]["cname"] for r in emulator.emu.requests("start")} == {"lobby"}
    assert calls_when_stored[0] == 0  # stored before the acquire


async def test_a_file_broken_before_its_version_was_stored_stands_in_that_version(
    idle: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = idle.config.manifests.dir
    reloader = await started_reloader(idle, monkeypatch)
    assert await reloader.reload("start") is not None
    assert reloader.unremembered  # no pass stored them yet
    (directory / "m1.yaml").write_text("name: m1\nmode: [mix\n", encoding="utf-8")
    with capture_logs() as logs:
        assert await reloader.reload("watch", {str(directory / "m1.yaml")}) is not None
    assert "m1" in reloader.by_name  # its last known good version stands in
    problems = [str(e["problem"]) for e in logs if e["event"] == "manifests.problem"]
    assert any("follows its last known good version" in p for p in problems), problems
    assert sorted(await idle.store.known_good()) == ["m0", "m1", "m2"]  # stored first


async def test_a_manifest_moved_into_a_file_that_does_not_load_is_not_removed(
    idle: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The daemon's index holds no documents: a manifest that no file gives now, while
    a file that does not load (or names an unknown app profile) may hold it, has its
    version read from the store and stands in; it is removed once every file loads."""
    directory = idle.config.manifests.dir
    reloader = await started_reloader(idle, monkeypatch)
    assert await reloader.reload("start") is not None
    await reloader.remember()
    # m1's file renamed and broken at once (the probe's `mv` of a broken file).
    (directory / "m1.yaml").unlink()
    (directory / "m1-renamed.yaml").write_text("name: m1\nmode: [mix\n", encoding="utf-8")
    with capture_logs() as logs:
        delta = await reloader.reload("watch")
    assert delta is not None and delta.removed == ()
    assert reloader.by_name["m1"].source_file == str(directory / "m1.yaml")
    problems = [str(e["problem"]) for e in logs if e["event"] == "manifests.problem"]
    renamed = directory / "m1-renamed.yaml"
    said = f"no longer gives 'm1', and {renamed}, which does not load, may hold it now"
    assert any(said in p for p in problems), problems
    (reloaded,) = [e for e in logs if e["event"] == "manifests.reloaded"]
    assert reloaded["failing"] == [str(directory / "m1-renamed.yaml")]  # not the gone path
    assert sorted(await idle.store.known_good()) == ["m0", "m1", "m2"]  # none forgotten
    # Fixed: m1 comes from its new file.
    (directory / "m1-renamed.yaml").write_text(manifest("m1", "room-1", later()))
    delta = await reloader.reload("watch")
    assert delta is not None and delta.removed == ()
    assert reloader.by_name["m1"].source_file == str(directory / "m1-renamed.yaml")
    # m2 moved into a file naming an unknown app profile: no file fails to load, but
    # that one names it (its version is read from the store: nothing else asks for it).
    (directory / "m2.yaml").unlink()
    (directory / "m2x.yaml").write_text(manifest("m2", "room-2", later()).replace("main", "mian"))
    delta = await reloader.reload("watch")
    assert delta is not None and delta.removed == delta.added == ()
    assert reloader.by_name["m2"].source_file == str(directory / "m2.yaml")
    # m0 removed meanwhile: nothing that does not load names it, so it is removed.
    (directory / "m0.yaml").unlink()
    delta = await reloader.reload("watch")
    assert delta is not None and delta.removed == ("m0",)
    (directory / "m2x.yaml").unlink()
    delta = await reloader.reload("watch")
    assert delta is not None and delta.removed == ("m2",)
    await reloader.remember()
    assert sorted(await idle.store.known_good()) == ["m1"]


async def test_a_removal_while_a_file_does_not_load_waits_for_it(
    idle: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reload that removes a manifest while a file that does not load may hold it
    (one broken before: the files failing are the same) is built in full, not patched:
    the manifest stands in until that file loads."""
    directory = idle.config.manifests.dir
    reloader = await started_reloader(idle, monkeypatch)
    assert await reloader.reload("start") is not None
    await reloader.remember()
    (directory / "draft.yaml").write_text("name: draft\nmode: [mix\n", encoding="utf-8")
    assert await reloader.reload("watch") is not None
    (directory / "m0.yaml").unlink()
    delta = await reloader.reload("watch")
    assert delta is not None and delta.removed == () and "m0" in reloader.by_name
    (directory / "draft.yaml").unlink()
    delta = await reloader.reload("watch")
    assert delta is not None and delta.removed == ("m0",)


def _put_a_fifo(path: Path) -> None:
    path.unlink()
    os.mkfifo(path)  # never opened: a read would block forever


def _comment_out(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    path.write_text("---\n" + "".join(f"# {line}\n" for line in text.splitlines()), "utf-8")


@pytest.mark.parametrize(
    "replace", [_put_a_fifo, _comment_out], ids=["a FIFO", "commented out after '---'"]
)
async def test_what_cannot_hold_a_manifest_now_stands_in_its_last_version(
    idle: Runtime, monkeypatch: pytest.MonkeyPatch, replace: Callable[[Path], None]
) -> None:
    """Defect: a FIFO put in a manifest's place, or a file of empty documents only, was
    a warning and the manifest taken as removed (`manifests.reloaded removed=...`), so
    its recording was stopped."""
    directory = idle.config.manifests.dir
    reloader = await started_reloader(idle, monkeypatch)
    assert await reloader.reload("start") is not None
    await reloader.remember()
    replace(directory / "m1.yaml")
    with capture_logs() as logs:
        delta = await reloader.reload("watch", {str(directory / "m1.yaml")})
    assert delta is not None and not delta.removed
    assert "m1" in reloader.by_name  # its last known good version stands in
    problems = [str(e["problem"]) for e in logs if e["event"] == "manifests.problem"]
    assert any("'m1' follows its last known good version" in p for p in problems), problems


async def test_what_waits_is_stored_at_shutdown(
    idle: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = Gate(idle, monkeypatch)
    async with serving(idle) as (daemon, running):
        await wait_until(
            lambda: daemon.readiness().ready or running.done(), within=30, what="READY"
        )
        await wait_until(gate.entered.is_set, within=30, what="the versions being stored")
        daemon.shutdown("test over")
        gate.open.set()  # the drain lets the write finish
    assert sorted(await idle.store.known_good()) == ["m0", "m1", "m2"]
