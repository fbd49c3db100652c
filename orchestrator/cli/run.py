"""`run`: the daemon (see orchestrator/daemon/service.py).

Exit codes: 0 after a clean shutdown (SIGTERM/SIGINT, during start-up too: it is
cancelled before any request is sent); 1 when the config, the manifests directory
or the store cannot be used, or the metrics address cannot be bound; 3 when another
process (a daemon or an `apply`) holds the store. The lock is taken before any port
is bound or any request is sent.

The daemon's first start creates the store (when neither it nor its lock file
exists); a store that existed and is gone, empty or foreign is an error that says
how to recover, never silently a new empty one.

At start-up, once logging is configured and before anything is opened, the daemon
raises its soft descriptor limit to the hard one (`daemon.open_files`, logged once)
and routes what Python or a library would print to stderr (the event loop's errors,
a thread's, warnings) into the log as events, so that every line of a JSON log is
JSON.
"""

from __future__ import annotations

import asyncio
import os
import resource
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from orchestrator.cli import cli, echo_error
from orchestrator.cli.context import STORE_BUSY
from orchestrator.cli.options import sources

if TYPE_CHECKING:
    from orchestrator.config import Config
    from orchestrator.manifest.helper import ParseHelper


@cli.command("run")
@sources
def run_command(
    config_path: Path | None, manifests_dir: Path | None, state_url: str | None
) -> None:
    """Run the daemon: keep live recordings equal to the manifests until SIGTERM."""
    # SIGINT stops the daemon whatever disposition it inherited (a script's background
    # job starts with it ignored): during start-up as `Daemon.run` does after it.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    terminated: list[bool] = []
    try:
        code = asyncio.run(_run(config_path, manifests_dir, state_url, terminated))
    except (KeyboardInterrupt, asyncio.CancelledError) as stopped:
        if isinstance(stopped, asyncio.CancelledError) and not terminated:
            raise  # not a SIGTERM of ours: a defect, not a stop
        # SIGINT or SIGTERM during start-up, before the daemon takes its signals over:
        # the start-up was cancelled (what it had opened is closed on the way out, and
        # no request has been sent yet). A stop like any other: status 0, not click's
        # "Aborted!" and 1, nor death by the signal.
        import structlog

        if structlog.is_configured():
            reason = "SIGTERM" if terminated else "SIGINT"
            structlog.get_logger("orchestrator.daemon").info("daemon.stopped", reason=reason)
        code = 0
    sys.exit(code)


async def _run(
    config_path: Path | None,
    manifests_dir: Path | None,
    state_url: str | None,
    terminated: list[bool],
) -> int:
    # Until `Daemon.run` takes the signals over, SIGTERM cancels the start-up, as
    # asyncio.run does on SIGINT (`run_command` makes either a clean stop; `terminated`
    # tells it the cancellation was a SIGTERM).
    start_up = asyncio.current_task()
    assert start_up is not None

    def terminate() -> None:
        terminated.append(True)
        start_up.cancel()

    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, terminate)
    # A SIGHUP from now until `Daemon.run` takes it over (a deploy's reload) would end
    # the process: it is kept, and the daemon reads the config again once it runs.
    hung_up: list[bool] = []
    loop.add_signal_handler(signal.SIGHUP, lambda: hung_up.append(True))
    from orchestrator.config import ConfigError, load_config

    try:
        config = load_config(config_path)
    except ConfigError as exc:
        echo_error(exc)
        return 1
    manifests = manifests_dir or config.manifests.dir
    helper = _helper(config, manifests)
    try:
        fixed = manifests_dir is not None
        return await _serve(
            config, config_path, manifests, fixed, state_url, helper, lambda: bool(hung_up)
        )
    finally:
        helper.release()  # unless the first load took it


def _helper(config: Config, manifests: Path) -> ParseHelper:
    """The worker for bulk loads, started now when the first load will be one.

    A first start of a large tree parses thousands of files: the worker that shares that
    load starts now, and imports the parser while this process imports the rest and
    opens the store. With no snapshot to take the files from, the load parses them all:
    the worker is given its part now and parses it meanwhile. A restart that takes every
    file from the snapshot ends it unused after the first load; a smaller tree never
    starts one. Run before the event loop has anything else to do."""
    from orchestrator.manifest.discovery import Discovery, holds_at_least
    from orchestrator.manifest.helper import BULK, ParseHelper
    from orchestrator.manifest.snapshot import SNAPSHOT_FILE

    helper = ParseHelper()
    if not os.path.exists(config.state.dir / SNAPSHOT_FILE):  # False on any error too
        helper.prestart(Discovery(remember=False).discover([manifests]).files)
    elif holds_at_least(manifests, BULK):
        helper.prestart()
    return helper


