"""The README works as written: its first-recording walkthrough and its CI workflow.

Covers: the files the walkthrough shows (`config.yaml`, `recordings.d/lobby.yaml`) and
its commands, run as it says against the emulator it starts (on a free port instead of
8765): `validate --strict` and `plan --offline` print what the README shows, the daemon
starts the recording, `status` says it records (exit 0); the recording that cannot start
(`hall.yaml`, a variable that is not set) shows under "Not recording" with the variable's
name (exit 1). The GitHub Actions workflow is valid YAML, installs the checkout, and its
other commands pass on this checkout as written.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")
BIN = Path(sys.executable).parent

pytestmark = pytest.mark.slow


def section(title: str) -> str:
    start = README.index(f"\n## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start : end if end > 0 else None]


def shown_file(text: str, name: str) -> str:
    """The ```yaml block that follows the line "`name`:"."""
    match = re.search(rf"^`{re.escape(name)}`:\n\n```yaml\n(.*?)^```", text, re.M | re.S)
    assert match, f"the README shows no {name}"
    return match.group(1)


def shell_blocks(text: str) -> list[list[str]]:
    """Each ```sh block as its lines, comments and blank lines dropped."""
    blocks = re.findall(r"^```sh\n(.*?)^```", text, re.M | re.S)
    return [
        [ln.split(" #")[0].strip() for ln in b.splitlines() if ln.strip() and ln[0] != "#"]
        for b in blocks
    ]


def expected(text: str, command: str) -> list[str]:
    """The `# ...` lines the README prints under `command`, as it shows them."""
    block = next(b for b in re.findall(r"^```sh\n(.*?)^```", text, re.M | re.S) if command in b)
    return [ln[2:] for ln in block.splitlines() if ln.startswith("# ") and "..." not in ln]


def run(
    args: list[str], cwd: Path, env: dict[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert "Traceback" not in done.stderr, done.stderr
    return done


def wait_for(predicate: Callable[[], bool], what: str, within: float = 60) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"{what}: not within {within} s")


def test_the_first_recording_walkthrough_works_as_written(tmp_path: Path) -> None:
    walk = section("Your first recording")
    blocks = shell_blocks(walk)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ORCHESTRATOR_", "AGORA_"))}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"

    # 1. the emulator (on a free port: the README's 8765 may be taken here)
    assert blocks[0] == ["orchestrator emulator --port 8765"]
    emulator = subprocess.Popen(
        [*shlex.split(blocks[0][0].replace("8765", "0")), "--log-level", "warning"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    daemon: subprocess.Popen[str] | None = None
    try:
        assert emulator.stdout is not None
        line = emulator.stdout.readline()
        port = re.search(r"http://127\.0\.0\.1:(\d+)", line)
        assert port, line

        # 2. and 4. the files, as shown
        assert blocks[1] == ["mkdir first-recording && cd first-recording"]
        work = tmp_path / "first-recording"
        work.mkdir()
        config = shown_file(walk, "config.yaml")
        assert "baseUrl: http://127.0.0.1:8765" in config
        config = config.replace(":8765", f":{port.group(1)}").replace(":9464", ":0")
        (work / "config.yaml").write_text(config, encoding="utf-8")
        (work / "recordings.d").mkdir()
        lobby = shown_file(walk, "recordings.d/lobby.yaml")
        (work / "recordings.d" / "lobby.yaml").write_text(lobby, encoding="utf-8")

        # 3. the credentials
        for exports in blocks[2]:
            assert exports.startswith("export ")
            for pair in shlex.split(exports)[1:]:
                key, _, value = pair.partition("=")
                env[key] = value

        # 5. validate
        (validate,) = blocks[3]
        done = run(shlex.split(validate), work, env)
        assert done.returncode == 0, done.stdout
        assert done.stdout.strip() == expected(walk, validate)[0]

        # 6. plan
        (plan,) = blocks[4]
        done = run(shlex.split(plan), work, env)
        assert done.returncode == 0, done.stdout + done.stderr
        for shown in expected(walk, plan):
            assert shown in done.stdout

        # 7. the daemon: it starts the recording
        (start,) = blocks[5]
        log = (tmp_path / "daemon.log").open("w", encoding="utf-8")
        daemon = subprocess.Popen(shlex.split(start), cwd=work, env=env, stderr=log, text=True)
        log.close()  # the child has its own descriptor
        status_command = shlex.split(blocks[6][0])

        def recording() -> bool:
            done = run(status_command, work, env)
            return done.returncode == 0 and "1 wanted now, 1 recording" in done.stdout

        wait_for(recording, "the lobby recording")
        done = run(status_command, work, env)
        assert "lobby  should record (always); recording (session #1" in done.stdout

        # The recording that cannot start: hall.yaml, as the README says to write it.
        hall = lobby.replace("name: lobby", "name: hall").replace("channel: lobby", "channel: hall")
        hall = hall.replace("accessKey: {env: S3_ACCESS_KEY}", "accessKey: {env: HALL_KEY}")
        assert "HALL_KEY" in hall and "{env:\nHALL_KEY}" in walk.replace("`", "")
        (work / "recordings.d" / "hall.yaml").write_text(hall, encoding="utf-8")

        def failing() -> bool:
            done = run(status_command, work, env)
            return done.returncode == 1 and "  hall: failing:" in done.stdout

        wait_for(failing, "hall failing")
        assert "HALL_KEY" in run(status_command, work, env).stdout
    finally:
        for process in (daemon, emulator):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
        codes = [p.wait(timeout=30) for p in (daemon, emulator) if p is not None]
        if emulator.stdout is not None:
            emulator.stdout.close()
    assert codes == ([0, 0] if daemon is not None else [0])


def test_the_ci_workflow_runs_as_written() -> None:
    block = re.search(
        r"^```yaml\n(name: manifests\n.*?)^```", section("Validate in CI"), re.M | re.S
    )
    assert block, "no workflow in the README"
    workflow = YAML(typ="safe").load(block.group(1))
    steps = workflow["jobs"]["validate"]["steps"]
    assert steps[0]["uses"].startswith("actions/checkout@")
    assert steps[1]["with"]["python-version"] == "3.11"
    commands = [s["run"] for s in steps if "run" in s]
    assert commands[0] == "python -m pip install ."  # the wheel test installs it like this
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ORCHESTRATOR_", "AGORA_"))}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    for command in commands[1:]:
        done = run(shlex.split(command), ROOT, env)
        assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
