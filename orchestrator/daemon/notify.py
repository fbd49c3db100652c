"""The systemd notify protocol (`sd_notify`), sent from the daemon's main process.

The unit is `Type=notify` with `NotifyAccess=main` and a watchdog: systemd learns
that the daemon is ready, reloading or stopping, and that it is still alive, from
datagrams of `KEY=value` lines sent to the AF_UNIX socket named by NOTIFY_SOCKET.
That protocol is one datagram, and the PyPI helpers are unmaintained, so it lives
here.

This module must never raise or block because of a notification: without
NOTIFY_SOCKET every method is a no-op, the socket is non-blocking, and a failed
send (socket gone, refused, full) is logged once as a warning and otherwise
ignored; the daemon's work matters more than telling systemd about it. It must
never let a value smuggle in an extra field: newlines in values become spaces.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Mapping

import structlog

log = structlog.get_logger("orchestrator.daemon")

MonotonicNs = Callable[[], int]


def _monotonic_ns() -> int:
    # systemd compares MONOTONIC_USEC with its own CLOCK_MONOTONIC reading.
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC)


def _one_line(value: object) -> str:
    return str(value).replace("\r\n", " ").replace("\n", " ").replace("\r", " ")


class Notifier:
    """Sends notify datagrams to systemd; every method is a no-op without a socket.

    Build it with `Notifier.from_environ()`. The send methods return True when a
    datagram was handed to the kernel, False when disabled or when sending failed.
    """

    def __init__(
        self,
        address: str | None,
        *,
        watchdog_usec: int | None = None,
        monotonic_ns: MonotonicNs = _monotonic_ns,
    ) -> None:
        """`address` is a socket path, or `@name` for the abstract namespace; None disables."""
        if watchdog_usec is not None and watchdog_usec <= 0:
            raise ValueError("watchdog_usec must be positive")
        self._address = address
        self._sockaddr = None if address is None else _sockaddr(address)
        self._watchdog_usec = watchdog_usec
        self._monotonic_ns = monotonic_ns
        self._failing = False

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Notifier:
        """Read NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID (default: `os.environ`).

        The watchdog is enabled when WATCHDOG_USEC is a positive integer and
        WATCHDOG_PID is unset or is this process. A NOTIFY_SOCKET that is neither
        an absolute path nor `@name` is unsupported: warned about, then disabled.
        """
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET") or None
        if address is not None and not address.startswith(("/", "@")):
            log.warning("notify.unsupported_socket", notify_socket=address)
            address = None
        return cls(address, watchdog_usec=_watchdog_usec(env))

    @property
    def enabled(self) -> bool:
        """True when NOTIFY_SOCKET named a socket to send to."""
        return self._sockaddr is not None

    @property
    def address(self) -> str | None:
        """The NOTIFY_SOCKET value in use (`@name` for the abstract namespace)."""
        return self._address

    @property
    def watchdog_interval(self) -> float | None:
        """Seconds between `watchdog()` calls: half of WATCHDOG_USEC; None when disabled."""
        if self._watchdog_usec is None:
            return None
        return self._watchdog_usec / 2 / 1_000_000

    def ready(self, status: str | None = None) -> bool:
        """READY=1: startup finished (optionally with a STATUS line)."""
        if status is None:
            return self.send(READY=1)
        return self.send(READY=1, STATUS=status)

    def reloading(self) -> bool:
        """RELOADING=1 with MONOTONIC_USEC; send `ready()` when the reload is over."""
        return self.send(RELOADING=1, MONOTONIC_USEC=self._monotonic_ns() // 1000)

    def stopping(self) -> bool:
        """STOPPING=1: shutdown has begun."""
        return self.send(STOPPING=1)

    def watchdog(self) -> bool:
        """WATCHDOG=1: the keep-alive ping; call it every `watchdog_interval` seconds."""
        return self.send(WATCHDOG=1)

    def status(self, text: str) -> bool:
        """STATUS=<text>: the free-form line `systemctl status` shows."""
        return self.send(STATUS=text)

    def send(self, **fields: object) -> bool:
        """One datagram of `KEY=value` lines in argument order; newlines in values become spaces."""
        return self.send_lines(*(f"{key}={_one_line(value)}" for key, value in fields.items()))

    def send_lines(self, *lines: str) -> bool:
        """One datagram of preformatted `KEY=value` lines.

        A line containing a newline, or without `=`, is a programming error and
        raises ValueError even when notifications are disabled.
        """
        for line in lines:
            if "\n" in line or "=" not in line:
                raise ValueError(f"not a single KEY=value line: {line!r}")
        if self._sockaddr is None or not lines:
            return False
        payload = "\n".join(lines).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.setblocking(False)
                sock.sendto(payload, self._sockaddr)
        except OSError as exc:
            self._report_failure(exc)
            return False
        if self._failing:
            self._failing = False
            log.info("notify.recovered", notify_socket=self._address)
        return True

    def _report_failure(self, exc: OSError) -> None:
        # Logged once per outage: the watchdog ping would otherwise repeat the
        # same warning every few seconds.
        if self._failing:
            log.debug("notify.send_failed", notify_socket=self._address, errno=exc.errno)
            return
        self._failing = True
        log.warning(
            "notify.send_failed",
            notify_socket=self._address,
            errno=exc.errno,
            error=exc.strerror or type(exc).__name__,
        )


def _sockaddr(address: str) -> str:
    # A leading '@' names the Linux abstract namespace, spelt with a NUL byte.
    return "\0" + address[1:] if address.startswith("@") else address


def _watchdog_usec(env: Mapping[str, str]) -> int | None:
    raw_usec = env.get("WATCHDOG_USEC")
    if not raw_usec:
        return None
    raw_pid = env.get("WATCHDOG_PID")
    try:
        usec = int(raw_usec)
        pid = None if not raw_pid else int(raw_pid)
    except ValueError:
        log.warning("notify.bad_watchdog_env", watchdog_usec=raw_usec, watchdog_pid=raw_pid)
        return None
    if usec <= 0 or (pid is not None and pid != os.getpid()):
        return None
    return usec
