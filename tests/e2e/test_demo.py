"""`make run` (scripts/demo.py) as a person runs it.

Covers: the demo's banners come in step with the daemon's log (the rollover of the
lobby, whose profile mints 1-minute tokens, and the restart of the recording the demo
kills at the emulator, told by Agora's notification, among them): each one that
reports the daemon's work right after the log line of that work, and the layout
edit announced when it is made (after the start, before the reload that reads it);
the daemon's log is shown in the console format, without colour off a terminal,
with no successful query at info level; SIGINT to the script's process group ends
it with status 0 once the daemon exited 0, leaving no process behind, also when it
comes as the daemon starts, and so does SIGTERM; `make run` in
a terminal ends with status 0 on Ctrl-C (which the terminal sends to its whole
foreground process group, make included), without make's "Interrupt" message and
without colour under NO_COLOR. Every wait is bounded and waits for output.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pty
import re
import shutil
import signal
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.slow,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc, uses a pty"),
]

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "scripts" / "demo.py"


class Output:
    """Everything a child prints, collected by a thread; `wait_for` blocks until a
    text appears (or the deadline passes)."""

    def __init__(self, read: Callable[[], bytes]) -> None:
        self._read = read
        self._data = bytearray()
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._collect, daemon=True)
        self._thread.start()

    def _collect(self) -> None:
        while True:
            try:
                chunk = self._read()
            except OSError:  # a pty's master reads EIO once every slave is closed
                chunk = b""
            with self._changed:
                self._data.extend(chunk)
                self._changed.notify_all()
            if not chunk:
                return

    @property
    def text(self) -> str:
        with self._changed:
            return self._data.decode("utf-8", errors="replace").replace("\r\n", "\n")

    def wait_for(self, needle: str, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        with self._changed:
            while needle.encode() not in self._data:
                left = deadline - time.monotonic()
                if left <= 0 or not self._thread.is_alive():
                    break
                self._changed.wait(left)
        assert needle in self.text, f"no {needle!r} within {seconds:g} s:\n{self.text}"

    def closed(self, seconds: float) -> None:
        self._thread.join(seconds)


def descendants(pid: int) -> list[int]:
    """`pid` and every process below it, parents first (from /proc)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(stat.parent.name))
    tree, todo = [], [pid]
    while todo:
        tree.append(todo.pop())
        todo.extend(children.get(tree[-1], ()))
    return tree


@contextlib.contextmanager
def reaped(proc: subprocess.Popen[bytes]) -> Iterator[None]:
    """Whatever happens in the block, nothing started by `proc` outlives the test."""
    try:
        yield
    finally:
        if proc.poll() is None:
            for pid in descendants(proc.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            proc.wait(timeout=10)


def alive(pids: list[int]) -> list[int]:
    return [pid for pid in pids if Path(f"/proc/{pid}").exists()]


def first(lines: list[str], pattern: str) -> int:
    found = [i for i, line in enumerate(lines) if re.search(pattern, line)]
    assert found, f"no line matches {pattern!r}"
    return found[0]


def previous_line(lines: list[str], index: int) -> str:
    return next(line for line in reversed(lines[:index]) if line.strip())


def start_demo(
    tmp_path: Path, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], Output]:
    """scripts/demo.py at a 2 s step, in a process group of its own (as a terminal's
    job), and its output."""
    proc = subprocess.Popen(
        [sys.executable, str(DEMO), "--step", "2", "--workdir", str(tmp_path / "demo")],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,  # one pipe: the order of banners and log lines is kept
        start_new_session=True,
    )
    assert proc.stdout is not None
    stdout = proc.stdout.fileno()
    return proc, Output(lambda: os.read(stdout, 65536))


