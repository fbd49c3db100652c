"""`orchestrator validate`, `schema` and `show` as processes: exit codes and output.

Covers: the examples validate (0); an invalid file gives `file:line:col: error:
field: message` lines and exit 1 while the other files are still checked; json and
github formats; --strict turning a literal-secret warning into a failure; usage
errors (no such path, no manifest file) exit 2; binary garbage and broken YAML never
print a traceback; the clash check runs from `--at`; `schema` prints a JSON Schema;
`show` prints the bodies with secrets as references and literals as ***, and fails
like validate on invalid input. Hostile input ends in bounded time with a positioned
error and no crash signal: 100 KB nested 50,000 levels deep (flow and block), alias
and merge-key bombs, a FIFO named x.yaml (a warning, never opened). A file name that
is not UTF-8 is an error shown printably (exit 1), and so is a file of empty
documents only. What cannot be read (a subdirectory, the manifests directory itself)
is an error, not an empty tree (modes enforced even as root, through `setpriv`). A
duplicate key hides none of the file's other errors, nor does an unknown key.
`always` with `startingDeadline` or `updatePolicy: defer`, and explicit windows that
have all ended by `--at`, are warnings (exit 0; 1 under --strict), and so is a fixed
`token` with a schedule that outlives a token (not one short window). `rolloverUid`:
the manifest's own uid is a positioned error, a clash with another manifest's uid is
found from `--at`; `schema` has the key and `show` prints the number. A bulk
validate (its parse shared with a forked worker) reports as a plain load.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from orchestrator.manifest.model import derive_rollover_uid
from tests.unit.manifest.manifest_docs import GOOD_TEXT

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).parents[2]
GOOD = GOOD_TEXT.format(name="standup", channel="room-1")


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str


def orchestrator(
    *args: str | Path,
    cwd: Path = ROOT,
    timeout: float = 120,
    prefix: tuple[str, ...] = (),
    env_more: Mapping[str, str] | None = None,
) -> Run:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_")}
    env.update(env_more or {})
    done = subprocess.run(
        [*prefix, sys.executable, "-m", "orchestrator", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env=env,
        check=False,
    )
    assert "Traceback" not in done.stderr, done.stderr
    return Run(done.returncode, done.stdout, done.stderr)


def without_file_rights() -> tuple[str, ...]:
    """A command prefix under which file modes apply to the process, even for root
    (which otherwise reads anything); empty when not root."""
    if os.geteuid() != 0:
        return ()
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: modes cannot be enforced")
    return (setpriv, "--bounding-set=-dac_override,-dac_read_search")


@pytest.mark.parametrize(
    "at",
    [
        None,  # today, whenever the suite runs
        "2031-01-01T00:00:00+00:00",
        (datetime.now(UTC) + timedelta(days=3653)).isoformat(timespec="seconds"),  # 10 years on
    ],
    # Fixed ids: the third value changes every second, and the pytest-xdist workers of
    # `make test` must all collect the same test ids.
    ids=["today", "2031", "in-10-years"],
)
def test_the_examples_are_valid_and_never_go_stale(at: str | None) -> None:
    """`validate --strict recordings.d` is the README's CI line: the examples must pass
    it today and years from now (no window of theirs ever ends for good)."""
    run = orchestrator("validate", "--strict", *(("--at", at) if at else ()), "recordings.d")
    assert run.code == 0, run.stdout
    assert run.stdout.strip().splitlines()[-1] == (
        "valid: 5 file(s), 6 valid manifest(s), 0 error(s), 0 warning(s)"
    )


def test_invalid_files_are_reported_with_positions(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(GOOD.replace("uid: 527841", "uid: 0"), encoding="utf-8")
    (tmp_path / "b.yaml").write_text(GOOD.replace("standup", "other"), encoding="utf-8")
    (tmp_path / "c.yaml").write_bytes(bytes(range(256)))
    run = orchestrator("validate", tmp_path, cwd=tmp_path)
    assert run.code == 1
    lines = run.stdout.splitlines()
    assert f"{tmp_path / 'a.yaml'}:4:6: error: uid: 0 is not a uid" in lines[0]
    # Bytes 10 (LF) and 13 (CR) break lines, as YAML counts them: 0x80 is at 3:115.
    assert lines[1].startswith(f"{tmp_path / 'c.yaml'}:3:115: error: not a UTF-8 text file")
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


def test_a_secret_written_as_a_key_is_pointed_at_and_never_shown(tmp_path: Path) -> None:
    # The secret pasted where the reference's form belongs: the error stands at the
    # key, names the secret's field, and neither the path nor the message quotes it.
    text = GOOD + "token:\n  007eJxS3cr3tT0ken: x\n"
    (tmp_path / "a.yaml").write_text(text, encoding="utf-8")
    for fmt in ("text", "json"):
        run = orchestrator("validate", "--format", fmt, tmp_path)
        assert run.code == 1
        assert "S3cr3t" not in run.stdout + run.stderr
    assert f"{tmp_path / 'a.yaml'}:11:3: error: token: unknown key in a secret reference" in (
        orchestrator("validate", tmp_path).stdout
    )


_WITHOUT_LIBYAML = """\
import sys
from pathlib import Path


