"""Replicas on one PostgreSQL store: the reliability rig (emulator and daemons as
processes) pointed at a fresh database of the throwaway cluster."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.reliability.rig import Rig


@pytest.fixture
async def rig(tmp_path: Path, postgres_url: str) -> AsyncIterator[Rig]:
    (tmp_path / "recordings.d").mkdir()
    the_rig = Rig(tmp_path, state_url=postgres_url)
    try:
        yield the_rig
    finally:
        await the_rig.close()
