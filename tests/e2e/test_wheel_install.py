"""The wheel as a user installs it: built from this checkout, installed with pipx.

Covers: the wheel builds (from a copy of the checkout, so the build leaves no build/
or egg-info in the work tree) with no deprecation warning from the build backend;
`pipx install` of it into a temporary PIPX_HOME and PIPX_BIN_DIR, its dependencies
from the package index, gives an `orchestrator` command in the pipx bin dir that
runs the installed package (not this checkout), prints the version, validates the
example manifests with --strict and prints the same JSON Schema as the checkout;
the installed metadata names our distribution and its Apache-2.0 licence, and the
dist-info carries LICENSE; the README named by `Documentation=` in
packaging/orchestrator.service exists at that path relative to the venv of its
`ExecStart=`, beside every file of docs/ and the deployment files.

One build and one install for the whole module, 20 to 30 s on a shared 2-core
machine, most of it pipx fetching the dependencies from the package index; every
child process has a timeout. Files are compared with the copy the wheel was built
from, so an edit to the checkout during the run cannot fail them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from email.parser import Parser
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

import pytest

import orchestrator

# e2e by its directory (tests/conftest.py); slow: the module's one install.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
DIST = "agora-recording-orchestrator"  # pyproject.toml [project] name
WHEEL_PREFIX = DIST.replace("-", "_")  # its spelling in file names
UNIT = PurePosixPath("packaging/orchestrator.service")
DOC_DIR = PurePosixPath("share/doc", DIST)  # pyproject.toml [tool.setuptools.data-files]

#: Left out of the copy the wheel is built from: the venv, git, what builds and runs
#: leave behind (.gitignore), at the top of the checkout; caches at any depth.
NOT_SOURCES = {".git", ".venv", ".demo", "state", "build", "dist", ".hypothesis"}


def _not_sources(directory: str, names: list[str]) -> set[str]:
    top = Path(directory) == ROOT
    return {
        name
        for name in names
        if name == "__pycache__"
        or name.endswith(("_cache", ".egg-info"))
        or (top and name in NOT_SOURCES)
    }


@dataclass(frozen=True)
class Installed:
    venv: Path  # the venv pipx made for the distribution
    bin_dir: Path  # PIPX_BIN_DIR, where the `orchestrator` command is linked
    source: Path  # the copy of the checkout the wheel was built from
    build_output: str  # what `pip wheel -v` printed, the backend's warnings included
    env: dict[str, str]
    cwd: Path  # a directory outside the checkout, so nothing imports it

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.bin_dir / "orchestrator"), *args],
            capture_output=True,
            text=True,
            env=self.env,
            cwd=self.cwd,
            timeout=60,  # each takes about a second
        )


def _checked(command: list[str], *, env: dict[str, str], cwd: Path, timeout: float) -> str:
    result = subprocess.run(
        command, capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout
    )
    assert result.returncode == 0, f"{command[:4]} exited {result.returncode}:\n" + (
        result.stdout[-3000:] + result.stderr[-3000:]
    )
    return result.stdout + result.stderr


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    work = tmp_path_factory.mktemp("wheel-install")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("ORCHESTRATOR_", "PIPX_", "VIRTUAL_ENV", "PYTHON"))
    }
    env |= {
        "PIPX_HOME": str(work / "pipx-home"),
        "PIPX_BIN_DIR": str(work / "bin"),
        "PIPX_MAN_DIR": str(work / "man"),
        "USE_EMOJI": "0",
    }
    source = work / "source"
    shutil.copytree(ROOT, source, ignore=_not_sources)
    wheels = work / "wheels"
    build_output = _checked(
        [sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", str(source), "-w", str(wheels)],
        env=env,
        cwd=work,
        timeout=300,  # an isolated build env with setuptools from the index: a few seconds
    )
    [wheel] = wheels.glob(f"{WHEEL_PREFIX}-*.whl")
    _checked(
        [
            sys.executable, "-m", "pipx", "install", "--python", sys.executable,
            # Byte-compiling every dependency at install costs about 5 s; the few
            # modules these tests import compile on first use instead.
            "--pip-args=--no-compile",
            str(wheel),
        ],
        env=env,
        cwd=work,
        timeout=600,  # the dependencies come from the package index (or pip's cache)
    )  # fmt: skip
    venv = work / "pipx-home" / "venvs" / DIST
    assert venv.is_dir(), sorted(p.name for p in (work / "pipx-home" / "venvs").iterdir())
    return Installed(venv, work / "bin", source, build_output, env, work)


def _metadata(venv: Path) -> tuple[Path, dict[str, list[str]]]:
    """The dist-info directory of our distribution in `venv`, and its METADATA fields."""
    [dist_info] = venv.glob(f"lib/python*/site-packages/{WHEEL_PREFIX}-*.dist-info")
    message = Parser().parsestr((dist_info / "METADATA").read_text(encoding="utf-8"))
    fields: dict[str, list[str]] = {}
    for key, value in message.items():
        fields.setdefault(key, []).append(value)
    return dist_info, fields


def _unit_setting(source: Path, name: str) -> str:
    """The value of `name=` in the systemd unit (each setting used here appears once)."""
    [value] = [
        line.partition("=")[2].strip()
        for line in (source / UNIT).read_text(encoding="utf-8").splitlines()
        if line.startswith(f"{name}=")
    ]
    return value


def test_the_build_warns_of_nothing_deprecated(installed: Installed) -> None:
    # A deprecation in our packaging config today is a broken build tomorrow.
    assert "Deprecat" not in installed.build_output, installed.build_output[-5000:]


def test_the_command_runs_the_installed_package(installed: Installed) -> None:
    python = installed.venv / "bin" / "python"
    where = subprocess.run(
        [str(python), "-c", "import orchestrator; print(orchestrator.__file__)"],
        capture_output=True,
        text=True,
        env=installed.env,
        cwd=installed.cwd,
        timeout=60,
    )
    assert where.returncode == 0, where.stderr
    assert Path(where.stdout.strip()).is_relative_to(installed.venv)
    assert (installed.bin_dir / "orchestrator").resolve().is_relative_to(installed.venv.resolve())


def test_version_is_the_package_version(installed: Installed) -> None:
    result = installed.run("--version")
    assert result.returncode == 0, result.stderr
    _, fields = _metadata(installed.venv)
    assert fields["Version"] == [orchestrator.__version__]
    assert result.stdout.strip() == f"orchestrator, version {orchestrator.__version__}"


def test_validate_strict_accepts_the_examples(installed: Installed) -> None:
    result = installed.run("validate", "--strict", str(installed.source / "recordings.d"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("valid: ")
    assert "Traceback" not in result.stderr


def test_schema_is_the_checkouts_schema(installed: Installed) -> None:
    result = installed.run("schema")
    assert result.returncode == 0, result.stderr
    checkout = subprocess.run(
        [sys.executable, "-m", "orchestrator", "schema"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert checkout.returncode == 0, checkout.stderr
    assert json.loads(result.stdout) == json.loads(checkout.stdout)


def test_metadata_names_the_distribution_and_its_licence(installed: Installed) -> None:
    dist_info, fields = _metadata(installed.venv)
    assert fields["Name"] == [DIST]
    assert fields["License-Expression"] == ["Apache-2.0"]
    assert fields["License-File"] == ["LICENSE"]
    licence = (dist_info / "licenses" / "LICENSE").read_text(encoding="utf-8")
    assert licence == (installed.source / "LICENSE").read_text(encoding="utf-8")
    assert "Apache License" in licence
    assert "Version 2.0, January 2004" in licence


def test_the_units_documentation_exists_after_the_install(installed: Installed) -> None:
    # The unit's venv (/opt/orchestrator/.venv, from ExecStart=) stands for pipx's here.
    command = PurePosixPath(_unit_setting(installed.source, "ExecStart").split()[0])
    assert command.parent.name == "bin"
    unit_venv = command.parent.parent
    documentation = _unit_setting(installed.source, "Documentation").split()
    assert documentation
    for uri in documentation:
        parts = urlsplit(uri)
        assert (parts.scheme, parts.netloc) == ("file", ""), uri
        path = PurePosixPath(parts.path)
        assert path.is_relative_to(unit_venv / DOC_DIR), f"{uri}: not in {unit_venv / DOC_DIR}"
        relative = path.relative_to(unit_venv)
        installed_file = installed.venv / relative
        assert installed_file.is_file(), f"{uri}: no {relative} in the installed venv"
    readme = installed.venv / DOC_DIR / "README.md"
    assert readme.read_bytes() == (installed.source / "README.md").read_bytes()


@pytest.mark.parametrize("folder", ["docs", "packaging"])
def test_the_whole_folder_is_installed_beside_the_readme(installed: Installed, folder: str) -> None:
    source = installed.source
    shipped = sorted(p.relative_to(source) for p in (source / folder).rglob("*") if p.is_file())
    assert shipped, f"nothing in {folder}/"
    for relative in shipped:
        copy = installed.venv / DOC_DIR / relative
        assert copy.is_file(), f"{relative} is not installed"
        assert copy.read_bytes() == (source / relative).read_bytes(), relative
