"""The daemon's metrics address as a client sees it: what it answers, and its bounds.

Covers, against `orchestrator run` as a process (raw TCP to its metrics address):
- HTTP: two requests on one keep-alive connection, and two pipelined in one write,
  answered in order; HEAD has the headers (with the length) and no body; another
  method is 405 with `Allow`; a request that announces a body is 400 and the
  connection closed; HTTP/1.0 closes after the answer; an unknown path is 404; an
  oversized head is 431; a bad version 505; a target that cannot be read
  (`http://[/`), one in no form HTTP has, or a header name with a space is 400, with
  no traceback logged; `//host/metrics` is a path (404), not a host and `/metrics`,
  and the absolute form `http://host/metrics` is `/metrics`.
- Idle time: a connection that sends nothing, and one that sends a byte every 0.3 s
  without ever finishing its head, are closed by the daemon within
  `REQUEST_TIMEOUT` (a bounded wait for the end of the stream, not a sleep), counted
  as `timeout` drops.
- The connection limit (`bounds_for` the daemon's own descriptor limit): 40 idle
  connections past it leave at most the limit open (the
  `orchestrator_listener_connections` gauge), at least 40 counted as `limit` drops,
  /healthz still answers on a new connection, and the daemon logs
  `metrics.connections_limited` once.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import time
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import httpx
import pytest

from orchestrator.daemon.listener import REQUEST_TIMEOUT, bounds_for
from tests.e2e.conftest import DaemonEnv
from tests.harness import Daemon, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]


def _address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    return parts.hostname, parts.port


@contextlib.asynccontextmanager
async def connection(url: str) -> AsyncIterator[Stream]:
    reader, writer = await asyncio.wait_for(asyncio.open_connection(*_address(url)), 10)
    try:
        yield reader, writer
    finally:
        writer.close()


async def answer(
    reader: asyncio.StreamReader, *, head_only: bool = False
) -> tuple[int, dict[str, str], bytes]:
    """One response: (status, headers with lower-case names, body)."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    line, *fields = head.decode("latin-1").split("\r\n")
    headers = {}
    for field in fields:
        if field:
            name, _, value = field.partition(":")
            headers[name.strip().lower()] = value.strip()
    length = 0 if head_only else int(headers["content-length"])
    body = await asyncio.wait_for(reader.readexactly(length), 10)
    return int(line.split(" ")[1]), headers, body


async def exchange(
    url: str, request: bytes, *, head_only: bool = False
) -> tuple[int, dict[str, str], bytes, bool]:
    """Send `request` on a new connection: its answer, and whether the daemon closed
    the connection after it (the end of the stream within 10 s)."""
    async with connection(url) as (reader, writer):
        writer.write(request)
        status, headers, body = await answer(reader, head_only=head_only)
        try:
            closed = (
                await asyncio.wait_for(
                    reader.read(1), 10 if headers.get("connection") == "close" else 0.2
                )
                == b""
            )
        except TimeoutError:
            closed = False
        return status, headers, body, closed


async def closed_by_daemon(reader: asyncio.StreamReader, within: float) -> float:
    """Seconds until the daemon ends the stream (bounded by `within`)."""
    began = time.monotonic()
    while True:
        chunk = await asyncio.wait_for(
            reader.read(4096), max(0.01, within - (time.monotonic() - began))
        )
        if not chunk:
            return time.monotonic() - began


