"""Bulk parses shared with a second process: `ParseHelper`.

A daemon's first start, or a `git checkout` of its whole directory, parses thousands
of files, and the parse is Python holding the interpreter's lock: one core does it
all. With a `ParseHelper`, `ManifestCache` hands the last part of a bulk load's
files (`SHARE`) to a worker process, which parses them while the loading thread
parses the rest; the results come back pickled (as the snapshot keeps them), with each
file's content digest, and with their equal parts held once (`sharing`), as the cache
holds them: thousands of copies of them would arrive at once. They come back in
chunks (`Help`): the load takes in each chunk as it reaches its files, while the
worker parses the next.

It must never change an answer: the worker runs the very `parse_file` the cache would,
on the bytes it reads itself, and the cache takes its result only for the bytes it
parsed, parsing anything else itself: a file whose stat key is still the one the
worker took before reading it (a key it could trust: not changed within `RACY_NS`) is
not read again, as a file whose key is unchanged is not read at a reload; any other is
read, and taken only when its bytes have the digest the worker sent. A worker that
cannot start, fails or dies costs time, never a manifest. The worker is started for
one bulk load and exits after it (nothing stays running, and nothing of it stays in
memory); the daemon may start it ahead, as it launches (`ParseHelper.prestart`), and
ends it unused if the first load did not want it. A command that loads once and exits
(`ParseHelper.forking`) forks its worker as the load begins instead: it has nothing to
start or import, so it is worth it for smaller loads and takes half of one; it forks
only while it runs no other thread. A daemon that knows its first load
parses every file (there is no snapshot to take them from) gives the worker its part
of them at once: it parses them while the daemon imports the rest of itself and opens
the store. The worker exits once its parent is gone, however the parent ended; it
ignores SIGINT (a terminal's Ctrl-C goes to the whole process group: the daemon
decides) and never prints.
"""

from __future__ import annotations

import gc
import hashlib
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, NamedTuple, Protocol

from orchestrator.manifest import discovery
from orchestrator.manifest.diagnostics import Diagnostic
from orchestrator.manifest.discovery import FileKey, file_key, is_racy
from orchestrator.manifest.parsing import parse_file, read_manifest_file
from orchestrator.manifest.sharing import Sharer
from orchestrator.manifest.snapshot import Saved

if TYPE_CHECKING:  # imported where a worker starts: a small load never needs them
    import multiprocessing.context
    from concurrent.futures import Future, ProcessPoolExecutor

__all__ = [
    "BULK",
    "CHUNK",
    "FORK_BULK",
    "FORK_BYTES",
    "FORK_SHARE",
    "HELP_WITHIN",
    "SHARE",
    "SHARE_EARLY",
    "SHARE_PRESTARTED",
    "Help",
    "Helped",
    "ParseHelper",
    "parse_files",
]

BULK = 2000
"""Files to parse, at least, for a worker to be worth starting (it takes a few
hundred milliseconds to start, in parallel with the loading thread's own parse)."""

SHARE = 0.4
"""The part of a bulk load's files a worker started for it parses: less than half, as
it starts later and sends its results back, while the loading thread also reads and
digests every file."""

SHARE_PRESTARTED = 0.55
"""The part a prestarted worker parses (`ParseHelper.prestart`): more than half, as it
parses from the load's first moment (its interpreter started and imported the parser
while the daemon started), while the loading thread also reads and digests every file
and builds the desired recordings afterwards."""

SHARE_EARLY = 0.5
"""The part a worker given its files as it is prestarted parses: it starts parsing
before the load does, while the daemon imports the rest of itself, but the load takes
in its results besides reading and digesting every file and parsing its own part."""

FORK_BULK = 250
"""Files to parse, at least, for a forked worker (`ParseHelper.forking`) to be worth
starting: it is running a few milliseconds after the fork, with everything imported."""

FORK_BYTES = 160_000
"""Bytes to parse, at least, in fewer files than `FORK_BULK`, for a forked worker to be
worth starting: about as many manifests as `FORK_BULK` files of one each."""

FORK_SHARE = 0.5
"""The part a forked worker parses: half, as it parses from the load's first moment."""

CHUNK = 500
"""Files a worker sends back at a time (`Help`)."""

HELP_WITHIN = 120.0
"""Seconds a load waits for its worker's results at most, all chunks together (5,000
files take it about 2 s)."""


class Stop(Protocol):
    """What tells a worker to parse nothing more: an event shared with its process
    (`multiprocessing` context's `Event`), set by the load."""

    def set(self) -> None: ...

    def is_set(self) -> bool: ...


_STOP: Stop | None = None
"""In a worker: its stop event (`_quiet`); None in any other process."""

Helped = dict[str, tuple[Saved, bool, FileKey | None]]
"""What a worker parsed, by path: the file's `Saved` result (with its content digest),
whether its findings were placed by a second parse, and the file's key (`FileKey`)
taken before it read it, when that key could be trusted (None: the file had changed
within `RACY_NS`): while a file keeps that key, it holds the bytes parsed."""


