"""A bad day loses nothing: a store that is gone, damaged, unwritable or locked.

Covers, on real files: only `create=True` creates a store (a missing or deleted one
is StoreMissingError and is not recreated; an existing one is just opened; a
crashed creation's leftover is discarded); an empty file, a non-SQLite file and a
database without our schema are StoreCorruptError for writers, creators and
readers alike and are left byte for byte as they were; a damaged page turns every
operation that meets it into StoreCorruptError naming the path (the store keeps
serving the rest); a value that cannot be decoded likewise; a read-only file or
directory is a one-line StoreAccessError (a reader of a read-only file still
reads); an SQLite lock held by a process outside our writer lock is
StoreLockedError after `busy_timeout` (5 s by default), at open and in an
operation, and the store works again once that process is gone.

Root ignores mode bits, so as root "read-only" means the immutable attribute
(`chattr +i`); where that cannot be set those cases are skipped, saying why.
Child processes are bounded and only the pid a test started is ever signalled.
"""

from __future__ import annotations

import os
import re
import select
import shutil
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from orchestrator.state import (
    DEFAULT_BUSY_TIMEOUT,
    Intent,
    ManifestState,
    Phase,
    StoreAccessError,
    StoreBusyError,
    StoreCorruptError,
    StoreError,
    StoreLockedError,
    StoreMissingError,
    open_store,
    queries,
)

# The schema version this code writes: 3 since `end_kind` (why a session ended).
LATEST_SCHEMA = queries.latest_version()

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
WAIT = 60.0  # seconds; a bound for a loaded machine, never reached when it works

MISSING = (
    "no state store at {path}: create it with `orchestrator init` (with SQLite "
    "the daemon's very first start does too); if it existed, restore it from a backup "
    "— a new empty store forgets every live recording"
)
RECOVER = (
    "restore it from a backup, or move it aside and run `orchestrator init` to create "
    "a new one (a new empty store forgets every live recording)"
)
CHECKS = "(check the owner, the mode, `lsattr` and read-only mounts)"

# Another program holding an SQLite lock on the database, outside our writer lock.
SQLITE_LOCKER = (
    "import sqlite3, sys, time\n"
    "db = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
    "db.execute('BEGIN EXCLUSIVE')\n"
    "print('locked', flush=True)\n"
    "time.sleep(30)\n"
)


def _session_fields(uid: int = 527841) -> dict[str, object]:
    return {
        "manifest": "standup",
        "app": "main",
        "app_id": "app1",
        "channel": "room",
        "uid": uid,
        "mode": "mix",
        "window_start": T0,
        "window_end": T0 + timedelta(hours=1),
    }


async def _store_with_a_live_session(path: Path, sessions: int = 1) -> None:
    async with open_store(str(path), create=True, holder="run") as store:
        for i in range(sessions):  # live ones: one target each
            created = await store.create_session(**_session_fields(527841 + i))
        await store.record_intent(created.id, Intent.START, resource_id="R1")
        await store.set_manifest_state(ManifestState(name="standup"))


def _names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def _one_line(exc: BaseException) -> None:
    """A message for a person: one line, raised without a chained sqlite3 traceback."""
    assert "\n" not in str(exc)
    assert exc.__cause__ is None
    assert exc.__context__ is None or exc.__suppress_context__


def _chattr(flag: str, path: Path) -> subprocess.CompletedProcess[str]:
    chattr = shutil.which("chattr")
    assert chattr is not None
    return subprocess.run(
        [chattr, flag, str(path)], capture_output=True, text=True, timeout=WAIT, check=False
    )


@contextmanager
def _read_only(path: Path) -> Iterator[None]:
    """Make a file or directory read-only to this process for the block.

    A normal user loses the write bits (0400 / 0500). Root ignores mode bits, so
    for root the file gets the immutable attribute instead; without chattr, or
    where it cannot be set (no CAP_LINUX_IMMUTABLE, a filesystem without it), the
    test is skipped."""
    if os.geteuid() != 0:
        before = stat.S_IMODE(path.stat().st_mode)
        path.chmod(0o500 if path.is_dir() else 0o400)
        try:
            yield
        finally:
            path.chmod(before)
        return
    if shutil.which("chattr") is None:
        pytest.skip("running as root, whom mode bits do not stop, and chattr is not installed")
    done = _chattr("+i", path)
    if done.returncode != 0:
        pytest.skip(
            "running as root, whom mode bits do not stop, and `chattr +i` is refused here: "
            + done.stderr.strip()
        )
    try:
        yield
    finally:
        undone = _chattr("-i", path)
        assert undone.returncode == 0, undone.stderr


