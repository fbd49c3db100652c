"""End-to-end fixtures: the CLI as a process against the in-process emulator.

`cli_env` writes a daemon config pointing at the emulator, a manifests
directory and a state directory into a temp dir; `cli_env.run(...)` runs
`python -m orchestrator ...` as a child process without blocking the event loop
(the emulator serves from the same loop).

`daemon_env` adds a free metrics port, a 2 s resync and a 300 ms watch debounce;
`await daemon_env.start()` runs `orchestrator run` with a real NOTIFY_SOCKET
(a datagram socket in the temp dir) and returns once it sent READY=1; its JSON
log lines are collected from stderr. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from orchestrator.state import open_store
from tests.integration.conftest import EmulatorHandle, emulator  # noqa: F401 (fixture)

SECRET_ENV = {
    "AGORA_CUSTOMER_ID": "",  # filled from the emulator
    "AGORA_CUSTOMER_SECRET": "",
    "AGORA_TOKEN": "e2e-token-value",
    "S3_KEY": "e2e-s3-access",
    "S3_SECRET": "e2e-s3-secret",
}


@dataclass
class Completed:
    code: int
    stdout: str
    stderr: str


@dataclass
class CliEnv:
    root: Path
    emulator: EmulatorHandle
    env: dict[str, str]

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def manifests(self) -> Path:
        return self.root / "recordings.d"

    @property
    def state_db(self) -> Path:
        return self.root / "state" / "state.db"

    def args(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "orchestrator", *args]

    def without_credentials(self) -> dict[str, str]:
        """The environment minus the API credentials (what CI has for `plan --offline`)."""
        return {k: v for k, v in self.env.items() if not k.startswith("AGORA_CUSTOMER")}

    async def start(
        self, *args: str, env: dict[str, str] | None = None
    ) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            *self.args(*args),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=self.env if env is None else env,
            cwd=self.root,
        )

    async def run(self, *args: str, env: dict[str, str] | None = None) -> Completed:
        process = await self.start(*args, env=env)
        # Bounded: no CLI run in these tests takes anywhere near a minute.
        stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
        assert process.returncode is not None
        return Completed(process.returncode, stdout.decode(), stderr.decode())


@pytest.fixture
async def cli_env(emulator: EmulatorHandle, tmp_path: Path) -> CliEnv:  # noqa: F811
    (tmp_path / "recordings.d").mkdir()
    (tmp_path / "config.yaml").write_text(
        textwrap.dedent(
            f"""\
            apps:
              main:
                appId: {emulator.app_id}
                customerId: {{env: AGORA_CUSTOMER_ID}}
                customerSecret: {{env: AGORA_CUSTOMER_SECRET}}
                baseUrl: {emulator.base_url}
            state: {{dir: ./state}}
            manifests: {{dir: ./recordings.d}}
            metrics: {{address: null}}
            logging: {{format: json}}
            retry: {{initial: 1ms, max: 1ms}}  # retried at once: no test sleeps through backoff
            reconcile:
              restartBackoff: {{initial: 1s, max: 1s}}
            """
        ),
        encoding="utf-8",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_")}
    env.update(SECRET_ENV)
    env["AGORA_CUSTOMER_ID"] = emulator.customer_id
    env["AGORA_CUSTOMER_SECRET"] = emulator.customer_secret
    cli = CliEnv(tmp_path, emulator, env)
    # What `orchestrator init` does: only it and the daemon's first start create a store.
    await open_store(f"sqlite:///{cli.state_db}", create=True).aclose()
    return cli


# -- the daemon as a process ----------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class NotifySocket:
    """A real systemd-style NOTIFY_SOCKET: a datagram socket the daemon writes to."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.setblocking(False)
        self.messages: list[dict[str, str]] = []

    def drain(self) -> list[dict[str, str]]:
        while True:
            try:
                data = self.sock.recv(4096)
            except BlockingIOError:
                return self.messages
            fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
            self.messages.append(fields)

    async def wait_for(
        self,
        key: str,
        value: str | None = None,
        within: float = 30,
        process: asyncio.subprocess.Process | None = None,
    ) -> dict[str, str]:
        """The first message (since the start) with `key` (= `value`); bounded, and
        ended early when `process` exits."""
        deadline = time.monotonic() + within
        seen = 0
        while time.monotonic() < deadline and (process is None or process.returncode is None):
            messages = self.drain()
            for message in messages[seen:]:
                if key in message and (value is None or message[key] == value):
                    return message
            seen = len(messages)
            await asyncio.sleep(0.02)
        raise AssertionError(f"no {key}={value or '*'} on NOTIFY_SOCKET within {within}s")

    def close(self) -> None:
        self.sock.close()


@dataclass
class Daemon:
    """A running `orchestrator run` process; its stderr JSON lines are collected."""

    process: asyncio.subprocess.Process
    notify: NotifySocket
    lines: list[str]
    reader: asyncio.Task[None]

    @property
    def events(self) -> list[dict[str, object]]:
        out = []
        for line in self.lines:
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out

    def named(self, event: str) -> list[dict[str, object]]:
        return [e for e in self.events if e.get("event") == event]

    async def wait_event(
        self, event: str, within: float = 30, **match: object
    ) -> dict[str, object]:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            for e in self.named(event):
                if all(e.get(k) == v for k, v in match.items()):
                    return e
            if self.process.returncode is not None:
                break
            await asyncio.sleep(0.05)
        raise AssertionError(
            f"no {event} {match} within {within}s:\n" + "\n".join(self.lines[-30:])
        )

    async def stop(self, within: float = 15) -> int:
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = await asyncio.wait_for(self.process.wait(), within)
        finally:
            if self.process.returncode is None:
                self.process.kill()
                await self.process.wait()
            await asyncio.wait_for(self.reader, 5)
            self.notify.drain()
            self.notify.close()
        return code


@dataclass
class DaemonEnv:
    """`cli_env` plus what a daemon test needs: a metrics port and a notify socket."""

    cli: CliEnv
    metrics_port: int

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}"

    async def start(
        self, *extra: str, env: dict[str, str] | None = None, ready: bool = True
    ) -> Daemon:
        notify = NotifySocket(self.cli.root / f"notify-{len(list(self.cli.root.glob('notify-*')))}")
        run_env = dict(self.cli.env if env is None else env)
        run_env["NOTIFY_SOCKET"] = str(notify.path)
        process = await self.cli.start("run", "--config", str(self.cli.config), *extra, env=run_env)
        lines: list[str] = []

        async def read() -> None:
            assert process.stderr is not None
            while line := await process.stderr.readline():
                lines.append(line.decode(errors="replace").rstrip("\n"))

        daemon = Daemon(process, notify, lines, asyncio.create_task(read()))
        if ready:
            try:
                await notify.wait_for("READY", "1", within=60, process=process)
            except AssertionError:
                await daemon.stop()
                raise AssertionError(
                    "daemon never became ready:\n" + "\n".join(lines[-40:])
                ) from None
        return daemon


@pytest.fixture
def daemon_env(cli_env: CliEnv) -> DaemonEnv:
    port = free_port()
    text = cli_env.config.read_text(encoding="utf-8")
    text = text.replace("metrics: {address: null}", f"metrics: {{address: '127.0.0.1:{port}'}}")
    text += textwrap.dedent(
        """\
          resyncInterval: 2s
        shutdown: {drainTimeout: 5s}
        """
    )
    text = text.replace(
        "manifests: {dir: ./recordings.d}",
        "manifests: {dir: ./recordings.d, watchInterval: 300ms}",
    )
    cli_env.config.write_text(text, encoding="utf-8")
    return DaemonEnv(cli_env, port)
