"""The daemon in-process against the emulator: its runtime, made once for the tests here."""

from __future__ import annotations

import asyncio
import contextlib
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from orchestrator.config import Config
from orchestrator.daemon import reload as reload_module
from orchestrator.daemon.notify import Notifier
from orchestrator.daemon.reload import Reloader
from orchestrator.daemon.service import Daemon
from orchestrator.manifest.helper import ParseHelper
from orchestrator.runtime import Hooks, Runtime, open_runtime
from tests.harness import wait_until
from tests.integration.conftest import FAST_RETRY, EmulatorHandle


def manifest(name: str, channel: str, schedule: str = "always", uid: str = "auto") -> str:
    """A manifest of the app `main` (its storage's secrets from T_S3_KEY, T_S3_SECRET)."""
    return textwrap.dedent(
        f"""\
        name: {name}
        app: main
        channel: {channel}
        uid: {uid}
        mode: mix
        schedule: {schedule}
        recording: {{channelType: live, streams: audio+video, maxIdleTime: 300}}
        storage: {{vendor: aws-s3, region: us-east-1, bucket: rec,
                  accessKey: {{env: T_S3_KEY}}, secretKey: {{env: T_S3_SECRET}}}}
        """
    )


@contextlib.asynccontextmanager
async def daemon_runtime(
    emulator: EmulatorHandle,
    root: Path,
    monkeypatch: pytest.MonkeyPatch,
    files: dict[str, str],
    **config: Any,
) -> AsyncIterator[Runtime]:
    """A runtime for a daemon on the emulator's app `main`, with a SQLite store in `root`
    and `files` (file name -> manifest text) in `root/recordings.d`; `config`: more of the
    config's top-level sections (`manifests` merged into the directory's)."""
    monkeypatch.setenv("T_S3_KEY", "key-value")
    monkeypatch.setenv("T_S3_SECRET", "secret-value")
    directory = root / "recordings.d"
    directory.mkdir()
    for name, text in files.items():
        (directory / name).write_text(text, encoding="utf-8")
    (root / "cid").write_text(emulator.customer_id, encoding="utf-8")
    (root / "cs").write_text(emulator.customer_secret, encoding="utf-8")
    data = {
        "apps": {
            "main": {
                "appId": emulator.app_id,
                "customerId": {"file": str(root / "cid")},
                "customerSecret": {"file": str(root / "cs")},
                "baseUrl": emulator.base_url,
            }
        },
        "state": {"url": f"sqlite:///{root}/state.db"},
        "metrics": {"address": None},
        **config,
        "manifests": {"dir": str(directory), **config.get("manifests", {})},
    }
    async with open_runtime(
        Config.model_validate(data), holder="test", hooks=Hooks(retry=FAST_RETRY), create=True
    ) as rt:
        yield rt


@contextlib.asynccontextmanager
async def serving(runtime: Runtime) -> AsyncIterator[tuple[Daemon, asyncio.Task[int]]]:
    """The daemon running in this loop; always shut down, and awaited, at the end."""
    daemon = Daemon(runtime, manifests=runtime.config.manifests.dir, notifier=Notifier(None))
    running = asyncio.create_task(daemon.run())
    try:
        yield daemon, running
    finally:
        daemon.shutdown("test over")
        await asyncio.wait_for(asyncio.shield(running), 30)


@contextlib.asynccontextmanager
async def ready(runtime: Runtime) -> AsyncIterator[Daemon]:
    """The daemon running in this loop until ready; shut down, and its exit status 0,
    at the end."""
    async with serving(runtime) as (daemon, running):
        await wait_until(
            lambda: daemon.readiness().ready or running.done(), within=30, what="READY"
        )
        assert not running.done(), running.result()
        yield daemon
    assert running.result() == 0


async def started_reloader(runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> Reloader:
    """A `Reloader` of the runtime's manifests, started, with no snapshot to read."""
    monkeypatch.setattr(reload_module, "SNAPSHOT_FILE", "unused.snapshot")
    reloader = Reloader(runtime, runtime.config.manifests.dir, ParseHelper())
    await reloader.start()
    return reloader
