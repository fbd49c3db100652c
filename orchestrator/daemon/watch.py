"""Watching the manifests directory, so that an edit or a merge reloads the daemon.

Why it exists: GitOps means a merged change takes effect with no other step. The
daemon reloads on SIGHUP; this module adds the reload on a change in the tree,
with watchfiles (inotify on Linux; polling on request, for NFS and other
filesystems whose changes made elsewhere inotify never sees).

What it reports: the paths of a burst of changes, in one callback once the tree
has been quiet for `debounce` seconds (a `git checkout` rewriting 500 files is one
reload, not 500; a burst still going on after `MAX_BATCH_SECONDS` is reported in
parts). It reports changes to `*.yaml`/`*.yml` files, directories created,
removed or renamed (a new subdirectory may hold manifests), and any removal of a
path that is not clearly something else (a directory moved out of the tree
reports only its own path, and once gone cannot be told from a file). It ignores
what `discover` ignores (hidden files and directories, `.git` among them) and
editor scratch files (`4913`, `*~`, `#*#`, `.#*`, `.*.swp`).

Paths are reported as the configured path spells them (`current/lobby.yaml`, not
the `releases/v1/lobby.yaml` inotify sees through a symlink, nor a path without the
`..` the config has), since the reload matches them against the files it loaded.

What it must never do: crash the daemon, decide anything, or lose a change. The
callback only asks for a reload; the reload works out what changed
(`ManifestCache`). A directory that is missing or cannot be watched is logged
(`watch.unavailable`) and looked at again every `recheck` seconds, and SIGHUP still
reloads. A watch that fails (watchfiles cannot name a path that is not UTF-8, and
gives up the batch it was in) reports the directory itself once it watches again,
so that the reload then reads the whole tree: what changed in the failed batch or
meanwhile is not lost. A failing callback is logged (`watch.callback_failed`) and
watching goes on.

Limits, by design:
- Symlinked subdirectories: watchfiles follows them, and so does `discover` (with
  loop protection), so their manifests are loaded and their changes reloaded.
- A symlinked manifest file is loaded, but an edit of its target outside the
  tree is not seen until the next reload.
- When the watched directory itself is replaced (removed and created again, or a
  symlink on its path switched to another release directory, as deploy tools do:
  `ln -sfn releases/v2 current`, or a new link renamed over the old one), the watch
  notices within `IDENTITY_EVERY` seconds (it looks at what the path names that
  often), watches the new one and reports the directory's own path at once, so a
  swap is reloaded within about a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path

import structlog
from watchfiles import Change, awatch

__all__ = ["MAX_BATCH_SECONDS", "ManifestWatcher", "is_relevant"]

log = structlog.get_logger("orchestrator.daemon")

MAX_BATCH_SECONDS = 10.0
"""A burst of changes longer than this is reported in parts (at least one callback
every this many seconds while the tree keeps changing)."""

IDENTITY_EVERY = 0.5
"""Seconds between looks at what the watched path names (a stat: cheap), so that a
switched symlink or a replaced directory is seen within about this long."""

START_TIMEOUT = 10.0
"""`start()` returns after this long even if the watch is not set up yet (it goes on)."""

_YAML_SUFFIXES = (".yaml", ".yml")


def _scratch(name: str) -> bool:
    """An editor's scratch file: vim's `4913` probe and `name~` backups, emacs `#name#`."""
    return name == "4913" or name.endswith("~") or (name.startswith("#") and name.endswith("#"))


def is_relevant(change: Change, path: str, root: str) -> bool:
    """Whether a change at `path` (under the watched `root`) can change what loads."""
    relative = os.path.relpath(path, root)
    if relative == os.curdir:
        return change != Change.modified  # the directory itself removed or created
    if relative.startswith(os.pardir) or any(
        part.startswith(".") for part in relative.split(os.sep)
    ):
        return False  # hidden (as `discover` skips it), or outside the tree
    name = os.path.basename(relative)
    if _scratch(name):
        return False
    if name.endswith(_YAML_SUFFIXES):
        return True
    if change == Change.added:
        return os.path.isdir(path)
    # a removed directory, or a removed file of no interest: it cannot be told which
    return change == Change.deleted


def _identity(path: Path) -> tuple[int, int] | str:
    """(device, inode) of the directory `path` leads to, or why there is none."""
    try:
        st = os.stat(path)
    except OSError as exc:
        return exc.strerror or type(exc).__name__
    if not stat.S_ISDIR(st.st_mode):
        return "not a directory"
    return (st.st_dev, st.st_ino)


def _why(exc: BaseException) -> str:
    """What failed, for people: the first error a task group gathered, not the group."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return f"{type(exc).__name__}: {exc}"