def parse_files(paths: Sequence[str], strict: bool, racy_ns: int | None = None) -> Helped:
    """The worker's job: read and parse each file as `ManifestCache` would; a file that
    cannot be read is left to the cache (it reports it). `racy_ns`: the loading
    process's `RACY_NS`."""
    out: Helped = {}
    sharer = Sharer()
    racy_ns = discovery.RACY_NS if racy_ns is None else racy_ns
    stop = _STOP
    for path in paths:
        if stop is not None and stop.is_set():  # the load takes nothing more
            break
        racy_after = time.time_ns() - racy_ns  # taken before the stat, as the cache's
        try:
            st = os.stat(path)
        except OSError:
            continue
        raw = read_manifest_file(path, st, strict=strict)
        if isinstance(raw, Diagnostic):
            continue
        trusted = not is_racy(st, racy_after)
        digest = hashlib.blake2b(raw, digest_size=16).digest()
        manifests, diagnostics, positioned = parse_file(path, raw, strict=strict)
        sharer.share(manifests)
        for m in manifests:  # made here, on the second core, and sent with them
            _ = m.schedule, m.spec_hash
        key = file_key(st) if trusted else None
        out[path] = (Saved(digest, manifests, diagnostics), positioned, key)
    return out


class Help:
    """A worker's part of one load: its files in chunks of `CHUNK`, parsed in order.

    The load takes in a chunk's results when it reaches one of its files (`take`),
    while the worker parses the next. `strict`: how the files are parsed; `stop`: the
    worker's stop event (`cancel`)."""

    def __init__(
        self,
        chunks: Sequence[tuple[Sequence[str], Future[Helped]]],
        strict: bool,
        stop: Stop | None = None,
    ):
        self.strict = strict
        self.stop = stop
        self.chunk_of: dict[str, int] = {}
        """The chunk of each of its files."""
        for index, (paths, _) in enumerate(chunks):
            self.chunk_of.update(dict.fromkeys(paths, index))
        self._futures = [future for _, future in chunks]
        self._taken = 0
        self._deadline: float | None = None

    def take(self, path: str, *, wait: bool = True) -> Helped:
        """What the worker parsed of `path`'s chunk and of the chunks before it not taken
        yet; waited for, `HELP_WITHIN` seconds at most from the first wait. Nothing once
        a chunk failed or was late: the load parses the rest itself. `wait=False`: only
        the chunks the worker has finished, up to the first it has not."""
        index = self.chunk_of.get(path, -1)
        out: Helped = {}
        while self._taken <= index:  # once a chunk, not once a file
            future = self._futures[self._taken]
            if not wait and not future.done():
                break
            self._taken += 1
            if self._deadline is None:
                self._deadline = time.monotonic() + HELP_WITHIN
            from concurrent.futures.process import BrokenProcessPool  # loaded with the pool

            try:
                out.update(future.result(timeout=max(0.0, self._deadline - time.monotonic())))
            except BrokenProcessPool:  # the worker died or could not start
                self._taken = len(self._futures)  # every other chunk fails too
            except Exception:  # it hangs (late), or the chunk failed in it
                self.cancel()
        return out

    def cancel(self) -> None:
        """Take nothing more: the worker parses nothing more (`stop`), and its chunks
        not begun end at once, empty. Never by cancelling their futures: Python 3.11's
        pool, when its worker dies, sets an exception on each future in its table, and
        one cancelled meanwhile kills its manager thread (InvalidStateError) before it
        ends the worker and its queues."""
        self._taken = len(self._futures)
        if self.stop is not None:
            self.stop.set()


