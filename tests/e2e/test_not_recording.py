"""Every wanted recording that is not recording is visible, with its reason, as processes.

Covers: a start that fails before any call (an unset secret) shows in `status` (text
and JSON, exit 1) with its last error and next attempt, in `plan` (held back in
backoff; `--detailed-exitcode` 2, never "everything is as desired"); a file that
does not load shows in `status` with its file, line and column, and so does one that
names an unknown app profile; an `apply` with nothing to do but a restart waiting its
backoff exits 0, as docs/cli.md says (it is not held: it follows by itself), `status`
1 and `plan --detailed-exitcode` 2; the daemon's `/readyz` detail and JSON, its
metrics and its STATUS= line say the same (and count the same files failing); nothing
of it carries a secret value.
"""

from __future__ import annotations

import json

import httpx
import pytest

from tests.e2e.conftest import SECRET_ENV, CliEnv, DaemonEnv
from tests.e2e.test_apply_cli import assert_no_secrets, write_manifest

pytestmark = pytest.mark.e2e


def failing_manifest(env: CliEnv, name: str, channel: str, uid: int) -> None:
    """A manifest whose token names a variable the processes do not have."""
    write_manifest(env, name, channel, uid)
    path = env.manifests / f"{name}.yaml"
    text = path.read_text(encoding="utf-8").replace("AGORA_TOKEN", "UNSET_TOKEN_VARIABLE")
    path.write_text(text, encoding="utf-8")


def slow_backoff(env: CliEnv) -> None:
    """A restart backoff no test outlasts: the next attempt stays in the future."""
    env.reconfigure({"reconcile": {"restartBackoff": {"initial": "1h", "max": "2h"}}})


async def test_status_and_plan_show_a_failing_start(cli_env: CliEnv) -> None:
    slow_backoff(cli_env)
    failing_manifest(cli_env, "alpha", "room-a", 101)
    write_manifest(cli_env, "beta", "room-b", 102)
    applied = await cli_env.run("apply", "--config", str(cli_env.config))
    assert applied.code == 1
    assert cli_env.emulator.emu.requests("acquire")  # beta started; alpha sent nothing
    assert len(cli_env.emulator.emu.requests("acquire")) == 1

    status = await cli_env.run("status", "--config", str(cli_env.config))
    assert status.code == 1, status.stdout + status.stderr
    out = status.stdout
    assert "2 wanted now, 1 recording, 1 not recording" in out
    assert "Not recording, although wanted now:" in out
    assert "  alpha: failing:" in out
    assert "UNSET_TOKEN_VARIABLE" in out and "next attempt:" in out

    data = json.loads(
        (await cli_env.run("status", "--config", str(cli_env.config), "--format", "json")).stdout
    )
    (missing,) = data["not_recording"]
    assert missing["manifest"] == "alpha" and missing["reason"] == "failing"
    assert "UNSET_TOKEN_VARIABLE" in missing["last_error"] and missing["next_attempt"]
    assert data["counts"]["not_recording_by_reason"] == {"failing": 1}
    assert {r["manifest"]: r["doing"] for r in data["recordings"]} == {
        "alpha": "idle",
        "beta": "recording",
    }

    # plan: the start waits its backoff; that is a change to come, not "as desired".
    plan = await cli_env.run("plan", "--offline", "--config", str(cli_env.config))
    assert plan.code == 0
    assert "Actions: none, everything is as desired" not in plan.stdout
    assert "a restart waits its backoff" in plan.stdout
    assert "backoff" in plan.stdout and "alpha" in plan.stdout
    detailed = await cli_env.run(
        "plan", "--offline", "--detailed-exitcode", "--config", str(cli_env.config)
    )
    assert detailed.code == 2
    assert_no_secrets(out, plan.stdout, applied.stdout, applied.stderr, json.dumps(data))


