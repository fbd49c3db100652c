"""The CLI as a process in an install without aiohttp (the `emulator` extra left out).

Covers: `orchestrator emulator` exits 2 with one line naming the extra and no
traceback, while `emulator --help` still works; `validate` on the example manifests
in recordings.d/ and `init`, `plan --offline`, `plan`, `apply` and `status` on a
config of their own run without aiohttp, so only the emulator needs it.

aiohttp is made unimportable in the child (`sys.modules["aiohttp"] = None` before the
CLI entry point runs): any import of it, or of a submodule, raises
ModuleNotFoundError, as in an environment where it is not installed. Every child is
bounded by a timeout.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

EXAMPLES = Path(__file__).resolve().parents[2] / "recordings.d"
MISSING_EXTRA = (
    "error: the emulator needs aiohttp: install the package with its extra, from a path "
    "(pip install '/path/to/checkout[emulator]'; never a bare name, see README)"
)
USAGE = 2  # README, "CLI" and "The emulator"

WITHOUT_AIOHTTP = (
    "import sys\n"
    "sys.modules['aiohttp'] = None  # what an install without the extra looks like\n"
    "sys.argv[0] = 'orchestrator'\n"
    "from orchestrator.cli import main\n"
    "main()\n"
)


def run_without_aiohttp(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_")}
    env["AGORA_CUSTOMER_ID"] = "no-aiohttp-id"
    env["AGORA_CUSTOMER_SECRET"] = "no-aiohttp-secret"
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_AIOHTTP, *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=60,  # each of these takes a second or two
    )


def test_the_child_really_has_no_aiohttp(tmp_path: Path) -> None:
    # The same preamble, asked directly: proves the blocking works, so the tests
    # below could fail.
    code = WITHOUT_AIOHTTP.split("sys.argv")[0] + "from aiohttp import web\n"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=60
    )
    assert result.returncode == 1
    assert "ModuleNotFoundError" in result.stderr


def test_emulator_says_what_to_install_and_exits_2(tmp_path: Path) -> None:
    result = run_without_aiohttp("emulator", "--port", "0", cwd=tmp_path)
    assert result.returncode == USAGE, result.stderr
    assert result.stderr.splitlines() == [MISSING_EXTRA]
    assert "Traceback" not in result.stderr
    assert result.stdout == ""  # never the "listening on" line


def test_emulator_help_needs_no_aiohttp(tmp_path: Path) -> None:
    result = run_without_aiohttp("emulator", "--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "--port" in result.stdout


def test_validate_on_the_examples_needs_no_aiohttp(tmp_path: Path) -> None:
    result = run_without_aiohttp("validate", str(EXAMPLES), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("valid: ")
    assert "Traceback" not in result.stderr


def test_reconcile_commands_need_no_aiohttp(tmp_path: Path) -> None:
    (tmp_path / "recordings.d").mkdir()
    (tmp_path / "config.yaml").write_text(
        textwrap.dedent(
            """\
            apps:
              main:
                appId: 0123456789abcdef0123456789abcdef
                customerId: {env: AGORA_CUSTOMER_ID}
                customerSecret: {env: AGORA_CUSTOMER_SECRET}
                baseUrl: http://127.0.0.1:9  # no manifests, no sessions: never called
            state: {dir: ./state}
            manifests: {dir: ./recordings.d}
            metrics: {address: null}
            logging: {format: json}
            """
        ),
        encoding="utf-8",
    )
    config = str(tmp_path / "config.yaml")
    for command in (
        ["init"],
        ["plan", "--offline"],
        ["plan"],
        ["apply"],
        ["status"],
    ):
        result = run_without_aiohttp(*command, "--config", config, cwd=tmp_path)
        assert result.returncode == 0, (command, result.stdout, result.stderr)
        assert "Traceback" not in result.stderr, command
    assert (tmp_path / "state" / "state.db").is_file()
