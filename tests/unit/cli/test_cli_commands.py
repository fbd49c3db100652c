"""The commands are imported when they run, and the group still knows every one.

Covers: `COMMANDS` names every command the modules of `orchestrator.cli` define,
each with the module that defines it (a command missing there could not be run);
`--help` lists them all; as a process (nothing imported before), an unknown command
is still answered with click's "Did you mean" over every command, and `validate`
imports no other command's module (not `plan` nor `status`, which need asyncio and
the store, nor `emulator`).
"""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import orchestrator.cli
from orchestrator.cli import COMMANDS, cli

EXAMPLES = Path(__file__).resolve().parents[3] / "recordings.d"


def test_every_command_is_named_with_its_module() -> None:
    for module in pkgutil.iter_modules(orchestrator.cli.__path__, "orchestrator.cli."):
        importlib.import_module(module.name)
    defined = {name: command.callback.__module__ for name, command in cli.commands.items()}
    assert defined == dict(COMMANDS)


def test_help_lists_every_command() -> None:
    result = CliRunner().invoke(cli, ["--help"], prog_name="orchestrator")
    assert result.exit_code == 0, result.output
    listed = result.output.split("Commands:\n", 1)[1].splitlines()
    assert [line.split()[0] for line in listed if line.strip()] == sorted(COMMANDS)


# The modules of the CLI a process imported, printed on stderr as it exits.
IMPORTED = (
    "import atexit, sys\n"
    "atexit.register(lambda: print(*sorted(m for m in sys.modules"
    " if m.startswith('orchestrator.cli') or m == 'orchestrator.emulator'), file=sys.stderr))\n"
    "sys.argv[0] = 'orchestrator'\n"
    "from orchestrator.cli import main\n"
    "main()\n"
)


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The CLI in a process of its own (nothing imported yet), bounded in time."""
    return subprocess.run(
        [sys.executable, "-c", IMPORTED, *args], capture_output=True, text=True, cwd=cwd, timeout=60
    )


@pytest.mark.e2e
def test_an_unknown_command_is_told_the_nearest(tmp_path: Path) -> None:
    result = run("validat", "x", cwd=tmp_path)
    assert result.returncode == 2
    assert "Error: No such command 'validat'. Did you mean 'validate'?" in result.stderr


@pytest.mark.e2e
def test_validate_imports_no_other_command(tmp_path: Path) -> None:
    result = run("validate", str(EXAMPLES), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1].startswith("valid: ")
    imported = result.stderr.splitlines()[-1].split()
    assert imported == [
        "orchestrator.cli",
        "orchestrator.cli.context",
        "orchestrator.cli.manifests",
        "orchestrator.cli.options",
    ]


_INTERRUPT_AT_IMPORT = """
import sys
target = sys.argv[1]

class Interrupting:  # a Ctrl-C while `target` loads, however it is imported
    def find_spec(self, name, path=None, module=None):
        if name == target:
            raise KeyboardInterrupt
        return None

sys.meta_path.insert(0, Interrupting())
from orchestrator.__main__ import main
sys.argv[1:] = ["validate", "--help"]
main()
"""


@pytest.mark.parametrize("module", ["orchestrator.cli", "orchestrator.cli.manifests"])
def test_ctrl_c_while_the_cli_loads_is_one_line_and_130(tmp_path: Path, module: str) -> None:
    """Defect: a Ctrl-C in the tenth of a second that loading the CLI takes was a
    traceback (and, while click read the arguments, click's "Aborted!" and exit 1)."""
    result = subprocess.run(
        [sys.executable, "-c", _INTERRUPT_AT_IMPORT, module],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    assert result.returncode == 130, result.stderr
    assert result.stderr.strip() == "error: interrupted"
