"""`plan`, `apply` and `status` as processes, including kill -9 at the worst moments.

Covers: apply starts what is desired and exits 0, a second apply does nothing;
plan shows actions and a timeline, `--detailed-exitcode` 2/0, `--offline` without
credentials; status text and JSON; apply exits 1 when an action fails; crash
recovery: SIGKILL (and Ctrl-C) right after acquire, right after start (before its
outcome is stored) and during stop; the next apply ends with exactly one live session per
desired recording, no 53 from the emulator, and nothing left running that should
not be. A file name that is not UTF-8 is an error that stops nothing else; a FIFO
put in a manifest's place stops nothing. Secrets
never appear in any output. `plan` and `status` with a store read the
manifests before they open it, so a bulk load forks its worker, and plans as without.
Ctrl-C stops `apply`, `plan` and `status` with exit 130 and one line, not click's
"Aborted!" and the 1 that `status` and `apply` give as an answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap

import pytest

from orchestrator.state import Intent, Phase, open_store
from tests.e2e.conftest import SECRET_ENV, CliEnv, Completed

pytestmark = pytest.mark.e2e


def write_manifest(
    env: CliEnv, name: str, channel: str, uid: int, filename: str | None = None
) -> None:
    text = textwrap.dedent(
        f"""\
        name: {name}
        app: main
        channel: {channel}
        uid: {uid}
        mode: mix
        schedule: always
        token: {{env: AGORA_TOKEN}}
        recording: {{channelType: live, streams: audio+video, maxIdleTime: 300}}
        storage:
          vendor: aws-s3
          region: us-east-1
          bucket: rec
          accessKey: {{env: S3_KEY}}
          secretKey: {{env: S3_SECRET}}
        """
    )
    (env.manifests / (filename or f"{name}.yaml")).write_text(text, encoding="utf-8")


def assert_no_secrets(*texts: str) -> None:
    for text in texts:
        for name, value in SECRET_ENV.items():
            if value:
                assert value not in text, f"{name} leaked"


def live_recordings(env: CliEnv) -> list[dict[str, object]]:
    return [s for s in env.emulator.emu.sessions() if s["live"]]


def codes(env: CliEnv) -> list[object]:
    return [r.get("code") for r in env.emulator.emu.requests()]


async def test_apply_plan_status_round_trip(cli_env: CliEnv) -> None:
    write_manifest(cli_env, "alpha", "room-a", 101)
    write_manifest(cli_env, "beta", "room-b", 202)

    planned = await cli_env.run("plan", "--config", str(cli_env.config), "--detailed-exitcode")
    assert planned.code == 2, planned.stderr
    assert "start" in planned.stdout and "alpha" in planned.stdout and "Timeline:" in planned.stdout
    assert not cli_env.emulator.emu.requests("acquire")  # plan changes nothing

    applied = await cli_env.run("apply", "--config", str(cli_env.config))
    assert applied.code == 0, applied.stdout + applied.stderr
    assert "2 action(s), 0 failed" in applied.stdout
    assert len(live_recordings(cli_env)) == 2

    again = await cli_env.run("apply", "--config", str(cli_env.config))
    assert again.code == 0 and "0 action(s)" in again.stdout

    steady = await cli_env.run("plan", "--config", str(cli_env.config), "--detailed-exitcode")
    assert steady.code == 0, steady.stdout + steady.stderr
    assert "none, everything is as desired" in steady.stdout

    # --offline: no credentials in the environment, no API call.
    before = len(cli_env.emulator.emu.requests())
    offline = await cli_env.run(
        "plan",
        "--config",
        str(cli_env.config),
        "--offline",
        "--format",
        "json",
        env=cli_env.without_credentials(),
    )
    assert offline.code == 0, offline.stderr
    data = json.loads(offline.stdout)
    assert data["actions"] == []
    assert {lane["manifest"] for lane in data["timeline"]} == {"alpha", "beta"}
    assert len(cli_env.emulator.emu.requests()) == before

    status = await cli_env.run("status", "--config", str(cli_env.config), "--format", "json")
    assert status.code == 0
    live = json.loads(status.stdout)["live"]
    assert sorted(s["manifest"] for s in live) == ["alpha", "beta"]
    assert all(s["phase"] == "running" and s["sid"] for s in live)

    (cli_env.manifests / "alpha.yaml").unlink()
    removed = await cli_env.run("apply", "--config", str(cli_env.config))
    assert removed.code == 0
    text = await cli_env.run("status", "--config", str(cli_env.config))
    assert "Live sessions (1)" in text.stdout
    assert "stopped: manifest removed" in text.stdout
    assert_no_secrets(
        planned.stdout, planned.stderr, applied.stdout, applied.stderr, text.stdout, removed.stderr
    )


async def test_apply_exits_1_when_an_action_fails(cli_env: CliEnv) -> None:
    write_manifest(cli_env, "alpha", "room-a", 101)
    cli_env.emulator.emu.fail_next("acquire", "error", count=10)
    result = await cli_env.run("apply", "--config", str(cli_env.config))
    assert result.code == 1
    assert "FAILED" in result.stdout


NOT_UTF8 = b"\xff\xfeSECRET"


@pytest.mark.parametrize("source", ["file", "credential", "env"])
async def test_a_secret_that_is_not_utf8_fails_the_start_with_a_reason(
    cli_env: CliEnv, source: str
) -> None:
    """Defect: a `{file: ...}` secret holding bytes that are not UTF-8 crashed the
    start with a UnicodeDecodeError and a traceback showing a byte of the secret, and
    `status` then called it "starting". It is an unresolvable secret like any other."""
    env = dict(cli_env.env)
    credentials = cli_env.root / "credentials"
    credentials.mkdir()
    if source == "file":
        (cli_env.root / "bin.txt").write_bytes(NOT_UTF8)
        reference = f"{{file: {cli_env.root / 'bin.txt'}}}"
    elif source == "credential":
        (credentials / "s3-key").write_bytes(NOT_UTF8)
        env["CREDENTIALS_DIRECTORY"] = str(credentials)
        reference = "{credential: s3-key}"
    else:
        env["S3_KEY"] = os.fsdecode(NOT_UTF8)  # the child gets the raw bytes back
        reference = "{env: S3_KEY}"
    write_manifest(cli_env, "e3", "room-e", 303)
    manifest = cli_env.manifests / "e3.yaml"
    text = manifest.read_text(encoding="utf-8")
    manifest.write_text(text.replace("{env: S3_KEY}", reference), encoding="utf-8")

    applied = await cli_env.run("apply", "--config", str(cli_env.config), env=env)
    assert applied.code == 1, applied.stdout + applied.stderr
    assert re.search(
        r"FAILED start +e3: cannot resolve a secret: .* is not UTF-8 text$", applied.stdout, re.M
    )
    assert "Traceback" not in applied.stderr and "crashed" not in applied.stderr
    status = await cli_env.run("status", "--config", str(cli_env.config), "--format", "json")
    assert status.code == 1
    [e3] = json.loads(status.stdout)["recordings"]
    assert e3["reason"] == "failing", e3
    assert "is not UTF-8 text" in e3["last_error"]
    for output in (applied.stdout, applied.stderr, status.stdout, status.stderr):
        assert "SECRET" not in output and "0xff" not in output and "\\xff" not in output


async def test_broken_config_is_a_positioned_error(cli_env: CliEnv) -> None:
    cli_env.config.write_text("apps: {main: {appId: [x]}}\n", encoding="utf-8")
    result = await cli_env.run("apply", "--config", str(cli_env.config))
    assert result.code == 1
    assert "config.yaml:1:" in result.stderr and "Traceback" not in result.stderr


async def _signal_when(
    cli_env: CliEnv, endpoint: str, number: signal.Signals = signal.SIGKILL
) -> tuple[int | None, str]:
    """Run apply, and send it `number` once `endpoint` took effect but before its answer
    arrives; its exit code and stderr."""
    cli_env.emulator.emu.fail_next(endpoint, "hold", seconds=30)
    process = await cli_env.start(
        "apply", "--config", str(cli_env.config), sigint=number is signal.SIGINT
    )
    try:
        for _ in range(600):  # bounded: at most 30 s
            if not cli_env.emulator.emu.next_faults:  # the held request arrived
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError(f"apply never called {endpoint}")
        await asyncio.sleep(0.2)  # the emulator has applied it and holds the answer
        process.send_signal(number)
        _, err = await asyncio.wait_for(process.communicate(), timeout=30)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        cli_env.emulator.emu.clear_faults()  # the held answer goes out, to nobody
    return process.returncode, err.decode()


@pytest.mark.parametrize("command", ["apply", "plan", "status"])
async def test_ctrl_c_is_exit_130_with_one_line(cli_env: CliEnv, command: str) -> None:
    # Held in the store's connect (a loopback server that accepts and never answers)
    # until the signal comes: no race with the command finishing first.
    write_manifest(cli_env, "alpha", "room-a", 101)
    with contextlib.ExitStack() as sockets:
        silent = sockets.enter_context(socket.socket())
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        silent.setblocking(False)
        url = f"postgresql://nobody@127.0.0.1:{silent.getsockname()[1]}/x?connect_timeout=60"
        cli_env.reconfigure({"state": {"url": url}})
        process = await cli_env.start(command, "--config", str(cli_env.config), sigint=True)
        try:
            loop = asyncio.get_running_loop()
            held, _ = await asyncio.wait_for(loop.sock_accept(silent), timeout=60)
            sockets.enter_context(held)
            process.send_signal(signal.SIGINT)
            _, err = await asyncio.wait_for(process.communicate(), timeout=30)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
    stderr = err.decode()
    assert process.returncode == 130, stderr
    assert stderr.strip() == "error: interrupted", stderr
    assert "Aborted" not in stderr and "Traceback" not in stderr
    assert cli_env.emulator.emu.requests() == []  # nothing was called


async def _store_sessions(cli_env: CliEnv) -> tuple[list[object], list[object]]:
    async with open_store(str(cli_env.state_db)) as store:
        return list(await store.live_sessions()), list(await store.history())


@pytest.mark.parametrize("number", [signal.SIGKILL, signal.SIGINT], ids=["SIGKILL", "Ctrl-C"])
async def test_kill_right_after_acquire(cli_env: CliEnv, number: signal.Signals) -> None:
    # Ctrl-C (exit 130) leaves what a kill leaves: the intent the next apply finishes.
    write_manifest(cli_env, "alpha", "room-a", 101)
    code, err = await _signal_when(cli_env, "acquire", number)
    assert code == (130 if number is signal.SIGINT else -signal.SIGKILL), err
    live, _ = await _store_sessions(cli_env)
    assert [(s.phase, s.intent) for s in live] == [(Phase.ACQUIRING, Intent.ACQUIRE)]  # type: ignore[attr-defined]

    result = await cli_env.run("apply", "--config", str(cli_env.config))
    assert result.code == 0, result.stdout + result.stderr
    live, history = await _store_sessions(cli_env)
    assert [(s.manifest, s.phase) for s in live] == [("alpha", Phase.RUNNING)]  # type: ignore[attr-defined]
    assert len(live_recordings(cli_env)) == 1
    assert 53 not in codes(cli_env)
    assert "interrupted during acquire" in (history[0].end_reason or "")  # type: ignore[attr-defined]


async def test_kill_right_after_start_before_the_outcome_is_stored(cli_env: CliEnv) -> None:
    write_manifest(cli_env, "alpha", "room-a", 101)
    await _signal_when(cli_env, "start")
    live, _ = await _store_sessions(cli_env)
    assert [(s.phase, s.intent) for s in live] == [(Phase.STARTING, Intent.START)]  # type: ignore[attr-defined]
    assert len(live_recordings(cli_env)) == 1

    result = await cli_env.run("apply", "--config", str(cli_env.config))
    # The start had taken effect and its sid is lost: one recording, flagged, never a duplicate.
    assert len(live_recordings(cli_env)) == 1
    assert 53 not in codes(cli_env)
    live, _ = await _store_sessions(cli_env)
    assert [(s.manifest, s.phase) for s in live] == [("alpha", Phase.UNMANAGEABLE)]  # type: ignore[attr-defined]
    assert result.code == 1 and "unmanageable" in result.stdout

    # The next pass tries a fresh start: 53, because the old session still records
    # (it may still record), and never a duplicate.
    again = await cli_env.run("apply", "--config", str(cli_env.config))
    assert len(live_recordings(cli_env)) == 1 and codes(cli_env).count(53) == 1
    assert "unmanageable" in again.stdout and "is still recording" in again.stdout


async def test_kill_during_stop(cli_env: CliEnv) -> None:
    write_manifest(cli_env, "alpha", "room-a", 101)
    write_manifest(cli_env, "beta", "room-b", 202)
    first = await cli_env.run("apply", "--config", str(cli_env.config))
    assert first.code == 0, first.stdout + first.stderr
    cli_env.emulator.emu.join(cli_env.emulator.app_id, "room-a", "9")
    (cli_env.manifests / "alpha.yaml").unlink()
    await _signal_when(cli_env, "stop")
    live, _ = await _store_sessions(cli_env)
    stopping = [s for s in live if s.manifest == "alpha"]  # type: ignore[attr-defined]
    assert [(s.phase, s.intent) for s in stopping] == [(Phase.STOPPING, Intent.STOP)]  # type: ignore[attr-defined]

    result = await cli_env.run("apply", "--config", str(cli_env.config))
    assert result.code == 0, result.stdout + result.stderr
    live, history = await _store_sessions(cli_env)
    assert [(s.manifest, s.phase) for s in live] == [("beta", Phase.RUNNING)]  # type: ignore[attr-defined]
    assert [s["cname"] for s in live_recordings(cli_env)] == ["room-b"]
    (ended,) = history
    assert ended.end_reason.startswith("stopped: manifest removed")  # type: ignore[attr-defined]
    assert 53 not in codes(cli_env)


async def test_offline_plan_in_ci_needs_no_store_and_creates_none(cli_env: CliEnv) -> None:
    shutil.rmtree(cli_env.state_db.parent)  # a CI checkout has no store
    write_manifest(cli_env, "alpha", "room-a", 101)
    result = await cli_env.run(
        "plan",
        "--config",
        str(cli_env.config),
        "--offline",
        "--detailed-exitcode",
        env=cli_env.without_credentials(),
    )
    assert result.code == 2, result.stderr
    assert "start        alpha: always on" in result.stdout
    assert "planned from an empty state" in result.stdout
    assert not cli_env.state_db.exists()
    assert not cli_env.emulator.emu.requests()


async def test_two_applies_at_once_one_is_refused_and_nothing_is_untracked(
    cli_env: CliEnv,
) -> None:
    """Defect: two `apply` runs at once left live recordings untracked. Now the second
    writer is refused (exit 3, the holder named) and every recording is in the store."""
    for i in range(20):
        write_manifest(cli_env, f"m{i:02d}", f"room-{i}", 100 + i)
    first, second = await asyncio.gather(
        cli_env.run("apply", "--config", str(cli_env.config)),
        cli_env.run("apply", "--config", str(cli_env.config)),
    )
    codes_seen = sorted([first.code, second.code])
    assert codes_seen == [0, 3], first.stderr + second.stderr
    refused = first if first.code == 3 else second
    # Named by its record, or (the lock file just made, its record not yet written)
    # by the pid the kernel reports.
    assert re.search(r'is in use by ("apply"|another process) \(pid \d+', refused.stderr)
    async with open_store(f"sqlite:///{cli_env.state_db}", writer=False) as store:
        live = await store.live_sessions()
    assert len(live) == 20 and len(live_recordings(cli_env)) == 20
    assert {s.sid for s in live} == {s["sid"] for s in live_recordings(cli_env)}
    assert 53 not in codes(cli_env)


async def test_forget_unmanageable_closes_the_record(cli_env: CliEnv) -> None:
    write_manifest(cli_env, "alpha", "room-a", 101)
    cli_env.emulator.emu.fail_next("start", "lost")
    first = await cli_env.run("apply", "--config", str(cli_env.config))
    assert first.code == 1 and "unmanageable" in first.stdout
    cli_env.emulator.emu.advance(301)  # the old recording idles out by itself
    forgot = await cli_env.run(
        "apply", "--config", str(cli_env.config), "--forget-unmanageable", "alpha"
    )
    assert forgot.code == 0, forgot.stdout + forgot.stderr
    assert "forgot unmanageable session" in forgot.stdout
    assert len(live_recordings(cli_env)) == 1  # started afresh in the same pass
    status = await cli_env.run("status", "--config", str(cli_env.config))
    assert "Unmanageable" not in status.stdout and "closed by an operator" in status.stdout


def _as_unprivileged(args: list[str]) -> list[str]:
    """Root reads any file whatever its mode: drop that right for the command, so a
    `chmod 000` means for it what it means for anyone else."""
    if os.geteuid() != 0:
        return args
    return ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--", *args]


async def _apply_unprivileged(cli_env: CliEnv) -> Completed:
    return await _run_unprivileged(cli_env, "apply", "--config", str(cli_env.config))


async def _run_unprivileged(cli_env: CliEnv, *args: str) -> Completed:
    process = await asyncio.create_subprocess_exec(
        *_as_unprivileged(cli_env.args(*args)),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=cli_env.env,
        cwd=cli_env.root,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return Completed(process.returncode, stdout.decode(), stderr.decode())


@pytest.mark.parametrize("what", ["subdirectory", "whole directory", "missing directory"])
async def test_what_cannot_be_read_is_never_taken_as_removed(cli_env: CliEnv, what: str) -> None:
    """Defect: an unreadable or missing manifests directory stopped every recording."""
    team = cli_env.manifests / "team"
    team.mkdir()
    write_manifest(cli_env, "alpha", "room-a", 101)
    write_manifest(cli_env, "beta", "room-b", 102, filename="team/beta.yaml")
    first = await cli_env.run("apply", "--config", str(cli_env.config))
    assert first.code == 0, first.stdout + first.stderr
    assert len(live_recordings(cli_env)) == 2
    moved = cli_env.root / "moved-away"
    if what == "subdirectory":
        team.chmod(0)
    elif what == "whole directory":
        cli_env.manifests.chmod(0)
    else:
        cli_env.manifests.rename(moved)
    try:
        result = await _apply_unprivileged(cli_env)
    finally:
        if moved.exists():
            moved.rename(cli_env.manifests)
        cli_env.manifests.chmod(0o755)
        team.chmod(0o755)
    assert result.code == 1, result.stdout + result.stderr
    assert "cannot" in result.stdout.lower() or "not" in result.stdout.lower()
    assert not cli_env.emulator.emu.requests("stop")
    assert len(live_recordings(cli_env)) == 2


@pytest.mark.parametrize(
    "command", [("plan", "--offline"), ("plan",), ("status",), ("apply",)], ids=" ".join
)
async def test_a_state_directory_that_cannot_be_searched_is_one_error_line(
    cli_env: CliEnv, command: tuple[str, ...]
) -> None:
    """Defect: `plan --offline` looked for the store with a bare `exists()` and printed
    a PermissionError traceback where the other commands said what they cannot do; an
    unknown store is not a missing one (planned from an empty state) either."""
    state = cli_env.state_db.parent
    state.chmod(0)
    try:
        result = await _run_unprivileged(cli_env, *command, "--config", str(cli_env.config))
    finally:
        state.chmod(0o755)
    assert result.code == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1] == (
        f"error: cannot look for state store {cli_env.state_db}: Permission denied"
    )
    assert "planned from an empty state" not in result.stdout


async def test_a_file_name_that_is_not_utf8_stops_nothing(cli_env: CliEnv) -> None:
    """Defect: the name (a lone surrogate to Python) broke the store's write: `apply`
    died with a traceback, and the daemon's every pass failed, so nothing started."""
    write_manifest(cli_env, "alpha", "room-a", 101)
    write_manifest(cli_env, "cafe", "room-c", 103, filename="caf\udce9.yaml")
    applied = await cli_env.run("apply", "--config", str(cli_env.config))
    assert applied.code == 1, applied.stdout + applied.stderr
    assert "Traceback" not in applied.stderr
    shown = f"{cli_env.manifests}/caf\\xe9.yaml:1:1: error: its name is not valid UTF-8"
    assert shown in applied.stdout
    assert [s["cname"] for s in live_recordings(cli_env)] == ["room-a"]
    again = await cli_env.run("apply", "--config", str(cli_env.config))
    assert again.code == 1 and "0 action(s)" in again.stdout


async def test_a_manifest_replaced_by_a_fifo_is_not_taken_as_removed(cli_env: CliEnv) -> None:
    """Defect: a FIFO put in a manifest's place was skipped (a warning) and the manifest
    taken as removed: `plan` showed a stop and `apply` stopped the recording. What the
    path holds is unknown, so its manifest keeps its last known good version."""
    write_manifest(cli_env, "alpha", "room-a", 101)
    write_manifest(cli_env, "lobby2", "room-l", 102)
    first = await cli_env.run("apply", "--config", str(cli_env.config))
    assert first.code == 0, first.stdout + first.stderr
    path = cli_env.manifests / "lobby2.yaml"
    path.unlink()
    os.mkfifo(path)  # never opened: a read would block forever
    planned = await cli_env.run(
        "plan", "--config", str(cli_env.config), "--offline", env=cli_env.without_credentials()
    )
    assert planned.code == 1, planned.stdout + planned.stderr  # as for a file that fails
    assert f"{path}:1:1: warning: it is a FIFO (named pipe), not a regular file" in planned.stdout
    assert "'lobby2' follows its last known good version" in planned.stdout
    assert "stop" not in planned.stdout
    applied = await cli_env.run("apply", "--config", str(cli_env.config))
    assert applied.code == 1, applied.stdout + applied.stderr
    assert not cli_env.emulator.emu.requests("stop")
    assert sorted(s["cname"] for s in live_recordings(cli_env)) == ["room-a", "room-l"]


