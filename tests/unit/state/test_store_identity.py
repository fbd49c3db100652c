"""One writer per database file, whatever name reaches it.

Covers: a second writer through a symlink to the store or a hard link to it is
refused, in this process and from another one, with the holder named (pid, host,
and through a symlink also since and command); the holder record is written beside
the real file, never beside a symlink, and a first start through a symlink makes
the store at its target; the file is let go at aclose (a writer
through a hard link then gets it); a store written back after `rm` (a new file) is
still held, so a hard link to the new file is refused; a reader through a symlink
works beside the writer and takes no lock.

Child processes are started with `python -c`; every wait on them is bounded, and
only the pid the test started is ever signalled.
"""

from __future__ import annotations

import json
import os
import select
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from orchestrator.runtime import never_created
from orchestrator.state import Phase, StoreBusyError, open_store

WAIT = 60.0  # seconds; a bound for a loaded machine, never reached when it works
T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)

# A child process: `try` opens the store at argv[1] as a writer and reports; `hold`
# opens it, reports, and waits to be killed.
CHILD = textwrap.dedent(
    """
    import asyncio, json, sys, time
    from orchestrator.state import StoreBusyError, open_store

    async def main(url, mode):
        try:
            store = open_store(url, holder="child-" + mode)
        except StoreBusyError as exc:
            since = exc.since.isoformat() if exc.since else None
            print(json.dumps({"busy": True, "pid": exc.pid, "host": exc.host, "since": since,
                              "command": exc.command, "message": str(exc)}), flush=True)
            return
        print(json.dumps({"busy": False}), flush=True)
        if mode == "hold":
            time.sleep(120)
        await store.aclose()

    asyncio.run(main(sys.argv[1], sys.argv[2]))
    """
)


def _try_in_child(path: Path) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(path), "try"],
        capture_output=True,
        text=True,
        timeout=WAIT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    return report


@contextmanager
def _holding_child(path: Path) -> Iterator[subprocess.Popen[str]]:
    """A child that holds the store at `path` until killed (by its pid, on exit)."""
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path), "hold"],
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
        assert json.loads(line) == {"busy": False}
        yield child
    finally:
        if child.poll() is None:
            child.kill()
        child.wait(timeout=WAIT)
        for stream in (child.stdout, child.stderr):
            if stream is not None:
                stream.close()


async def _store_with_a_session(path: Path) -> None:
    async with open_store(str(path), create=True) as store:
        await store.create_session(
            manifest="alpha",
            app="main",
            app_id="a" * 32,
            channel="room",
            uid=7,
            mode="mix",
            phase=Phase.RUNNING,
            sid="sid-alpha",
            resource_id="rid",
            window_start=T0,
            window_end=T0,
        )


def _names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


@pytest.fixture
async def store_path(tmp_path: Path) -> Path:
    """An existing store, `data/state.db`."""
    path = tmp_path / "data" / "state.db"
    await _store_with_a_session(path)
    return path


# -- other names, this process -------------------------------------------------------


async def test_a_symlink_to_a_held_store_is_refused_with_the_holder(
    store_path: Path, tmp_path: Path
) -> None:
    link = tmp_path / "link.db"
    link.symlink_to(store_path)
    async with open_store(str(store_path), holder="run"):
        with pytest.raises(StoreBusyError) as refused:
            open_store(str(link), holder="apply")
    busy = refused.value
    assert (busy.pid, busy.host, busy.command) == (os.getpid(), socket.gethostname(), "run")
    assert busy.path == link
    assert str(busy).startswith(f'state store {link} is in use by "run" (pid {os.getpid()} ')


async def test_a_store_held_through_a_symlink_refuses_its_real_path(
    store_path: Path, tmp_path: Path
) -> None:
    link = tmp_path / "link.db"
    link.symlink_to(store_path)
    async with open_store(str(link), holder="run"):
        # The holder record is beside the real file: one lock file for every name.
        holder = json.loads(store_path.with_name("state.db.lock").read_text())
        assert holder["command"] == "run" and holder["pid"] == os.getpid()
        assert not (tmp_path / "link.db.lock").exists()
        with pytest.raises(StoreBusyError, match='is in use by "run"'):
            open_store(str(store_path), holder="apply")


async def test_a_hard_link_to_a_held_store_is_refused_with_the_holder(
    store_path: Path, tmp_path: Path
) -> None:
    hard = tmp_path / "hard.db"
    hard.hardlink_to(store_path)
    async with open_store(str(store_path), holder="run") as writer:
        with pytest.raises(StoreBusyError) as refused:
            open_store(str(hard), holder="apply")
        busy = refused.value
        assert (busy.pid, busy.host, busy.command) == (os.getpid(), socket.gethostname(), "run")
        assert busy.path == hard
        # The refused writer wrote nothing and the holder goes on.
        (live,) = await writer.live_sessions()
        await writer.record_outcome(live.id, sid="sid-alpha-2")
    assert not hard.with_name("hard.db-wal").exists()


