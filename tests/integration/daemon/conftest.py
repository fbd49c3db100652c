"""The daemon in-process against the emulator: its runtime, made once for the tests here."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from orchestrator.config import Config
from orchestrator.daemon.notify import Notifier
from orchestrator.daemon.service import Daemon
from orchestrator.runtime import Hooks, Runtime, open_runtime
from tests.integration.conftest import FAST_RETRY, EmulatorHandle


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
