"""The systemd notify protocol against a real datagram socket standing in for systemd.

Covers: the exact content of each message (ready, reloading, stopping, watchdog,
status, send, send_lines); MONOTONIC_USEC is the current CLOCK_MONOTONIC; a path
and an abstract-namespace ('@') socket; the watchdog interval from WATCHDOG_USEC
and WATCHDOG_PID; no NOTIFY_SOCKET is a no-op; a missing socket or a refused send
never raises and is warned about once per outage.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from orchestrator.daemon.notify import Notifier


@pytest.fixture
def systemd(tmp_path: Path) -> Iterator[tuple[str, socket.socket]]:
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(5)
        yield str(path), sock


def _received(sock: socket.socket) -> str:
    return sock.recv(4096).decode()


def _nothing_more(sock: socket.socket) -> None:
    sock.setblocking(False)
    with pytest.raises(BlockingIOError):
        sock.recv(4096)


def test_each_message_is_one_exact_datagram(systemd: tuple[str, socket.socket]) -> None:
    address, sock = systemd
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": address})
    assert notifier.enabled and notifier.address == address

    assert notifier.ready()
    assert _received(sock) == "READY=1"
    assert notifier.ready("serving 3 manifests")
    assert _received(sock) == "READY=1\nSTATUS=serving 3 manifests"
    assert notifier.stopping()
    assert _received(sock) == "STOPPING=1"
    assert notifier.watchdog()
    assert _received(sock) == "WATCHDOG=1"
    assert notifier.status("line one\nline two\r\nthree")
    assert _received(sock) == "STATUS=line one line two three"
    assert notifier.send(STATUS="a\nb", EXTEND_TIMEOUT_USEC=5_000_000)
    assert _received(sock) == "STATUS=a b\nEXTEND_TIMEOUT_USEC=5000000"
    assert notifier.send_lines("READY=1", "STATUS=x")
    assert _received(sock) == "READY=1\nSTATUS=x"
    _nothing_more(sock)


def test_reloading_carries_the_current_monotonic_time(systemd: tuple[str, socket.socket]) -> None:
    address, sock = systemd
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": address})
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert notifier.reloading()
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    first, second = _received(sock).split("\n")
    assert first == "RELOADING=1"
    key, value = second.split("=")
    assert key == "MONOTONIC_USEC"
    assert before <= int(value) <= after


def test_reloading_uses_the_injected_clock(systemd: tuple[str, socket.socket]) -> None:
    address, sock = systemd
    notifier = Notifier(address, monotonic_ns=lambda: 1_234_567_999)
    notifier.reloading()
    assert _received(sock) == "RELOADING=1\nMONOTONIC_USEC=1234567"


def test_abstract_namespace_socket() -> None:
    name = f"orchestrator-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        notifier = Notifier.from_environ({"NOTIFY_SOCKET": "@" + name})
        assert notifier.ready("up")
        assert _received(sock) == "READY=1\nSTATUS=up"


@pytest.mark.parametrize(
    ("environ", "interval"),
    [
        ({"WATCHDOG_USEC": "20000000"}, 10.0),
        ({"WATCHDOG_USEC": "3000000", "WATCHDOG_PID": str(os.getpid())}, 1.5),
        ({"WATCHDOG_USEC": "20000000", "WATCHDOG_PID": str(os.getpid() + 1)}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({"WATCHDOG_PID": str(os.getpid())}, None),
        ({}, None),
    ],
)
def test_watchdog_interval(environ: dict[str, str], interval: float | None) -> None:
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": "/run/nonexistent.sock", **environ})
    assert notifier.watchdog_interval == interval


def test_no_notify_socket_is_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_socket(*_args: object, **_kwargs: object) -> socket.socket:
        raise AssertionError("no socket may be created without NOTIFY_SOCKET")

    monkeypatch.setattr(socket, "socket", no_socket)
    for environ in ({}, {"NOTIFY_SOCKET": ""}, {"WATCHDOG_USEC": "20000000"}):
        notifier = Notifier.from_environ(environ)
        assert not notifier.enabled
        assert notifier.ready("x") is False
        assert notifier.reloading() is False
        assert notifier.stopping() is False
        assert notifier.watchdog() is False
        assert notifier.status("x") is False
        assert notifier.send(READY=1) is False


def test_reads_os_environ_by_default(
    systemd: tuple[str, socket.socket], monkeypatch: pytest.MonkeyPatch
) -> None:
    address, sock = systemd
    monkeypatch.setenv("NOTIFY_SOCKET", address)
    monkeypatch.setenv("WATCHDOG_USEC", "4000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    notifier = Notifier.from_environ()
    assert notifier.watchdog_interval == 2.0
    assert notifier.watchdog()
    assert _received(sock) == "WATCHDOG=1"


def test_unsupported_socket_address_disables_with_a_warning() -> None:
    with capture_logs() as logs:
        notifier = Notifier.from_environ({"NOTIFY_SOCKET": "vsock:2:1234"})
    assert not notifier.enabled
    assert [entry["event"] for entry in logs] == ["notify.unsupported_socket"]


def test_missing_socket_never_raises_and_warns_once_per_outage(tmp_path: Path) -> None:
    path = tmp_path / "later.sock"
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": str(path)})
    with capture_logs() as logs:
        assert notifier.watchdog() is False
        assert notifier.watchdog() is False
        assert notifier.ready() is False
    warnings = [entry for entry in logs if entry["log_level"] == "warning"]
    assert [entry["event"] for entry in warnings] == ["notify.send_failed"]
    assert warnings[0]["notify_socket"] == str(path)

    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(5)
        with capture_logs() as logs:
            assert notifier.watchdog()
        assert _received(sock) == "WATCHDOG=1"
        assert [entry["event"] for entry in logs] == ["notify.recovered"]

    # The receiver is gone again (its path stays, nobody listens): a new outage warns again.
    with capture_logs() as logs:
        assert notifier.watchdog() is False
    assert [entry["event"] for entry in logs if entry["log_level"] == "warning"] == [
        "notify.send_failed"
    ]


def test_a_full_receiver_does_not_block(systemd: tuple[str, socket.socket]) -> None:
    address, _sock = systemd
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": address})
    with capture_logs() as logs:
        # Nobody reads: the receive queue fills, then sends fail with EAGAIN at once.
        sent = 0
        while notifier.status("x" * 1024):
            sent += 1
            assert sent < 100_000, "the receive queue never filled"
        assert notifier.watchdog() is False
    assert sent > 0
    assert [entry["event"] for entry in logs if entry["log_level"] == "warning"] == [
        "notify.send_failed"
    ]


def test_malformed_lines_are_rejected_even_when_disabled() -> None:
    notifier = Notifier.from_environ({})
    with pytest.raises(ValueError, match="KEY=value"):
        notifier.send_lines("READY=1\nSTATUS=x")
    with pytest.raises(ValueError, match="KEY=value"):
        notifier.send_lines("READY")


def test_watchdog_usec_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        Notifier("/run/x.sock", watchdog_usec=0)