class ParseHelper:
    """Starts a worker process for one bulk load (`start`). `context`: the
    multiprocessing context (default: `spawn`, never `fork`: the daemon has threads).

    `prestart` starts the worker ahead of the load that may want it (the daemon, as it
    launches): its interpreter starts and imports the parser while the caller does the
    same, and, given the files the load will parse, it parses its part of them at once.
    `start` hands a load its worker; a worker the first load did not want is ended by
    `release`. A command that loads once and exits takes `forking()` instead."""

    def __init__(self, *, context: multiprocessing.context.BaseContext | None = None) -> None:
        self._context = context
        self._forks = False
        self._ready: _Worker | None = None
        self._early: Help | None = None  # the part of the files given to `prestart`
        self.started = 0
        """Workers started over the helper's life."""

    @classmethod
    def forking(cls) -> ParseHelper:
        """A helper for a command that loads once and exits (`validate`, `plan`): its
        worker is forked as the load begins, so it has nothing to start or import and
        is worth it from `FORK_BULK` files, for `FORK_SHARE` of them. It is forked only
        while the process runs no other thread (a fork copies none of them, nor what they
        hold), on a platform that forks; otherwise the load parses every file itself."""
        helper = cls()
        helper._forks = True
        return helper

    def wants(self, files: int, size: Callable[[], int] | None = None) -> bool:
        """Whether a load that parses this many files shares them: `BULK` or more; for a
        forking helper, `FORK_BULK` or more, or two or more of `FORK_BYTES` together
        (`size`: their bytes, asked only then), as a few files may hold many manifests."""
        if not self._forks:
            return files >= BULK
        return files >= FORK_BULK or (files > 1 and size is not None and size() >= FORK_BYTES)

    def prestart(self, files: Sequence[str] | None = None, *, strict: bool = False) -> None:
        """Start a worker now, for the next `start` (nothing without a second core).

        `files`: every file the next load will parse, in its order, when the caller
        knows: the worker parses its part of them (`SHARE_EARLY`) from now on, and the
        load takes its results for the bytes it parsed; fewer than `BULK` start none."""
        if self._ready is not None or (os.cpu_count() or 1) < 2 or self._forks:
            return
        if files is not None and not self.wants(len(files)):
            return
        worker = self._worker()
        try:
            if files is not None:
                self._early = worker.submit(_part(files, SHARE_EARLY), strict)
            else:
                worker.executor.submit(_imported)  # it starts now, and imports the parser
        except (OSError, RuntimeError):  # it could not start: a load starts its own
            worker.end()
            self._early = None
            return
        self._ready = worker
        self.started += 1

    def start(self, paths: Sequence[str], *, strict: bool) -> Help | None:
        """A worker parsing the last part of `paths` (the files a bulk load will parse,
        in its order), or the part given to `prestart`; None when there is no second
        core or no worker could be started (the caller parses them all itself)."""
        if (os.cpu_count() or 1) < 2 or not paths:
            return None
        if self._forks and not _may_fork():
            return None
        early, self._early = self._early, None
        worker, self._ready = self._ready, None
        if worker is not None and early is not None and early.strict == strict:
            worker.executor.shutdown(wait=False)  # the worker exits once its job is done
            return early
        if early is not None and worker is not None:  # parsed otherwise: of no use
            worker.end()
            worker = None
        prestarted = worker is not None
        worker = worker or self._worker()
        share = FORK_SHARE if self._forks else SHARE_PRESTARTED if prestarted else SHARE
        try:
            job = worker.submit(_part(paths, share), strict)
        except (OSError, RuntimeError):  # no worker could start, or a prestarted one died
            worker.end()
            return None
        if not prestarted:  # a prestarted one was counted by `prestart`
            self.started += 1
        worker.executor.shutdown(wait=False)  # the worker exits once its job is done
        return job

    def release(self) -> None:
        """End a prestarted worker no load took (it exits; nothing is waited for)."""
        worker, self._ready = self._ready, None
        self._early = None
        if worker is not None:
            worker.end()

    def _worker(self) -> _Worker:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        context = self._context or multiprocessing.get_context("fork" if self._forks else "spawn")
        stop = context.Event()
        executor = ProcessPoolExecutor(
            max_workers=1, mp_context=context, initializer=_quiet, initargs=(stop,)
        )
        return _Worker(executor, stop)


class _Worker(NamedTuple):
    """A worker process (a pool of one) and its stop event."""

    executor: ProcessPoolExecutor
    stop: Stop

    def submit(self, paths: Sequence[str], strict: bool) -> Help:
        """`paths` to parse, in chunks of `CHUNK`."""
        chunks = [list(paths[i : i + CHUNK]) for i in range(0, len(paths), CHUNK)]
        racy_ns = discovery.RACY_NS  # as this process judges its own stat keys
        submit = self.executor.submit
        return Help(
            [(chunk, submit(parse_files, chunk, strict, racy_ns)) for chunk in chunks],
            strict,
            self.stop,
        )

    def end(self) -> None:
        """Parse nothing more and exit, without waiting (its pending jobs end empty)."""
        self.stop.set()
        self.executor.shutdown(wait=False)


def _may_fork() -> bool:
    """Whether this process may fork a worker: the platform forks, and no other thread
    runs (the child would hold none of them, nor be able to take the locks they held)."""
    import multiprocessing

    return "fork" in multiprocessing.get_all_start_methods() and threading.active_count() == 1


def _part(paths: Sequence[str], share: float) -> Sequence[str]:
    """The last `share` of `paths`: the loading thread parses the first ones."""
    return paths[len(paths) - int(len(paths) * share) :]


def _quiet(stop: Stop) -> None:
    """The worker's start: Ctrl-C is the daemon's to handle; the collector has nothing
    to find in a process that parses and exits; it exits with the daemon (`_orphaned`);
    `stop` set, it parses nothing more (`parse_files`)."""
    global _STOP
    _STOP = stop
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    gc.disable()
    threading.Thread(target=_orphaned, name="parent-watch", daemon=True).start()


def _orphaned() -> None:
    """Exit once the daemon is gone. A worker waits for its job on a queue it holds
    both ends of, so a daemon killed (SIGKILL, a crash) before it sent the job or its
    end would leave it waiting for ever: the parent's sentinel tells instead."""
    import multiprocessing.connection

    parent = multiprocessing.parent_process()
    if parent is not None:
        multiprocessing.connection.wait([parent.sentinel])
        os._exit(1)


def _imported() -> None:
    """A prestarted worker's first job: none; unpickling it imported this module, and
    with it the parser."""