async def _look(path: Path) -> tuple[int, int] | str:
    """`_identity` off the event loop: a stat on a network filesystem can hang."""
    return await asyncio.to_thread(_identity, path)


class _StopEvent(asyncio.Event):
    """watchfiles' stop signal, which its watch thread polls (`is_set`) after every step.

    The watch is set up once watchfiles has made its watcher, which it does before it
    hands the wait to its thread: `set_up()` is called then (see `_watch`), else the
    first poll from that thread (a step later) tells. Either calls `on_watching` once
    (thread-safe), which is how `start()` knows writes from then on will be seen.
    """

    def __init__(self, stop: asyncio.Event, on_watching: Callable[[], None]) -> None:
        super().__init__()
        self._stop = stop
        self._on_watching = on_watching
        self._owner = threading.get_ident()
        self._told = False
        self._telling = threading.Lock()

    def set_up(self) -> None:
        """The watcher exists: every directory under the path is watched."""
        self._tell()

    def is_set(self) -> bool:
        if not self._told and threading.get_ident() != self._owner:
            self._tell()
        return self._stop.is_set() or super().is_set()

    def _tell(self) -> None:
        with self._telling:
            told, self._told = self._told, True
        if not told:
            self._on_watching()


class ManifestWatcher:
    """Calls `on_change(paths)` after each debounced burst of relevant changes under `path`.

    `debounce`: seconds of quiet that end a burst (each callback covers everything
    changed until then). `poll`: poll every `poll_interval` seconds instead of
    inotify. `recheck`: seconds between looks at a directory that is missing, could
    not be watched, or may have been replaced.
    """

    def __init__(
        self,
        path: Path,
        on_change: Callable[[set[str]], Awaitable[None]],
        *,
        debounce: float = 0.3,
        poll: bool = False,
        poll_interval: float = 1.0,
        recheck: float = 5.0,
    ) -> None:
        self.path = Path(path)
        self._on_change = on_change
        self._step_ms = max(1, round(debounce * 1000))
        self._max_batch_ms = max(self._step_ms, round(MAX_BATCH_SECONDS * 1000))
        self._poll = poll
        self._poll_ms = max(1, round(poll_interval * 1000))
        self._recheck = recheck
        self._stop = asyncio.Event()
        self._settled = asyncio.Event()  # watching, or known not to be able to
        self._task: asyncio.Task[None] | None = None
        self._reported: str | None = None  # why it is not watching, once logged
        self._pending: set[str] = set()  # to report once the new watch is set up
        self.watching = False
        """True while the directory is being watched."""

    async def start(self) -> None:
        """Start watching in a background task; returns once the watch is set up
        (or known to be unavailable), so that changes made from then on are seen."""
        if self._task is not None:
            raise RuntimeError("the watcher is already started")
        self._stop.clear()
        self._settled.clear()
        self._task = asyncio.create_task(self._run(), name=f"watch {self.path}")
        settled = asyncio.create_task(self._settled.wait())
        try:
            await asyncio.wait(
                {settled, self._task}, timeout=START_TIMEOUT, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            settled.cancel()

    async def stop(self, grace: float = 5.0) -> None:
        """Stop watching: within about `debounce` seconds, or `grace` seconds if a
        callback is running (it is cancelled then)."""
        task, self._task = self._task, None
        if task is None:
            return
        self._stop.set()
        done, _ = await asyncio.wait({task}, timeout=grace)
        if not done:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.watching = False

    async def _run(self) -> None:
        before: tuple[int, int] | str | None = None  # None: not looked at yet
        while not self._stop.is_set():
            identity = await _look(self.path)
            if before is not None and identity != before:
                # it appeared, went away or was replaced: whatever it holds may differ.
                # A new directory is reported once it is watched (with the first batch,
                # or after `recheck`): a reload from then on sees every file, the ones
                # written before the watch was set up included.
                self._pending.add(str(self.path))
            before = identity
            if isinstance(identity, str):
                if self._pending:
                    await self._deliver(self._take_pending())
                self._unavailable(identity)
                await self._pause()
                continue
            try:
                await self._watch(identity)
            except Exception as exc:  # cannot be watched: no inotify, a limit, permissions
                # or a batch lost (a path watchfiles cannot name): what changed meanwhile
                # is unknown, so the whole tree is read once it is watched again.
                self._pending.add(str(self.path))
                self._unavailable(_why(exc))
                await self._pause()
        log.info("watch.stopped", path=str(self.path))

    def _unavailable(self, reason: str) -> None:
        """Not watching, for `reason`: logged once until watching works again."""
        self.watching = False
        if reason != self._reported:
            self._reported = reason
            log.warning(
                "watch.unavailable", path=str(self.path), reason=reason, retry_in=self._recheck
            )
        self._settled.set()

    async def _watch(self, identity: tuple[int, int]) -> None:
        """Watch the directory until stopped, or until it is no longer `identity`."""
        root = await asyncio.to_thread(os.path.realpath, self.path)
        spelled = str(self.path)
        loop = asyncio.get_running_loop()

        def as_configured(path: str) -> str:
            relative = os.path.relpath(path, root)
            return spelled if relative == os.curdir else os.path.join(spelled, relative)

        def watching() -> None:
            def announce() -> None:
                self.watching = True
                self._reported = None
                self._settled.set()
                log.info("watch.started", path=str(self.path), polling=self._poll)

            with contextlib.suppress(RuntimeError):  # the loop is closing
                loop.call_soon_threadsafe(announce)

        stop = _StopEvent(self._stop, watching)
        changes_seen = awatch(
            root,
            watch_filter=lambda change, path: is_relevant(change, path, root),
            debounce=self._max_batch_ms,
            step=self._step_ms,
            stop_event=stop,
            rust_timeout=max(1, round(min(self._recheck, IDENTITY_EVERY) * 1000)),
            yield_on_timeout=True,
            force_polling=self._poll,
            poll_delay_ms=self._poll_ms,
            recursive=True,
            ignore_permission_denied=True,
        )
        async with contextlib.aclosing(changes_seen) as batches:
            # The first step of the iteration makes the watcher (every directory watched)
            # before it first waits: this runs at that wait. Should making it fail, the
            # failure comes within the same step, and this is cancelled.
            set_up = loop.call_soon(stop.set_up)
            try:
                async for batch in batches:  # a batch, or nothing after IDENTITY_EVERY
                    if await _look(self.path) != identity:
                        return  # `_run` reports it and watches what is there now
                    paths = {as_configured(path) for _, path in batch}
                    if self._pending and self.watching:
                        paths |= self._take_pending()
                    if paths:
                        await self._deliver(paths)
            except BaseException:
                set_up.cancel()
                raise

    def _take_pending(self) -> set[str]:
        pending, self._pending = self._pending, set()
        return pending

    async def _deliver(self, paths: set[str]) -> None:
        try:
            await self._on_change(paths)
        except Exception:
            log.exception("watch.callback_failed", path=str(self.path), files=len(paths))

    async def _pause(self) -> None:
        """Sleep `recheck` seconds, or until stopped."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), self._recheck)