async def _serve(
    config: Config,
    config_path: Path | None,
    manifests: Path,
    manifests_fixed: bool,
    state_url: str | None,
    helper: ParseHelper,
    hung_up: Callable[[], bool],
) -> int:
    import structlog

    from orchestrator.daemon.metrics import Metrics
    from orchestrator.daemon.notify import Notifier
    from orchestrator.daemon.service import Daemon, ReceiverError
    from orchestrator.logging import configure_logging, log_process_errors
    from orchestrator.runtime import Hooks, never_created, open_runtime
    from orchestrator.state import StoreBusyError, StoreError, StoreLockedError

    fmt = config.logging.format
    configure_logging(config.logging.level, json=None if fmt == "auto" else fmt == "json")
    log_process_errors(asyncio.get_running_loop())
    log = structlog.get_logger("orchestrator.daemon")
    open_files = raise_open_files_limit()
    (log.warning if "error" in open_files else log.info)("daemon.open_files", **open_files)
    metrics = Metrics()
    hooks = Hooks(
        on_call=lambda call: metrics.observe_api_call(
            call.endpoint, call.status, call.code, call.latency
        ),
        on_wait=metrics.observe_rate_wait,
        on_rollover=metrics.observe_rollover,
    )
    url = state_url or config.state.url
    try:
        # The first start creates the store; one that existed and is gone is an error.
        first = never_created(url)
        async with open_runtime(
            config, state_url=url, holder="run", hooks=hooks, create=first
        ) as runtime:
            if first:
                log.warning("daemon.store_created", path=url, detail="first start: a new store")
            daemon = Daemon(
                runtime,
                manifests=manifests,
                notifier=Notifier.from_environ(),
                metrics=metrics,
                config_path=config_path,  # None: $ORCHESTRATOR_CONFIG, as at start
                manifests_fixed=manifests_fixed,  # from the command line: a SIGHUP keeps it
                helper=helper,
                hung_up=hung_up,
            )
            try:
                code = await daemon.run()
            finally:
                signal.signal(signal.SIGHUP, signal.SIG_IGN)  # closing: nothing to reload
            # Stopped: a repeated SIGINT or SIGTERM (a terminal's Ctrl-C reaches the
            # whole process group, and a wrapper may pass it on) changes nothing now;
            # Python's default would end a clean exit as killed by the signal.
            for signum in (signal.SIGINT, signal.SIGTERM):
                signal.signal(signum, signal.SIG_IGN)
            return code
    except StoreBusyError as exc:
        log.error("daemon.store_busy", error=str(exc))
        echo_error(exc)
        # Another orchestrator (its writer lock): 3, which the unit never restarts on.
        # A lock of some other process (a backup, a `sqlite3` shell) passes: 1, retried.
        return 1 if isinstance(exc, StoreLockedError) else STORE_BUSY
    except StoreError as exc:
        log.error("daemon.store_error", error=str(exc))
        echo_error(exc)
        return 1
    except (OSError, ReceiverError) as exc:  # the metrics or notifications address
        log.error("daemon.failed", error=str(exc))
        echo_error(exc)
        return 1


def raise_open_files_limit() -> dict[str, object]:
    """Raise the soft RLIMIT_NOFILE to the hard limit; what it was and is now.

    systemd starts a service with a soft limit of 1,024 (unless the unit sets
    `LimitNOFILE=`) because a program that uses select() breaks above it; the hard
    limit is what the service may use. The daemon waits with epoll (asyncio's
    selector on Linux), never select(), so it takes the hard limit, as systemd
    recommends for such programs. The unit sets both anyway (packaging/
    orchestrator.service); this covers a daemon started any other way. An infinite
    hard limit is left alone (the kernel would refuse it as a soft one).
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    facts: dict[str, object] = {"soft_before": soft, "soft": soft, "hard": hard}
    if soft == hard or hard == resource.RLIM_INFINITY:
        return facts
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (OSError, ValueError) as exc:
        facts["error"] = str(exc)
    facts["soft"] = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return facts
