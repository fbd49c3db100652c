"""`orchestrator run` as a process against the emulator on loopback.

Covers: a window's start and stop reach the API, each once, never before its
boundary; a boundary's start is not held up by another manifest's call whose answer
the API holds; a live layout edit is one updateLayout (and nothing else, up to the
next resync pass), a subscription edit one update, a storage edit a restart; broken
YAML over a live manifest keeps the recording and logs a positioned error, and the
fix causes no restart; deleting a manifest stops its recording; an idle exit is
restarted by the next resync pass; SIGHUP reloads (RELOADING/READY) with the watch
off; SIGTERM exits 0 and a restarted daemon adopts live sessions without an acquire;
a second `run`, an `apply` and a `plan` (which says `--offline` works) are refused
with exit 3 while it runs; the notify protocol (READY, RELOADING, STOPPING, WATCHDOG,
STATUS); /metrics, /healthz and
/readyz; no secret value in any log line or metric; a SIGINT or SIGTERM during
start-up (held in the store's connect) exits 0.

How late a boundary or an edit reaches the API is a figure, measured by
benchmarks/daemon_bench.py (`lateness`, `idle`), not asserted here: on a shared
machine a wall-clock bound only tells how busy it was. A proof that nothing more is
sent waits for the next resync pass (`Daemon.pass_after`), not for a while.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sqlite3
import textwrap
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.e2e.conftest import SECRET_ENV, DaemonEnv
from tests.e2e.test_apply_cli import assert_no_secrets, live_recordings
from tests.harness import event_time, orchestrator, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

MUTATING = ("acquire", "start", "update", "updateLayout", "stop")


def manifest(
    name: str,
    channel: str,
    uid: int,
    *,
    schedule: str = "always",
    layout: str = "adaptive",
    subscribe: str = "[7]",
    bucket: str = "rec",
    max_idle: int = 300,
) -> str:
    return textwrap.dedent(
        f"""\
        name: {name}
        app: main
        channel: {channel}
        uid: {uid}
        mode: mix
        schedule: {schedule}
        token: {{env: AGORA_TOKEN}}
        recording:
          channelType: live
          streams: audio+video
          maxIdleTime: {max_idle}
          subscribe: {{audio: {subscribe}}}
        transcoding: {{width: 640, height: 360, fps: 15, bitrate: 500}}
        layout: {{type: {layout}, background: '#000000'}}
        storage:
          vendor: aws-s3
          region: us-east-1
          bucket: {bucket}
          accessKey: {{env: S3_KEY}}
          secretKey: {{env: S3_SECRET}}
        """
    )


def write(env: DaemonEnv, filename: str, text: str) -> float:
    """Write a manifest atomically (as git does); returns the wall-clock time."""
    path = env.cli.manifests / filename
    tmp = path.with_name(f".{filename}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return time.time()


def calls(env: DaemonEnv, *endpoints: str) -> list[dict[str, object]]:
    seen = env.cli.emulator.emu.requests()
    return [r for r in seen if not endpoints or r["endpoint"] in endpoints]


def arrival(request: dict[str, object]) -> float:
    return float(request["time"])  # type: ignore[arg-type]


async def test_window_start_and_stop_reach_the_api_at_their_boundaries(
    daemon_env: DaemonEnv,
) -> None:
    daemon = await daemon_env.start()
    try:
        # Written once the daemon runs, however long a busy machine took to start it.
        opens = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=4)
        closes = opens + timedelta(seconds=3)
        window = f"{{windows: [{{start: '{opens.isoformat()}', end: '{closes.isoformat()}'}}]}}"
        write(daemon_env, "w.yaml", manifest("win", "room-w", 11, schedule=window))
        await wait_until(lambda: calls(daemon_env, "stop"), within=30, what="the window's stop")
        assert [r["endpoint"] for r in calls(daemon_env, *MUTATING)] == [
            "acquire",
            "start",
            "stop",
        ]
        (start,) = calls(daemon_env, "start")
        (stop,) = calls(daemon_env, "stop")
        assert arrival(start) >= opens.timestamp()  # never early
        assert arrival(stop) >= closes.timestamp()
        assert live_recordings(daemon_env.cli) == []
    finally:
        assert await daemon.stop() == 0


def start_of(env: DaemonEnv, channel: str) -> list[dict[str, object]]:
    """The start requests for one channel."""
    return [r for r in calls(env, "start") if channel == r["body"]["cname"]]  # type: ignore[index]


async def test_a_boundary_never_waits_behind_another_manifests_call(
    daemon_env: DaemonEnv,
) -> None:
    """Defect D2 of docs/reliability.md: one manifest's stop answered 8 s late, and a
    resync's query answered 8 s late, delay no other manifest's start: it is sent
    while the held stop still waits for its answer (before the fix, after it)."""
    emu = daemon_env.cli.emulator.emu

    def window(opens: datetime, closes: datetime) -> str:
        return f"{{windows: [{{start: '{opens.isoformat()}', end: '{closes.isoformat()}'}}]}}"

    write(daemon_env, "c.yaml", manifest("always", "room-c", 13))
    daemon = await daemon_env.start()
    try:
        # The windows are written once the daemon runs (however long a busy machine
        # took to start it), and read by its watcher.
        a_opens = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=4)
        a_closes = a_opens + timedelta(seconds=5)
        b_opens = a_closes + timedelta(seconds=2)
        b_closes = b_opens + timedelta(seconds=30)
        early = window(a_opens, a_closes)
        write(daemon_env, "a.yaml", manifest("early", "room-a", 11, schedule=early))
        write(
            daemon_env, "b.yaml", manifest("late", "room-b", 12, schedule=window(b_opens, b_closes))
        )
        await wait_until(
            lambda: start_of(daemon_env, "room-a"), within=30, what="the first window's start"
        )
        # The API holds the answer to the next stop (the first window's) and to the next
        # query (a resync's, every 2 s) for 8 s each.
        emu.fail_next("stop", "hold", seconds=8)
        emu.fail_next("query", "hold", seconds=8)
        await wait_until(
            lambda: start_of(daemon_env, "room-b"), within=30, what="the second window's start"
        )
        (start,) = start_of(daemon_env, "room-b")
        assert arrival(start) >= b_opens.timestamp()
        # The held stop's answer still arrives (the emulator lists a request once answered)
        # and is recorded, after the second window's start was sent.
        answered = await daemon.wait_event(
            "reconcile.action", within=30, manifest="early", action="stop", outcome="ok"
        )
        assert arrival(start) < event_time(answered), "the start waited behind the held stop"
        (stop,) = calls(daemon_env, "stop")
        assert arrival(stop) >= a_closes.timestamp()
        assert sorted(str(r["cname"]) for r in live_recordings(daemon_env.cli)) == [
            "room-b",
            "room-c",
        ]
    finally:
        assert await daemon.stop() == 0


async def test_live_edits_update_in_place_or_restart(daemon_env: DaemonEnv) -> None:
    base = manifest("alpha", "room-a", 101)
    write(daemon_env, "a.yaml", base)
    daemon = await daemon_env.start()
    try:
        assert len(live_recordings(daemon_env.cli)) == 1
        # layout: one updateLayout, and nothing else mutating up to the next resync pass
        before = len(calls(daemon_env, *MUTATING))
        write(daemon_env, "a.yaml", manifest("alpha", "room-a", 101, layout="floating"))
        await wait_until(lambda: calls(daemon_env, "updateLayout"), within=30, what="updateLayout")
        await daemon.pass_after(time.time())
        assert [r["endpoint"] for r in calls(daemon_env, *MUTATING)[before:]] == ["updateLayout"]
        # subscription: exactly one update
        write(
            daemon_env,
            "a.yaml",
            manifest("alpha", "room-a", 101, layout="floating", subscribe="[7, 8]"),
        )
        await wait_until(lambda: calls(daemon_env, "update"), within=30, what="update")
        await daemon.pass_after(time.time())
        assert len(calls(daemon_env, "update")) == 1
        # storage: a restart (stop, acquire, start), one recording afterwards
        write(
            daemon_env,
            "a.yaml",
            manifest("alpha", "room-a", 101, layout="floating", subscribe="[7, 8]", bucket="b2"),
        )
        await wait_until(lambda: len(calls(daemon_env, "start")) == 2, within=30, what="restart")
        assert len(calls(daemon_env, "stop")) == 1
        assert len(live_recordings(daemon_env.cli)) == 1
    finally:
        assert await daemon.stop() == 0


async def test_broken_yaml_keeps_the_recording_and_the_fix_changes_nothing(
    daemon_env: DaemonEnv,
) -> None:
    good = manifest("alpha", "room-a", 101)
    write(daemon_env, "a.yaml", good)
    daemon = await daemon_env.start()
    try:
        before = len(calls(daemon_env, *MUTATING))
        write(daemon_env, "a.yaml", good.replace("mode: mix", "mode: [mix"))
        invalid = await daemon.wait_event("manifest.invalid", within=10)
        assert invalid["file"] == str(daemon_env.cli.manifests / "a.yaml")
        assert isinstance(invalid["line"], int) and invalid["line"] >= 1
        assert isinstance(invalid["column"], int) and invalid["column"] >= 1
        write(daemon_env, "a.yaml", good)
        fixed = await daemon.wait_event("manifests.reloaded", within=10, failing=[])
        await daemon.pass_after(event_time(fixed))  # what the fix led to has been sent
        assert len(calls(daemon_env, *MUTATING)) == before
        assert len(live_recordings(daemon_env.cli)) == 1
    finally:
        assert await daemon.stop() == 0


async def test_deleting_a_manifest_stops_its_recording(daemon_env: DaemonEnv) -> None:
    write(daemon_env, "a.yaml", manifest("alpha", "room-a", 101))
    write(daemon_env, "b.yaml", manifest("beta", "room-b", 102))
    daemon = await daemon_env.start()
    try:
        assert len(live_recordings(daemon_env.cli)) == 2
        (daemon_env.cli.manifests / "b.yaml").unlink()
        await wait_until(lambda: calls(daemon_env, "stop"), within=30, what="stop")
        (stop,) = calls(daemon_env, "stop")
        assert stop["body"]["cname"] == "room-b"  # type: ignore[index]
        (left,) = live_recordings(daemon_env.cli)
        assert left["cname"] == "room-a"
    finally:
        assert await daemon.stop() == 0


async def test_idle_exit_is_restarted_by_the_next_resync(daemon_env: DaemonEnv) -> None:
    write(daemon_env, "a.yaml", manifest("alpha", "room-a", 101, max_idle=30))
    daemon = await daemon_env.start()
    try:
        assert len(calls(daemon_env, "start")) == 1
        # Nobody joined: it exits idle (the emulator's clock moves, not ours).
        exited = time.time()
        daemon_env.cli.emulator.emu.advance(31)
        # A resync's query finds it exited; the restart follows at once (the backoff
        # does not hold back a first restart).
        restart = await daemon.wait_event(
            "reconcile.action", within=30, after=1, manifest="alpha", action="start", outcome="ok"
        )
        assert event_time(restart) > exited
        assert len(calls(daemon_env, "start")) == 2
        assert len(live_recordings(daemon_env.cli)) == 1
    finally:
        assert await daemon.stop() == 0


async def test_sighup_reloads_with_watch_off_and_sigterm_leaves_recordings(
    daemon_env: DaemonEnv,
) -> None:
    daemon_env.reconfigure({"manifests": {"watch": False}})
    write(daemon_env, "a.yaml", manifest("alpha", "room-a", 101))
    daemon = await daemon_env.start()
    assert daemon.notify is not None
    try:
        written = write(daemon_env, "b.yaml", manifest("beta", "room-b", 102))
        await daemon.pass_after(written)
        assert len(calls(daemon_env, "start")) == 1  # watch is off: nothing yet
        daemon.signal(signal.SIGHUP)
        reloading = await daemon.notify.wait_for("RELOADING", "1", within=10)
        assert int(reloading["MONOTONIC_USEC"]) > 0
        await wait_until(
            lambda: len(calls(daemon_env, "start")) == 2, within=30, what="start after SIGHUP"
        )
        ready = [m for m in daemon.notify.drain() if m.get("READY") == "1"]
        assert len(ready) >= 2  # start-up and after the reload
    finally:
        assert await daemon.stop() == 0
    assert any(m.get("STOPPING") == "1" for m in daemon.notify.messages)
    assert len(live_recordings(daemon_env.cli)) == 2  # recordings keep running
    # A new daemon adopts them: queries, and no acquire or start.
    acquires = len(calls(daemon_env, "acquire"))
    queries = len(calls(daemon_env, "query"))
    again = await daemon_env.start()
    try:
        assert len(calls(daemon_env, "query")) >= queries + 2
        assert len(calls(daemon_env, "acquire")) == acquires
    finally:
        assert await again.stop() == 0


async def test_second_writer_is_refused_while_the_daemon_runs(daemon_env: DaemonEnv) -> None:
    write(daemon_env, "a.yaml", manifest("alpha", "room-a", 101))
    daemon = await daemon_env.start()
    try:
        second = await daemon_env.cli.run("run", "--config", str(daemon_env.cli.config))
        assert second.code == 3, second.stderr
        assert f"pid {daemon.pid}" in second.stderr
        apply = await daemon_env.cli.run("apply", "--config", str(daemon_env.cli.config))
        assert apply.code == 3, apply.stderr
        assert f"pid {daemon.pid}" in apply.stderr
        planned = await daemon_env.cli.run("plan", "--config", str(daemon_env.cli.config))
        assert planned.code == 3, planned.stderr
        assert "`plan --offline` reads it beside the daemon" in planned.stderr
        # Readers still work beside it, and leave its -wal and -shm to it (a reader that
        # closed once deleted them: the daemon's own check dropped its SQLite locks).
        status = await daemon_env.cli.run("status", "--config", str(daemon_env.cli.config))
        assert status.code == 0 and "alpha" in status.stdout
        offline = ("plan", "--offline", "--config", str(daemon_env.cli.config))
        assert (await daemon_env.cli.run(*offline)).code == 0
        read = time.time()
        await daemon.pass_after(read)  # its check of the store's files comes first
        status = await daemon_env.cli.run("status", "--config", str(daemon_env.cli.config))
        assert status.code == 0
        await daemon.pass_after(time.time())
        assert daemon.named("store.restored") == []
        wal = daemon_env.cli.state_db.with_name(daemon_env.cli.state_db.name + "-wal")
        assert wal.exists()
        assert len(calls(daemon_env, "start")) == 1
        assert len(live_recordings(daemon_env.cli)) == 1
    finally:
        assert await daemon.stop() == 0


async def test_a_lock_of_another_kind_of_process_is_exit_1_which_systemd_retries(
    daemon_env: DaemonEnv,
) -> None:
    """Defect: a backup script or a `sqlite3` shell holding a lock on the store as the
    daemon started made it exit 3, which the unit's `RestartPreventExitStatus=3`
    (for a second daemon: never fight over it) leaves down for good. It is a
    transient store problem: exit 1, retried by `Restart=on-failure`."""
    write(daemon_env, "a.yaml", manifest("alpha", "room-a", 101))
    daemon = await daemon_env.start()
    assert await daemon.stop() == 0  # the store exists
    other = sqlite3.connect(str(daemon_env.cli.state_db), isolation_level=None, timeout=30)
    try:
        other.execute("BEGIN EXCLUSIVE")
        run = await daemon_env.cli.run("run", "--config", str(daemon_env.cli.config))
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert run.code == 1, run.stderr
    assert "is locked by another process (not an orchestrator" in run.stderr


async def test_a_sigterm_stops_the_daemon_after_the_reader_of_its_log_went_away(
    daemon_env: DaemonEnv,
) -> None:
    """Defect: `orchestrator run 2>&1 | head` once `head` had exited: the SIGTERM
    handler's first log line raised (a broken pipe) before it set the stop, and the
    daemon ran on through every SIGTERM. A line that cannot be written is dropped."""
    write(daemon_env, "a.yaml", manifest("alpha", "room-a", 101))
    command = orchestrator("run", "--config", str(daemon_env.cli.config))
    read, written = os.pipe()  # its stderr: ours to read, and to close
    try:
        child = await asyncio.create_subprocess_exec(
            *command,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=written,
            env=dict(daemon_env.cli.env),
            cwd=daemon_env.cli.root,
        )
    finally:
        os.close(written)
    stream = os.fdopen(read, "rb")
    try:

        def read_until_ready() -> None:
            for line in stream:  # ends with the process, if it never gets ready
                if b'"daemon.ready"' in line:
                    return
            raise AssertionError("the daemon ended before it was ready")

        await asyncio.wait_for(asyncio.to_thread(read_until_ready), 60)
        stream.close()  # the reader goes away: every later line meets a broken pipe
        await asyncio.sleep(0.5)  # a line or two written into the void first
        child.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(child.wait(), 30)
    finally:
        stream.close()
        if child.returncode is None:
            child.kill()
            await asyncio.wait_for(child.wait(), 10)
    assert code == 0


@pytest.mark.parametrize("number", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
async def test_a_stop_during_start_up_is_a_clean_exit(
    daemon_env: DaemonEnv, number: signal.Signals
) -> None:
    # Start-up held in the store's connect (a loopback server that accepts and never
    # answers), before the daemon takes its signals over: a Ctrl-C or SIGTERM there
    # is a stop like any later one (0), not click's "Aborted!" (1) or death by signal.
    with contextlib.ExitStack() as sockets:
        silent = sockets.enter_context(socket.socket())
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        silent.setblocking(False)
        port = silent.getsockname()[1]
        url = f"postgresql://nobody@127.0.0.1:{port}/x?connect_timeout=60"
        daemon_env.reconfigure({"state": {"url": url}})
        daemon = await daemon_env.start(ready=False)
        try:
            loop = asyncio.get_running_loop()
            held, _ = await asyncio.wait_for(loop.sock_accept(silent), timeout=60)
            sockets.enter_context(held)
            daemon.signal(number)
            assert await daemon.exited(within=30) == 0
        finally:
            if daemon.child.alive:
                await daemon.kill()
    stopped = daemon.named("daemon.stopped")
    assert [e.get("reason") for e in stopped] == [number.name]
    assert "Aborted" not in daemon.child.describe()
    assert "Traceback" not in daemon.child.describe()
    assert calls(daemon_env, "acquire", "start") == []


async def test_notify_watchdog_and_status(daemon_env: DaemonEnv) -> None:
    write(daemon_env, "a.yaml", manifest("alpha", "room-a", 101))
    env = dict(daemon_env.cli.env)
    env["WATCHDOG_USEC"] = "400000"  # pings every 0.2 s
    daemon = await daemon_env.start(env=env)
    assert daemon.notify is not None
    try:
        ready = await daemon.notify.wait_for("READY", "1")
        assert "recording" in ready.get("STATUS", "") or any(
            "STATUS" in m for m in daemon.notify.drain()
        )
        await daemon.notify.wait_for("WATCHDOG", "1", after=1, within=10)  # it keeps pinging
    finally:
        assert await daemon.stop() == 0


async def test_metrics_health_and_no_secrets(daemon_env: DaemonEnv) -> None:
    write(daemon_env, "a.yaml", manifest("alpha", "room-a", 101))
    daemon = await daemon_env.start()
    try:
        url = await daemon.metrics_url()
        async with httpx.AsyncClient(base_url=url, timeout=5, trust_env=False) as http:
            health = await http.get("/healthz")
            ready = await http.get("/readyz")
            metrics = await http.get("/metrics")
        assert health.status_code == 200
        assert ready.status_code == 200 and ready.json()["ready"] is True
        text = metrics.text
        assert 'orchestrator_sessions{phase="running"} 1.0' in text
        assert 'orchestrator_api_requests_total{code="",endpoint="start",status="200"}' in text
        assert "orchestrator_reconcile_pass_duration_seconds_bucket" in text
        assert "orchestrator_next_boundary_timestamp_seconds" in text
    finally:
        assert await daemon.stop() == 0
    assert_no_secrets(daemon.log.text(), text)
    assert all(value not in daemon.log.text() for value in SECRET_ENV.values() if value)


async def test_a_store_removed_under_the_daemon_is_written_back(daemon_env: DaemonEnv) -> None:
    write(daemon_env, "a.yaml", manifest("alpha", "room-a", 101))
    daemon = await daemon_env.start()
    try:
        daemon_env.cli.state_db.unlink()
        await daemon.wait_event("store.restored", within=10)  # at the next resync (2 s)
        assert daemon_env.cli.state_db.exists()
        status = await daemon_env.cli.run("status", "--config", str(daemon_env.cli.config))
        assert status.code == 0 and "alpha: running" in status.stdout
        assert len(live_recordings(daemon_env.cli)) == 1
    finally:
        assert await daemon.stop() == 0