PROBED_CLI = """
import sys
from orchestrator.manifest import helper
started = []
start = helper.ParseHelper.start
def probed(self, paths, *, strict):
    job = start(self, paths, strict=strict)
    started.append(job is not None)
    return job
helper.ParseHelper.start = probed
if sys.argv[1] == "--no-worker":  # the same command, its load parsing every file itself
    helper.ParseHelper.forking = classmethod(lambda cls: None)
    del sys.argv[1]
from orchestrator.cli import main
sys.argv = ["orchestrator", *sys.argv[1:]]
try:
    main()
finally:
    print("worker started:", started, file=sys.stderr)
"""


async def test_plan_and_status_with_a_store_share_a_bulk_load_with_a_forked_worker(
    cli_env: CliEnv,
) -> None:
    """They read the manifests before they open the store (its connection runs a
    thread, and a process forks only while it runs one): a bulk load forks its worker,
    and the plan is the one a load without a worker gives."""
    from orchestrator.manifest.helper import FORK_BULK

    for i in range(FORK_BULK + 10):
        write_manifest(cli_env, f"rec-{i}", f"room-{i}", 1000 + i)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", PROBED_CLI, *args],
            capture_output=True,
            text=True,
            env=cli_env.without_credentials(),
            cwd=cli_env.root,
            timeout=120,
        )

    plan = ("plan", "--config", str(cli_env.config), "--offline", "--format", "json")
    at = ("--at", "2026-03-02T08:00:00+00:00")
    forked, plain = await asyncio.gather(
        asyncio.to_thread(run, *plan, *at), asyncio.to_thread(run, "--no-worker", *plan, *at)
    )
    assert forked.returncode == plain.returncode == 0, forked.stderr + plain.stderr
    assert "worker started: [True]" in forked.stderr
    assert "worker started: []" in plain.stderr
    assert forked.stdout == plain.stdout
    assert len(json.loads(forked.stdout)["actions"]) == FORK_BULK + 10
    status = await asyncio.to_thread(run, "status", "--config", str(cli_env.config))
    assert status.returncode == 0, status.stderr  # each is "starting": due now
    assert "worker started: [True]" in status.stderr


async def test_status_writes_control_characters_agora_gave_as_escapes(cli_env: CliEnv) -> None:
    """Defect: a file name from a notification (or any text Agora gave) went to the
    terminal as it was: an OSC sequence retitled it, a line break started a line of
    its own ("FAKE LINE: all good")."""
    write_manifest(cli_env, "alpha", "room-a", 101)
    assert (await cli_env.run("apply", "--config", str(cli_env.config))).code == 0
    name = "a\x1b]0;pwned\x07b\nFAKE LINE: all good\x9b"
    db = sqlite3.connect(cli_env.state_db)
    try:
        with db:
            db.execute("UPDATE sessions SET file_list = ?", (json.dumps([{"fileName": name}]),))
    finally:
        db.close()
    text = await cli_env.run("status", "--config", str(cli_env.config))
    assert text.code == 0, text.stderr
    assert "files: a\\x1b]0;pwned\\x07b\\x0aFAKE LINE: all good\\x9b" in text.stdout
    assert not any(c in text.stdout for c in "\x1b\x07\x9b")
    assert not any(line.startswith("FAKE LINE") for line in text.stdout.splitlines())
