"""What a command does when its output cannot be written, as processes.

Covers: stdout on a full device (`/dev/full`) for `validate`, `schema`, `show`, `plan`
and `--help`: one line `error: cannot write output: No space left on device` on
stderr and exit 1, no traceback; stdout a pipe whose reader has gone (`validate |
head -1`): nothing on stderr and exit 141, as a shell reports a tool that SIGPIPE
ended (click alone said nothing and exited 1, which `validate` gives as an answer).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.harness.config import config_data, write_config
from tests.harness.processes import child_env, orchestrator
from tests.unit.manifest.manifest_docs import GOOD_TEXT

pytestmark = pytest.mark.e2e

EXAMPLES = Path(__file__).resolve().parents[2] / "recordings.d"
# Offline commands only: the API address is never called.
CONFIG = config_data(
    {"main": "0123456789abcdef0123456789abcdef"}, "http://127.0.0.1:9", metrics=False
)
COMMANDS = {
    "validate": ("validate", str(EXAMPLES)),
    "schema": ("schema",),
    "show": ("show", str(EXAMPLES)),
    "plan": ("plan", "--offline", "--config", "config.yaml"),
    "help": ("--help",),
}


@pytest.fixture
def site(tmp_path: Path) -> Path:
    write_config(tmp_path / "config.yaml", CONFIG)
    (tmp_path / "recordings.d").mkdir()
    (tmp_path / "recordings.d" / "standup.yaml").write_text(
        GOOD_TEXT.format(name="standup", channel="room-1"), encoding="utf-8"
    )
    return tmp_path


def run(site: Path, args: tuple[str, ...], stdout: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        orchestrator(*args),
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        cwd=site,
        env=child_env(),
        timeout=60,
        check=False,
    )


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full on this system")
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_full_device_is_one_error_line(site: Path, command: str) -> None:
    """Defect: `OSError: [Errno 28] No space left on device` and a traceback."""
    with open("/dev/full", "wb") as full:
        result = run(site, COMMANDS[command], full.fileno())
    assert result.returncode == 1
    assert result.stderr.splitlines() == ["error: cannot write output: No space left on device"]


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_reader_that_went_away_ends_the_command_quietly(site: Path, command: str) -> None:
    """The pipe's read end is closed before the command starts: its first write fails,
    whatever the size of its output and however fast a reader would have been."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        result = run(site, COMMANDS[command], write_end)
    finally:
        os.close(write_end)
    assert result.returncode == 141
    assert result.stderr == ""
