"""The daemon's first load runs unwatched, and misses no edit; in-process against the
emulator, with a real inotify watch and a real SQLite store.

Covers: the watch is set up only once the first load has read every file (inotify
reports reads too, and each read would wake the watch's thread); an edit made while
that load ran is then caught by a second look at every file, made once the watch is
set up (beside the first pass), and acted on by a second pass before the daemon is
ready, so that from READY on the watch sees every edit; with nothing edited, that look
logs nothing and runs no pass (one `manifests.reloaded` at start, as before). At the
level of the reload: a quiet reload that finds nothing changed gives `UNCHANGED` and
logs nothing; one that finds a change is an ordinary reload.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from orchestrator.daemon.reload import UNCHANGED, Reloader
from orchestrator.daemon.watch import ManifestWatcher
from orchestrator.runtime import Runtime
from tests.integration.conftest import EmulatorHandle
from tests.integration.daemon.conftest import (
    daemon_runtime,
    manifest,
    ready,
    started_reloader,
)


@pytest.fixture
async def runtime(
    emulator: EmulatorHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Runtime]:
    lobby = {"lobby.yaml": manifest("lobby", "lobby")}
    manifests = {"watchInterval": "200ms"}
    async with daemon_runtime(emulator, tmp_path, monkeypatch, lobby, manifests=manifests) as rt:
        yield rt


def _reloads(logs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in logs if e["event"] == "manifests.reloaded"]


class Order:
    """The order of the daemon's loads (`load`, once each is done) and of the watch's
    set-up (`watch`, as it begins); `edit` runs once the first load is done."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, edit: Callable[[], None]) -> None:
        self.seen: list[str] = []
        reload, start_watch = Reloader.reload, ManifestWatcher.start

        async def reload_then_edit(
            reloader: Reloader, trigger: str, *args: Any, **kwargs: Any
        ) -> Any:
            delta = await reload(reloader, trigger, *args, **kwargs)
            self.seen.append("load")
            if self.seen == ["load"]:
                edit()
            return delta

        async def watch(watcher: ManifestWatcher) -> None:
            self.seen.append("watch")
            await start_watch(watcher)

        monkeypatch.setattr(Reloader, "reload", reload_then_edit)
        monkeypatch.setattr(ManifestWatcher, "start", watch)


async def test_an_edit_made_during_the_first_load_is_acted_on_before_ready(
    runtime: Runtime, emulator: EmulatorHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = runtime.config.manifests.dir

    def edit() -> None:  # as the first load ends: no watch yet to see it
        (directory / "hall.yaml").write_text(manifest("hall", "hall"), encoding="utf-8")

    order = Order(monkeypatch, edit)

    def started() -> set[str]:
        return {r["body"]["cname"] for r in emulator.emu.requests("start")}

    with capture_logs() as logs:
        async with ready(runtime):
            assert started() == {"lobby", "hall"}  # both started by the time it is ready
    assert order.seen[:3] == ["load", "watch", "load"]  # no watch while the first load read
    assert [e["trigger"] for e in _reloads(logs)] == ["start", "start"]
    assert _reloads(logs)[1]["added"] == ["hall"]


async def test_with_nothing_edited_the_second_look_logs_nothing(
    runtime: Runtime, emulator: EmulatorHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    order = Order(monkeypatch, lambda: None)
    with capture_logs() as logs:
        async with ready(runtime) as daemon:
            assert order.seen == ["load", "watch", "load"]  # the look was made before ready
            assert daemon._watcher is not None and daemon._watcher.watching
    assert [e["trigger"] for e in _reloads(logs)] == ["start"]
    passes = [e["trigger"] for e in logs if e["event"] == "reconcile.pass"]
    assert passes == ["start"]  # the look that found nothing asked for no pass
    assert [e["event"] for e in logs].count("watch.started") == 1


async def test_a_quiet_reload_gives_unchanged_only_when_nothing_changed(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = runtime.config.manifests.dir
    reloader = await started_reloader(runtime, monkeypatch)
    with capture_logs() as logs:
        first = await reloader.reload("start")
        assert first is not None and first is not UNCHANGED and first.added == ("lobby",)
        assert await reloader.reload("start", quiet=True) is UNCHANGED
        assert len(_reloads(logs)) == 1
        (directory / "lobby.yaml").write_text(manifest("lobby", "moved"), encoding="utf-8")
        changed = await reloader.reload("start", quiet=True)
    assert changed is not None and changed is not UNCHANGED and changed.changed == ("lobby",)
    assert reloader.by_name["lobby"].channel == "moved"
    assert len(_reloads(logs)) == 2
