"""A bulk load shares its parse with a worker process (`ParseHelper`), and answers as
a load without one.

Covers, with a real worker process (spawned): a bulk load (the threshold lowered for
the test) gives the same result as a plain load, every file counted as parsed, the
worker started once and its results used (the last 40 % of the files, with their
schedules built there, their equal parts one object with the loading thread's); a
load below the threshold starts no worker; a worker that cannot start (its
interpreter missing) changes nothing but who parses; a file changed after the worker
read it is parsed again by the loading thread. A prestarted worker (its process
running before any load) takes the next bulk load, a larger part of it, and exits
after it; one no load wanted is ended by `release`; one that died before the load
changes nothing but who parses, and one whose daemon was killed exits by itself. The
daemon's hint for prestarting one (`holds_at_least`) counts manifest files only.

A worker given its files as it is prestarted (a first start without a snapshot)
parses its part before any load, and the load takes it, in chunks, for the bytes it
parsed only; fewer files than a bulk start none, and a load that wants another
parse (`--strict`) starts a worker of its own. A load takes the chunks in order as
it reaches them, and parses a failed chunk's files and every later one's itself. It
does not read again a file the worker read while the file keeps the key the worker
saw (a key it could trust: not changed within `RACY_NS`), and reads any other.

A forking helper (a command's: `validate`, `plan`) forks its worker as the load
begins, in a process of one thread, and answers as a plain load; it weighs a few
large files by their bytes, and does not fork while another thread runs. A load cut
short (a Ctrl-C) tells its worker to parse nothing more, and a worker told so parses
nothing more of its chunks (they end at once, empty); no future is ever cancelled.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import pytest

from orchestrator.manifest import cache as cache_module
from orchestrator.manifest import discovery
from orchestrator.manifest import helper as helper_module
from orchestrator.manifest.cache import ManifestCache, load_manifests
from orchestrator.manifest.discovery import Discovery, holds_at_least
from orchestrator.manifest.helper import (
    BULK,
    FORK_BULK,
    FORK_BYTES,
    SHARE,
    SHARE_EARLY,
    SHARE_PRESTARTED,
    Help,
    Helped,
    ParseHelper,
    parse_files,
)
from orchestrator.manifest.loaded import LoadStats
from orchestrator.manifest.snapshot import Saved
from tests.harness import gone
from tests.unit.manifest.test_manifest_cache import NOW, doc, write


def tree(root: Path, count: int) -> list[str]:
    paths = [
        write(root / f"d{i % 3}" / f"m{i:03d}.yaml", doc(f"rec-{i}", schedule=i % 6))
        for i in range(count)
    ]
    write(root / "d0" / "broken.yaml", doc("broken") + "mode: [unclosed\n")
    return paths


@pytest.fixture
def bulk(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(helper_module, "BULK", 10)
    monkeypatch.setattr(helper_module, "CHUNK", 4)  # a job of several chunks


def test_a_bulk_load_shared_with_a_worker_answers_as_a_plain_load(
    tmp_path: Path, bulk: None
) -> None:
    tree(tmp_path, 30)
    helper = ParseHelper()
    cache = ManifestCache([tmp_path], helper=helper, share_parts=True)
    result = cache.load(now=NOW)
    assert helper.started == 1
    assert cache.last is not None and cache.last.parsed == 31 and cache.last.restored == 0
    assert cache.last.helped == 12  # the last 40 % of the 31 to parse
    plain = load_manifests([tmp_path], now=NOW)
    assert result == plain and result.diagnostics == plain.diagnostics
    # the worker's part came with its schedules built there
    assert sum("schedule" in vars(m) for m in result.manifests) >= 10
    assert [m.spec_hash for m in result.manifests] == [m.spec_hash for m in plain.manifests]
    # its equal parts are held once with the loading thread's (`sharing`)
    assert len({id(m.manifest.schedule) for m in result.manifests}) == 6
    assert len({id(m.manifest.model_fields_set) for m in result.manifests}) == 1


def test_a_hinted_bulk_reload_is_shared_too(tmp_path: Path, bulk: None) -> None:
    """A `git checkout` reaches the daemon as a hint naming every file it rewrote."""
    paths = tree(tmp_path, 30)
    helper = ParseHelper()
    cache = ManifestCache([tmp_path], helper=helper)
    cache.load(now=NOW)
    for i, path in enumerate(paths):
        write(Path(path), doc(f"rec-{i}", channel=f"moved-{i}"))
    result = cache.load(now=NOW, hint=set(paths))
    assert helper.started == 2 and cache.last is not None and cache.last.helped == 12
    assert result == load_manifests([tmp_path], now=NOW)


def test_a_small_load_starts_no_worker(tmp_path: Path) -> None:
    tree(tmp_path, 30)  # below the real threshold
    helper = ParseHelper()
    ManifestCache([tmp_path], helper=helper).load(now=NOW)
    assert helper.started == 0


def test_a_worker_that_cannot_start_changes_nothing(tmp_path: Path, bulk: None) -> None:
    tree(tmp_path, 30)
    context = multiprocessing.get_context("spawn")
    broken = ParseHelper(context=context)
    python = multiprocessing.spawn.get_executable()  # process-wide: put back after
    context.set_executable(str(tmp_path / "no-such-python"))
    try:
        cache = ManifestCache([tmp_path], helper=broken)
        result = cache.load(now=NOW)
    finally:
        context.set_executable(python)
    assert cache.last is not None and cache.last.parsed == 31 and cache.last.helped == 0
    assert result == load_manifests([tmp_path], now=NOW)


def test_bytes_changed_after_the_worker_read_them_are_parsed_again(tmp_path: Path) -> None:
    paths = tree(tmp_path, 4)
    helped = parse_files(paths, False)  # what a worker would send back
    write(Path(paths[1]), doc("rec-1", channel="moved"))
    cache = ManifestCache([tmp_path])
    cache._helped = helped  # as `_take_help` leaves them
    result = cache.load(now=NOW)
    channels = {m.manifest.name: m.manifest.channel for m in result.manifests}
    assert channels["rec-1"] == "moved" and result == load_manifests([tmp_path], now=NOW)


def _children() -> set[int]:
    return {p.pid for p in multiprocessing.active_children() if p.pid is not None}


def _exited(pids: set[int], within: float = 30) -> bool:
    deadline = time.monotonic() + within
    while pids & _children():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_a_prestarted_worker_takes_the_next_bulk_load_and_a_larger_part(
    tmp_path: Path, bulk: None
) -> None:
    tree(tmp_path, 30)
    helper = ParseHelper()
    before = _children()
    helper.prestart()
    worker = _children() - before
    assert helper.started == 1 and len(worker) == 1  # its process runs before any load
    cache = ManifestCache([tmp_path], helper=helper)
    result = cache.load(now=NOW)
    assert helper.started == 1  # no second worker: the prestarted one parsed
    assert cache.last is not None and cache.last.helped == int(31 * SHARE_PRESTARTED)
    assert result == load_manifests([tmp_path], now=NOW)
    assert _exited(worker)  # its one job done, it exits
    for path in Discovery(remember=False).discover([tmp_path]).files:  # a `git checkout`
        Path(path).write_text(Path(path).read_text() + "# moved\n")
    cache.load(now=NOW)  # the next bulk load starts a worker of its own, for its part
    assert helper.started == 2 and cache.last.helped == int(31 * SHARE)


def test_a_prestarted_worker_no_load_wanted_is_released(tmp_path: Path) -> None:
    tree(tmp_path, 30)  # below the real threshold
    helper = ParseHelper()
    before = _children()
    helper.prestart()
    worker = _children() - before
    cache = ManifestCache([tmp_path], helper=helper)
    cache.load(now=NOW)
    assert cache.last is not None and cache.last.helped == 0
    helper.release()
    assert _exited(worker)
    helper.release()  # nothing left to release: no error


def test_a_prestarted_worker_that_died_changes_nothing(tmp_path: Path, bulk: None) -> None:
    tree(tmp_path, 30)
    helper = ParseHelper()
    before = _children()
    helper.prestart()
    (worker,) = _children() - before
    os.kill(worker, signal.SIGKILL)
    assert _exited({worker})
    cache = ManifestCache([tmp_path], helper=helper)
    result = cache.load(now=NOW)
    assert cache.last is not None and cache.last.parsed == 31 and cache.last.helped == 0
    assert result == load_manifests([tmp_path], now=NOW)


def test_holds_at_least_counts_manifest_files_up_to_the_number_asked(tmp_path: Path) -> None:
    for i in range(5):
        write(tmp_path / f"d{i % 2}" / f"m{i}.yaml", doc(f"rec-{i}"))
    write(tmp_path / "d0" / "notes.txt", "not a manifest\n")
    write(tmp_path / ".git" / "a.yaml", doc("hidden-dir"))
    write(tmp_path / "d1" / ".hidden.yml", doc("hidden-file"))
    assert holds_at_least(tmp_path, 5)
    assert not holds_at_least(tmp_path, 6)  # hidden ones and other files do not count
    assert not holds_at_least(tmp_path / "missing", 1)


WORKER_PARENT = """
import sys, time, multiprocessing
from orchestrator.manifest.helper import ParseHelper
helper = ParseHelper()
helper.prestart()
print(*[p.pid for p in multiprocessing.active_children()], flush=True)
time.sleep(120)
"""


def test_a_prestarted_worker_exits_when_the_daemon_is_killed() -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", WORKER_PARENT],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,  # its resource tracker warns of what the kill left
        text=True,
    )
    try:
        assert parent.stdout is not None
        with parent.stdout:
            workers = [int(pid) for pid in parent.stdout.readline().split()]
        assert workers and not any(gone(pid) for pid in workers)
        parent.kill()  # no shutdown, no release: as a SIGKILL or a crash leaves it
        parent.wait(timeout=30)
        deadline = time.monotonic() + 30
        while not all(gone(pid) for pid in workers):
            assert time.monotonic() < deadline, f"worker {workers} outlived its parent"
            time.sleep(0.05)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait(timeout=30)


def test_a_worker_given_its_files_as_it_starts_parses_them_before_the_load(
    tmp_path: Path, bulk: None
) -> None:
    tree(tmp_path, 30)
    files = Discovery(remember=False).discover([tmp_path]).files
    helper = ParseHelper()
    helper.prestart(files)
    assert helper.started == 1
    early = helper._early
    assert early is not None and len(early.chunk_of) == int(31 * SHARE_EARLY)
    assert _parsed(early)  # it parsed its whole part with no load under way
    moved = files[-1]  # in its part: edited after the worker read it
    write(Path(moved), doc("rec-moved", channel="moved"))
    cache = ManifestCache([tmp_path], helper=helper, share_parts=True)
    result = cache.load(now=NOW)
    assert helper.started == 1 and cache.last is not None
    # every file of its part but the edited one, which the load parsed itself
    assert cache.last.parsed == 31 and cache.last.helped == int(31 * SHARE_EARLY) - 1
    assert result == load_manifests([tmp_path], now=NOW)
    assert {m.manifest.channel for m in result.manifests if m.file == moved} == {"moved"}


def _parsed(job: Help, within: float = 60) -> bool:
    """Whether the worker finished every chunk of `job` (waited for, not taken)."""
    deadline = time.monotonic() + within
    try:
        for future in job._futures:
            future.result(timeout=max(0.0, deadline - time.monotonic()))
    except Exception:
        return False
    return True


def test_files_to_parse_fewer_than_a_bulk_start_no_worker(tmp_path: Path) -> None:
    files = tree(tmp_path, 30)  # below the real threshold
    helper = ParseHelper()
    before = _children()
    helper.prestart(files)
    assert helper.started == 0 and _children() == before


def test_a_strict_load_does_not_take_a_job_parsed_otherwise(tmp_path: Path, bulk: None) -> None:
    tree(tmp_path, 30)
    helper = ParseHelper()
    helper.prestart(Discovery(remember=False).discover([tmp_path]).files)  # not strict
    cache = ManifestCache([tmp_path], helper=helper, strict=True)
    result = cache.load(now=NOW)
    assert helper.started == 2  # a worker of its own, for its part
    assert cache.last is not None and cache.last.helped == int(31 * SHARE)
    assert result == load_manifests([tmp_path], now=NOW, strict=True)


def test_an_early_job_no_load_took_is_released(tmp_path: Path, bulk: None) -> None:
    tree(tmp_path, 30)
    helper = ParseHelper()
    before = _children()
    helper.prestart(Discovery(remember=False).discover([tmp_path]).files)
    worker = _children() - before
    assert len(worker) == 1
    helper.release()
    assert _exited(worker) and helper._early is None


def _done(result: Helped | None = None, error: Exception | None = None) -> Future[Helped]:
    future: Future[Helped] = Future()
    if error is not None:
        future.set_exception(error)
    elif result is not None:
        future.set_result(result)
    return future


def test_a_load_takes_the_chunks_in_order_and_none_after_a_failed_one(tmp_path: Path) -> None:
    paths = tree(tmp_path, 6)
    first, third = parse_files(paths[:2], False), parse_files(paths[4:], False)
    pending: Future[Helped] = Future()
    stop = threading.Event()
    job = Help(
        [
            (paths[:2], _done(first)),
            (paths[2:4], _done(error=OSError("the worker died"))),
            (paths[4:], pending),
        ],
        strict=False,
        stop=stop,
    )
    assert job.take(paths[1]) == first  # its chunk only: the next is not waited for
    assert job.take(paths[0]) == {}  # taken already
    assert job.take(paths[5]) == {}  # the failed chunk ends the job: nothing after it
    # The worker is told to parse nothing more; no future is cancelled (a future
    # cancelled while a breaking pool sets their exceptions would kill its manager
    # thread); a broken pool fails every chunk itself.
    assert stop.is_set() and not pending.cancelled()
    after: Future[Helped] = Future()
    job = Help(
        [(paths[:2], _done(error=BrokenProcessPool("the worker died"))), (paths[2:], after)],
        strict=False,
    )
    assert job.take(paths[5]) == {} and not after.cancelled()
    assert job.take(paths[5]) == {}  # the job is over
    job = Help([(paths[:2], _done(first)), (paths[4:], _done(third))], strict=False)
    assert job.take(paths[4]) == {**first, **third}  # a later file: the chunks before too
    assert job.take("/not/in/the/job.yaml") == {}


def _reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The files the loading thread reads itself, in order (the real read, recorded)."""
    reads: list[str] = []
    read = cache_module.read_manifest_file

    def recorded(path: str, st: os.stat_result | None = None, *, strict: bool) -> object:
        reads.append(path)
        return read(path, st, strict=strict)

    monkeypatch.setattr(cache_module, "read_manifest_file", recorded)
    return reads