def scrape(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in /metrics")


async def metrics(url: str) -> str:
    async with httpx.AsyncClient(timeout=10, trust_env=False) as http:
        answered = await http.get(f"{url}/metrics")
    answered.raise_for_status()
    return answered.text


async def started(env: DaemonEnv) -> tuple[Daemon, str]:
    daemon = await env.start()
    return daemon, await daemon.metrics_url()


async def test_the_metrics_address_speaks_plain_http(daemon_env: DaemonEnv) -> None:
    daemon, url = await started(daemon_env)
    try:
        async with connection(url) as (reader, writer):
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            first = await answer(reader)
            writer.write(b"GET /readyz HTTP/1.1\r\n\r\nGET /nowhere?x=1 HTTP/1.1\r\n\r\n")
            second, third = await answer(reader), await answer(reader)
        assert (first[0], first[1]["connection"]) == (200, "keep-alive")
        assert first[1]["content-type"].startswith("application/json")
        assert b'"status": "ok"' in first[2]
        assert (second[0], third[0]) == (200, 404)

        head = await exchange(url, b"HEAD /metrics HTTP/1.1\r\n\r\n", head_only=True)
        assert head[0] == 200 and int(head[1]["content-length"]) > 1000 and head[2] == b""
        post = await exchange(url, b"POST /healthz HTTP/1.1\r\n\r\n")
        assert (post[0], post[1]["allow"]) == (405, "GET, HEAD")
        # A path no route serves is 404 whatever the method; its body is not read.
        nowhere = await exchange(url, b"POST /nowhere HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi")
        assert (nowhere[0], nowhere[3]) == (404, True) and "allow" not in nowhere[1]
        body = await exchange(url, b"GET /healthz HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi")
        assert (body[0], body[3]) == (400, True)
        old = await exchange(url, b"GET /healthz HTTP/1.0\r\n\r\n")
        assert (old[0], old[1]["connection"], old[3]) == (200, "close", True)
        big = await exchange(url, b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n\r\n")
        assert (big[0], big[3]) == (431, True)
        version = await exchange(url, b"GET /healthz HTTP/2.0\r\n\r\n")
        assert (version[0], version[3]) == (505, True)
        for target in (b"http://[/", b"healthz", b"*"):
            odd = await exchange(url, b"GET " + target + b" HTTP/1.1\r\n\r\n")
            assert (odd[0], odd[3]) == (400, True), target  # was no answer, and a traceback
        spaced = await exchange(url, b"GET /healthz HTTP/1.1\r\nBad Header: x\r\n\r\n")
        assert (spaced[0], spaced[3]) == (400, True)
        slashes = await exchange(url, b"GET //evil.example/metrics HTTP/1.1\r\n\r\n")
        assert slashes[0] == 404  # was /metrics: the first segment taken for a host
        absolute = await exchange(url, b"GET http://x/healthz?a=1 HTTP/1.1\r\n\r\n")
        assert absolute[0] == 200
        assert daemon.alive
        assert daemon.named("loop.exception") == []
    finally:
        assert await daemon.stop() == 0


async def test_idle_and_slow_connections_are_closed_and_the_limit_holds(
    daemon_env: DaemonEnv,
) -> None:
    daemon, url = await started(daemon_env)
    limit = bounds_for(resource.prlimit(daemon.pid, resource.RLIMIT_NOFILE)[0]).limit
    within = REQUEST_TIMEOUT + 5  # generous: only a connection kept open fails it
    try:
        async with connection(url) as (idle, _), connection(url) as (slow, slow_writer):

            async def drip() -> None:
                for byte in b"GET /healthz HTTP/1.1\r\nX-Slow: " + b"a" * 1000:
                    slow_writer.write(bytes([byte]))
                    await asyncio.sleep(0.3)  # the drip's pace, not a wait for an event
                    if slow_writer.is_closing() or slow.at_eof():
                        return

            dripping = asyncio.create_task(drip())
            try:
                idle_for, slow_for = await asyncio.gather(
                    closed_by_daemon(idle, within), closed_by_daemon(slow, within)
                )
            finally:
                dripping.cancel()
                with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                    await dripping
        assert REQUEST_TIMEOUT - 1 <= idle_for <= within
        assert REQUEST_TIMEOUT - 1 <= slow_for <= within
        text = await metrics(url)
        assert (
            scrape(text, 'orchestrator_listener_connections_dropped_total{reason="timeout"}') >= 2
        )

        extra = 40
        streams = []
        try:
            for _ in range(limit + extra):
                streams.append(await asyncio.wait_for(asyncio.open_connection(*_address(url)), 10))

            # Every one of them is accepted (a bounded wait on the gauge): then count.
            async def all_seen() -> bool:
                dropped = scrape(
                    await metrics(url),
                    'orchestrator_listener_connections_dropped_total{reason="limit"}',
                )
                return dropped >= extra

            await wait_until(all_seen, within=10, what="the listener to see every connection")
            text = await metrics(url)
            assert scrape(text, "orchestrator_listener_connections") <= limit
            async with httpx.AsyncClient(timeout=10, trust_env=False) as http:
                assert (await http.get(f"{url}/healthz")).status_code == 200
        finally:
            for _, writer in streams:
                writer.close()
        assert len(daemon.named("metrics.connections_limited")) == 1
        assert daemon.alive
    finally:
        assert await daemon.stop() == 0
