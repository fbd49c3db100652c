"""ManifestWatcher on real directories: what triggers a reload, how often, and what never crashes.

Covers: a write is one callback naming the file; a burst of 50 files is exactly
one callback with all 50 (the debounce, 1 s here, is far longer than the burst);
editor scratch files, hidden files, `.git` and non-manifest files trigger nothing;
directories created and moved out of the tree trigger; polling mode; a change
made during a slow callback comes in the next one; `stop()` is prompt, also
while a callback hangs; a failing callback is logged and watching goes on; a
missing directory is logged (`watch.unavailable`) without a crash and is watched
once it appears, also after it was removed; a directory replaced behind a symlink
(a deploy switching releases) is reported and the new one watched; paths are spelled
as the configured path has them (through its symlink, with its `..`), which is how
the reload knows them; a file name that is not UTF-8 (watchfiles cannot name it and
drops its batch) loses no change: the directory itself is reported once watched
again, and the log names the cause, not a task group.

Waits are bounded (`asyncio.wait_for`, 10 s) and no assertion depends on a tight
timing: "nothing more" is checked over a quiet period longer than two debounces.
The tests that wait through real debounces and quiet periods (about 2 s or more
each) are marked `slow`.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from orchestrator.daemon.watch import ManifestWatcher

BOUND = 10.0  # seconds any expected callback may take on a loaded machine

Batches = asyncio.Queue[set[str]]


def real(path: Path) -> str:
    return os.path.realpath(path)


@asynccontextmanager
async def watching(
    root: Path,
    on_change: Callable[[set[str]], Awaitable[None]] | None = None,
    **options: float | bool,
) -> AsyncIterator[tuple[ManifestWatcher, Batches]]:
    batches: Batches = asyncio.Queue()

    async def record(paths: set[str]) -> None:
        await batches.put(paths)

    watcher = ManifestWatcher(root, on_change or record, **options)  # type: ignore[arg-type]
    await watcher.start()
    try:
        yield watcher, batches
    finally:
        await watcher.stop()


async def next_batch(batches: Batches) -> set[str]:
    return await asyncio.wait_for(batches.get(), BOUND)


async def quiet(batches: Batches, seconds: float) -> None:
    await asyncio.sleep(seconds)
    assert batches.empty(), batches.get_nowait()


@pytest.mark.slow
async def test_a_write_is_one_callback(tmp_path: Path) -> None:
    async with watching(tmp_path, debounce=0.3) as (watcher, batches):
        assert watcher.watching
        (tmp_path / "a.yaml").write_text("name: a\n", encoding="utf-8")
        assert await next_batch(batches) == {real(tmp_path / "a.yaml")}
        await quiet(batches, 1.0)


@pytest.mark.slow
async def test_a_burst_of_fifty_files_is_exactly_one_callback(tmp_path: Path) -> None:
    (tmp_path / "team").mkdir()
    async with watching(tmp_path, debounce=1.0) as (_, batches):
        written = []
        for i in range(50):  # a `git checkout`: many files within milliseconds
            path = tmp_path / "team" / f"m{i:02d}.yml"
            path.write_text(f"name: m{i}\n", encoding="utf-8")
            written.append(real(path))
        assert await next_batch(batches) == set(written)
        await quiet(batches, 2.5)


@pytest.mark.slow
async def test_scratch_and_hidden_files_trigger_nothing(tmp_path: Path) -> None:
    async with watching(tmp_path, debounce=0.3) as (_, batches):
        for name in (".a.yaml.swp", "4913", "a.yaml~", "#a.yaml#", ".#a.yaml", "README.md"):
            (tmp_path / name).write_text("x", encoding="utf-8")
        (tmp_path / "4913").unlink()  # vim's probe comes and goes
        (tmp_path / ".git").mkdir()
        (tmp_path / ".git" / "HEAD.yaml").write_text("x", encoding="utf-8")
        await quiet(batches, 1.0)
        (tmp_path / "real.yaml").write_text("name: real\n", encoding="utf-8")
        assert await next_batch(batches) == {real(tmp_path / "real.yaml")}


@pytest.mark.slow
async def test_directories_created_and_moved_out_trigger(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "old").mkdir(parents=True)
    (tree / "old" / "x.yaml").write_text("x", encoding="utf-8")
    async with watching(tree, debounce=0.3) as (_, batches):
        (tree / "new").mkdir()
        assert await next_batch(batches) == {real(tree / "new")}
        os.rename(tree / "old", tmp_path / "elsewhere")  # only the directory's own path
        assert await next_batch(batches) == {real(tree / "old")}


async def test_polling_sees_a_write(tmp_path: Path) -> None:
    async with watching(tmp_path, debounce=0.2, poll=True, poll_interval=0.1) as (w, batches):
        assert w.watching
        (tmp_path / "p.yaml").write_text("name: p\n", encoding="utf-8")
        assert real(tmp_path / "p.yaml") in await next_batch(batches)


@pytest.mark.slow
async def test_a_change_during_a_slow_callback_comes_in_the_next_one(tmp_path: Path) -> None:
    batches: Batches = asyncio.Queue()

    async def slow_reload(paths: set[str]) -> None:
        await batches.put(paths)
        if real(tmp_path / "a.yaml") in paths:
            (tmp_path / "b.yaml").write_text("b", encoding="utf-8")  # while reloading
            await asyncio.sleep(1.0)

    async with watching(tmp_path, slow_reload, debounce=0.3):
        (tmp_path / "a.yaml").write_text("a", encoding="utf-8")
        assert await next_batch(batches) == {real(tmp_path / "a.yaml")}
        assert await next_batch(batches) == {real(tmp_path / "b.yaml")}


async def test_start_does_not_wait_a_step_for_the_watch(tmp_path: Path) -> None:
    """watchfiles polls its stop signal once a step (the debounce); `start()` knows the
    watch is set up as soon as the watcher exists, not a step later (that a write
    made right after `start()` is seen: `test_a_write_is_one_callback`)."""
    (tmp_path / "sub").mkdir()
    watcher = ManifestWatcher(tmp_path, lambda _: asyncio.sleep(0), debounce=8.0)
    started = time.monotonic()
    await watcher.start()
    try:
        assert watcher.watching
        assert time.monotonic() - started < 7.0  # a step is 8 s; this takes milliseconds
    finally:
        await watcher.stop(grace=0.5)


@pytest.mark.slow
async def test_stop_is_prompt_even_while_a_callback_hangs(tmp_path: Path) -> None:
    watcher = ManifestWatcher(tmp_path, lambda _: asyncio.sleep(0), debounce=0.3)
    await watcher.start()
    started = time.monotonic()
    await watcher.stop()
    assert time.monotonic() - started < 3.0 and not watcher.watching

    entered = asyncio.Event()

    async def hang(_: set[str]) -> None:
        entered.set()
        await asyncio.sleep(3600)

    watcher = ManifestWatcher(tmp_path, hang, debounce=0.3)
    await watcher.start()
    (tmp_path / "h.yaml").write_text("x", encoding="utf-8")
    await asyncio.wait_for(entered.wait(), BOUND)
    started = time.monotonic()
    await watcher.stop(grace=0.5)
    assert time.monotonic() - started < 3.0


@pytest.mark.slow
async def test_a_failing_callback_is_logged_and_watching_goes_on(tmp_path: Path) -> None:
    calls: Batches = asyncio.Queue()
    count = 0

    async def flaky(paths: set[str]) -> None:
        nonlocal count
        count += 1
        await calls.put(paths)
        if count == 1:
            raise RuntimeError("reload exploded")

    with capture_logs() as logs:
        async with watching(tmp_path, flaky, debounce=0.3):
            (tmp_path / "a.yaml").write_text("a", encoding="utf-8")
            assert await next_batch(calls) == {real(tmp_path / "a.yaml")}
            (tmp_path / "b.yaml").write_text("b", encoding="utf-8")
            assert await next_batch(calls) == {real(tmp_path / "b.yaml")}
    failed = [e for e in logs if e["event"] == "watch.callback_failed"]
    assert len(failed) == 1 and failed[0]["log_level"] == "error" and failed[0]["exc_info"]


@pytest.mark.slow
async def test_a_missing_directory_is_logged_then_watched_when_it_appears(tmp_path: Path) -> None:
    missing = tmp_path / "recordings.d"
    with capture_logs() as logs:
        async with watching(missing, debounce=0.3, recheck=0.2) as (watcher, batches):
            assert not watcher.watching
            unavailable = [e for e in logs if e["event"] == "watch.unavailable"]
            assert len(unavailable) == 1
            assert unavailable[0]["log_level"] == "warning"
            assert unavailable[0]["reason"] == "No such file or directory"
            await asyncio.sleep(0.5)  # rechecked, not logged again
            assert [e["event"] for e in logs].count("watch.unavailable") == 1

            missing.mkdir()
            # reported once it is watched: a write from then on is seen
            assert await next_batch(batches) == {str(missing)}
            assert watcher.watching
            (missing / "a.yaml").write_text("a", encoding="utf-8")
            assert await next_batch(batches) == {real(missing / "a.yaml")}


@pytest.mark.slow
async def test_the_directory_removed_and_created_again(tmp_path: Path) -> None:
    root = tmp_path / "recordings.d"
    root.mkdir()
    (root / "a.yaml").write_text("a", encoding="utf-8")
    with capture_logs() as logs:
        async with watching(root, debounce=0.3, recheck=0.3) as (watcher, batches):
            shutil.rmtree(root)
            assert await next_batch(batches) == {str(root)}
            assert not watcher.watching
            root.mkdir()
            assert await next_batch(batches) == {str(root)}  # once watched again
            assert watcher.watching
            (root / "b.yaml").write_text("b", encoding="utf-8")
            assert await next_batch(batches) == {real(root / "b.yaml")}
    events = [e["event"] for e in logs if e["event"].startswith("watch.")]
    assert events == [
        "watch.started",
        "watch.unavailable",
        "watch.started",
        "watch.stopped",
    ]


async def test_a_file_instead_of_a_directory_does_not_crash(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file.yaml"
    not_a_dir.write_text("x", encoding="utf-8")
    with capture_logs() as logs:
        async with watching(not_a_dir, recheck=0.2) as (watcher, _):
            assert not watcher.watching
    assert [e["reason"] for e in logs if e["event"] == "watch.unavailable"] == ["not a directory"]


@pytest.mark.slow
async def test_a_release_switched_behind_a_symlink_is_reported_and_watched(
    tmp_path: Path,
) -> None:
    for release in ("r1", "r2"):
        (tmp_path / release).mkdir()
        (tmp_path / release / "m.yaml").write_text(release, encoding="utf-8")
    current = tmp_path / "current"
    current.symlink_to(tmp_path / "r1")
    async with watching(current, debounce=0.3, recheck=0.3) as (watcher, batches):
        (tmp_path / "next").symlink_to(tmp_path / "r2")
        os.replace(tmp_path / "next", current)  # atomic, as deploy tools switch
        assert await next_batch(batches) == {str(current)}  # once the new one is watched
        assert watcher.watching
        (tmp_path / "r2" / "n.yaml").write_text("n", encoding="utf-8")
        # As the configured path spells it (the reload's files do): a removal reported
        # through the release's own path was a file it did not know, and kept recording.
        assert await next_batch(batches) == {str(current / "n.yaml")}
        (tmp_path / "r2" / "m.yaml").unlink()
        assert await next_batch(batches) == {str(current / "m.yaml")}
        shutil.rmtree(tmp_path / "r1")  # the old release: no longer watched
        await quiet(batches, 1.0)


@pytest.mark.slow
async def test_paths_are_spelled_as_the_configured_path(tmp_path: Path) -> None:
    (tmp_path / "d" / "v1" / "team").mkdir(parents=True)
    configured = tmp_path / "d" / ".." / "d" / "v1"  # as a config may write it
    async with watching(configured, debounce=0.3) as (_, batches):
        (tmp_path / "d" / "v1" / "team" / "a.yaml").write_text("a", encoding="utf-8")
        assert await next_batch(batches) == {str(configured / "team" / "a.yaml")}


@pytest.mark.slow
async def test_a_file_name_watchfiles_cannot_name_loses_no_change(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("a", encoding="utf-8")
    with capture_logs() as logs:
        async with watching(tmp_path, debounce=0.3, recheck=0.3) as (watcher, batches):
            (tmp_path / "a.yaml").unlink()  # in the batch watchfiles gives up, or before
            os.close(os.open(os.path.join(os.fsencode(tmp_path), b"notes\xe9.txt"), os.O_CREAT))
            # The whole tree, once watched again: the reload sees a.yaml gone whether
            # or not its removal came in a batch of its own first (a busy machine).
            seen = [await next_batch(batches)]
            while str(tmp_path) not in seen[-1]:
                seen.append(await next_batch(batches))
            assert seen[:-1] in ([], [{str(tmp_path / "a.yaml")}]), seen
            assert watcher.watching
    (reason,) = {e["reason"] for e in logs if e["event"] == "watch.unavailable"}
    assert "decode" in reason and "TaskGroup" not in reason, reason


@pytest.fixture(autouse=True)
def _no_polling_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WATCHFILES_FORCE_POLLING", raising=False)
    monkeypatch.delenv("WATCHFILES_POLL_DELAY_MS", raising=False)
