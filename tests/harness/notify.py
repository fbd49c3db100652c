"""A real systemd-style NOTIFY_SOCKET: a datagram socket the daemon writes to.

Must never: block, or wait without a bound.
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

from tests.harness.waits import Living, wait_until


class NotifySocket:
    """Bound at `path`; `messages` holds every datagram so far as {KEY: value}."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.setblocking(False)
        self.messages: list[dict[str, str]] = []
        # Read as they arrive, as systemd reads them: the kernel queues few datagrams
        # (`net.unix.max_dgram_qlen`, 10 unless raised), and a daemon whose messages
        # were not read meanwhile finds the queue full (`notify.send_failed`).
        try:
            self._loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:  # no loop: read when asked
            self._loop = None
        if self._loop is not None:
            self._loop.add_reader(self.sock.fileno(), self.drain)

    def drain(self) -> list[dict[str, str]]:
        """Every message so far, the new ones read first."""
        while self.sock.fileno() >= 0:
            try:
                data = self.sock.recv(4096)
            except BlockingIOError:
                break
            fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
            self.messages.append(fields)
        return self.messages

    def _find(self, key: str, value: str | None, after: int) -> dict[str, str] | None:
        found = [m for m in self.drain() if key in m and (value is None or m[key] == value)]
        return found[after] if len(found) > after else None

    async def wait_for(
        self,
        key: str,
        value: str | None = None,
        *,
        within: float = 30,
        after: int = 0,
        alive: Living | None = None,
    ) -> dict[str, str]:
        """The (`after`+1)-th message since the start with `key` (= `value`)."""
        return await wait_until(
            lambda: self._find(key, value, after),
            within=within,
            what=f"{key}={value or '*'} on NOTIFY_SOCKET",
            alive=alive,
        )

    def close(self) -> None:
        if self.sock.fileno() >= 0:
            if self._loop is not None and not self._loop.is_closed():
                self._loop.remove_reader(self.sock.fileno())
            self.drain()
            self.sock.close()
