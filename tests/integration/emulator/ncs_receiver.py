"""A tiny NCS endpoint for tests: an aiohttp server on 127.0.0.1 that records every
notification posted to it, checks both signatures with the shared `agora.ncs`, and
answers the statuses a test queues (then 200).

It must never accept a body whose signatures do not verify: such a post is recorded
with `verified=False` and answered 401, so a test sees it and fails.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from aiohttp import web

from orchestrator.agora import ncs
from tests.harness.waits import wait_until


@dataclass(frozen=True)
class Post:
    """One POST the receiver got."""

    body: bytes
    headers: dict[str, str]
    verified: bool
    status: int  # what the receiver answered
    at: float  # time.monotonic() when it arrived

    @property
    def notice(self) -> ncs.Notification:
        return ncs.parse(self.body)


@dataclass
class Receiver:
    secret: str
    statuses: list[int] = field(default_factory=list)  # answered in order, then 200
    posts: list[Post] = field(default_factory=list)
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = dict(request.headers)
        verified = ncs.verify(self.secret, body, headers.get(ncs.SIGNATURE_HEADER)) and headers.get(
            ncs.SIGNATURE_SHA1_HEADER
        ) == ncs.sign_sha1(self.secret, body)
        status = (self.statuses.pop(0) if self.statuses else 200) if verified else 401
        self.posts.append(Post(body, headers, verified, status, time.monotonic()))
        return web.Response(status=status)

    def accepted(self, sid: str | None = None) -> list[ncs.Notification]:
        """The notifications answered 200 (of `sid`), in the order they arrived."""
        return [
            p.notice
            for p in self.posts
            if p.status == 200 and (sid is None or p.notice.payload.sid == sid)
        ]

    async def until(
        self,
        check: Callable[[list[ncs.Notification]], bool],
        *,
        what: str,
        sid: str | None = None,
        within: float = 5.0,
    ) -> list[ncs.Notification]:
        """The accepted notifications (of `sid`) once `check` holds for them; a bounded wait."""

        def ready() -> list[ncs.Notification] | None:
            got = self.accepted(sid)
            return got if check(got) else None

        return await wait_until(ready, within=within, what=what)

    async def events(
        self, sid: str, kinds: Iterable[int], *, within: float = 5.0
    ) -> list[ncs.Notification]:
        """The accepted notifications of `sid` once they hold at least `kinds` (in any order)."""
        wanted = list(kinds)

        def holds(got: list[ncs.Notification]) -> bool:
            types = [n.eventType for n in got]
            return all(types.count(k) >= wanted.count(k) for k in wanted)

        return await self.until(holds, what=f"events {wanted} of {sid}", sid=sid, within=within)


@asynccontextmanager
async def ncs_receiver(secret: str, *, statuses: Iterable[int] = ()) -> AsyncIterator[Receiver]:
    """A receiver listening on 127.0.0.1 (a free port) for the duration of the block."""
    receiver = Receiver(secret, list(statuses))
    app = web.Application()
    app.router.add_post("/ncs", receiver.handle)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        receiver.url = f"http://127.0.0.1:{runner.addresses[0][1]}/ncs"
        yield receiver
    finally:
        await runner.cleanup()
