"""`orchestrator emulator` as a process: it serves real requests and stops cleanly.

Covers: the listening line on stdout (port 0 picks a free port), a real acquire and
start through AgoraClient with credentials from the environment, App ID filtering
with --app, the control API, SIGTERM -> exit 0; a busy port -> exit 1; a bad
option -> exit 2.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest

from orchestrator.agora.client import AgoraClient
from orchestrator.agora.errors import PermanentError

pytestmark = pytest.mark.e2e

APP = "0123456789abcdef0123456789abcdef"


@pytest.fixture
def emulator_process() -> Iterator[tuple[subprocess.Popen[str], str]]:
    env = dict(os.environ)
    env["ORCHESTRATOR_EMULATOR_CUSTOMER_ID"] = "e2e-id"
    env["ORCHESTRATOR_EMULATOR_CUSTOMER_SECRET"] = "e2e-secret"
    process = subprocess.Popen(
        [sys.executable, "-m", "orchestrator", "emulator", "--port", "0", "--app", APP],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()  # blocks until the server is listening
        match = re.search(r"listening on (http://127\.0\.0\.1:\d+)", line)
        assert match, f"unexpected first line: {line!r}"
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