async def test_the_file_is_let_go_at_aclose(store_path: Path, tmp_path: Path) -> None:
    hard = tmp_path / "hard.db"
    hard.hardlink_to(store_path)
    first = open_store(str(store_path), holder="run")
    await first.aclose()
    async with open_store(str(hard), holder="apply") as second:
        assert [s.manifest for s in await second.live_sessions()] == ["alpha"]


# -- other names, another process ----------------------------------------------------


async def test_a_writer_in_another_process_is_refused_through_a_symlink(
    store_path: Path, tmp_path: Path
) -> None:
    link = tmp_path / "link.db"
    link.symlink_to(store_path)
    async with open_store(str(store_path), holder="run"):
        report = _try_in_child(link)
    assert report["busy"] is True
    assert (report["pid"], report["host"], report["command"]) == (
        os.getpid(),
        socket.gethostname(),
        "run",
    )
    assert report["since"] is not None
    assert _try_in_child(link) == {"busy": False}  # released


async def test_a_writer_in_another_process_is_refused_through_a_hard_link(
    store_path: Path, tmp_path: Path
) -> None:
    hard = tmp_path / "hard.db"
    hard.hardlink_to(store_path)
    async with open_store(str(store_path), holder="run"):
        report = _try_in_child(hard)
    assert report["busy"] is True
    # Found by the file, not by its lock file: the kernel names the pid (and so the host).
    assert (report["pid"], report["host"]) == (os.getpid(), socket.gethostname())
    assert report["message"] == (
        f"state store {hard} is in use by another process (pid {os.getpid()} on "
        f"{socket.gethostname()}); only one process may write to a store at a time"
    )
    assert _try_in_child(hard) == {"busy": False}  # released


async def test_a_store_held_by_another_process_refuses_a_hard_link_here(
    store_path: Path, tmp_path: Path
) -> None:
    hard = tmp_path / "hard.db"
    hard.hardlink_to(store_path)
    with _holding_child(hard) as child:
        with pytest.raises(StoreBusyError) as refused:
            open_store(str(store_path), holder="run")
        assert refused.value.pid == child.pid
        with pytest.raises(StoreBusyError):
            open_store(str(hard), holder="run")  # and its own name, by its lock file
    async with open_store(str(store_path), holder="run"):
        pass  # the kernel let go when the child was killed


# -- a store written back is held too ------------------------------------------------


async def test_a_store_written_back_after_rm_is_still_held(
    store_path: Path, tmp_path: Path
) -> None:
    async with open_store(str(store_path), holder="run") as writer:
        os.unlink(store_path)
        assert await writer.restore_if_removed() is True
        hard = tmp_path / "hard.db"
        hard.hardlink_to(store_path)  # a name of the new file
        report = _try_in_child(hard)
        assert report["busy"] is True and report["pid"] == os.getpid()
        with pytest.raises(StoreBusyError, match='is in use by "run"'):
            open_store(str(hard), holder="apply")
        assert [s.manifest for s in await writer.live_sessions()] == ["alpha"]
    assert _try_in_child(hard) == {"busy": False}


# -- creation ------------------------------------------------------------------------


async def test_a_store_created_through_a_symlink_is_made_at_its_target(tmp_path: Path) -> None:
    target = tmp_path / "data" / "state.db"
    link = tmp_path / "state.db"
    link.symlink_to(target)  # a deploy's link, before the first start
    assert never_created(f"sqlite:///{link}")
    async with open_store(str(link), holder="run", create=True):
        assert target.is_file() and link.is_symlink()
        assert _names(target.parent) == [
            "state.db",
            "state.db-shm",
            "state.db-wal",
            "state.db.lock",
        ]
        assert not never_created(f"sqlite:///{link}")
        with pytest.raises(StoreBusyError, match='is in use by "run"'):
            open_store(str(target), holder="apply")


# -- readers -------------------------------------------------------------------------


async def test_a_reader_through_a_symlink_reads_beside_the_writer(
    store_path: Path, tmp_path: Path
) -> None:
    link = tmp_path / "link.db"
    link.symlink_to(store_path)
    async with open_store(str(store_path), holder="run") as writer:
        (live,) = await writer.live_sessions()
        await writer.record_outcome(live.id, sid="sid-new")  # in the WAL, not yet in the file
        async with open_store(str(link), writer=False) as reader:
            assert (await reader.get_session(live.id)).sid == "sid-new"
    assert _names(tmp_path) == ["data", "link.db"]  # no lock file beside the link
