"""A reconcile world: the emulator on loopback, manifests in a temp dir, a real SQLite store.

`world.apply()` runs one real pass (load manifests, query, plan, execute) through
the same functions the CLI uses, with an AgoraClient speaking HTTP to the
emulator. Tests edit `world.write(...)` manifests between passes and look at the
emulator's received requests and sessions, and at the store.
"""

from __future__ import annotations

import textwrap
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from orchestrator.agora.client import AgoraClient
from orchestrator.manifest.loader import load_manifests
from orchestrator.reconcile.execute import Executor
from orchestrator.reconcile.plan import PlanPolicy
from orchestrator.reconcile.reconciler import (
    PassResult,
    desired_recordings,
    reconcile_once,
    remember_known_good,
)
from orchestrator.secrets import SecretRef, resolve_secret
from orchestrator.state import Store, open_store
from tests.integration.conftest import EmulatorHandle

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
class World:
    emulator: EmulatorHandle
    root: Path
    store: Store
    policy: PlanPolicy = field(
        default_factory=lambda: PlanPolicy(restart_backoff_initial=timedelta(0))
    )
    client: AgoraClient | None = None

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

    def resolve(self, ref: SecretRef) -> str:
        return resolve_secret(ref, environ=SECRETS)

    async def apply(self, now: datetime | None = None) -> PassResult:
        now = now or datetime.now(UTC)
        loaded = load_manifests([self.manifests], now=now)
        app_ids = {"main": self.app_id, "off": self.emulator.disabled_app_id}
        desired = desired_recordings(
            loaded.manifests, app_ids, loaded.failed_files, await self.store.known_good()
        )
        await remember_known_good(self.store, desired)
        if self.client is None:
            self.client = self.emulator.client()
        executor = Executor(
            self.store,
            {"main": self.client, "off": self.client},
            resolve_secret=self.resolve,
            now=lambda: datetime.now(UTC),
        )
        return await reconcile_once(desired, self.store, executor, now, self.policy)

    def requests(self, endpoint: str | None = None) -> list[dict[str, Any]]:
        return self.emulator.emu.requests(endpoint)

    def recording(self) -> list[dict[str, Any]]:
        """Emulator sessions that are recording now."""
        return [s for s in self.emulator.emu.sessions() if s["live"]]


@pytest.fixture
async def world(emulator: EmulatorHandle, tmp_path: Path) -> AsyncIterator[World]:
    (tmp_path / "recordings.d").mkdir()
    async with open_store(f"sqlite:///{tmp_path}/state.db") as store:
        yield World(emulator, tmp_path, store)
