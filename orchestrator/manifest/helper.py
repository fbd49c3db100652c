"""Bulk parses shared with a second process: `ParseHelper`.

A daemon's first start, or a `git checkout` of its whole directory, parses thousands
of files, and the parse is Python holding the interpreter's lock: one core does it
all. With a `ParseHelper`, `ManifestCache` hands the last part of a bulk load's
files (`SHARE`) to a worker process, which parses them while the loading thread
parses the rest; the results come back pickled (as the snapshot keeps them), with each
file's content digest, and with their equal parts held once (`sharing`), as the cache
holds them: thousands of copies of them would arrive at once.

It must never change an answer: the worker runs the very `parse_file` the cache would,
on the bytes it reads itself, and the cache takes its result only for bytes with the
same digest, parsing anything else itself; a worker that cannot start, fails or dies
costs time, never a manifest. The worker is started for one bulk load and exits after
it (nothing stays running, and nothing of it stays in memory); the daemon may start it
ahead, as it launches (`ParseHelper.prestart`), and ends it unused if the first load
did not want it. It exits once its parent is gone, however the parent ended; it
ignores SIGINT (a terminal's Ctrl-C goes to the whole process group: the daemon
decides) and never prints.
"""

from __future__ import annotations

import gc
import hashlib
import multiprocessing
import multiprocessing.connection
import os
import signal
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor

from orchestrator.manifest.diagnostics import Diagnostic
from orchestrator.manifest.parsing import parse_file, read_manifest_file
from orchestrator.manifest.sharing import Sharer
from orchestrator.manifest.snapshot import Saved

__all__ = ["BULK", "SHARE", "SHARE_PRESTARTED", "Helped", "ParseHelper", "parse_files"]

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

Helped = dict[str, tuple[Saved, bool]]
"""What a worker parsed, by path: the file's `Saved` result (with its content digest)
and whether its findings were placed by a second parse."""


def parse_files(paths: Sequence[str], strict: bool) -> Helped:
    """The worker's job: read and parse each file as `ManifestCache` would; a file that
    cannot be read is left to the cache (it reports it)."""
    out: Helped = {}
    sharer = Sharer()
    for path in paths:
        raw = read_manifest_file(path, strict=strict)
        if isinstance(raw, Diagnostic):
            continue
        digest = hashlib.blake2b(raw, digest_size=16).digest()
        manifests, diagnostics, positioned = parse_file(path, raw, strict=strict)
        sharer.share(manifests)
        for m in manifests:  # built here, on the second core, and sent with them
            _ = m.schedule
        out[path] = (Saved(digest, manifests, diagnostics), positioned)
    return out


def _quiet() -> None:
    """The worker's start: Ctrl-C is the daemon's to handle; the collector has nothing
    to find in a process that parses and exits; it exits with the daemon (`_orphaned`)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    gc.disable()
    threading.Thread(target=_orphaned, name="parent-watch", daemon=True).start()


def _orphaned() -> None:
    """Exit once the daemon is gone. A worker waits for its job on a queue it holds
    both ends of, so a daemon killed (SIGKILL, a crash) before it sent the job or its
    end would leave it waiting for ever: the parent's sentinel tells instead."""
    parent = multiprocessing.parent_process()
    if parent is not None:
        multiprocessing.connection.wait([parent.sentinel])
        os._exit(1)


class ParseHelper:
    """Starts a worker process for one bulk load (`start`). `context`: the
    multiprocessing context (default: `spawn`, never `fork`: the daemon has threads).

    `prestart` starts the worker ahead of the load that may want it (the daemon, as it
    launches): its interpreter starts and imports the parser while the caller does the
    same, so that it parses from the load's first moment. `start` hands it its job;
    a worker the first load did not want is ended by `release`."""

    def __init__(self, *, context: multiprocessing.context.BaseContext | None = None) -> None:
        self._context = context or multiprocessing.get_context("spawn")
        self._ready: ProcessPoolExecutor | None = None
        self.started = 0
        """Workers started over the helper's life."""

    def prestart(self) -> None:
        """Start a worker now, for the next `start` (nothing without a second core)."""
        if self._ready is not None or (os.cpu_count() or 1) < 2:
            return
        executor = self._executor()
        try:
            executor.submit(_imported)  # the process starts now, and imports the parser
        except (OSError, RuntimeError):  # it could not start: a load starts its own
            executor.shutdown(wait=False, cancel_futures=True)
            return
        self._ready = executor
        self.started += 1

    @property
    def share(self) -> float:
        """The part of a bulk load's files the next `start` should be given."""
        return SHARE if self._ready is None else SHARE_PRESTARTED

    def start(self, paths: Sequence[str], *, strict: bool) -> Future[Helped] | None:
        """A worker parsing `paths`; None when there is no second core or no worker
        could be started (the caller parses them itself)."""
        if (os.cpu_count() or 1) < 2 or not paths:
            return None
        executor, self._ready = self._ready, None
        prestarted = executor is not None
        executor = executor or self._executor()
        try:
            future = executor.submit(parse_files, list(paths), strict)
        except (OSError, RuntimeError):  # no worker could start, or a prestarted one died
            executor.shutdown(wait=False, cancel_futures=True)
            return None
        if not prestarted:  # a prestarted one was counted by `prestart`
            self.started += 1
        executor.shutdown(wait=False)  # the worker exits once its one job is done
        return future

    def release(self) -> None:
        """End a prestarted worker no load took (it exits; nothing is waited for)."""
        executor, self._ready = self._ready, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)

    def _executor(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(max_workers=1, mp_context=self._context, initializer=_quiet)


def _imported() -> None:
    """A prestarted worker's first job: none; unpickling it imported this module, and
    with it the parser."""
