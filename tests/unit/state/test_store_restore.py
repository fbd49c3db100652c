"""A store file removed (or replaced) under a running writer is written back from the
open connection, so nothing the writer knew is lost.

Covers: `rm state.db` while open, a restore, every row still there for a reader and
after a reopen, writes after the restore land in the new file; an untouched file is
not rewritten. A directory put where the store was: the store says so (naming its
backup and what to do) at every attempt and keeps working; its backup is a complete
store, rewritten (by rename, never truncated) after every change and left alone
when nothing changed; the store is written back the moment the path is free; or,
after aclose (which writes one last backup and raises that the store is not back),
an operator moves the backup into place by hand and nothing written before the close
is lost; a later open names the backup it finds where the store is missing. A store
whose -wal and -shm files were removed is written back too; one overwritten in place
(`truncate`) is said at once to be lost (its copy does not check clean), never
offered as a backup.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from orchestrator.state import (
    Phase,
    StoreAccessError,
    StoreCorruptError,
    StoreMissingError,
    open_store,
)

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


async def _read_back(url: str) -> list[str]:
    """The live sessions' manifests as a reader (`status`) finds them now."""
    async with open_store(url, writer=False) as reader:
        return sorted(s.manifest for s in await reader.live_sessions())


def _sids(path: Path) -> list[str]:
    """The sids in the store file at `path`, read without changing it or creating a
    file beside it (immutable: no WAL, no locks)."""
    db = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True)
    try:
        return sorted(row[0] for row in db.execute("SELECT sid FROM sessions"))
    finally:
        db.close()


def _blocked_message(path: Path) -> str:
    backup = path.with_name("state.db.restore")
    return (
        f"state store {path} was removed or replaced while in use and cannot be written back: "
        f"Is a directory; every record is in its backup {backup} (kept, and rewritten "
        f"after every change) and in the open store; remove what is at {path} (the "
        f"daemon writes the store back at its next pass), or stop the daemon, move "
        f"{backup} to {path}, check it with `orchestrator status` and start the daemon"
    )


async def test_a_directory_in_the_way_keeps_the_backup_until_the_path_is_free(
    tmp_path: Path,
) -> None:
    path = tmp_path / "state.db"
    backup = tmp_path / "state.db.restore"
    store = open_store(f"sqlite:///{path}", create=True)
    try:
        for name in ("alpha", "beta"):
            await _session(store, name)
        path.unlink()
        path.mkdir()  # a bad deploy: a directory where the store was
        for attempt in range(2):  # every pass tries again, and says so again
            with pytest.raises(StoreAccessError) as refused:
                await store.restore_if_removed()
            assert str(refused.value) == _blocked_message(path), attempt
            assert _sids(backup) == ["sid-alpha", "sid-beta"]
        kept = backup.stat()
        await _session(store, "gamma")  # the open store still takes writes
        with pytest.raises(StoreAccessError):
            await store.restore_if_removed()
        # A newer complete backup, renamed over the old one (a new file, not truncated).
        assert _sids(backup) == ["sid-alpha", "sid-beta", "sid-gamma"]
        assert backup.stat().st_ino != kept.st_ino
        assert (backup.stat().st_mode & 0o777) == 0o600
        kept = backup.stat()
        with pytest.raises(StoreAccessError):
            await store.restore_if_removed()
        assert backup.stat().st_ino == kept.st_ino  # nothing changed: left alone
        path.rmdir()
        assert await store.restore_if_removed() is True  # the path is free: back at once
        assert not backup.exists()
        assert [name for name in os.listdir(tmp_path) if "tmp" in name] == []
        await _session(store, "delta")
    finally:
        await store.aclose()
    async with open_store(f"sqlite:///{path}", writer=False) as reader:
        assert sorted(s.sid or "" for s in await reader.live_sessions()) == [
            "sid-alpha",
            "sid-beta",
            "sid-delta",
            "sid-gamma",
        ]


async def test_an_operator_brings_the_store_back_from_the_backup(tmp_path: Path) -> None:
    """What docs/operations.md tells an operator to do: stop the daemon, move the
    backup into place, check it with `status` (a reader), start the daemon."""
    path = tmp_path / "state.db"
    url = f"sqlite:///{path}"
    store = open_store(url, create=True)
    try:
        await _session(store, "alpha")
        path.unlink()
        path.mkdir()
        for _ in range(2):  # two passes meet the directory
            with pytest.raises(StoreAccessError):
                await store.restore_if_removed()
        await _session(store, "beta")  # written after the last pass
    finally:
        # The daemon stops: one last backup, and the error that the store is not back
        # in place (the daemon exits 1 with it).
        with pytest.raises(StoreAccessError) as stopped:
            await store.aclose()
    assert str(stopped.value) == _blocked_message(path)
    path.rmdir()
    with pytest.raises(StoreMissingError) as missing:  # what a start says now
        open_store(url)
    backup = tmp_path / "state.db.restore"
    assert missing.value.backup == backup
    assert str(missing.value) == (
        f"no state store at {path}, but {backup} is the copy of it that the daemon "
        f"wrote when it was removed: with no orchestrator running on it, move {backup} "
        f"to {path}, check it with `orchestrator status`, then start the daemon"
    )
    os.replace(backup, path)  # `mv state.db.restore state.db`
    async with open_store(url, writer=False) as status:
        assert sorted(s.manifest for s in await status.live_sessions()) == ["alpha", "beta"]
    async with open_store(url) as daemon:
        assert sorted(s.sid or "" for s in await daemon.live_sessions()) == [
            "sid-alpha",
            "sid-beta",
        ]


