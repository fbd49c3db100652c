"""Round three, defect 3: symlink deploys are followed, and SIGHUP re-reads the config.

Covers, with the daemon as a process against the emulator: `manifests.dir` named
through a relative symlink (`current -> releases/v1`) is followed when the link is
switched to `releases/v2` (by `ln -sfn`, or a new link renamed over the old one):
with the watch, v2's recording starts, a manifest removed from v2 through the link
is stopped (the watch reported it by its release's path, which the reload did not
know: it recorded on), and a manifest added afterwards to the retired v1 is never
started; with the watch off, a SIGHUP sees the switch at once.
SIGHUP re-reads the config: a changed `logging.level` takes effect (debug lines
appear), a key that needs a restart is named in a warning and keeps its running
value, and a config that does not load is one error while the daemon goes on with
the running config. SIGHUPs from the moment the process handles them (its first
lines of ours) to READY end nothing, and a storm of them changing `manifests.*`
leaves one watcher (one inotify descriptor), none once `watch: false`. A secret read
at the start that cannot be read now fails a reload, one whose value changed is named
as waiting for a restart, and a profile whose secret never resolved fails none.
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import DaemonEnv
from tests.e2e.test_daemon import calls, manifest
from tests.harness import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def _releases(env: DaemonEnv) -> tuple[Path, Path, Path]:
    root = env.cli.root
    v1, v2 = root / "releases" / "v1", root / "releases" / "v2"
    v1.mkdir(parents=True)
    v2.mkdir(parents=True)
    (v1 / "a.yaml").write_text(manifest("alpha", "room-a", 101), encoding="utf-8")
    (v2 / "a.yaml").write_text(manifest("alpha", "room-a", 101), encoding="utf-8")
    (v2 / "b.yaml").write_text(manifest("beta", "room-b", 102), encoding="utf-8")
    current = root / "current"
    current.symlink_to("releases/v1")  # relative, as deploy tools write it
    return v1, v2, current


def _switch(current: Path, target: str) -> None:
    """A new link renamed over the old one: the switch is atomic."""
    fresh = current.with_name("current.new")
    fresh.symlink_to(target)
    os.replace(fresh, current)


def _started(env: DaemonEnv) -> set[str]:
    """The channels the emulator saw an acquire for."""
    return {str(r["body"]["cname"]) for r in calls(env, "acquire")}  # type: ignore[index]


async def test_a_switched_symlink_is_followed_by_the_watch(daemon_env: DaemonEnv) -> None:
    v1, _, current = _releases(daemon_env)
    daemon_env.reconfigure({"manifests": {"dir": "./current", "watchInterval": "300ms"}})
    daemon = await daemon_env.start()
    try:
        assert _started(daemon_env) == {"room-a"}
        _switch(current, "releases/v2")
        await wait_until(
            lambda: _started(daemon_env) == {"room-a", "room-b"},
            within=30,
            what="v2's recording started after the switch",
        )
        (current / "b.yaml").unlink()
        await wait_until(
            lambda: {str(r["body"]["cname"]) for r in calls(daemon_env, "stop")} == {"room-b"},  # type: ignore[index]
            within=30,
            what="beta stopped once its manifest was removed",
        )
        # A manifest added to the retired release is not the daemon's any more: after a
        # SIGHUP (a full look) and the pass that follows it, nothing of it was sent.
        (v1 / "c.yaml").write_text(manifest("gamma", "room-c", 103), encoding="utf-8")
        written = (v1 / "c.yaml").stat().st_mtime
        daemon.signal(signal.SIGHUP)
        await daemon.wait_event("manifests.reloaded", trigger="SIGHUP", within=30)
        await daemon.pass_after(written, trigger=None)
        assert "room-c" not in _started(daemon_env)
    finally:
        assert await daemon.stop() == 0


async def test_a_sighup_sees_a_switch_at_once_with_the_watch_off(daemon_env: DaemonEnv) -> None:
    _, _, current = _releases(daemon_env)
    daemon_env.reconfigure({"manifests": {"dir": "./current", "watch": False}})
    daemon = await daemon_env.start()
    try:
        # What `ln -sfn releases/v2 current` does: the old link goes, a new one comes
        current.unlink()
        current.symlink_to("releases/v2")
        daemon.signal(signal.SIGHUP)
        await wait_until(
            lambda: "room-b" in _started(daemon_env), within=30, what="started after SIGHUP"
        )
    finally:
        assert await daemon.stop() == 0


async def test_sighup_reads_the_config_again(daemon_env: DaemonEnv) -> None:
    (daemon_env.cli.root / "recordings.d" / "a.yaml").write_text(
        manifest("alpha", "room-a", 101), encoding="utf-8"
    )
    daemon = await daemon_env.start()
    try:
        assert not daemon.log.named("watch.changed")  # a debug line: not logged at info
        daemon_env.reconfigure({"logging": {"level": "debug"}, "apps": {"main": {"rateLimit": 5}}})
        daemon.signal(signal.SIGHUP)
        reloaded = await daemon.wait_event("config.reloaded", within=30)
        assert "logging.level" in reloaded["changed"]
        (waiting,) = daemon.log.named("config.restart_needed")
        assert waiting["keys"] == ["apps.main.rateLimit"]
        # debug lines now appear (a successful query's api.call is one)
        daemon.signal(signal.SIGHUP)
        await wait_until(
            lambda: any(e.get("level") == "debug" for e in daemon.log.events()),
            within=30,
            what="debug lines after the reload",
        )
        # A config that does not load: one error, and the daemon goes on as it was.
        daemon_env.cli.config.write_text("reconcile: {concurency: 3}\n", encoding="utf-8")
        daemon.signal(signal.SIGHUP)
        failed = await daemon.wait_event("config.reload_failed", within=30)
        assert failed["level"] == "error" and "concurency" in str(failed["error"])
        assert len(daemon.log.named("config.reload_failed")) == 1
        # The manifests are reloaded all the same, and the daemon goes on.
        await daemon.wait_event("manifests.reloaded", trigger="SIGHUP", within=30, after=2)
        assert daemon.alive
        # Monitoring sees it (defect: only the log did): a failed reload, and a problem
        # of the status document until a SIGHUP loads the file again.
        base = await daemon.metrics_url()
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:

            async def problems() -> list[str]:
                answer: list[str] = (await http.get("/api/v1/status")).json()["problems"]
                return answer

            metrics = (await http.get("/metrics")).text
            assert 'orchestrator_reloads_total{outcome="failed"} 1.0' in metrics
            (problem,) = await wait_until(problems, within=30, what="the config's problem")
            assert problem.startswith("the config file does not load") and "concurency" in problem
            daemon_env.reconfigure({"logging": {"level": "info"}})
            daemon.signal(signal.SIGHUP)
            await daemon.wait_event("config.reloaded", within=30, after=1)
            await wait_until(
                lambda: problems_gone(http), within=30, what="no problem once the file loads"
            )
    finally:
        assert await daemon.stop() == 0


async def problems_gone(http: httpx.AsyncClient) -> bool:
    return (await http.get("/api/v1/status")).json()["problems"] == []


def handles_sighup(pid: int) -> bool:
    """Whether the process ignores or catches SIGHUP (its default ends it)."""
    fields = dict(
        line.split(":\t", 1)
        for line in Path(f"/proc/{pid}/status").read_text().splitlines()
        if ":\t" in line
    )
    return bool((int(fields["SigIgn"], 16) | int(fields["SigCgt"], 16)) & 1)


def inotify_descriptors(pid: int) -> int:
    """The inotify instances the process holds: one per watcher."""
    fds = Path(f"/proc/{pid}/fd")
    return sum(1 for fd in fds.iterdir() if os.readlink(fd) == "anon_inode:inotify")


async def test_sighups_at_start_up_and_in_a_storm_leave_one_watcher(
    daemon_env: DaemonEnv,
) -> None:
    """Defects: a SIGHUP in the first second ended the daemon, nothing logged (the unit
    reloads with `kill -HUP`); reloads of the config ran at once, each starting a
    watcher and stopping one: 40 SIGHUPs left 21 watchers, every change was reloaded
    21 times, and `watch: false` stopped none of them."""
    (daemon_env.cli.root / "recordings.d" / "a.yaml").write_text(
        manifest("alpha", "room-a", 101), encoding="utf-8"
    )
    daemon_env.reconfigure({"manifests": {"watchInterval": "300ms"}})
    daemon = await daemon_env.start(ready=False)
    try:
        # From its first line of ours (before it, the interpreter starting, a SIGHUP
        # ends any Python program), through the config's read, and on.
        await wait_until(
            lambda: handles_sighup(daemon.pid), within=30, what="SIGHUP handled", every=0.005
        )
        assert daemon.notify is not None
        notify = daemon.notify
        deadline = asyncio.get_running_loop().time() + 60
        while not any(m.get("READY") == "1" for m in notify.drain()):  # as systemd reads
            assert daemon.alive and asyncio.get_running_loop().time() < deadline
            daemon.signal(signal.SIGHUP)
            await asyncio.sleep(0.05)
        # Those during start-up are taken once it is ready (each ran beside the first
        # load): no reload before READY.
        await daemon.wait_event("config.reloaded", within=60)
        ready_at = daemon.log.named("daemon.ready")[0]["timestamp"]
        assert all(e["timestamp"] >= ready_at for e in daemon.log.named("config.reloaded"))
        for n in range(20):  # a storm, each changing `manifests.*`
            daemon_env.reconfigure({"manifests": {"watchInterval": f"{300 + 100 * (n % 2)}ms"}})
            daemon.signal(signal.SIGHUP)
            await asyncio.sleep(0.02)
        daemon_env.reconfigure({"reconcile": {"resyncInterval": "61s"}})  # the last file
        daemon.signal(signal.SIGHUP)
        # Reloads run one at a time, each reading the file then: once one has seen the
        # last file, every later one finds nothing to change.
        await wait_until(
            lambda: any(
                "reconcile.resyncInterval" in e["changed"]
                for e in daemon.log.named("config.reloaded")
            ),
            within=60,
            what="the last file reloaded",
        )
        assert inotify_descriptors(daemon.pid) == 1
        started, stopped = daemon.log.named("watch.started"), daemon.log.named("watch.stopped")
        assert len(started) == len(stopped) + 1, (len(started), len(stopped))
        daemon_env.reconfigure({"manifests": {"watch": False}})
        daemon.signal(signal.SIGHUP)
        await wait_until(
            lambda: any(
                "manifests.watch" in e["changed"] for e in daemon.log.named("config.reloaded")
            ),
            within=60,
            what="the watch turned off",
        )
        assert inotify_descriptors(daemon.pid) == 0
        assert daemon.alive and not daemon.log.named("daemon.task_failed")
    finally:
        assert await daemon.stop() == 0


async def test_a_sighup_reads_the_secrets_again_and_names_what_waits(
    daemon_env: DaemonEnv,
) -> None:
    """Defect: a secret file rotated or removed was `config.reloaded changed=[]`: the
    daemon went on with the values read at its start, said nothing, and the next start
    failed on the missing one."""
    secret = daemon_env.cli.root / "customer-secret"
    secret.write_text(daemon_env.cli.emulator.customer_secret, encoding="utf-8")
    daemon_env.cli.data["apps"]["main"]["customerSecret"] = {"file": str(secret)}  # not merged
    # A profile whose secret never resolved (left out at the start, said then): it
    # fails no reload (it failed every one).
    daemon_env.reconfigure(
        {
            "apps": {
                "unused": {
                    "appId": "0123456789abcdef0123456789abcdef",
                    "customerId": {"env": "NOT_SET_ANYWHERE"},
                    "customerSecret": {"env": "NOT_SET_ANYWHERE"},
                }
            }
        }
    )
    daemon = await daemon_env.start()
    try:
        daemon_env.reconfigure({"logging": {"level": "debug"}})
        daemon.signal(signal.SIGHUP)
        first = await daemon.wait_event("config.reloaded", within=30)
        assert first["changed"] == ["logging.level"]
        assert not daemon.log.named("config.reload_failed")
        secret.write_text("rotated-value", encoding="utf-8")
        daemon.signal(signal.SIGHUP)
        waiting = await daemon.wait_event("config.restart_needed", within=30)
        assert waiting["keys"] == ["apps.main.customerId/customerSecret (its value)"]
        await daemon.wait_event("config.reloaded", within=30, after=1)
        secret.unlink()
        daemon.signal(signal.SIGHUP)
        failed = await daemon.wait_event("config.reload_failed", within=30)
        error = str(failed["error"])
        assert error.startswith(
            "a secret read at the start cannot be read now: "
            "apps.main.customerId/customerSecret: customerSecret (file:"
        ), error
        assert str(secret) in error and "NOT_SET_ANYWHERE" not in error
        assert "rotated-value" not in daemon.stdout.read_text() + daemon.log.text()
        assert daemon.alive
    finally:
        assert await daemon.stop() == 0
