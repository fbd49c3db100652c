"""A store file removed (or replaced) under a running writer is written back from the
open connection, so nothing the writer knew is lost.

Covers: `rm state.db` while open, a restore, every row still there for a reader and
after a reopen, writes after the restore land in the new file; an untouched file is
not rewritten.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from orchestrator.state import Phase, open_store

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


async def _session(store: object, name: str) -> int:
    record = await store.create_session(  # type: ignore[attr-defined]
        manifest=name,
        app="main",
        app_id="a" * 32,
        channel=name,
        uid=7,
        mode="mix",
        phase=Phase.RUNNING,
        sid=f"sid-{name}",
        resource_id="rid",
    )
    return int(record.id)


async def test_a_removed_store_is_written_back_with_everything(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    url = f"sqlite:///{path}"
    store = open_store(url, create=True)
    try:
        await _session(store, "alpha")
        assert await store.restore_if_removed() is False  # nothing happened: no rewrite
        path.unlink()
        assert await store.restore_if_removed() is True
        assert path.exists() and (path.stat().st_mode & 0o777) == 0o600
        await _session(store, "beta")  # lands in the restored file
        async with open_store(url, writer=False) as reader:
            assert sorted(s.manifest for s in await reader.live_sessions()) == ["alpha", "beta"]
    finally:
        await store.aclose()
    async with open_store(url) as again:
        assert sorted(s.manifest for s in await again.live_sessions()) == ["alpha", "beta"]
