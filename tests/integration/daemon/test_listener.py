"""The daemon's HTTP listener (daemon/listener.py) over real loopback, for what the
receiver's tests do not reach: a POST route that answers later.

Covers: while its answer is awaited the connection reads nothing, and it answers in
order; a client that does not read its answers (flow control paused writing) is
neither read from again nor answered what it sent meanwhile when a later answer is
sent, until it reads again; a connection at work is not the
least recently active one that the connection limit closes first.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping

import pytest

from orchestrator.daemon.listener import Bounds, Listener, Page
from tests.harness import wait_until


class Rig:
    def __init__(self) -> None:
        self.futures: list[asyncio.Future[Page]] = []
        self.listener = Listener(
            {"/": lambda: Page(200, "text/plain", b"ok")},
            posts={"/later": self.later},
            max_body=64,
            bounds=Bounds(limit=8, timeout=5.0, backlog=4),
        )
        self.port = 0

    def later(self, headers: Mapping[str, str], body: bytes) -> asyncio.Future[Page]:
        future: asyncio.Future[Page] = asyncio.get_running_loop().create_future()
        self.futures.append(future)
        return future

    def connection(self) -> object:
        (only,) = self.listener._connections  # the one the test opened
        return only


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    made = Rig()
    made.port = await made.listener.start("127.0.0.1", 0)
    try:
        yield made
    finally:
        await made.listener.stop()


POST = b"POST /later HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi"


async def test_a_later_answer_keeps_order_and_the_client_s_flow_control(rig: Rig) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", rig.port)
    try:
        writer.write(POST + b"GET / HTTP/1.1\r\n\r\n")
        await writer.drain()
        await wait_until(lambda: rig.futures, within=10, what="the POST at work", every=0.01)
        conn = rig.connection()
        transport = conn._transport  # type: ignore[attr-defined]
        assert not transport.is_reading()  # nothing more is read while it works
        # The client stops reading its answers: asyncio pauses our writing.
        conn.pause_writing()  # type: ignore[attr-defined]
        rig.futures[0].set_result(Page(200, "text/plain", b"later"))
        async with asyncio.timeout(10):
            first = await reader.readuntil(b"later")
        assert first.startswith(b"HTTP/1.1 200 ")
        # Nothing more is read, nor answered, until the client reads again: the GET it
        # sent meanwhile waits in the buffer.
        assert not transport.is_reading()
        assert conn._buffer.startswith(b"GET / ")  # type: ignore[attr-defined]
        conn.resume_writing()  # type: ignore[attr-defined]
        assert transport.is_reading()
        async with asyncio.timeout(10):
            second = await reader.readuntil(b"ok")
        assert second.startswith(b"HTTP/1.1 200 ")
    finally:
        writer.close()


async def test_a_connection_at_work_is_not_the_first_the_limit_closes(rig: Rig) -> None:
    _, busy = await asyncio.open_connection("127.0.0.1", rig.port)
    idle = []
    try:
        for _ in range(3):  # older than the busy one's work, newer than its opening
            idle.append(await asyncio.open_connection("127.0.0.1", rig.port))
        # Each seen by the listener, in that order.
        await wait_until(
            lambda: len(rig.listener._connections) == 4, within=10, what="4 open", every=0.01
        )
        busy.write(POST)
        await busy.drain()
        await wait_until(lambda: rig.futures, within=10, what="the POST at work", every=0.01)
        order = list(rig.listener._connections)
        assert order[-1]._working is not None  # type: ignore[attr-defined]
    finally:
        busy.close()
        for _, writer in idle:
            writer.close()
