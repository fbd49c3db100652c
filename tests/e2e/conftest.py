"""End-to-end fixtures: the CLI as a process against the in-process emulator.

`cli_env` writes a daemon config pointing at the emulator, a manifests
directory and a state directory into a temp dir; `cli_env.run(...)` runs
`python -m orchestrator ...` as a child process without blocking the event loop
(the emulator serves from the same loop).
"""

from __future__ import annotations

import asyncio
import os
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

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
def cli_env(emulator: EmulatorHandle, tmp_path: Path) -> CliEnv:  # noqa: F811
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
    return CliEnv(tmp_path, emulator, env)