async def test_a_store_overwritten_in_place_is_said_at_once_and_never_taken_for_one(
    tmp_path: Path,
) -> None:
    """Defect: `truncate -s 0 state.db` (or a `cp` onto it: the same inode) went
    unnoticed, the daemon said ready, and its close then checkpointed into the empty
    file: a store no command could open, and every sid lost, without a word. The next
    check says so (the open copy holds only the pages it read: its copy does not
    check clean), and so does the close."""
    path = tmp_path / "state.db"
    url = f"sqlite:///{path}"
    store = open_store(url, create=True)
    try:
        for name in ("alpha", "beta"):
            await _session(store, name)
        assert await store.restore_if_removed() is False
        inode = path.stat().st_ino
        os.truncate(path, 0)
        assert path.stat().st_ino == inode  # in place: the identity alone cannot tell
        with pytest.raises(StoreCorruptError) as damaged:
            await store.restore_if_removed()
        assert str(damaged.value).startswith(
            f"state store {path} was overwritten in place (it is no SQLite database now) "
            "while in use, and the open store cannot be read back whole"
        )
        assert not path.with_name("state.db.restore").exists()  # no copy offered
    finally:
        with pytest.raises(StoreCorruptError):
            await store.aclose()


async def test_a_store_overwritten_in_place_with_pages_unread_is_never_advertised(
    tmp_path: Path,
) -> None:
    """Defect: with a frame in the WAL, the copy of a store truncated in place came out
    whole in size and zeros in the pages the open copy never read; it was renamed into
    place or offered as "every record is in its backup". A copy that does not check
    clean is no store: the records are said lost."""
    path = tmp_path / "state.db"
    url = f"sqlite:///{path}"
    async with open_store(url, create=True) as first:
        for number in range(3000):  # more than the page cache of the writer below
            await _session(first, f"old-{number}")
    store = open_store(url)
    try:
        await _session(store, "new")  # a frame in the WAL: the page count comes from it
        os.truncate(path, 0)
        with pytest.raises(StoreCorruptError) as damaged:
            await store.restore_if_removed()
        assert "cannot be read back whole" in str(damaged.value)
        assert "its copy does not check clean" in str(damaged.value)
        assert not path.with_name("state.db.restore").exists()
    finally:
        with pytest.raises(StoreCorruptError):
            await store.aclose()


@pytest.mark.parametrize("removed", [("-wal",), ("-wal", "-shm")])
async def test_a_store_whose_wal_was_removed_is_written_back(
    tmp_path: Path, removed: tuple[str, ...]
) -> None:
    """Defect: `rm state.db-wal state.db-shm` (a cleanup of what look like temporary
    files) went unnoticed: what the writer committed since went to a file no restart
    would see, and a crash lost it (a migration too)."""
    path = tmp_path / "state.db"
    url = f"sqlite:///{path}"
    store = open_store(url, create=True)
    try:
        await _session(store, "alpha")
        assert await store.restore_if_removed() is False  # its -wal and -shm learnt
        for side in removed:
            path.with_name(path.name + side).unlink()
        await _session(store, "beta")  # into the removed WAL
        assert await store.restore_if_removed() is True
        assert _sids(path) == ["sid-alpha", "sid-beta"]  # in the file itself now
        await _session(store, "gamma")
        assert await store.restore_if_removed() is False  # the new files are its own
    finally:
        await store.aclose()
    assert await _read_back(url) == ["alpha", "beta", "gamma"]


async def test_the_writers_checks_leave_its_wal_to_it_when_a_reader_comes_and_goes(
    tmp_path: Path,
) -> None:
    """Defect: the check of the file's header opened and closed a descriptor of the
    database in the writer's process, which drops the process's SQLite locks on it: a
    reader (`status`, in another process) closing next took itself for the last
    connection and deleted the writer's -wal and -shm (what the writer wrote then was
    lost to a crash). The header is read through the descriptor the lock keeps."""
    path = tmp_path / "state.db"
    url = f"sqlite:///{path}"
    store = open_store(url, create=True)
    reader = (
        "import sqlite3, sys\n"
        "db = sqlite3.connect(f'file:{sys.argv[1]}?mode=rw', uri=True)\n"
        "db.execute('SELECT count(*) FROM sessions').fetchone()\n"
        "db.close()\n"
    )
    try:
        await _session(store, "alpha")
        for _ in range(2):  # the daemon's pass, then `status` beside it
            assert await store.restore_if_removed() is False
            done = await asyncio.create_subprocess_exec(sys.executable, "-c", reader, str(path))
            assert await asyncio.wait_for(done.wait(), 60) == 0
            assert path.with_name("state.db-wal").exists()
            assert path.with_name("state.db-shm").exists()
        assert await store.restore_if_removed() is False  # nothing lost, nothing restored
        await _session(store, "beta")
    finally:
        await store.aclose()
    assert await _read_back(url) == ["alpha", "beta"]
