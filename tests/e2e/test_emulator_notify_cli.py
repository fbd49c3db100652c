"""`orchestrator emulator --notify URL --notify-secret SECRET` as a process.

Covers: the options are accepted and a start through AgoraClient reaches a real NCS
endpoint as a signed 40 recorder_started; `GET /_emulator/notify` names the URL and
says a secret is set; the secret also comes from ORCHESTRATOR_EMULATOR_NOTIFY_SECRET;
it is never printed (stdout, stderr, the control API), not even in the usage error
about a bad URL; `--notify` without a secret (or the reverse) is a usage error.
"""

from __future__ import annotations

import signal
import subprocess

import httpx
import pytest

from orchestrator.agora.client import AgoraClient
from orchestrator.agora.ncs import EventType
from tests.e2e.test_emulator_cli import APP, _emulator_process
from tests.e2e.test_emulator_cli import EMULATOR as CLI_EMULATOR
from tests.e2e.test_emulator_cli import _env as cli_env
from tests.integration.emulator.ncs_receiver import ncs_receiver

pytestmark = pytest.mark.e2e

SECRET = "e2e-ncs-secret-never-printed"
ARGS = ["--app", APP]
EMULATOR = [*CLI_EMULATOR, "--port", "0", *ARGS]


def _env(**extra: str) -> dict[str, str]:
    """The emulator CLI tests' environment, without a notify target of the caller's."""
    env = cli_env()
    env.pop("ORCHESTRATOR_EMULATOR_NOTIFY", None)
    env.pop("ORCHESTRATOR_EMULATOR_NOTIFY_SECRET", None)
    env.update(extra)
    return env


@pytest.mark.parametrize("secret_from", ["option", "environment"])
async def test_notifies_a_start_signed(secret_from: str) -> None:
    async with ncs_receiver(SECRET) as receiver:
        args = ["--notify", receiver.url]
        if secret_from == "option":
            args += ["--notify-secret", SECRET]
            env = _env()
        else:
            env = _env(ORCHESTRATOR_EMULATOR_NOTIFY_SECRET=SECRET)
        with _emulator_process([*ARGS, *args], env, hidden=SECRET) as (process, base_url):
            async with httpx.AsyncClient(base_url=base_url + "/_emulator") as control:
                shown = await control.get("/notify")
                assert shown.json()["url"] == receiver.url
                assert shown.json()["secret_set"] is True
                assert SECRET not in shown.text
            async with AgoraClient(
                customer_id="e2e-id", customer_secret="e2e-secret", base_url=base_url
            ) as client:
                rid = await client.acquire(APP, {"cname": "room", "uid": "42", "clientRequest": {}})
                body = {"cname": "room", "uid": "42", "clientRequest": {"recordingConfig": {}}}
                sid = await client.start(APP, rid, "mix", body)
            (started,) = await receiver.events(sid, [EventType.RECORDER_STARTED], within=10.0)
            assert (started.payload.uid, started.payload.cname) == ("42", "room")
            assert all(post.verified for post in receiver.posts)
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=10) == 0
            assert process.stderr is not None
            err = process.stderr.read()
    assert "emulator.notification" in err
    assert SECRET not in err


@pytest.mark.parametrize(
    ("args", "env"),
    [
        (["--notify", "http://127.0.0.1:9/ncs"], {}),
        (["--notify-secret", SECRET], {}),
        ([], {"ORCHESTRATOR_EMULATOR_NOTIFY_SECRET": SECRET}),
        (["--notify", "ftp://127.0.0.1/ncs", "--notify-secret", SECRET], {}),
        (["--notify", "ftp://127.0.0.1/ncs"], {"ORCHESTRATOR_EMULATOR_NOTIFY_SECRET": SECRET}),
    ],
)
def test_a_bad_notify_option_is_a_usage_error(args: list[str], env: dict[str, str]) -> None:
    result = subprocess.run(
        [*EMULATOR, *args], capture_output=True, text=True, timeout=30, env=_env(**env)
    )
    assert result.returncode == 2, result.stderr
    assert "--notify" in result.stderr
    assert SECRET not in result.stdout + result.stderr
