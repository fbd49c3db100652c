"""The static checks are part of the test suite, so CI fails on them too.

Covers: `ruff check` and `ruff format --check` on the package, tests, benchmarks
and scripts; `mypy --strict` (configured in pyproject.toml) on the package; the import-linter
layer contracts.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PATHS = ["orchestrator", "tests", "benchmarks", "scripts"]

pytestmark = pytest.mark.slow


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, check=False
    )


def test_ruff_check() -> None:
    result = _run("ruff", "check", "--output-format", "concise", *PATHS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format() -> None:
    result = _run("ruff", "format", "--check", *PATHS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_import_layers() -> None:
    """The layer contracts in pyproject.toml (`[tool.importlinter]`) hold."""
    lint_imports = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run(
        [str(lint_imports), "--no-cache"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict() -> None:
    result = _run("mypy", "orchestrator")
    assert result.returncode == 0, result.stdout + result.stderr
