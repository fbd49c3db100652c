"""The daemon's manifest snapshot: a restart parses only the files whose bytes changed.

Covers, with `orchestrator run` as a process against the emulator: a first start
parses every file and writes the snapshot at shutdown (mode 0600, no secret value
in it, a file with a literal secret left out); a restart takes every unchanged file
from it (`restored`) and parses the one edited while it was down, which reaches the
API as that edit would (one update, no acquire), and reports a broken file's
findings with their line as a fresh load would; a changed configuration, and a
snapshot others may write, are not used (every file parsed, recordings unharmed). A
first start of a bulk tree shares its load with the worker started as the daemon
launched, and leaves no process behind.
"""

from __future__ import annotations

import asyncio
import os
import stat
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from orchestrator.manifest.helper import BULK, SHARE_EARLY
from tests.e2e.conftest import SECRET_ENV, DaemonEnv
from tests.e2e.test_daemon import calls, manifest, write
from tests.e2e.test_demo import descendants
from tests.harness import Daemon, gone

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

LITERAL = "literal-e2e-bucket-secret"


def snapshot_path(env: DaemonEnv) -> Path:
    return env.cli.root / "state" / "manifests.snapshot"


def reloaded(daemon: Daemon) -> dict[str, object]:
    (event,) = daemon.named("manifests.reloaded", trigger="start")
    return event


async def run_once(env: DaemonEnv) -> Daemon:
    """Start the daemon, wait for it to be ready, stop it (exit 0): its log stays."""
    daemon = await env.start()
    assert await daemon.stop() == 0
    return daemon


async def test_a_restart_parses_only_what_changed(daemon_env: DaemonEnv) -> None:
    write(daemon_env, "a.yaml", manifest("alpha", "room-a", 101))
    write(daemon_env, "b.yaml", manifest("beta", "room-b", 102))
    write(daemon_env, "broken.yaml", "name: [unclosed\n")
    literal = manifest("gamma", "room-c", 103).replace("{env: S3_SECRET}", LITERAL)
    write(daemon_env, "c.yaml", literal)

    first = await run_once(daemon_env)
    assert reloaded(first)["parsed"] == 4 and reloaded(first)["restored"] == 0
    (written,) = first.named("manifests.snapshot_written")
    path = snapshot_path(daemon_env)
    st = os.stat(path)
    assert stat.S_IMODE(st.st_mode) == 0o600 and st.st_size == written["bytes"]
    content = path.read_bytes()
    for value in (LITERAL, *(v for v in SECRET_ENV.values() if v)):
        assert value.encode() not in content
    assert b"room-a" in content and b"room-c" not in content  # the literal's file: left out

    # Edited while the daemon was down: a subscription change.
    write(daemon_env, "b.yaml", manifest("beta", "room-b", 102, subscribe="[7, 8]"))
    acquires, updates = len(calls(daemon_env, "acquire")), len(calls(daemon_env, "update"))
    second = await daemon_env.start()
    try:
        assert second.named("manifests.snapshot_read")[0]["files"] == 3
        event = reloaded(second)
        assert event["restored"] == 2  # alpha's file and the broken one
        assert event["parsed"] == 2  # beta's edit and the literal's file
        broken = str(daemon_env.cli.manifests / "broken.yaml")
        findings = [(e["line"], e["column"], e["message"]) for e in first.named("manifest.invalid")]
        assert findings and all(e["file"] == broken for e in first.named("manifest.invalid"))
        again = [(e["line"], e["column"], e["message"]) for e in second.named("manifest.invalid")]
        assert again == findings  # as the parse of the first start placed them
        assert len(calls(daemon_env, "update")) == updates + 1  # the edit, as if live
        assert len(calls(daemon_env, "acquire")) == acquires  # nothing restarted
    finally:
        assert await second.stop() == 0


async def test_a_snapshot_of_another_config_or_writable_by_others_is_not_used(
    daemon_env: DaemonEnv,
) -> None:
    write(daemon_env, "a.yaml", manifest("alpha", "room-a", 101))
    write(daemon_env, "b.yaml", manifest("beta", "room-b", 102))
    await run_once(daemon_env)
    restored = reloaded(await run_once(daemon_env))
    assert (restored["parsed"], restored["restored"]) == (0, 2)

    daemon_env.reconfigure({"reconcile": {"resyncInterval": "3s"}})
    other = await run_once(daemon_env)
    assert other.named("manifests.snapshot_read")[0]["files"] == 0
    assert (reloaded(other)["parsed"], reloaded(other)["restored"]) == (2, 0)

    os.chmod(snapshot_path(daemon_env), 0o666)  # noqa: S103  # the case under test
    acquires = len(calls(daemon_env, "acquire"))
    unsafe = await run_once(daemon_env)
    (unused,) = unsafe.named("manifests.snapshot_unused")
    assert "others may write it" in str(unused["error"])
    assert (reloaded(unsafe)["parsed"], reloaded(unsafe)["restored"]) == (2, 0)
    assert len(calls(daemon_env, "acquire")) == acquires  # recordings unharmed
    assert stat.S_IMODE(os.stat(snapshot_path(daemon_env)).st_mode) == 0o600  # written anew


async def test_a_bulk_first_start_shares_its_load_with_a_worker_started_at_launch(
    daemon_env: DaemonEnv,
) -> None:
    """A tree of `BULK` files and no snapshot: the worker the daemon started as it
    launched, given its part of the files then, parses it for the first load
    (`helped`), and nothing the daemon started outlives it."""
    opens = datetime.now(UTC) + timedelta(days=30)  # a window never open during the test
    closes = opens + timedelta(minutes=30)
    later = f"{{windows: [{{start: '{opens.isoformat()}', end: '{closes.isoformat()}'}}]}}"
    for i in range(BULK):
        path = daemon_env.cli.manifests / f"d{i % 20:02d}" / f"m{i:05d}.yaml"
        path.parent.mkdir(exist_ok=True)
        path.write_text(manifest(f"m{i:05d}", f"room-{i}", 1000 + i, schedule=later))
    daemon = await daemon_env.start()
    event = reloaded(daemon)
    assert event["parsed"] == BULK and event["helped"] == int(BULK * SHARE_EARLY)
    started = descendants(daemon.pid)[1:]  # what it started and still runs at READY
    assert await daemon.stop() == 0
    deadline = time.monotonic() + 30
    while not all(gone(pid) for pid in started):
        assert time.monotonic() < deadline, f"{started} outlived the daemon"
        await asyncio.sleep(0.05)