@contextmanager
def _sqlite_lock_held(path: Path) -> Iterator[subprocess.Popen[str]]:
    """A plain sqlite3 process holding `BEGIN EXCLUSIVE` on `path` (for at most 30 s);
    killed by its pid on exit."""
    child = subprocess.Popen(
        [sys.executable, "-c", SQLITE_LOCKER, str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        ready, _, _ = select.select([child.stdout], [], [], WAIT)
        assert ready, "the locking process did not report within the time limit"
        line = child.stdout.readline()
        assert line == "locked\n", child.stderr.read() if child.stderr else "no output"
        yield child
    finally:
        if child.poll() is None:
            child.kill()
        child.wait(timeout=WAIT)
        for stream in (child.stdout, child.stderr):
            if stream is not None:
                stream.close()


# -- only an explicit creation creates a store -----------------------------------------


@pytest.mark.parametrize("writer", [True, False])
@pytest.mark.parametrize("where", ["s.db", "missing-dir/s.db"])
def test_a_missing_store_is_not_created_without_create(
    tmp_path: Path, where: str, writer: bool
) -> None:
    path = tmp_path / where
    with pytest.raises(StoreMissingError) as missing:
        open_store(f"sqlite:///{path}", writer=writer, holder="run")
    assert str(missing.value) == MISSING.format(path=path)
    assert missing.value.path == path
    assert isinstance(missing.value, StoreError)
    _one_line(missing.value)
    assert list(tmp_path.iterdir()) == []  # no database, no directory, no lock file


async def test_a_deleted_store_is_not_recreated(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    await _store_with_a_live_session(path)
    path.unlink()
    for writer in (True, False):
        with pytest.raises(StoreMissingError, match=r"^no state store at "):
            open_store(str(path), writer=writer, holder="run")
    assert not path.exists()


async def test_an_emptied_store_is_refused_not_recreated(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    await _store_with_a_live_session(path)
    os.truncate(path, 0)
    for options in ({"writer": True}, {"writer": True, "create": True}, {"writer": False}):
        with pytest.raises(StoreCorruptError) as refused:
            open_store(str(path), holder="run", **options)
        assert str(refused.value) == (
            f"state store {path} is empty (0 bytes), so it holds no record of live "
            f"recordings; {RECOVER}"
        )
        _one_line(refused.value)
    assert path.stat().st_size == 0  # never overwritten


async def test_create_makes_a_private_store_and_on_an_existing_one_just_opens_it(
    tmp_path: Path,
) -> None:
    path = tmp_path / "state" / "s.db"
    previous = os.umask(0)
    try:
        store = open_store(str(path), create=True, holder="init")
    finally:
        os.umask(previous)
    async with store:
        assert store.schema_version == LATEST_SCHEMA
        created = await store.create_session(**_session_fields())
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert _names(path.parent) == ["s.db", "s.db.lock"]  # nothing left from the creation
    async with open_store(str(path), create=True, holder="run") as again:
        assert [s.id for s in await again.live_sessions()] == [created.id]


async def test_create_discards_the_leftover_of_a_crashed_creation(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    path.with_name("s.db.new").write_bytes(b"half a database")
    path.with_name("s.db.new-journal").write_bytes(b"x")
    async with open_store(str(path), create=True) as store:
        assert store.schema_version == LATEST_SCHEMA
    assert _names(tmp_path) == ["s.db", "s.db.lock"]


def _foreign_database(path: Path) -> None:
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE notes (body TEXT)")
    db.execute("INSERT INTO notes VALUES ('mine')")
    db.commit()
    db.close()


def _database_without_tables(path: Path) -> None:
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version = 7")  # writes a valid header and nothing else
    db.close()


_NOT_OUR_STORE = "is an SQLite database but not an orchestrator state store"
_NOT_A_STORE: dict[str, tuple[Callable[[Path], object], str]] = {
    "empty": (
        lambda p: p.write_bytes(b""),
        "is empty (0 bytes), so it holds no record of live recordings",
    ),
    "text": (
        lambda p: p.write_bytes(b"not a database" * 100),
        "is not an SQLite database (its header is wrong)",
    ),
    "header only": (
        lambda p: p.write_bytes(b"SQLite format 3\x00"),
        "is not an SQLite database (its header is wrong)",
    ),
    "foreign": (_foreign_database, f"{_NOT_OUR_STORE} (it has no schema_version table)"),
    "no tables": (_database_without_tables, f"{_NOT_OUR_STORE} (it has no schema_version table)"),
}


@pytest.mark.parametrize("mode", ["writer", "create", "reader"])
@pytest.mark.parametrize("case", list(_NOT_A_STORE))
def test_a_file_that_is_not_a_store_is_refused_and_left_alone(
    tmp_path: Path, case: str, mode: str
) -> None:
    make, problem = _NOT_A_STORE[case]
    path = tmp_path / "s.db"
    make(path)
    before = path.read_bytes()
    for _ in range(2):  # the second time: refused again, not StoreBusyError
        with pytest.raises(StoreCorruptError) as refused:
            open_store(str(path), writer=mode != "reader", create=mode == "create")
        assert str(refused.value) == f"state store {path} {problem}; {RECOVER}"
        assert refused.value.path == path and refused.value.problem == problem
        _one_line(refused.value)
    assert path.read_bytes() == before
    assert {p.name for p in tmp_path.iterdir()} <= {"s.db", "s.db.lock"}


async def test_a_damaged_schema_page_is_refused_at_open(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    await _store_with_a_live_session(path)
    with path.open("r+b") as file:
        file.seek(100)  # after the header: the schema's own page
        file.write(bytes(range(256)) * 15)
    for writer in (True, False):
        with pytest.raises(StoreCorruptError) as refused:
            open_store(str(path), writer=writer)
        assert str(refused.value).startswith(f"state store {path} is damaged: ")
        assert str(refused.value).endswith(RECOVER)
        _one_line(refused.value)


# -- errors, not tracebacks --------------------------------------------------------------


async def test_a_damaged_page_makes_each_operation_that_meets_it_a_corrupt_error(
    tmp_path: Path,
) -> None:
    path = tmp_path / "s.db"
    await _store_with_a_live_session(path, sessions=200)  # sessions over several pages
    page_size = int.from_bytes(path.read_bytes()[16:18], "big")
    with path.open("r+b") as file:
        file.seek(path.stat().st_size - page_size)
        file.write(bytes(range(256)) * (page_size // 256))
    damaged = f"state store {path} is damaged: database disk image is malformed; {RECOVER}"
    for writer in (True, False):
        store = open_store(str(path), writer=writer)  # page 1 and the schema are intact
        try:
            with pytest.raises(StoreCorruptError) as refused:
                await store.live_sessions()
            assert str(refused.value) == damaged
            assert refused.value.path == path
            _one_line(refused.value)
            if writer:
                with pytest.raises(StoreCorruptError, match=re.escape(damaged)):
                    await store.create_session(**_session_fields(uid=1))
            # What the damage does not touch is still served (the daemon keeps running).
            assert set(await store.manifest_states()) == {"standup"}
            assert await store.history() == []
        finally:
            await store.aclose()


async def test_a_value_that_cannot_be_decoded_is_a_corrupt_error(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    await _store_with_a_live_session(path)
    db = sqlite3.connect(path)
    db.execute("UPDATE sessions SET phase = 'bogus'")
    db.commit()
    db.close()
    async with open_store(str(path), writer=False) as reader:
        with pytest.raises(StoreCorruptError) as refused:
            await reader.live_sessions()
    assert str(refused.value).startswith(
        f"state store {path} holds a value that cannot be read (column phase holds 'bogus': "
    )
    _one_line(refused.value)


async def test_a_read_only_store_file_refuses_a_writer_and_serves_a_reader(
    tmp_path: Path,
) -> None:
    path = tmp_path / "s.db"
    await _store_with_a_live_session(path)
    with _read_only(path):
        with pytest.raises(StoreAccessError) as refused:
            open_store(str(path), holder="run")
        pattern = (
            rf"cannot open state store {re.escape(str(path))} for writing: "
            r"(Permission denied|Operation not permitted); the writer needs write access "
            rf"to it and to its directory {re.escape(str(tmp_path))} {re.escape(CHECKS)}"
        )
        assert re.fullmatch(pattern, str(refused.value)), str(refused.value)
        _one_line(refused.value)
        async with open_store(str(path), writer=False) as reader:
            (live,) = await reader.live_sessions()
            assert live.intent is Intent.START
    # The refused writer let go of the writer lock.
    async with open_store(str(path), holder="run") as store:
        await store.record_outcome(live.id, phase=Phase.RUNNING, sid="S1")


async def test_a_read_only_directory_refuses_a_writer_and_a_cold_reader(tmp_path: Path) -> None:
    directory = tmp_path / "state"
    path = directory / "s.db"
    await _store_with_a_live_session(path)
    assert not path.with_name("s.db-wal").exists()  # gone with the last connection
    files = f"s.db-wal and s.db-shm in {directory}"
    with _read_only(directory):
        with pytest.raises(StoreAccessError) as refused:
            open_store(str(path), holder="run")
        assert str(refused.value) == (
            f"cannot open state store {path}: unable to open database file; the writer "
            f"must be able to write it and to create {files} {CHECKS}"
        )
        _one_line(refused.value)
        with pytest.raises(StoreAccessError) as reader_refused:
            open_store(str(path), writer=False)
        assert str(reader_refused.value) == (
            f"cannot open state store {path}: unable to open database file; a reader needs "
            f"{files} to exist (they do while the daemon runs) or to be creatable {CHECKS}"
        )
        _one_line(reader_refused.value)
    async with open_store(str(path), holder="run") as store:
        assert len(await store.live_sessions()) == 1


async def test_a_reader_in_a_read_only_directory_works_while_the_writer_runs(
    tmp_path: Path,
) -> None:
    directory = tmp_path / "state"
    path = directory / "s.db"
    await _store_with_a_live_session(path)
    writer = open_store(str(path), holder="run")  # its WAL and shared memory exist now
    try:
        with _read_only(directory):
            async with open_store(str(path), writer=False) as reader:
                (live,) = await reader.live_sessions()
                assert live.resource_id == "R1"
    finally:
        await writer.aclose()


# -- an SQLite lock held by a process outside our writer lock ---------------------------


def _locked_message(path: Path, waited: str) -> str:
    return (
        f"state store {path} is locked by another process (not an orchestrator holding the "
        f"writer lock): database is locked after waiting {waited} s; find it with "
        f"`fuser {path}` and end it (then retry)"
    )


async def test_an_sqlite_lock_fails_an_operation_after_the_busy_timeout(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    writer = open_store(str(path), create=True, holder="run", busy_timeout=0.5)
    try:
        created = await writer.create_session(**_session_fields())
        with _sqlite_lock_held(path) as child:
            started = time.monotonic()
            with pytest.raises(StoreLockedError) as locked:
                await writer.record_intent(created.id, Intent.STOP)
            waited = time.monotonic() - started
            assert 0.4 <= waited < WAIT
            assert isinstance(locked.value, StoreBusyError)  # the CLI's "busy" exit status
            assert str(locked.value) == _locked_message(path, "0.5")
            assert locked.value.path == path and locked.value.pid is None
            _one_line(locked.value)
            # Readers are not blocked by it (WAL).
            async with open_store(str(path), writer=False, busy_timeout=0.5) as reader:
                assert (await reader.get_session(created.id)).intent is None
            child.kill()
            child.wait(timeout=WAIT)
        # The lock is gone with that process: the same store works again.
        assert (await writer.record_intent(created.id, Intent.STOP)).intent is Intent.STOP
    finally:
        await writer.aclose()


async def test_an_sqlite_lock_fails_a_writer_at_open_and_frees_the_writer_lock(
    tmp_path: Path,
) -> None:
    path = tmp_path / "s.db"
    await _store_with_a_live_session(path)
    with _sqlite_lock_held(path):
        started = time.monotonic()
        with pytest.raises(StoreLockedError) as locked:
            open_store(str(path), holder="run", busy_timeout=0.5)
        assert 0.4 <= time.monotonic() - started < WAIT
        assert str(locked.value) == _locked_message(path, "0.5")
        _one_line(locked.value)
    async with open_store(str(path), holder="run") as store:  # not StoreBusyError
        assert len(await store.live_sessions()) == 1


async def test_the_default_busy_timeout_is_five_seconds_not_sqlites_thirty(
    tmp_path: Path,
) -> None:
    path = tmp_path / "s.db"
    assert DEFAULT_BUSY_TIMEOUT == 5.0
    async with (
        open_store(str(path), create=True) as writer,
        open_store(str(path), writer=False) as reader,
    ):
        for store in (writer, reader):
            assert store.busy_timeout == 5.0
            ms = await store._run(lambda db: db.execute("PRAGMA busy_timeout").fetchone()[0])
            assert ms == 5000


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"busy_timeout": -1.0}, "busy_timeout must be >= 0 seconds"),
        ({"busy_timeout": float("nan")}, "busy_timeout must be >= 0 seconds"),
        ({"writer": False, "create": True}, "only a writer creates a store"),
    ],
)
def test_bad_options_are_refused(tmp_path: Path, options: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        open_store(str(tmp_path / "s.db"), **options)  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []
