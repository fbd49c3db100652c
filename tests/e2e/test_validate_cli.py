"""`orchestrator validate`, `schema` and `show` as processes: exit codes and output.

Covers: the examples validate (0); an invalid file gives `file:line:col: error:
field: message` lines and exit 1 while the other files are still checked;
json and github formats; --strict turning a literal-secret warning into a
failure; usage errors (no such path, no manifest file) exit 2; binary garbage
and broken YAML never print a traceback; the clash check runs from `--at`;
`schema` prints a JSON Schema; `show` prints the bodies with secrets as
references and literals as ***, and fails like validate on invalid input.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).parents[2]
GOOD = """\
name: standup
app: main
channel: room-1
uid: 527841
mode: mix
schedule:
  cron: "0 9 * * 1-5"
  timezone: UTC
  duration: 30m
"""


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str


def orchestrator(*args: str | Path, cwd: Path = ROOT) -> Run:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_")}
    done = subprocess.run(
        [sys.executable, "-m", "orchestrator", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env=env,
        check=False,
    )
    assert "Traceback" not in done.stderr, done.stderr
    return Run(done.returncode, done.stdout, done.stderr)


def test_the_examples_are_valid() -> None:
    run = orchestrator("validate", "recordings.d")
    assert run.code == 0, run.stdout
    assert run.stdout.strip().splitlines()[-1].startswith("valid: 5 file(s), 6 valid manifest(s)")


def test_invalid_files_are_reported_with_positions(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(GOOD.replace("uid: 527841", "uid: 0"), encoding="utf-8")
    (tmp_path / "b.yaml").write_text(GOOD.replace("standup", "other"), encoding="utf-8")
    (tmp_path / "c.yaml").write_bytes(bytes(range(256)))
    run = orchestrator("validate", tmp_path, cwd=tmp_path)
    assert run.code == 1
    lines = run.stdout.splitlines()
    assert f"{tmp_path / 'a.yaml'}:4:6: error: uid: 0 is not a uid" in lines[0]
    assert lines[1].startswith(f"{tmp_path / 'c.yaml'}:2:118: error: not a UTF-8 text file")
    assert lines[-1] == "invalid: 3 file(s), 1 valid manifest(s), 2 error(s), 0 warning(s)"


def test_json_format(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(GOOD + "suspnd: true\n", encoding="utf-8")
    run = orchestrator("validate", "--format", "json", tmp_path)
    assert run.code == 1
    report = json.loads(run.stdout)
    assert report["valid"] is False
    assert report["errors"] == 1
    assert report["diagnostics"] == [
        {
            "file": str(tmp_path / "a.yaml"),
            "line": 10,
            "column": 1,
            "field": "suspnd",
            "message": report["diagnostics"][0]["message"],
            "severity": "error",
        }
    ]
    assert report["diagnostics"][0]["message"].startswith(
        "unknown key 'suspnd' (did you mean 'suspend'?); valid keys here: name, app,"
    )


def test_github_format(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(GOOD.replace("mode: mix", "mode: both"), encoding="utf-8")
    run = orchestrator("validate", "--format", "github", tmp_path / "a.yaml")
    assert run.code == 1
    assert run.stdout.splitlines()[0].startswith(
        f"::error file={tmp_path / 'a.yaml'},line=5,col=7::mode: 'both' is not a recording mode"
    )


def test_strict_fails_on_literal_secrets(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(GOOD + "token: not-a-reference\n", encoding="utf-8")
    relaxed = orchestrator("validate", tmp_path)
    assert relaxed.code == 0
    assert ":10:8: warning: token: a literal secret" in relaxed.stdout
    strict = orchestrator("validate", "--strict", tmp_path)
    assert strict.code == 1
    assert ":10:8: error: token: a literal secret" in strict.stdout
    assert "not-a-reference" not in relaxed.stdout + strict.stdout


@pytest.mark.parametrize(
    "args",
    [
        ("validate", "does-not-exist"),
        ("validate",),
        ("validate", "--format", "xml", "recordings.d"),
        ("show", "does-not-exist"),
    ],
)
def test_usage_errors_exit_2(args: tuple[str, ...]) -> None:
    assert orchestrator(*args).code == 2


def test_a_directory_without_manifests_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("x", encoding="utf-8")
    run = orchestrator("validate", tmp_path)
    assert run.code == 2
    assert "no manifest files" in run.stderr


def test_schedule_clashes_from_at(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(GOOD, encoding="utf-8")
    (tmp_path / "b.yaml").write_text(
        GOOD.replace("standup", "late").replace('"0 9 * * 1-5"', '"15 9 * * *"'),
        encoding="utf-8",
    )
    run = orchestrator("validate", "--at", "2026-03-07T00:00:00+00:00", tmp_path)
    assert run.code == 1
    assert "first at 2026-03-09T09:15:00Z" in run.stdout  # Saturday -> Monday


def test_schema() -> None:
    run = orchestrator("schema")
    assert run.code == 0
    schema = json.loads(run.stdout)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert set(schema["required"]) == {"name", "app", "channel", "uid", "mode", "schedule"}
    assert {"recording", "layout", "aliyunVod", "startingDeadline"} <= set(schema["properties"])
    assert schema["additionalProperties"] is False


def test_show_prints_bodies_with_secret_references() -> None:
    run = orchestrator("show", "recordings.d")
    assert run.code == 0, run.stderr
    assert "== weekly-standup  (recordings.d/standup-mix-s3.yaml:4)" in run.stdout
    assert '"accessKey": "<env:S3_KEY>"' in run.stdout
    assert '"secretKey": "<credential:s3-secret>"' in run.stdout
    assert '"unSubscribeVideoUids"' in run.stdout
    report = json.loads(orchestrator("show", "--format", "json", "recordings.d").stdout)
    assert {r["name"] for r in report} >= {"support-lobby", "board-meeting", "monthly-webinar"}
    vod = next(r for r in report if r["name"] == "monthly-webinar")
    assert "updateLayout" in vod["bodies"]
    assert vod["bodies"]["start"]["clientRequest"]["extensionServiceConfig"]


def test_show_masks_literals_and_fails_on_invalid(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(GOOD + "token: hunter2\n", encoding="utf-8")
    run = orchestrator("show", tmp_path)
    assert run.code == 0
    assert '"token": "***"' in run.stdout
    assert "hunter2" not in run.stdout + run.stderr
    (tmp_path / "b.yaml").write_text("name: [\n", encoding="utf-8")
    broken = orchestrator("show", tmp_path)
    assert broken.code == 1
    assert "b.yaml:2:1: error: invalid YAML" in broken.stderr
