"""End-to-end fixtures: the CLI as a process against the in-process emulator.

`cli_env` writes a daemon config pointing at the emulator (tests/harness/config.py:
built as data, validated by the config model), a manifests directory and a state
directory into a temp dir; `cli_env.run(...)` runs `python -m orchestrator ...` as a
child process without blocking the event loop (the emulator serves from the same
loop).

`daemon_env` turns the metrics on (port 0: the daemon logs the address it bound), a
2 s resync and a 100 ms watch debounce; `await daemon_env.start()` runs
`orchestrator run` through the harness (its JSON log in a file, a real
NOTIFY_SOCKET) and returns once it sent READY=1. `daemon_env.reconfigure(...)`
rewrites the config with changes. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from orchestrator.state import open_store
from tests.harness import (
    Completed,
    Daemon,
    Processes,
    child_env,
    config_data,
    merged,
    orchestrator,
    run_cli,
    start_cli,
    write_config,
)
from tests.integration.conftest import EmulatorHandle, emulator  # noqa: F401 (fixture)

SECRET_ENV = {
    "AGORA_CUSTOMER_ID": "",  # filled from the emulator
    "AGORA_CUSTOMER_SECRET": "",
    "AGORA_TOKEN": "e2e-token-value",
    "S3_KEY": "e2e-s3-access",
    "S3_SECRET": "e2e-s3-secret",
}

__all__ = ["SECRET_ENV", "CliEnv", "Completed", "DaemonEnv"]


@dataclass
class CliEnv:
    root: Path
    emulator: EmulatorHandle
    env: dict[str, str]
    data: dict[str, Any] = field(default_factory=dict)  # the config document

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def manifests(self) -> Path:
        return self.root / "recordings.d"

    @property
    def state_db(self) -> Path:
        return self.root / "state" / "state.db"

    def without_credentials(self) -> dict[str, str]:
        """The environment minus the API credentials (what CI has for `plan --offline`)."""
        return {k: v for k, v in self.env.items() if not k.startswith("AGORA_CUSTOMER")}

    def args(self, *args: str) -> list[str]:
        """The command line of `orchestrator ARGS`."""
        return orchestrator(*args)

    def reconfigure(self, changes: Mapping[str, Any]) -> None:
        """Write the config again with `changes` merged in (validated first)."""
        self.data = merged(self.data, changes)
        write_config(self.config, self.data)

    async def start(
        self, *args: str, env: dict[str, str] | None = None, sigint: bool = False
    ) -> asyncio.subprocess.Process:
        """`sigint`: the test sends it Ctrl-C (see `interruptible`)."""
        return await start_cli(
            args, env=self.env if env is None else env, cwd=self.root, sigint=sigint
        )

    async def run(self, *args: str, env: dict[str, str] | None = None) -> Completed:
        # Bounded: no CLI run in these tests takes anywhere near a minute.
        return await run_cli(args, env=self.env if env is None else env, cwd=self.root)


@pytest.fixture
async def cli_env(emulator: EmulatorHandle, tmp_path: Path) -> CliEnv:  # noqa: F811
    (tmp_path / "recordings.d").mkdir()
    data = config_data(
        {"main": emulator.app_id},
        emulator.base_url,
        metrics=False,
        customer=("AGORA_CUSTOMER_ID", "AGORA_CUSTOMER_SECRET"),
        backoff=("1s", "1s"),
        # retried at once: no test sleeps through the client's backoff
        changes={"retry": {"initial": "1ms", "max": "1ms"}},
    )
    env = child_env(SECRET_ENV)
    env["AGORA_CUSTOMER_ID"] = emulator.customer_id
    env["AGORA_CUSTOMER_SECRET"] = emulator.customer_secret
    cli = CliEnv(tmp_path, emulator, env)
    cli.reconfigure(data)
    # What `orchestrator init` does: only it and the daemon's first start create a store.
    await open_store(f"sqlite:///{cli.state_db}", create=True).aclose()
    return cli


# -- the daemon as a process ----------------------------------------------------------


@dataclass
class DaemonEnv:
    """`cli_env` plus the daemon: started through the harness, which ends it by pid."""

    cli: CliEnv
    processes: Processes

    def reconfigure(self, changes: Mapping[str, Any]) -> None:
        self.cli.reconfigure(changes)

    async def start(self, *, env: dict[str, str] | None = None, ready: bool = True) -> Daemon:
        """`orchestrator run`; once it sent READY=1 unless `ready` is false."""
        daemon = self.processes.daemon(self.cli.config, env=self.cli.env if env is None else env)
        if ready:
            assert daemon.notify is not None
            await daemon.notify.wait_for("READY", "1", within=60, alive=daemon)
            await daemon.ready(within=10)
        return daemon


@pytest.fixture
async def daemon_env(cli_env: CliEnv) -> AsyncIterator[DaemonEnv]:
    cli_env.reconfigure(
        {
            "metrics": {"address": "127.0.0.1:0"},
            "reconcile": {"resyncInterval": "2s"},
            "shutdown": {"drainTimeout": "5s"},
        }
    )
    processes = Processes(cli_env.root, cli_env.env)
    try:
        yield DaemonEnv(cli_env, processes)
    finally:
        await processes.close()