async def test_apply_waiting_for_a_backoff_exits_0_as_documented(cli_env: CliEnv) -> None:
    """The probe asked whether `apply` should exit 1 here, as README and `apply --help`
    ("0 all as desired") suggested; docs/cli.md's exact rule (none is held: failed or
    unmanageable) and `Plan.blocked` say 0, and the help now says it too."""
    slow_backoff(cli_env)
    failing_manifest(cli_env, "alpha", "room-a", 101)
    first = await cli_env.run("apply", "--config", str(cli_env.config))
    assert first.code == 1 and "FAILED start" in first.stdout  # the failure is reported

    again = await cli_env.run("apply", "--config", str(cli_env.config))
    assert again.code == 0, again.stdout + again.stderr
    assert "held   backoff      alpha: restart #1 after failed:" in again.stdout
    assert again.stdout.endswith("0 action(s), 0 failed, 1 held back\n")
    status = await cli_env.run("status", "--config", str(cli_env.config))
    assert status.code == 1  # not recording, although wanted
    detailed = await cli_env.run(
        "plan", "--offline", "--detailed-exitcode", "--config", str(cli_env.config)
    )
    assert detailed.code == 2  # a change to come

    shown = await cli_env.run("apply", "--help")
    assert (
        "0 every action succeeded and nothing is held (a restart waiting for its backoff is not)"
        in (" ".join(shown.stdout.split()))
    )


async def test_status_names_the_file_that_does_not_load(cli_env: CliEnv) -> None:
    write_manifest(cli_env, "beta", "room-b", 102)
    assert (await cli_env.run("apply", "--config", str(cli_env.config))).code == 0
    healthy = await cli_env.run("status", "--config", str(cli_env.config))
    assert healthy.code == 0, healthy.stdout
    (cli_env.manifests / "bad.yaml").write_text(
        "name: gamma\napp: main\nchannel: room-c\nuid: 0\nmode: mix\nschedule: always\n",
        encoding="utf-8",
    )
    (cli_env.manifests / "other.yaml").write_text(
        "name: delta\napp: mian\nchannel: room-d\nuid: 4\nmode: mix\nschedule: always\n",
        encoding="utf-8",
    )
    status = await cli_env.run("status", "--config", str(cli_env.config))
    assert status.code == 1
    assert "Failing to load" in status.stdout
    assert "bad.yaml:4:6: error: uid:" in status.stdout
    # A file that names an unknown app profile does not load either, and is counted so.
    assert "other.yaml:2:1: error: app: unknown app profile 'mian'" in status.stdout
    assert "2 file(s) failing to load" in status.stdout


async def test_the_daemon_reports_what_is_not_recording(daemon_env: DaemonEnv) -> None:
    failing_manifest(daemon_env.cli, "alpha", "room-a", 101)
    write_manifest(daemon_env.cli, "beta", "room-b", 102)
    (daemon_env.cli.manifests / "other.yaml").write_text(
        "name: delta\napp: mian\nchannel: room-d\nuid: 4\nmode: mix\nschedule: always\n",
        encoding="utf-8",
    )
    daemon = await daemon_env.start()
    assert daemon.notify is not None
    try:
        ready_status = await daemon.notify.wait_for("READY", "1")
        assert "2 wanted, 1 recording, 1 not recording: alpha (failing), 1 failing to load" in (
            ready_status.get("STATUS", "")
        )
        url = await daemon.metrics_url()
        async with httpx.AsyncClient(base_url=url, timeout=5, trust_env=False) as http:
            ready = await http.get("/readyz")
            metrics = (await http.get("/metrics")).text
        body = ready.json()
        assert ready.status_code == 200 and body["ready"] is True
        assert "1 not recording: alpha (failing)" in body["detail"]
        (missing,) = body["not_recording"]
        assert missing["manifest"] == "alpha" and missing["reason"] == "failing"
        assert "UNSET_TOKEN_VARIABLE" in missing["last_error"]
        assert missing["next_attempt"]
        # The unknown app profile: a file failing to load, as the metric counts it too.
        (other,) = body["files_failing"]
        assert (other["field"], other["line"]) == ("app", 2) and "'mian'" in other["message"]
        assert "orchestrator_manifests_failing 1.0" in metrics
        app_id = daemon_env.cli.emulator.app_id
        assert f'orchestrator_recordings_wanted{{app_id="{app_id}"}} 2.0' in metrics
        assert f'orchestrator_recordings_live{{app_id="{app_id}"}} 1.0' in metrics
        assert (
            f'orchestrator_recordings_not_recording{{app_id="{app_id}",reason="failing"}} 1.0'
            in metrics
        )
    finally:
        assert await daemon.stop() == 0
    assert_no_secrets(daemon.log.text(), json.dumps(body), metrics)
    assert all(v not in json.dumps(body) for v in SECRET_ENV.values() if v)
