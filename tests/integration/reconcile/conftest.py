"""A reconcile world: the emulator on loopback, manifests in a temp dir, a real SQLite store.

`world.apply()` runs one real pass (load manifests, query, plan, execute) through
the same functions the CLI uses, on the composition root's runtime
(`orchestrator.runtime.open_runtime`: the store as its single writer, the rate
limiters, the clients speaking HTTP to the emulator, the executor), built from a
real config whose credentials are files in the temp dir. Tests edit manifests
with `world.write(...)` between passes and look at the emulator's received
requests and sessions, and at the store.
"""

from __future__ import annotations

import textwrap
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from orchestrator.config import Config
from orchestrator.manifest.loader import load_manifests
from orchestrator.reconcile.plan import PlanPolicy
from orchestrator.reconcile.reconciler import (
    PassResult,
    desired_recordings,
    reconcile_once,
    remember_known_good,
)
from orchestrator.runtime import Hooks, Runtime, open_runtime
from orchestrator.state import SqliteStore, Store, open_store
from tests.integration.conftest import FAST_RETRY, EmulatorHandle

SECRETS = {
    "S3_KEY": "AKIA-test-access-key",
    "S3_SECRET": "s3-test-secret-value",
    "AGORA_TOKEN": "token-test-value",
}


def manifest(
    name: str, channel: str, uid: int, *, extra: str = "", schedule: str = "always"
) -> str:
    """A mix-mode manifest to S3 with a custom layout; `extra` is appended YAML."""
    return textwrap.dedent(
        f"""\
        name: {name}
        app: main
        channel: {channel}
        uid: {uid}
        mode: mix
        schedule: {schedule}
        token: {{env: AGORA_TOKEN}}
        recording:
          channelType: live
          streams: audio+video
          maxIdleTime: 30
        transcoding: {{width: 640, height: 360, fps: 15, bitrate: 500}}
        storage:
          vendor: aws-s3
          region: us-east-1
          bucket: rec
          accessKey: {{env: S3_KEY}}
          secretKey: {{env: S3_SECRET}}
        """
    ) + textwrap.dedent(extra)


@dataclass
class ShiftedClock:
    """The runtime's clock: the real time moved forward by `offset` (`World.advance`)."""

    offset: timedelta = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset


@dataclass
class World:
    emulator: EmulatorHandle
    root: Path
    runtime: Runtime
    clock: ShiftedClock = field(default_factory=ShiftedClock)
    policy: PlanPolicy = field(
        default_factory=lambda: PlanPolicy(restart_backoff_initial=timedelta(0))
    )

    @property
    def store(self) -> Store:
        return self.runtime.store

    @property
    def manifests(self) -> Path:
        return self.root / "recordings.d"

    @property
    def app_id(self) -> str:
        return self.emulator.app_id

    def write(self, filename: str, text: str) -> Path:
        path = self.manifests / filename
        path.write_text(text, encoding="utf-8")
        return path

    def remove(self, filename: str) -> None:
        (self.manifests / filename).unlink()

    def advance(self, delta: timedelta) -> None:
        """Move time forward for the runtime (its plans, its executor) and the emulator
        alike, so that tokens minted by one are verified at the same time by the other."""
        self.clock.offset += delta
        self.emulator.emu.advance(delta.total_seconds())

    async def apply(self, now: datetime | None = None) -> PassResult:
        now = now or self.clock()
        loaded = load_manifests([self.manifests], now=now)
        app_ids = {name: p.app_id for name, p in self.runtime.config.apps.items()}
        desired = desired_recordings(
            loaded.manifests, app_ids, loaded.failed_files, await self.store.known_good()
        )
        await remember_known_good(self.store, desired)
        return await reconcile_once(desired, self.store, self.runtime.executor, now, self.policy)

    def requests(self, endpoint: str | None = None) -> list[dict[str, Any]]:
        return self.emulator.emu.requests(endpoint)

    def recording(self) -> list[dict[str, Any]]:
        """Emulator sessions that are recording now."""
        return [s for s in self.emulator.emu.sessions() if s["live"]]


#: The App Certificate of `certified_world`'s profile (and of the emulator's App ID).
CERTIFICATE = "5cfd2fd1755d40ecb72977518be15d3b"


@asynccontextmanager
async def opened_world(
    emulator: EmulatorHandle,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    *,
    certificate: str | None = None,
    token_lifetime: str = "24h",  # noqa: S107  # a duration, not a password
    policy: PlanPolicy | None = None,
) -> AsyncIterator[World]:
    """A world whose profile `main` has `certificate` as its App Certificate (a file),
    when given, minting tokens valid for `token_lifetime`."""
    (tmp_path / "recordings.d").mkdir()
    for name, value in SECRETS.items():  # what the manifests' {env: NAME} resolve to
        monkeypatch.setenv(name, value)
    (tmp_path / "customer-id").write_text(emulator.customer_id, encoding="utf-8")
    (tmp_path / "customer-secret").write_text(emulator.customer_secret, encoding="utf-8")
    credentials = {
        "customerId": {"file": str(tmp_path / "customer-id")},
        "customerSecret": {"file": str(tmp_path / "customer-secret")},
        "baseUrl": emulator.base_url,
    }
    main: dict[str, Any] = {"appId": emulator.app_id, **credentials}
    if certificate is not None:
        (tmp_path / "app-certificate").write_text(certificate, encoding="utf-8")
        main["appCertificate"] = {"file": str(tmp_path / "app-certificate")}
        main["tokenLifetime"] = token_lifetime
    config = Config.model_validate(
        {
            "apps": {
                "main": main,
                "off": {"appId": emulator.disabled_app_id, **credentials},
            },
            "state": {"url": f"sqlite:///{tmp_path}/state.db"},
            "reconcile": {"rolloverLead": "10s"},
        }
    )
    clock = ShiftedClock()
    async with open_runtime(
        config, holder="test", hooks=Hooks(retry=FAST_RETRY), create=True, clock=clock
    ) as runtime:
        world = World(emulator, tmp_path, runtime, clock)
        if policy is not None:
            world.policy = policy
        yield world


@pytest.fixture
async def world(
    emulator: EmulatorHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[World]:
    async with opened_world(emulator, tmp_path, monkeypatch) as world:
        yield world


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    """A real SQLite store in the temp dir, made for the test, closed after it."""
    opened = open_store(f"sqlite:///{tmp_path}/state.db", create=True)
    try:
        yield opened
    finally:
        await opened.aclose()
