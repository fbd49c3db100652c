"""Option values the commands share, as processes: bounded before any command runs.

Covers: `--at` of `validate`, `show`, `plan` and `status` outside the span schedules
are computed over (1970-01-01 to 8999-12-31 UTC: `FAR_PAST` to `FAR_FUTURE`), as a
date, a naive time or with an offset, is click's usage error (exit 2, one `Error:`
line, no traceback), also where the clash search runs around it; its two ends work.
`plan --horizon` longer than a schedule spans (`MAX_CRON_RANGE`) and `status --limit`
negative or past its bound are usage errors too. The help says the bounds the
schedule module has.
"""

from __future__ import annotations

import subprocess
from datetime import timedelta
from pathlib import Path

import pytest

from orchestrator.schedule import FAR_FUTURE, FAR_PAST, MAX_CRON_RANGE
from tests.harness.config import config_data, write_config
from tests.harness.processes import child_env
from tests.harness.processes import orchestrator as command_line
from tests.unit.manifest.manifest_docs import GOOD_TEXT

pytestmark = pytest.mark.e2e

# Offline commands only: the API address is never called.
CONFIG = config_data(
    {"main": "0123456789abcdef0123456789abcdef"}, "http://127.0.0.1:9", metrics=False
)
ALWAYS = GOOD_TEXT.format(name="lobby", channel="room-1").replace(
    'schedule:\n  cron: "0 9 * * 1-5"\n  timezone: UTC\n  duration: 30m\n', "schedule: always\n"
)


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A config, and manifests on one target: `always` and a cron (a clash from any
    instant), so that every command computes windows around `--at`."""
    write_config(tmp_path / "config.yaml", CONFIG)
    (tmp_path / "recordings.d").mkdir()
    (tmp_path / "recordings.d" / "lobby.yaml").write_text(ALWAYS, encoding="utf-8")
    clash = tmp_path / "clash"
    clash.mkdir()
    (clash / "lobby.yaml").write_text(ALWAYS, encoding="utf-8")
    (clash / "standup.yaml").write_text(
        GOOD_TEXT.format(name="standup", channel="room-1"), encoding="utf-8"
    )
    return tmp_path


def orchestrator(site: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command_line(*args),
        capture_output=True,
        text=True,
        cwd=site,
        env=child_env(),
        timeout=60,
        check=False,
    )


def _usage_error(result: subprocess.CompletedProcess[str], option: str, code: int = 2) -> str:
    assert result.returncode == code, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    [line] = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert line.startswith(f"Error: Invalid value for '{option}': "), line
    return line


COMMANDS = {
    "validate": ("validate", "clash"),
    "show": ("show", "recordings.d"),
    "plan": ("plan", "--offline", "--config", "config.yaml"),
    "status": ("status", "--config", "config.yaml"),
}
OUT_OF_RANGE = ["9999-12-31", "0001-01-01", "0001-01-01T00:00:00", "9999-12-31T23:00:00-23:59"]


@pytest.mark.parametrize("at", OUT_OF_RANGE)
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_an_instant_schedules_do_not_cover_is_a_usage_error(
    site: Path, command: str, at: str
) -> None:
    """Defect: OverflowError ("date value out of range") and a traceback."""
    # `plan`'s usage errors exit 1: its `--detailed-exitcode` gives 2 for changes.
    code = 1 if command == "plan" else 2
    line = _usage_error(orchestrator(site, *COMMANDS[command], "--at", at), "--at", code)
    assert line.endswith(
        f"{at} is out of range: schedules are computed from 1970-01-01 to 8999-12-31 (UTC)"
    )


@pytest.mark.parametrize("at", ["1970-01-01", "8999-12-31T23:59:59", "9000-01-01T00:30:00+01:00"])
def test_the_ends_of_the_span_are_instants(site: Path, at: str) -> None:
    validated = orchestrator(site, "validate", "--at", at, "clash")
    assert validated.returncode in (0, 1), validated.stderr  # a clash, or none before 9000
    assert "Traceback" not in validated.stderr
    planned = orchestrator(site, "plan", "--offline", "--config", "config.yaml", "--at", at)
    assert planned.returncode == 0, planned.stderr
    assert "Timeline:" in planned.stdout


def test_the_instant_plan_prints_is_taken_back(site: Path) -> None:
    """Defect: `--at` took whole seconds only, so the instant `plan` prints ("Plan at
    2026-12-07T15:00:09.302259+00:00") was refused; ISO 8601 as Python reads it is
    taken (fractions, `Z`, minutes alone), anything else refused naming the forms."""
    plan = ("plan", "--offline", "--config", "config.yaml")
    first = orchestrator(site, *plan)
    assert first.returncode == 0, first.stderr
    printed = first.stdout.splitlines()[0].removeprefix("Plan at ")
    assert "." in printed  # the fraction of a second plan prints
    for at in (printed, "2026-12-06T09:00", "2026-12-06T09:00Z"):
        again = orchestrator(site, *plan, "--at", at)
        assert again.returncode == 0, again.stderr
    line = _usage_error(orchestrator(site, *plan, "--at", "tomorrow"), "--at", 1)
    assert line.endswith(
        "'tomorrow' is not an ISO 8601 instant: like 2026-12-07T09:00:00+01:00, "
        "2026-12-07T09:00Z or 2026-12-07"
    )


def test_a_horizon_longer_than_a_schedule_spans_is_a_usage_error(site: Path) -> None:
    """Defect: `--horizon 3661d` gave ValueError ("range longer than 3660 days for a
    cron schedule") and a traceback; the longest horizon still plans, the shortest
    is longer than 0."""
    plan = ("plan", "--offline", "--config", "config.yaml", "--horizon")
    site.joinpath("recordings.d", "standup.yaml").write_text(
        GOOD_TEXT.format(name="standup", channel="room-2"), encoding="utf-8"
    )
    line = _usage_error(orchestrator(site, *plan, "3661d"), "--horizon", 1)
    assert line.endswith("3661d is longer than 3660d, the most a schedule spans")
    _usage_error(orchestrator(site, *plan, "1.5h"), "--horizon", 1)
    # A timeline of no time said every recording had "no window in the horizon".
    line = _usage_error(orchestrator(site, *plan, "0s"), "--horizon", 1)
    assert line.endswith("0s shows no time: give a horizon longer than 0, like 24h")
    longest = orchestrator(site, *plan, "3660d")
    assert longest.returncode == 0, longest.stderr
    assert "standup" in longest.stdout


def test_a_usage_error_of_plan_is_not_taken_for_changes(site: Path) -> None:
    """`plan --detailed-exitcode` exits 2 for changes: a mistyped option exits 1, so a CI
    job cannot take it for changes (as terraform's `plan -detailed-exitcode`)."""
    plan = ("plan", "--offline", "--config", "config.yaml", "--detailed-exitcode")
    mistyped = orchestrator(site, *plan, "--horizn", "2h")
    assert mistyped.returncode == 1, mistyped.stderr
    assert "Error: No such option '--horizn'" in mistyped.stderr
    assert orchestrator(site, *plan).returncode == 2  # lobby starts: changes
    assert orchestrator(site, "validate", "--strictt", "clash").returncode == 2


@pytest.mark.parametrize("limit", ["-1", "1000001", "999999999999999999999"])
def test_a_limit_out_of_range_is_a_usage_error(site: Path, limit: str) -> None:
    """Defect: a limit past SQLite's integers gave OverflowError and a traceback, and
    -1 was taken (the store reads it as "all", which the command line does not offer)."""
    result = orchestrator(site, "status", "--config", "config.yaml", "--limit", limit)
    line = _usage_error(result, "--limit")
    assert line.endswith(f"{limit} is not in the range 0<=x<=1000000.")


def test_the_help_states_the_bounds_schedules_have(site: Path) -> None:
    """The help is written where no schedule is imported: it must say what they say."""
    last = (FAR_FUTURE - timedelta(days=1)).date()
    plan_help = " ".join(orchestrator(site, "plan", "--help").stdout.split())
    assert f"from {FAR_PAST.date()} to {last}" in plan_help
    assert f"at most {MAX_CRON_RANGE.days}d" in plan_help
    assert "0 to 1000000" in " ".join(orchestrator(site, "status", "--help").stdout.split())