class _NoLibyaml:
    # ruamel.yaml.clib's extension, as on a platform that has no wheel of it
    def find_spec(self, name, path=None, target=None):
        if name == "_ruamel_yaml":
            Path(__file__).with_name("blocked").touch()
            raise ImportError("no libyaml here")
        return None


sys.meta_path.insert(0, _NoLibyaml())
"""


def test_without_libyaml_the_results_are_the_same(tmp_path: Path) -> None:
    # ruamel's pure parser stands in when ruamel.yaml.clib cannot be imported: the
    # same manifests, bodies and findings (syntax errors aside: worded by the parser).
    tree = tmp_path / "manifests"
    shutil.copytree(ROOT / "recordings.d", tree)
    bad = GOOD.replace("mode: mix", "mode: both") + "suspnd: true\ntoken: {s3cr3t: x}\n"
    (tree / "bad.yaml").write_text(bad + "---\n" + GOOD.replace("standup", "twice"), "utf-8")
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(_WITHOUT_LIBYAML, encoding="utf-8")
    pure = {"PYTHONPATH": str(site)}
    for args in (("validate", "--format", "json", tree), ("show", tree / "standup-mix-s3.yaml")):
        with_c, without = orchestrator(*args), orchestrator(*args, env_more=pure)
        assert (without.code, without.stdout) == (with_c.code, with_c.stdout), without.stderr
        if args[0] == "validate":
            fields = {d["field"] for d in json.loads(without.stdout)["diagnostics"]}
            assert {"mode", "suspnd", "token"} <= fields
        else:
            assert without.code == 0
            assert '"fileNamePrefix"' in without.stdout
    assert (site / "blocked").exists()  # the pure parser did the work


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


def test_nothing_but_a_file_it_skips_is_a_usage_error_that_says_why() -> None:
    """Defect: `validate /dev/null` said "valid: 0 file(s)" and exited 0 (a directory
    holding no manifest is a usage error)."""
    run = orchestrator("validate", "/dev/null")
    assert run.code == 2
    assert "no manifest files (*.yaml, *.yml) found in /dev/null" in run.stderr
    assert "it is a character device, not a regular file" in run.stderr


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
    assert {"recording", "layout", "aliyunVod", "startingDeadline", "rolloverUid"} <= set(
        schema["properties"]
    )
    assert schema["additionalProperties"] is False


def test_show_prints_bodies_with_secret_references() -> None:
    run = orchestrator("show", "recordings.d")
    assert run.code == 0, run.stderr
    assert "== weekly-standup  (recordings.d/standup-mix-s3.yaml:4)" in run.stdout
    assert '"accessKey": "<env:S3_KEY>"' in run.stdout
    assert '"secretKey": "<credential:s3-secret>"' in run.stdout
    assert '"unSubscribeVideoUids"' in run.stdout
    standup = derive_rollover_uid("weekly-standup", 527841)
    assert f"uid 527841, rolloverUid {standup} (auto), mode mix" in run.stdout
    # `always` has one window over every instant: no "next window 1970-01-01 .. 9000-...".
    assert "   schedule: always\n" in run.stdout and "1970-01-01" not in run.stdout
    assert "schedule: cron '30 8 * * 1-5' in Europe/Berlin, 1h30m each; next window" in run.stdout
    report = json.loads(orchestrator("show", "--format", "json", "recordings.d").stdout)
    assert {r["name"] for r in report} >= {"support-lobby", "board-meeting", "monthly-webinar"}
    weekly = next(r for r in report if r["name"] == "weekly-standup")
    assert (weekly["rolloverUid"], weekly["rolloverUidAuto"]) == (standup, True)
    vod = next(r for r in report if r["name"] == "monthly-webinar")
    assert "updateLayout" in vod["bodies"]
    assert vod["bodies"]["start"]["clientRequest"]["extensionServiceConfig"]


def test_show_says_when_no_window_comes_within_its_year(tmp_path: Path) -> None:
    """Defect: a schedule with no window within 366 days printed no "next window" and
    nothing else, as if it were `always`."""
    leap = GOOD.replace('cron: "0 9 * * 1-5"', 'cron: "0 12 29 2 *"')
    assert leap != GOOD
    (tmp_path / "a.yaml").write_text(leap, encoding="utf-8")
    run = orchestrator("show", "--at", "2029-03-01", tmp_path)
    assert run.code == 0, run.stderr
    assert "; no window within 366 days\n" in run.stdout


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


# --- hostile input: bounded time, a positioned error, no crash ----------------------

DEEP = 50_000


@pytest.mark.parametrize(
    ("text", "position"),
    [
        ("a: " + "[" * DEEP + "]" * DEEP + "\n", ":1:67:"),  # flow
        ("- " * DEEP + "x\n", ":1:129:"),  # block sequences, one line
        ("? " * DEEP + "x\n", ":1:129:"),  # block mappings (explicit keys), one line
        ("a: " + "{a: " * DEEP + "1" + "}" * DEEP + "\n", ":1:256:"),
    ],
    ids=["flow", "block-sequences", "block-mappings", "flow-mappings"],
)
def test_deep_nesting_is_a_positioned_error_not_a_crash(
    tmp_path: Path, text: str, position: str
) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text(text, encoding="utf-8")
    started = time.monotonic()
    run = orchestrator("validate", path, timeout=60)
    assert run.code == 1, (
        f"exit {run.code} ({signal.Signals(-run.code).name if run.code < 0 else ''})"
    )
    assert f"deep.yaml{position} error: nested more than 64 levels deep" in run.stdout
    assert time.monotonic() - started < 30


def test_an_alias_bomb_is_a_positioned_error(tmp_path: Path) -> None:
    """Merge keys are flattened pair by pair: these 1.2 KB took minutes before."""
    lines = ["b0: &b0 {k0: x, k1: x, k2: x, k3: x, k4: x, k5: x, k6: x, k7: x, k8: x, k9: x}"]
    lines += [f"b{i}: &b{i} {{<<: [" + ", ".join([f"*b{i - 1}"] * 10) + "]}" for i in range(1, 10)]
    (tmp_path / "bomb.yaml").write_text(
        GOOD + "labels:\n" + "".join(f"  {line}\n" for line in lines), encoding="utf-8"
    )
    run = orchestrator("validate", tmp_path, timeout=60)
    assert run.code == 1
    # b1's aliases add 10 x 21 nodes, b2's 10 x 213: the 4th *b2 of b3 takes the file
    # past 10,000 (210 + 2,130 + 4 x 2,133)
    assert ":14:32: error: aliases expand to more than 10000 nodes" in run.stdout


def test_a_fifo_is_a_warning_and_validate_returns(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(GOOD, encoding="utf-8")
    os.mkfifo(tmp_path / "x.yaml")  # nobody ever writes to it: a read would block forever
    run = orchestrator("validate", tmp_path, timeout=60)
    assert run.code == 0
    assert (
        f"{tmp_path / 'x.yaml'}:1:1: warning: it is a FIFO (named pipe), not a regular file: "
        "skipped, not read"
    ) in run.stdout
    assert orchestrator("validate", "--strict", tmp_path / "x.yaml", timeout=60).code == 1


def test_a_file_name_that_is_not_utf8_is_an_error_shown_printably(tmp_path: Path) -> None:
    """Defect: such a file validated (exit 0), and `apply` then died on its name."""
    (tmp_path / "good.yaml").write_text(GOOD, encoding="utf-8")
    bad = tmp_path / "caf\udce9.yaml"  # the byte 0xe9 in the name: Latin-1, not UTF-8
    bad.write_text(GOOD.replace("standup", "cafe"), encoding="utf-8")
    shown = f"{tmp_path}/caf\\xe9.yaml"
    run = orchestrator("validate", "--strict", tmp_path, env_more={"PYTHONIOENCODING": "utf-8"})
    assert run.code == 1, run.stdout + run.stderr
    assert run.stdout.splitlines() == [
        f"{shown}:1:1: error: its name is not valid UTF-8: rename it",
        "invalid: 1 file(s), 1 valid manifest(s), 1 error(s), 0 warning(s)",
    ]
    report = json.loads(orchestrator("validate", "--format", "json", bad).stdout)
    assert report["failedFiles"] == [shown] and report["diagnostics"][0]["file"] == shown


def test_a_file_of_empty_documents_only_fails_validation(tmp_path: Path) -> None:
    """Defect: a lone '---' was a warning (exit 0) and counted as no manifest."""
    (tmp_path / "a.yaml").write_text(GOOD, encoding="utf-8")
    (tmp_path / "b.yaml").write_text("---\n# name: b\n", encoding="utf-8")
    run = orchestrator("validate", tmp_path)
    assert run.code == 1
    assert (
        f"{tmp_path / 'b.yaml'}:1:1: error: no manifest in this file (only empty documents)"
    ) in run.stdout


def test_an_unknown_key_hides_no_literal_secret_under_strict(tmp_path: Path) -> None:
    """Defect: only the unknown key was reported; the literal secrets came to light only
    once it was removed (docs/cli.md: one run reports every error of every document)."""
    text = GOOD + (
        "recording2: 1\nrecordingFiles: {}\nstorage:\n  vendor: aws-s3\n"
        "  region: us-east-1\n  bucket: b\n  accessKey: AKIA-x\n  secretKey: s3cr3t\n"
    )
    (tmp_path / "a.yaml").write_text(text, encoding="utf-8")
    run = orchestrator("validate", "--strict", "--format", "json", tmp_path)
    assert run.code == 1
    found = [(d["line"], d["field"]) for d in json.loads(run.stdout)["diagnostics"]]
    assert found == [(10, "recording2"), (16, "storage.accessKey"), (17, "storage.secretKey")]
    assert "s3cr3t" not in run.stdout and "AKIA-x" not in run.stdout


# --- what cannot be read ---------------------------------------------------------------


def test_an_unreadable_subdirectory_fails_validation(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(GOOD, encoding="utf-8")
    team = tmp_path / "team"
    team.mkdir()
    (team / "b.yaml").write_text(GOOD.replace("standup", "b"), encoding="utf-8")
    prefix = without_file_rights()
    team.chmod(0)
    try:
        run = orchestrator("validate", tmp_path, prefix=prefix)
        root = orchestrator("validate", team, prefix=prefix)
        # A file under it, named: it is there, it cannot be looked at (it was exit 2,
        # "does not exist", as a usage error).
        inside = orchestrator("validate", team / "b.yaml", prefix=prefix)
        report = json.loads(
            orchestrator("validate", "--format", "json", tmp_path, prefix=prefix).stdout
        )
    finally:
        team.chmod(0o755)
    assert report["unreadable"] == [str(team)] and report["failedFiles"] == [str(team)]
    assert run.code == 1
    assert f"{team}:1:1: error: cannot read the directory: Permission denied" in run.stdout
    assert root.code == 1  # the manifests directory itself: an error, not "no manifest files"
    assert f"{team}:1:1: error: cannot read the directory: Permission denied" in root.stdout
    assert inside.code == 1, inside.stderr
    assert (
        f"{team / 'b.yaml'}:1:1: error: cannot read this path: Permission denied" in inside.stdout
    )


def test_a_symlink_loop_named_is_an_error_at_it_and_a_missing_path_a_usage_error(
    tmp_path: Path,
) -> None:
    (tmp_path / "a.yaml").symlink_to("b.yaml")
    (tmp_path / "b.yaml").symlink_to("a.yaml")
    loop = orchestrator("validate", tmp_path / "a.yaml")
    assert loop.code == 1  # was exit 2: "does not exist"
    assert (
        f"{tmp_path / 'a.yaml'}:1:1: error: cannot read this path: Too many levels" in loop.stdout
    )
    missing = orchestrator("validate", tmp_path / "c.yaml")
    assert missing.code == 2 and "does not exist" in missing.stderr
    # Not there either: a dangling symlink, and an empty argument (an empty "$FILES"
    # in CI), which click would have made the working directory.
    (tmp_path / "d.yaml").symlink_to("nowhere.yaml")
    for gone in (tmp_path / "d.yaml", ""):
        run = orchestrator("validate", gone, cwd=tmp_path)
        assert run.code == 2 and "does not exist" in run.stderr, (gone, run)


# --- every error of every document ------------------------------------------------------


def test_a_duplicate_key_hides_no_other_error(tmp_path: Path) -> None:
    first = GOOD.replace("uid: 527841", "uid: 0").replace(
        "  duration: 30m\n", "  duration: 30m\n  timezone: Mars/Olympus\n"
    )
    second = GOOD.replace("standup", "second").replace("mode: mix", "mode: both")
    path = tmp_path / "a.yaml"
    path.write_text(first + "---\n" + second + "layout: {type: spiral}\n", encoding="utf-8")
    run = orchestrator("validate", path)
    assert run.code == 1
    lines = run.stdout.splitlines()
    expected = ["4:6: error: uid:", "10:3: error: schedule.timezone:", "16:7: error: mode:"]
    expected.append("21:16: error: layout.type:")
    assert len(lines) == 5
    assert all(line.startswith(f"{path}:{e}") for line, e in zip(lines, expected, strict=False))
    assert lines[1].endswith('duplicate key "timezone" (first at line 8)')
    assert lines[-1] == "invalid: 1 file(s), 0 valid manifest(s), 4 error(s), 0 warning(s)"


# --- settings that can never do what they say ---------------------------------------------


def test_always_with_deadline_or_defer_and_ended_windows_are_warnings(tmp_path: Path) -> None:
    schedule = 'schedule:\n  cron: "0 9 * * 1-5"\n  timezone: UTC\n  duration: 30m\n'
    lobby = GOOD.replace(schedule, "schedule: always\n") + "startingDeadline: 5m\n"
    (tmp_path / "lobby.yaml").write_text(lobby + "updatePolicy: defer\n", encoding="utf-8")
    once = GOOD.replace("standup", "once").replace("room-1", "room-2")
    window = "{start: '2026-03-02T09:00:00Z', end: '2026-03-02T10:00:00Z'}"
    once = once.replace(schedule, f"schedule:\n  windows:\n    - {window}\n")
    (tmp_path / "once.yaml").write_text(once, encoding="utf-8")
    run = orchestrator("validate", "--at", "2026-04-01T00:00:00+00:00", tmp_path)
    assert run.code == 0, run.stdout
    assert run.stdout.splitlines() == [
        f"{tmp_path / 'lobby.yaml'}:7:1: warning: startingDeadline: ignored for `always`: an "
        "always-on recording has no window start to be late for",
        f"{tmp_path / 'lobby.yaml'}:8:1: warning: updatePolicy: with `always` there is no next "
        "window: changes that need a restart are never applied; use `updatePolicy: restart`",
        f"{tmp_path / 'once.yaml'}:7:3: warning: schedule.windows: every window has ended: this "
        "manifest never records again (the last ended at 2026-03-02T10:00:00Z)",
        "valid: 2 file(s), 2 valid manifest(s), 0 error(s), 3 warning(s)",
    ]
    early = orchestrator("validate", "--at", "2026-03-01T00:00:00+00:00", tmp_path / "once.yaml")
    assert early.code == 0 and ": warning:" not in early.stdout
    strict = orchestrator("validate", "--strict", "--at", "2026-04-01T00:00:00+00:00", tmp_path)
    assert strict.code == 1


def test_a_frame_rate_agora_does_not_record_at_is_a_warning(tmp_path: Path) -> None:
    """Agora records at its standard frame rates only; another (25) is recorded at 15
    without a word from Agora (its current documentation): said here instead."""
    transcoding = "transcoding: {{width: 640, height: 360, fps: {fps}, bitrate: 500}}\n"
    (tmp_path / "a.yaml").write_text(GOOD + transcoding.format(fps=25), encoding="utf-8")
    (tmp_path / "b.yaml").write_text(
        GOOD_TEXT.format(name="other", channel="room-2") + transcoding.format(fps=24),
        encoding="utf-8",
    )
    run = orchestrator("validate", tmp_path)
    assert run.code == 0, run.stdout
    assert run.stdout.splitlines() == [
        f"{tmp_path / 'a.yaml'}:10:40: warning: transcoding.fps: Agora records at 1, 7, 10, "
        "15, 24, 30 or 60 fps: 25 is recorded at 15",
        "valid: 2 file(s), 2 valid manifest(s), 0 error(s), 1 warning(s)",
    ]


def test_a_fixed_token_that_cannot_last_is_a_warning_and_fails_strict(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(GOOD + "token: {env: STANDUP_TOKEN}\n", encoding="utf-8")
    relaxed = orchestrator("validate", tmp_path)
    assert relaxed.code == 0, relaxed.stdout
    assert relaxed.stdout.splitlines() == [
        f"{tmp_path / 'a.yaml'}:10:1: warning: token: a fixed token expires (24 h at most) and "
        "cannot be renewed: give the app profile an appCertificate so that each start gets a "
        "fresh token",
        "valid: 1 file(s), 1 valid manifest(s), 0 error(s), 1 warning(s)",
    ]
    strict = orchestrator("validate", "--strict", tmp_path)
    assert strict.code == 1
    assert f"{tmp_path / 'a.yaml'}:10:1: error: token: a fixed token expires" in strict.stdout
    # one window shorter than a token's life: the token can serve it
    schedule = 'schedule:\n  cron: "0 9 * * 1-5"\n  timezone: UTC\n  duration: 30m\n'
    window = "{start: '2030-03-02T09:00:00Z', end: '2030-03-02T10:00:00Z'}"
    once = GOOD.replace(schedule, f"schedule:\n  windows:\n    - {window}\n")
    (tmp_path / "a.yaml").write_text(once + "token: {env: STANDUP_TOKEN}\n", encoding="utf-8")
    assert orchestrator("validate", "--strict", tmp_path).code == 0


def test_rollover_uid_errors_and_clashes(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(GOOD + "rolloverUid: 527841\n", encoding="utf-8")
    (tmp_path / "b.yaml").write_text(
        GOOD.replace("standup", "b").replace("527841", "1") + "rolloverUid: 2\n",
        encoding="utf-8",
    )
    (tmp_path / "c.yaml").write_text(
        GOOD.replace("standup", "c").replace("527841", "2"), encoding="utf-8"
    )
    run = orchestrator("validate", "--at", "2026-03-07T00:00:00+00:00", tmp_path)
    assert run.code == 1
    lines = run.stdout.splitlines()
    assert lines[0] == (
        f"{tmp_path / 'a.yaml'}:10:1: error: rolloverUid: 527841 is also this manifest's uid "
        "(527841): the successor session of a rollover records beside its predecessor and "
        "needs a uid of its own; write another uid, or auto"
    )
    assert lines[1].startswith(
        f"{tmp_path / 'b.yaml'}:6:1: error: schedule: records app main, channel 'room-1', uid 2 "
        "(as its rolloverUid; 'c' as its uid) at the same time as 'c'"
    )
    assert "first at 2026-03-09T09:00:00Z" in lines[1]
    assert lines[2].startswith(f"{tmp_path / 'c.yaml'}:6:1: error: schedule: records app main")
    assert lines[-1] == "invalid: 3 file(s), 0 valid manifest(s), 3 error(s), 0 warning(s)"


def test_a_bulk_validate_shared_with_a_forked_worker_reports_as_a_plain_load(
    tmp_path: Path,
) -> None:
    """From `FORK_BULK` files, `validate` parses half of them in a forked worker: its
    report is the one a load without a worker gives, in the same order, errors,
    warnings and clashes across both halves included."""
    from orchestrator.manifest.helper import FORK_BULK
    from orchestrator.manifest.loader import load_manifests

    count = FORK_BULK + 50
    for i in range(count):
        channel = "room-0" if i % 60 == 1 else f"room-{i}"  # a clash, in each half
        text = GOOD.replace("standup", f"rec-{i}").replace("room-1", channel)
        if i % 37 == 0:
            text = text.replace("uid: 527841", "uid: 0")  # an error, in each half
        if i % 41 == 0:
            text += 'token: "006literal"\n'  # a literal secret: a warning
        (tmp_path / f"g{i % 4}").mkdir(exist_ok=True)
        (tmp_path / f"g{i % 4}" / f"m{i:04d}.yaml").write_text(text, encoding="utf-8")
    at = "2026-03-07T00:00:00+00:00"
    run = orchestrator("validate", "--format", "json", "--at", at, tmp_path)
    plain = load_manifests([tmp_path], now=datetime.fromisoformat(at))
    report = json.loads(run.stdout)
    assert run.code == 1 and report["files"] == count
    assert report["diagnostics"] == [d.as_dict() for d in plain.diagnostics]
    assert report["failedFiles"] == sorted(plain.failed_files)
    assert report["manifests"] == len(plain.manifests)
    assert plain.warnings and len(plain.errors) > 5 and len(plain.manifests) > count - 20
    assert any("first at" in d.message for d in plain.errors)  # the clash


def test_control_characters_of_names_and_keys_reach_no_terminal(tmp_path: Path) -> None:
    """Defect: a file name or a key's control characters were printed as they are: an
    ESC recoloured the terminal, a CR overwrote the line, a newline split a finding
    in two, U+202E reordered what follows (`status` already wrote them as escapes)."""
    name = "a\x1b[31mRED\rFAKE\n.yaml"
    # The key as YAML's escapes write it (a raw ESC is no YAML character).
    (tmp_path / name).write_text(GOOD + 'labels: {"k\\u202e\\e[31m": x}\n', encoding="utf-8")
    run = orchestrator("validate", tmp_path)
    assert run.code == 1
    finding = [line for line in run.stdout.splitlines() if ": error: " in line]
    assert len(finding) == 1, run.stdout  # one line, the name's newline escaped
    assert "\x1b" not in run.stdout and "\r" not in run.stdout and "\u202e" not in run.stdout
    assert "a\\x1b[31mRED\\x0dFAKE\\x0a.yaml:" in finding[0]
    assert "labels.k\\u202e\\x1b[31m" in finding[0]
    # GitHub's annotations alike (its escaping covers %, CR, LF only).
    github = orchestrator("validate", "--format", "github", tmp_path)
    assert github.code == 1
    assert "\x1b" not in github.stdout and "\u202e" not in github.stdout
    (annotation,) = [line for line in github.stdout.splitlines() if line.startswith("::error")]
    assert "a\\x1b[31mRED\\x0dFAKE\\x0a.yaml" in annotation
