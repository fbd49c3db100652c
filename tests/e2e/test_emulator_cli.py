"""`orchestrator emulator` as a process: it serves real requests and stops cleanly.

Covers: the listening line on stdout (port 0 picks a free port), a real acquire and
start through AgoraClient with credentials from the environment, App ID filtering
with --app, the control API, SIGTERM -> exit 0; a busy port -> exit 1; a bad
option -> exit 2; --app-certificate (for every App ID, and APPID=CERT for one)
verifies start tokens and is never printed, a bad one (also from the environment)
is a usage error that does not print it either.
"""

from __future__ import annotations

import os
import re
import select
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

from orchestrator.agora.client import AgoraClient
from orchestrator.agora.errors import PermanentError
from orchestrator.agora.token import build_rtc_token

pytestmark = pytest.mark.e2e

APP = "0123456789abcdef0123456789abcdef"
APP2 = "fedcba9876543210fedcba9876543210"
CERTIFICATE = "5cfd2fd1755d40ecb72977518be15d3b"
APP2_CERTIFICATE = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
EMULATOR = [sys.executable, "-m", "orchestrator", "emulator"]


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["ORCHESTRATOR_EMULATOR_CUSTOMER_ID"] = "e2e-id"
    env["ORCHESTRATOR_EMULATOR_CUSTOMER_SECRET"] = "e2e-secret"
    env.update(extra)
    return env


@pytest.fixture
def emulator_process() -> Iterator[tuple[subprocess.Popen[str], str]]:
    with _emulator_process(["--app", APP]) as served:
        yield served


@contextmanager
def _emulator_process(
    args: list[str], env: Mapping[str, str] | None = None, *, hidden: str | None = None
) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """`orchestrator emulator --port 0 ARGS` as a process, and the URL it listens on
    (its first line, read within 30 s; `hidden` must not be in it)."""
    process = subprocess.Popen(
        [*EMULATOR, "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env() if env is None else dict(env),
    )
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], 30)  # a bounded wait
        assert ready, "the emulator printed nothing within 30 s"
        line = process.stdout.readline()  # the server prints its address as one line
        match = re.search(r"listening on (http://127\.0\.0\.1:\d+)", line)
        assert match, f"unexpected first line: {line!r}"
        if hidden is not None:
            assert hidden not in line
        yield process, match.group(1)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


async def test_serves_requests_and_stops_on_sigterm(
    emulator_process: tuple[subprocess.Popen[str], str],
) -> None:
    process, base_url = emulator_process
    async with AgoraClient(
        customer_id="e2e-id", customer_secret="e2e-secret", base_url=base_url
    ) as client:
        rid = await client.acquire(APP, {"cname": "room", "uid": "42", "clientRequest": {}})
        sid = await client.start(
            APP,
            rid,
            "mix",
            {"cname": "room", "uid": "42", "clientRequest": {"recordingConfig": {}}},
        )
        with pytest.raises(PermanentError) as caught:
            await client.acquire("f" * 32, {"cname": "room", "uid": "42", "clientRequest": {}})
        assert caught.value.reason == "invalid appid"
    async with httpx.AsyncClient(base_url=base_url) as http:
        sessions = (await http.get("/_emulator/sessions")).json()["sessions"]
    assert [s["sid"] for s in sessions] == [sid]

    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=10) == 0
    assert process.stderr is not None
    err = process.stderr.read()
    assert "e2e-secret" not in err
    assert "emulator.request" in err


def test_busy_port_exits_1() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "orchestrator", "emulator", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert result.returncode == 1
    assert "cannot listen" in result.stderr


def test_bad_port_is_usage_error() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "orchestrator", "emulator", "--port", "70000"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2


async def test_app_certificate_option_verifies_start_tokens() -> None:
    args = ["--app", APP, "--app", APP2, "--app-certificate", CERTIFICATE]
    args += ["--app-certificate", f"{APP2}={APP2_CERTIFICATE}"]
    with _emulator_process(args) as (process, base_url):
        async with httpx.AsyncClient(base_url=base_url + "/_emulator") as control:
            shown = (await control.get("/certificates")).json()
            assert shown == {"default": True, "app_ids": [APP2]}
            now = int((await control.get("/clock")).json()["now"])
            async with AgoraClient(
                customer_id="e2e-id", customer_secret="e2e-secret", base_url=base_url
            ) as client:
                started = {
                    # (App ID, uid, certificate the token is minted from)
                    await _start(client, APP, 1, CERTIFICATE, now): None,
                    await _start(client, APP, 2, APP2_CERTIFICATE, now): "signature",
                    await _start(client, APP2, 3, APP2_CERTIFICATE, now): None,
                    await _start(client, APP2, 4, CERTIFICATE, now): "signature",
                }
            sessions = (await control.get("/sessions")).json()["sessions"]
            assert {s["sid"]: s["token_refused"] for s in sessions} == started
            await control.post("/clock/advance", json={"seconds": 10})  # < maxIdleTime
            ended = (await control.get("/sessions")).json()["sessions"]
            assert {s["sid"]: s["end_reason"] for s in ended} == {
                sid: None if refused is None else f"token refused: {refused}"
                for sid, refused in started.items()
            }
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
        assert process.stdout is not None and process.stderr is not None
        printed = process.stdout.read() + process.stderr.read()
    assert "emulator.request" in printed
    assert CERTIFICATE not in printed and APP2_CERTIFICATE not in printed


async def _start(client: AgoraClient, app: str, uid: int, certificate: str, now: int) -> str:
    """Start a recording of `uid` in "room" with a token minted from `certificate`."""
    token = build_rtc_token(app, certificate, "room", uid, expires_in=3600, issued_at=now, salt=7)
    rid = await client.acquire(app, {"cname": "room", "uid": str(uid), "clientRequest": {}})
    body: dict[str, Any] = {
        "cname": "room",
        "uid": str(uid),
        "clientRequest": {"token": token, "recordingConfig": {"channelType": 1}},
    }
    return await client.start(app, rid, "mix", body)


@pytest.mark.parametrize(
    ("args", "env", "complaint"),
    [
        ([], {"ORCHESTRATOR_EMULATOR_APP_CERTIFICATE": CERTIFICATE[:-1] + "z"}, "32 hexadecimal"),
        (["--app", APP, "--app-certificate", f"{APP2}={CERTIFICATE}"], {}, "does not serve"),
        (["--app-certificate", CERTIFICATE, "--app-certificate", CERTIFICATE], {}, "twice"),
        (["--app-certificate", f"={CERTIFICATE}"], {}, "needs an App ID"),
    ],
    ids=["not hex, from the environment", "App ID not served", "twice", "no App ID"],
)
def test_a_bad_app_certificate_is_a_usage_error_that_does_not_print_it(
    args: list[str], env: dict[str, str], complaint: str
) -> None:
    result = subprocess.run(
        [*EMULATOR, "--port", "0", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env=_env(**env),
    )
    assert result.returncode == 2
    assert "--app-certificate" in result.stderr and complaint in result.stderr
    assert CERTIFICATE[:-1] not in result.stdout + result.stderr
