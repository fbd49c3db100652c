"""One writer per store, readers beside it, and private files.

Covers: a second writer refused in the same process and from another process, with
the holder named (pid, host, since, command) and a half-written holder file read
as "another process"; the lock released by aclose and by SIGKILL of the holder
(whose committed intent survives); readers that work while a writer holds the
lock and never create, lock or migrate; and 0600 modes for the database, its
WAL and shared-memory files and the lock file.

Child processes are started with `python -c`; every wait on them is bounded, and
only the pid the test started is ever signalled.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import select
import socket
import sqlite3
import stat
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from orchestrator.state import (
    Intent,
    Phase,
    StoreBusyError,
    StoreCorruptError,
    StoreError,
    StoreMissingError,
    open_store,
    queries,
)
from orchestrator.state.lock import lock_path_for

# The schema version this code writes: 3 since `end_kind` (why a session ended).
LATEST_SCHEMA = queries.latest_version()

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
WAIT = 60.0  # seconds; a bound for a loaded machine, never reached when it works

_BUSY_MESSAGE = (
    r'state store .*s\.db is in use by "{command}" \(pid {pid} on .+ since [0-9T:+-]+\); '
    r"only one process may write to a store at a time"
)

# A child process: `try` opens the store as a writer and reports; `hold` opens it,
# records an intent, reports, and waits to be killed.
CHILD = textwrap.dedent(
    """
    import asyncio, json, sys, time
    from datetime import UTC, datetime
    from orchestrator.state import Intent, StoreBusyError, open_store

    async def main(url, mode):
        try:
            store = open_store(url, holder="child-" + mode, create=True)
        except StoreBusyError as exc:
            since = exc.since.isoformat() if exc.since else None
            report = {"busy": True, "pid": exc.pid, "host": exc.host, "since": since,
                      "command": exc.command, "message": str(exc)}
            print(json.dumps(report), flush=True)
            return
        if mode == "hold":
            at = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
            created = await store.create_session(
                manifest="m", app="main", app_id="a", channel="c", uid=1, mode="mix",
                window_start=at, window_end=at)
            await store.record_intent(created.id, Intent.START, resource_id="R1")
            print(json.dumps({"busy": False, "session": created.id}), flush=True)
            time.sleep(120)
        else:
            print(json.dumps({"busy": False}), flush=True)
        await store.aclose()

    asyncio.run(main(sys.argv[1], sys.argv[2]))
    """
)


def _run_child(url: str, mode: str = "try") -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, url, mode],
        capture_output=True,
        text=True,
        timeout=WAIT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    return report


@contextmanager
def _holding_child(url: str) -> Iterator[tuple[subprocess.Popen[str], dict[str, Any]]]:
    """A child that holds the writer lock until killed; killed (by its pid) on exit."""
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, url, "hold"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        ready, _, _ = select.select([child.stdout], [], [], WAIT)
        assert ready, "the child did not report within the time limit"
        line = child.stdout.readline()
        assert line, child.stderr.read() if child.stderr else "no output"
        yield child, json.loads(line)
    finally:
        if child.poll() is None:
            child.kill()
        child.wait(timeout=WAIT)
        for stream in (child.stdout, child.stderr):
            if stream is not None:
                stream.close()


def _session_fields() -> dict[str, object]:
    return {
        "manifest": "standup",
        "app": "main",
        "app_id": "app1",
        "channel": "room",
        "uid": 527841,
        "mode": "mix",
        "window_start": T0,
        "window_end": T0 + timedelta(hours=1),
    }


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# -- one writer ----------------------------------------------------------------------


async def test_second_writer_in_the_same_process_is_refused_with_the_holder(
    tmp_path: Path,
) -> None:
    url = str(tmp_path / "s.db")
    before = datetime.now(UTC).replace(microsecond=0)
    async with open_store(url, holder="run", create=True):
        with pytest.raises(StoreBusyError) as refused:
            open_store(url, holder="apply")
    busy = refused.value
    assert isinstance(busy, StoreError)
    assert busy.pid == os.getpid()
    assert busy.host == socket.gethostname()
    assert busy.command == "run"
    assert busy.since is not None and before <= busy.since <= datetime.now(UTC)
    assert busy.path == tmp_path / "s.db"
    pattern = _BUSY_MESSAGE.format(command="run", pid=os.getpid())
    assert re.fullmatch(pattern, str(busy)), str(busy)


async def test_lock_is_released_by_aclose(tmp_path: Path) -> None:
    url = str(tmp_path / "s.db")
    first = open_store(url, holder="run", create=True)
    await first.aclose()
    assert lock_path_for(tmp_path / "s.db").read_bytes() == b""  # holder record cleared
    async with open_store(url, holder="apply") as second:
        assert second.schema_version == LATEST_SCHEMA
        holder = json.loads(lock_path_for(tmp_path / "s.db").read_text())
        assert holder["command"] == "apply" and holder["pid"] == os.getpid()


async def test_a_failed_open_releases_the_lock(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    path.write_bytes(b"not a database" * 100)
    with pytest.raises(StoreCorruptError, match="is not an SQLite database"):
        open_store(str(path))
    with pytest.raises(StoreCorruptError, match="is not an SQLite database"):  # not busy
        open_store(str(path))


async def test_writer_in_another_process_is_refused_and_names_this_one(tmp_path: Path) -> None:
    url = str(tmp_path / "s.db")
    async with open_store(url, holder="run", create=True):
        report = _run_child(url)
    assert report["busy"] is True
    assert report["pid"] == os.getpid() and report["command"] == "run"
    assert report["host"] == socket.gethostname()
    assert report["message"].startswith(f'state store {tmp_path / "s.db"} is in use by "run"')
    # Released: the child now gets it.
    assert _run_child(url) == {"busy": False}


async def test_writer_here_is_refused_while_another_process_holds_the_lock(
    tmp_path: Path,
) -> None:
    url = str(tmp_path / "s.db")
    with _holding_child(url) as (child, report):
        assert report["busy"] is False
        with pytest.raises(StoreBusyError) as refused:
            open_store(url)
        assert refused.value.pid == child.pid
        assert refused.value.command == "child-hold"
        assert f'is in use by "child-hold" (pid {child.pid} on ' in str(refused.value)
        # A reader is fine beside the other process's writer.
        async with open_store(url, writer=False) as reader:
            (live,) = await reader.live_sessions()
            assert live.intent is Intent.START


async def test_lock_is_released_when_the_holder_is_killed(tmp_path: Path) -> None:
    url = str(tmp_path / "s.db")
    with _holding_child(url) as (child, report):
        with pytest.raises(StoreBusyError):
            open_store(url)
        child.kill()  # SIGKILL to the pid this test started: no cleanup runs
        assert child.wait(timeout=WAIT) == -9
    # The lock file still names the dead holder, but the kernel dropped its lock.
    assert json.loads(lock_path_for(tmp_path / "s.db").read_text())["pid"] == child.pid
    async with open_store(url, holder="run") as store:
        (live,) = await store.live_sessions()
        assert live.id == report["session"]
        assert live.intent is Intent.START and live.resource_id == "R1"
        assert live.phase is Phase.ACQUIRING
        await store.record_outcome(live.id, phase=Phase.RUNNING, sid="S1")


@pytest.mark.parametrize("content", [b"", b'{"pid": 12', b"[1, 2]", b'{"pid": "x", "since": 5}'])
async def test_an_unreadable_holder_record_is_another_process_named_by_the_kernel(
    tmp_path: Path, content: bytes
) -> None:
    """Empty, as a lock file its holder has just made (two writers starting at once),
    or garbage: the holder is the process the kernel says holds the lock."""
    db = tmp_path / "s.db"
    lock_file = lock_path_for(db)
    lock_file.write_bytes(content)
    with lock_file.open("rb") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)  # a holder that wrote nothing usable
        with pytest.raises(StoreBusyError) as refused:
            open_store(str(db), create=True)
    busy = refused.value
    host = socket.gethostname()
    assert (busy.pid, busy.host, busy.since, busy.command) == (os.getpid(), host, None, None)
    assert str(busy) == (
        f"state store {db} is in use by another process (pid {os.getpid()} on {host}); "
        "only one process may write to a store at a time"
    )
    assert not db.exists()  # refused before the database was opened


# -- readers -------------------------------------------------------------------------


async def test_reader_works_while_a_writer_holds_the_lock(tmp_path: Path) -> None:
    url = str(tmp_path / "s.db")
    async with open_store(url, holder="run", create=True) as writer:
        created = await writer.create_session(**_session_fields())
        async with open_store(url, writer=False) as reader:
            assert [s.id for s in await reader.live_sessions()] == [created.id]
            await writer.record_outcome(created.id, sid="S1")
            assert (await reader.get_session(created.id)).sid == "S1"
            assert reader.schema_version == LATEST_SCHEMA
            # The reader took no lock: the holder is still the writer, and it holds.
            assert json.loads(lock_path_for(tmp_path / "s.db").read_text())["command"] == "run"
            with pytest.raises(StoreBusyError):
                open_store(url)
        await writer.record_outcome(created.id, sid="S2")  # the writer is unaffected


async def test_reader_refuses_writes(tmp_path: Path) -> None:
    url = str(tmp_path / "s.db")
    async with open_store(url, create=True):
        pass
    async with open_store(url, writer=False) as reader:
        with pytest.raises(StoreError, match="read-only"):
            await reader.create_session(**_session_fields())
        with pytest.raises(StoreError, match="read-only"):
            await reader.clear_failures()


@pytest.mark.parametrize("where", ["s.db", "missing-dir/s.db"])
def test_reader_never_creates_a_store(tmp_path: Path, where: str) -> None:
    path = tmp_path / where
    with pytest.raises(StoreMissingError) as refused:
        open_store(f"sqlite:///{path}", writer=False)
    assert str(refused.value) == (
        f"no state store at {path}: create it with `orchestrator init` (with SQLite "
        "the daemon's very first start does too); if it existed, restore it from a backup "
        "— a new empty store forgets every live recording"
    )
    assert list(tmp_path.iterdir()) == []


async def test_reader_never_migrates_an_older_store(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match=r"older than this orchestrator's .*must upgrade it first"):
        open_store(str(path), writer=False)
    db = sqlite3.connect(path)
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    db.close()
    assert tables == {"schema_version"}
    assert not lock_path_for(path).exists()
    # A writer upgrades it; then the reader is happy.
    async with open_store(str(path)):
        pass
    async with open_store(str(path), writer=False) as reader:
        assert reader.schema_version == LATEST_SCHEMA


async def test_reader_refuses_a_newer_store_and_garbage(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    async with open_store(str(path), create=True):
        pass
    db = sqlite3.connect(path)
    db.execute("UPDATE schema_version SET version = 99")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="newer than this orchestrator"):
        open_store(str(path), writer=False)
    path.write_bytes(b"not a database" * 100)
    with pytest.raises(StoreCorruptError, match="is not an SQLite database"):
        open_store(str(path), writer=False)


# -- modes ---------------------------------------------------------------------------


async def test_store_files_are_private_even_with_an_open_umask(tmp_path: Path) -> None:
    path = tmp_path / "state" / "s.db"
    previous = os.umask(0)
    try:
        store = open_store(str(path), create=True)
    finally:
        os.umask(previous)
    try:
        await store.create_session(**_session_fields())  # the WAL and SHM files exist now
        wal = path.with_name("s.db-wal")
        shm = path.with_name("s.db-shm")
        for file in (path, wal, shm, lock_path_for(path)):
            assert _mode(file) == 0o600, file
        assert _mode(path.parent) == 0o700
    finally:
        await store.aclose()