def test_banners_follow_the_daemon_and_sigint_ends_with_0(tmp_path: Path) -> None:
    proc, output = start_demo(tmp_path, {k: v for k, v in os.environ.items() if k != "NO_COLOR"})
    assert proc.stdout is not None
    with proc.stdout, reaped(proc):
        output.wait_for("=== the window closed", 90)
        # The lobby's first 1-minute token is due 40 s after its start.
        output.wait_for("=== support-lobby rolled over", 90)
        running = descendants(proc.pid)
        os.killpg(proc.pid, signal.SIGINT)
        code = proc.wait(timeout=30)
        output.closed(10)
    assert code == 0, output.text
    assert alive(running) == []
    text = output.text
    lines = text.splitlines()
    steps = [
        first(lines, r" daemon\.ready "),
        first(lines, r"^=== the daemon is ready"),
        first(lines, r" reconcile\.action +manifest=demo-live action=start outcome=ok"),
        first(lines, r"^=== the window opened"),
        first(lines, r"^=== the demo edits demo-live's layout now"),
        first(lines, r" manifests\.reloaded +trigger=watch .*changed=demo-live"),
        first(lines, r" api\.call +endpoint=updateLayout channel=demo-room uid=900001 "),
        first(lines, r" reconcile\.action +manifest=demo-live action=updateLayout outcome=ok"),
        first(lines, r"^=== the daemon changed the live recording's layout"),
        first(lines, r" notice\.acted .*notice_event=recorder_leave .*manifest=demo-live "),
        first(lines, r"^=== Agora's notification \(recorder_leave"),
        first(lines, r" reconcile\.action +manifest=demo-live action=stop outcome=ok"),
        first(lines, r"^=== the window closed"),
        first(lines, r" daemon\.stopping +reason=SIGINT"),
        first(lines, r"^=== done: the daemon exited 0 on Ctrl-C"),
    ]
    assert steps == sorted(steps), text
    # A banner about the daemon's work comes right after the log line of that work.
    for banner, event in [
        (r"^=== the daemon is ready", r" daemon\.ready "),
        (r"^=== the window opened", r"action=start outcome=ok"),
        (r"^=== the daemon changed the live", r"action=updateLayout outcome=ok"),
        (r"^=== Agora's notification", r"manifest=demo-live action=start outcome=ok"),
        (r"^=== the window closed", r"action=stop outcome=ok"),
        (r"^=== support-lobby rolled over", r" session\.rolled_over +manifest=support-lobby "),
    ]:
        assert re.search(event, previous_line(lines, first(lines, banner))), (banner, text)
    assert re.search(r"^\d\d:\d\d:\d\d info +api\.call +endpoint=start ", text, re.MULTILINE)
    assert "\x1b[" not in text  # not a terminal: no colour
    assert "endpoint=query" not in text  # a successful query is a debug line


def test_a_ctrl_c_as_the_daemon_starts_ends_with_0(tmp_path: Path) -> None:
    # SIGINT to the demo's group the moment it announces the daemon: the daemon, in a
    # group of its own, is told once it has begun, never in its first instants (when
    # Python would die of the signal, or print an import's traceback). Unless the
    # signal comes in the very instant of the spawn, before the daemon leaves the
    # demo's group: it then dies having done nothing, which the demo says.
    proc, output = start_demo(tmp_path)
    assert proc.stdout is not None
    with proc.stdout, reaped(proc):
        output.wait_for("=== orchestrator run ", 90)
        os.killpg(proc.pid, signal.SIGINT)
        running = descendants(proc.pid)
        code = proc.wait(timeout=60)
        output.closed(10)
    text = output.text
    assert code == 0, text
    assert alive(running) == []
    ends = ("the daemon exited 0 on Ctrl-C", "the Ctrl-C stopped the daemon as it was being")
    assert any(f"=== done: {end}" in text for end in ends), text
    assert "Traceback" not in text and "Aborted" not in text


def test_sigterm_ends_the_demo_and_all_it_started(tmp_path: Path) -> None:
    """Defect: `timeout 150 make run`, a `kill` or a closed terminal ended the demo by
    the signal's default, and its daemon and emulator (each in a process group of its
    own) ran on. It ends them as it does on Ctrl-C (SIGHUP takes the same path)."""
    number = signal.SIGTERM
    proc, output = start_demo(tmp_path)
    assert proc.stdout is not None
    with proc.stdout, reaped(proc):
        output.wait_for("=== the daemon is ready", 90)
        running = descendants(proc.pid)
        assert len(running) >= 2  # the emulator and the daemon
        os.killpg(proc.pid, number)
        code = proc.wait(timeout=60)
        output.closed(10)
    text = output.text
    assert code == 0, text
    assert alive(running) == []
    assert f"=== done: the daemon exited 0 on {number.name}" in text


def _controlling_terminal() -> None:
    # In the child, after setsid(): its stdin (the pty's slave) becomes its terminal.
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_run_ends_with_0_on_ctrl_c(tmp_path: Path) -> None:
    master, slave = pty.openpty()
    env = {**os.environ, "NO_COLOR": "1"}
    proc = subprocess.Popen(  # make from PATH, as a person runs it
        [
            "make",
            "-o",  # never reinstall here (the stamp may be older than an edited pyproject)
            ".venv/.installed",
            "run",
            f"PY={sys.executable}",
            f"DEMO_ARGS=--workdir {tmp_path / 'demo'}",
        ],
        cwd=ROOT,
        env=env,
        stdin=slave,
        stdout=slave,
        stderr=slave,
        start_new_session=True,
        preexec_fn=_controlling_terminal,  # after setsid: the pty becomes its terminal
    )
    os.close(slave)
    output = Output(lambda: os.read(master, 65536))
    try:
        with reaped(proc):
            output.wait_for("=== the daemon is ready", 60)
            running = descendants(proc.pid)
            os.write(master, b"\x03")  # Ctrl-C: SIGINT to the terminal's foreground group
            code = proc.wait(timeout=30)
            output.closed(10)
    finally:
        os.close(master)
    text = output.text
    assert code == 0, text
    assert alive(running) == []
    assert "=== done: the daemon exited 0 on Ctrl-C" in text
    assert "Interrupt" not in text  # make's "*** [Makefile: run] Interrupt"
    assert "\x1b[" not in text  # NO_COLOR, on a terminal