def test_a_file_the_worker_read_is_not_read_again_while_its_key_holds(
    tmp_path: Path, bulk: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(discovery, "RACY_NS", 50_000_000)  # 50 ms: still over a clock tick
    tree(tmp_path, 30)
    time.sleep(0.08)  # the tree's keys trusted from now on
    files = Discovery(remember=False).discover([tmp_path]).files
    helper = ParseHelper()
    helper.prestart(files)
    early = helper._early
    assert early is not None and _parsed(early)
    part = set(early.chunk_of)
    moved = files[-1]  # in its part, rewritten since the worker read it: a new key
    write(Path(moved), doc("rec-moved", channel="moved"))
    reads = _reads(monkeypatch)
    cache = ManifestCache([tmp_path], helper=helper)
    result = cache.load(now=NOW)
    assert sorted(reads) == sorted((set(files) - part) | {moved})
    assert cache.last is not None and cache.last.read == 31 and cache.last.helped == 14
    assert result == load_manifests([tmp_path], now=NOW)
    assert {m.manifest.channel for m in result.manifests if m.file == moved} == {"moved"}


def test_a_file_changed_just_before_the_worker_read_it_is_read_again(
    tmp_path: Path, bulk: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(discovery, "RACY_NS", 3600 * 1_000_000_000)  # however slow this is
    tree(tmp_path, 30)
    files = Discovery(remember=False).discover([tmp_path]).files
    reads = _reads(monkeypatch)
    helper = ParseHelper()
    helper.prestart(files)
    cache = ManifestCache([tmp_path], helper=helper)
    result = cache.load(now=NOW)
    assert sorted(reads) == sorted(files)  # no key it saw could be trusted: all read here
    assert cache.last is not None and cache.last.helped == int(31 * SHARE_EARLY)
    assert result == load_manifests([tmp_path], now=NOW)


class _Unfinished(Future[Helped]):
    """A chunk the worker never finishes; records whether anyone waited for it."""

    waited = False

    def result(self, timeout: float | None = None) -> Helped:
        self.waited = True
        return super().result(timeout=0)  # never set: a TimeoutError at once


def test_a_touch_of_every_file_does_not_wait_for_the_worker(
    tmp_path: Path, bulk: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A `git checkout` that rewrote nothing (every file touched) reaches the load as a
    bulk hint: its files are read and found unchanged, and the worker started for them
    is of no use; the load must not wait for it."""
    paths = tree(tmp_path, 30)
    helper = ParseHelper()
    cache = ManifestCache([tmp_path], helper=helper)
    cache.load(now=NOW)
    unfinished = _Unfinished()

    def start(todo: list[str], *, strict: bool) -> Help:
        return Help([(list(todo), unfinished)], strict)

    monkeypatch.setattr(helper, "start", start)
    for path in paths:
        os.utime(path)
    result = cache.load(now=NOW, hint=set(paths))
    assert cache.last is not None and cache.last.parsed == 0 and cache.last.read == 30
    assert result.changed == frozenset() and not unfinished.waited


def test_a_load_takes_what_the_worker_finished_without_waiting_for_the_rest() -> None:
    first: Helped = {"a.yaml": (Saved(b"d", [], []), False, None)}
    pending: Future[Helped] = Future()
    job = Help([(["a.yaml"], _done(first)), (["b.yaml"], pending)], strict=False)
    assert job.take("b.yaml", wait=False) == first  # the finished chunk only
    assert job.take("b.yaml", wait=False) == {}  # still not finished: not waited for
    pending.set_result({})
    assert job.take("b.yaml", wait=False) == {}  # finished now, and empty
    assert job._taken == 2


FORKED_LOAD = """
import json, sys
from datetime import datetime
from orchestrator.manifest import helper
helper.FORK_BULK, helper.FORK_BYTES, helper.CHUNK = int(sys.argv[2]), int(sys.argv[3]), 4
from orchestrator.manifest.cache import ManifestCache, load_manifests
now = datetime.fromisoformat(sys.argv[4])
forking = helper.ParseHelper.forking()
cache = ManifestCache([sys.argv[1]], helper=forking)
result = cache.load(now=now)
plain = load_manifests([sys.argv[1]], now=now)
print(json.dumps({
    "started": forking.started,
    "helped": cache.last.helped,
    "parsed": cache.last.parsed,
    "same": result == plain and result.diagnostics == plain.diagnostics,
    "hashes": [m.spec_hash for m in result.manifests] == [m.spec_hash for m in plain.manifests],
}))
"""


def _forked_load(root: Path, *, bulk: int, size: int) -> dict[str, object]:
    """A load with a forking helper in a process of one thread (a test worker has more:
    it would not fork), against a plain load of the same files in that process."""
    done = subprocess.run(
        [sys.executable, "-c", FORKED_LOAD, str(root), str(bulk), str(size), NOW.isoformat()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    loaded: dict[str, object] = json.loads(done.stdout)
    return loaded


def test_a_forking_helper_shares_a_load_of_many_files_and_answers_as_a_plain_load(
    tmp_path: Path,
) -> None:
    tree(tmp_path, 30)  # 31 files, one broken; a clash across files too
    write(tmp_path / "d1" / "again.yaml", doc("rec-0"))
    out = _forked_load(tmp_path, bulk=10, size=10**9)
    assert out == {"started": 1, "helped": 16, "parsed": 32, "same": True, "hashes": True}


def test_a_forking_helper_weighs_a_few_large_files_by_their_bytes(tmp_path: Path) -> None:
    for i in range(4):  # four files of 25 manifests each
        text = "---\n".join(doc(f"rec-{i}-{j}", schedule=j % 6) for j in range(25))
        write(tmp_path / f"m{i}.yaml", text)
    size = sum(p.stat().st_size for p in tmp_path.iterdir())
    assert _forked_load(tmp_path, bulk=10, size=size)["helped"] == 2  # half the files
    assert _forked_load(tmp_path, bulk=10, size=size + 1)["started"] == 0


def test_a_forking_helper_does_not_fork_while_another_thread_runs(tmp_path: Path) -> None:
    tree(tmp_path, 30)
    release = threading.Event()
    other = threading.Thread(target=release.wait, args=(60,))
    other.start()
    try:
        helper = ParseHelper.forking()
        assert helper.wants(FORK_BULK) and not helper.wants(FORK_BULK - 1)
        paths = Discovery(remember=False).discover([tmp_path]).files * 10
        assert helper.start(paths, strict=False) is None and helper.started == 0
    finally:
        release.set()
        other.join(timeout=60)


def test_a_forking_helper_wants_bulk_files_or_bulk_bytes_in_two_files() -> None:
    forking, spawning = ParseHelper.forking(), ParseHelper()
    assert forking.wants(FORK_BULK) and not forking.wants(FORK_BULK - 1)
    assert forking.wants(2, lambda: FORK_BYTES) and not forking.wants(2, lambda: FORK_BYTES - 1)
    assert not forking.wants(1, lambda: FORK_BYTES * 10)  # one file: nothing to share
    assert not spawning.wants(BULK - 1, lambda: FORK_BYTES * 10) and spawning.wants(BULK)


class _CtrlC:
    """Load hooks that interrupt the load at its first parse, as a Ctrl-C would."""

    def loading(self) -> contextlib.AbstractContextManager[object]:
        return contextlib.nullcontext()

    def parsed(self, count: int) -> None:
        raise KeyboardInterrupt

    def loaded(self, stats: LoadStats) -> None:
        pass


def test_a_load_cut_short_leaves_its_worker_nothing_more_to_parse(
    tmp_path: Path, bulk: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Ctrl-C in `validate` ends the load: the worker is told to parse nothing more,
    so the command exits once the file in hand is parsed, not after every chunk."""
    tree(tmp_path, 30)
    helper = ParseHelper()
    pending: list[Future[Helped]] = [Future(), Future(), Future()]
    stop = threading.Event()

    def start(todo: list[str], *, strict: bool) -> Help:
        parts = [todo[-12:-8], todo[-8:-4], todo[-4:]]
        return Help(list(zip(parts, pending, strict=True)), strict, stop)

    monkeypatch.setattr(helper, "start", start)
    cache = ManifestCache([tmp_path], helper=helper, hooks=_CtrlC())
    with pytest.raises(KeyboardInterrupt):
        cache.load(now=NOW)
    assert stop.is_set()


def test_a_worker_told_to_stop_parses_nothing_more(tmp_path: Path, bulk: None) -> None:
    """The stop event reaches the worker process: set, its chunks not begun end empty,
    and the pool's futures all finish (none cancelled, none left pending)."""
    tree(tmp_path, 30)
    helper = ParseHelper()
    paths = Discovery(remember=False).discover([tmp_path]).files
    helper.prestart()  # running, with nothing to do yet
    worker = helper._ready
    assert worker is not None
    worker.stop.set()
    job = helper.start(paths, strict=False)  # the prestarted worker takes the job
    assert job is not None and job.stop is worker.stop
    results = [future.result(timeout=60) for future in job._futures]
    assert results and all(result == {} for result in results)
    assert not any(future.cancelled() for future in job._futures)


def test_parse_files_stops_at_the_event(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    paths = tree(tmp_path, 3)
    stop = threading.Event()
    monkeypatch.setattr(helper_module, "_STOP", stop)
    assert len(parse_files(paths, False)) == 3
    stop.set()
    assert parse_files(paths, False) == {}
