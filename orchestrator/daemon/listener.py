"""The daemon's small HTTP server: the metrics address's few GET routes and Agora's
notifications (a POST route on its own address), with bounded connections, idle time
and bodies, so that nothing arriving there can take what the API calls need.

A POST route may answer later: it returns a future of its page (a task of the
daemon's registry, which owns it), and its connection reads nothing more until that
page is sent, so a connection waits for one answer at most. One that is not ready
within `ANSWER_TIMEOUT` seconds is answered 503 and the connection reads on; its work
goes on (it may then be kept, and a sender that retries, as Agora's NCS does, sends
it again: a duplicate). Work outlives its answer only that way: a connection adds at
most one such task per `ANSWER_TIMEOUT`, and the route's work is bounded by its own
timeouts (the store's).

The listener shares the daemon's process, and so its file descriptors, with the API
client and the store. Issue 17 found 1,100 idle connections to it (aiohttp then)
holding the daemon at its 1,024-descriptor limit: aiohttp accepts every connection
and keeps one that sends nothing for its keep-alive time, and it has no public hook
to count or close connections, so every API call failed to connect until the
connections went away. The routes are a few read-only GETs answered from memory and one POST
whose body is small and checked at once, so the HTTP needed is small and is written
here: HTTP/1.0 and 1.1, keep-alive, HEAD; a body only for a POST route, with a
Content-Length of at most `max_body` bytes (no chunked bodies: 411).

Bounds (`Bounds`, derived from the process's descriptor limit by `bounds_for`):

- At most `limit` connections at once. A connection past it closes the least
  recently active one (opened or last answered longest ago), so a flood of idle
  connections never locks a new prober or scraper out. The descriptors held stay
  under `limit` plus a few accept batches (`backlog` each: an accepted connection is
  counted, and the one it displaces closed, a few loop turns after the accept):
  about half of a 1,024 limit at the peak of a 2,000-connection flood
  (benchmarks/results-flood.md), the rest free for the API calls and the store.
- A connection must send a whole request (head and body) within `timeout` seconds
  of opening or of its previous answer, whatever it sends meanwhile (a client sending
  a byte at a time gains nothing); otherwise it is closed.
- A head is at most `MAX_HEAD` bytes, a body at most `max_body` (413 before any of
  it is read).

Must never: block the event loop (a route is a cheap synchronous function, answered
in the callback that read its request, or a future of its page), hold more than
`limit` connections once a callback has run, keep a connection past its deadline,
read a body that is too large or not for a POST route, or let a route's exception
escape (a 500, logged with the exception's type only, since its message could quote
anything).
"""

from __future__ import annotations

import asyncio
import re
import resource
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.utils import formatdate
from http import HTTPStatus
from typing import Final, cast
from urllib.parse import urlsplit

import structlog

log = structlog.get_logger("orchestrator.daemon")

#: Connections served at once, at most. A scraper and a few probes need a handful;
#: a few hundred keep a burst of scrapers served while staying far below any
#: descriptor limit the daemon runs with (systemd's default soft limit is 1,024).
MAX_CONNECTIONS: Final = 256
#: Never fewer, however low the descriptor limit: a probe and a scraper must fit.
MIN_CONNECTIONS: Final = 8
#: Seconds a connection has to send a whole request head, from its opening or its
#: previous answer. Every client of this address sends its request at once; 5 s is
#: generous for them and frees an idle connection's descriptor quickly. Prometheus
#: (scraping every 15 s or more) opens a new connection per scrape.
REQUEST_TIMEOUT: Final = 5.0
#: Accepted connections per wake-up of the listening socket (asyncio uses the listen
#: backlog for both): each holds a descriptor until its protocol has seen it.
BACKLOG: Final = 128
#: The largest request head: a request line and a few headers.
MAX_HEAD: Final = 8192
#: Seconds a POST route answering later has before its request is answered 503:
#: under the 10 s within which Agora's NCS wants an answer (else it resends).
ANSWER_TIMEOUT: Final = 8.0
#: A warning that the limit closed connections is logged at most this often.
WARN_EVERY: Final = 60.0

_HEAD_END = re.compile(rb"\r?\n\r?\n")
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_VERSIONS: Final = (b"HTTP/1.1", b"HTTP/1.0")
_METHODS: Final = ("GET", "HEAD")
_POST: Final = ("POST",)


@dataclass(frozen=True)
class Page:
    """What a route answers."""

    status: int
    content_type: str
    body: bytes


Route = Callable[[], Page]
#: A POST route: given the request's headers (names in lower case) and its body, its
#: page, or a future of it (a page that needs the store: the connection waits for it).
PostRoute = Callable[[Mapping[str, str], bytes], "Page | asyncio.Future[Page]"]


@dataclass(frozen=True)
class Bounds:
    limit: int  # connections at once
    timeout: float  # seconds for a whole request head
    backlog: int  # accepted per wake-up


def bounds_for(open_files: int | None = None) -> Bounds:
    """The bounds for a process allowed `open_files` descriptors (default: its soft
    RLIMIT_NOFILE now): a quarter of them as connections, between `MIN_CONNECTIONS`
    and `MAX_CONNECTIONS`, and accept batches of half that (at most `BACKLOG`), so
    that with the batches in flight the listener stays well under the limit."""
    if open_files is None:
        open_files = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if open_files == resource.RLIM_INFINITY or open_files < 0:
        limit = MAX_CONNECTIONS
    else:
        limit = max(MIN_CONNECTIONS, min(MAX_CONNECTIONS, open_files // 4))
    return Bounds(limit=limit, timeout=REQUEST_TIMEOUT, backlog=max(1, min(BACKLOG, limit // 2)))


class _Refused(Exception):
    def __init__(self, status: HTTPStatus) -> None:
        super().__init__(status.phrase)
        self.status = status


@dataclass(frozen=True)
class _Request:
    method: str
    path: str
    keep_alive: bool
    headers: Mapping[str, str]
    length: int  # of its body


def _parse(head: bytes) -> _Request:
    """A request head (without its blank line); `_Refused` when it is not one we serve."""
    line, *fields = head.split(b"\n")
    parts = line.rstrip(b"\r").split(b" ")
    if len(parts) != 3:
        raise _Refused(HTTPStatus.BAD_REQUEST)
    method, target, version = parts
    if version not in _VERSIONS:
        raise _Refused(HTTPStatus.HTTP_VERSION_NOT_SUPPORTED)
    headers: dict[bytes, bytes] = {}
    for field in fields:
        name, colon, value = field.rstrip(b"\r").partition(b":")
        if not colon or not _TOKEN.fullmatch(name):  # a field name is a token (RFC 9110)
            raise _Refused(HTTPStatus.BAD_REQUEST)
        key = name.lower()
        value = value.strip()
        headers[key] = headers[key] + b"," + value if key in headers else value
    if b"transfer-encoding" in headers:
        raise _Refused(HTTPStatus.LENGTH_REQUIRED)  # a body is read only by its length
    length = headers.get(b"content-length", b"0")
    if not length.isdigit() or len(length) > 12:
        raise _Refused(HTTPStatus.BAD_REQUEST)
    tokens = {token.strip() for token in headers.get(b"connection", b"").lower().split(b",")}
    # HTTP/1.1 keeps the connection unless told not to; HTTP/1.0 only when asked.
    keep_alive = b"close" not in tokens if version == b"HTTP/1.1" else b"keep-alive" in tokens
    path = _path(target.decode("latin-1"))
    named = {k.decode("latin-1"): v.decode("latin-1") for k, v in headers.items()}
    return _Request(method.decode("latin-1"), path, keep_alive, named, int(length))


def _path(target: str) -> str:
    """The path of a request target: its origin form (`/path?query`: all of it up to
    `?`, a `//` at its start included) or its absolute form (`http://host/path`);
    `_Refused` (400) for any other or one that cannot be read."""
    if target.startswith("/"):
        return target.partition("?")[0]
    if target[:7].lower() == "http://" or target[:8].lower() == "https://":
        try:
            return urlsplit(target).path or "/"
        except ValueError:  # e.g. an unclosed IPv6 literal: `http://[/`
            raise _Refused(HTTPStatus.BAD_REQUEST) from None
    raise _Refused(HTTPStatus.BAD_REQUEST)


def _plain(status: HTTPStatus) -> Page:
    return Page(int(status), "text/plain; charset=utf-8", f"{status.phrase}\n".encode())


def _encode(page: Page, *, keep_alive: bool, head_only: bool, allow: tuple[str, ...] = ()) -> bytes:
    lines = [
        f"HTTP/1.1 {page.status} {HTTPStatus(page.status).phrase}",
        f"Date: {formatdate(usegmt=True)}",
        f"Content-Type: {page.content_type}",
        f"Content-Length: {len(page.body)}",
        f"Connection: {'keep-alive' if keep_alive else 'close'}",
    ]
    if allow:
        lines.append(f"Allow: {', '.join(allow)}")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head if head_only else head + page.body


class _Connection(asyncio.Protocol):
    """One accepted connection: reads request heads, answers each at once."""

    def __init__(self, listener: Listener) -> None:
        self._listener = listener
        self._transport: asyncio.Transport | None = None
        self._buffer = b""
        self._deadline: asyncio.TimerHandle | None = None
        self._answered = 0
        self._awaiting: _Request | None = None  # a POST whose body is still arriving
        # A request whose route answers later, and that answer: nothing more is read
        # meanwhile.
        self._working: tuple[_Request, asyncio.Future[Page]] | None = None
        self._unread = False  # the client does not read its answers (flow control)

    # -- asyncio.Protocol ------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        self._arm()
        self._listener._opened(self)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self._transport = None
        self._working = None  # its work goes on, its answer has nobody to go to
        self._listener._closed(self)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        answered = False
        while self._open and self._working is None and not self._unread:
            waiting = self._awaiting
            if waiting is not None:
                if len(self._buffer) < waiting.length:
                    break
                body = self._buffer[: waiting.length]
                self._buffer = self._buffer[waiting.length :]
                self._awaiting = None
                self._answer(waiting, body)
                answered = True
                continue
            self._buffer = self._buffer.lstrip(b"\r\n")  # CRLFs between requests are allowed
            end = _HEAD_END.search(self._buffer, 0, MAX_HEAD + 4)
            if end is None:
                if len(self._buffer) > MAX_HEAD:
                    self._reply(_plain(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE), keep=False)
                break
            head, self._buffer = self._buffer[: end.start()], self._buffer[end.end() :]
            self._serve(head)
            answered = True
        if answered and self._open and self._working is None:  # a new deadline, read or not
            self._arm()
            self._listener._active(self)

    def eof_received(self) -> bool:
        return False  # the client is done: close once what we wrote is sent

    def pause_writing(self) -> None:
        # A client that does not read its answers is not given more of them.
        self._unread = True
        if self._transport is not None:
            self._transport.pause_reading()

    def resume_writing(self) -> None:
        self._unread = False
        if self._transport is not None and self._working is None:
            self._transport.resume_reading()
            if self._buffer:  # what it sent meanwhile, answered now
                self.data_received(b"")

    # -- requests --------------------------------------------------------------------

    @property
    def _open(self) -> bool:
        return self._transport is not None and not self._transport.is_closing()

    def _serve(self, head: bytes) -> None:
        try:
            request = _parse(head)
        except _Refused as refused:
            self._reply(_plain(refused.status), keep=False)
            return
        allowed = self._listener._methods(request.path)
        if not allowed:  # served by no route, whatever the method; its body is not read
            self._answered += 1
            keep = request.keep_alive and not request.length
            self._reply(_plain(HTTPStatus.NOT_FOUND), keep=keep, head_only=request.method == "HEAD")
            return
        if request.method not in allowed:
            # Its body (if any) is not read: the connection closes after the answer.
            page = _plain(HTTPStatus.METHOD_NOT_ALLOWED)
            self._answered += 1
            keep = request.keep_alive and not request.length
            self._reply(page, keep=keep, head_only=request.method == "HEAD", allow=allowed)
            return
        if request.length and request.method != "POST":
            self._reply(_plain(HTTPStatus.BAD_REQUEST), keep=False)  # a GET with a body
            return
        if request.length > self._listener.max_body:
            self._listener._refused(HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
            self._reply(_plain(HTTPStatus.REQUEST_ENTITY_TOO_LARGE), keep=False)
            return
        if request.length:
            self._awaiting = request
            return
        self._answer(request, b"")

    def _answer(self, request: _Request, body: bytes) -> None:
        self._answered += 1
        page = self._listener._page(request, body)
        if isinstance(page, Page):
            self._reply(page, keep=request.keep_alive, head_only=request.method == "HEAD")
            return
        # Answered when its page is ready (or at ANSWER_TIMEOUT); nothing is read meanwhile.
        assert self._transport is not None
        self._working = (request, page)
        self._transport.pause_reading()
        if self._deadline is not None:
            self._deadline.cancel()
        loop = asyncio.get_running_loop()
        self._deadline = loop.call_later(ANSWER_TIMEOUT, self._late)
        self._listener._active(self)  # at work: not the least recently active one
        page.add_done_callback(self._worked)

    def _worked(self, future: asyncio.Future[Page]) -> None:
        working = self._working
        if working is None or working[1] is not future:
            return  # answered 503 already, or the connection is gone
        request, _ = working
        if future.cancelled():
            page = _plain(HTTPStatus.SERVICE_UNAVAILABLE)
        elif (error := future.exception()) is not None:
            log.warning("listener.route_failed", path=request.path, error=type(error).__name__)
            page = _plain(HTTPStatus.INTERNAL_SERVER_ERROR)
        else:
            page = future.result()
        self._resume(request, page)

    def _late(self) -> None:
        self._deadline = None
        working = self._working
        if working is not None:
            self._resume(working[0], _plain(HTTPStatus.SERVICE_UNAVAILABLE))

    def _resume(self, request: _Request, page: Page) -> None:
        """Send a page that was worked on, then read on (the requests that came
        meanwhile are in the buffer)."""
        self._working = None
        if not self._open:
            return
        assert self._transport is not None
        self._reply(page, keep=request.keep_alive)
        if not self._open:
            return
        if not self._unread:  # else `resume_writing` resumes reading
            self._transport.resume_reading()
        self._arm()
        self._listener._active(self)
        if self._buffer:
            self.data_received(b"")

    def _reply(
        self, page: Page, *, keep: bool, head_only: bool = False, allow: tuple[str, ...] = ()
    ) -> None:
        assert self._transport is not None
        self._transport.write(_encode(page, keep_alive=keep, head_only=head_only, allow=allow))
        if not keep:
            self._transport.close()  # after what was written is sent

    # -- the bounds ------------------------------------------------------------------

    def _arm(self) -> None:
        """A new deadline for the next whole request head."""
        if self._deadline is not None:
            self._deadline.cancel()
        loop = asyncio.get_running_loop()
        self._deadline = loop.call_later(self._listener.bounds.timeout, self._expire)

    def _expire(self) -> None:
        self._deadline = None
        # An idle keep-alive connection that was answered is a normal end; one that
        # never sent a whole request (or stopped halfway) is what the timeout is for.
        waited = self._answered == 0 or bool(self._buffer) or self._awaiting is not None
        self.drop("timeout" if waited else None)

    def drop(self, reason: str | None) -> None:
        """Close it now: gently when nothing it was sent is still queued, else abort."""
        transport = self._transport
        if transport is None:
            return
        self._listener._dropped(self, reason)
        if transport.get_write_buffer_size():
            transport.abort()
        else:
            transport.close()


class Listener:
    """Serves `routes` (path -> route: GET and HEAD) and `posts` (path -> POST route,
    bodies of at most `max_body` bytes) on one address within `bounds`.

    `on_drop(reason)` is called for every connection the bounds close: `limit` (to
    make room for a newer one) or `timeout` (no whole request in time);
    `on_refused(status)` for every request refused before its route (413).
    """

    def __init__(
        self,
        routes: Mapping[str, Route],
        *,
        posts: Mapping[str, PostRoute] | None = None,
        max_body: int = 0,
        bounds: Bounds | None = None,
        on_drop: Callable[[str], None] | None = None,
        on_refused: Callable[[int], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._routes = dict(routes)
        self._on_refused = on_refused
        self._posts = dict(posts or {})
        self.max_body = max_body
        self.bounds = bounds or bounds_for()
        self._on_drop = on_drop
        self._clock = clock
        # Insertion order is activity order: the first is the least recently active.
        self._connections: dict[_Connection, None] = {}
        self._server: asyncio.Server | None = None
        self._stopping = False
        self._limited = 0  # closed by the limit since the last warning
        self._warned_at: float | None = None

    @property
    def connections(self) -> int:
        """Connections open now."""
        return len(self._connections)

    async def start(self, host: str, port: int) -> int:
        """Bind and serve; the bound port. OSError when the address cannot be bound."""
        if self._server is not None:
            raise RuntimeError("the listener is already started")
        loop = asyncio.get_running_loop()
        self._stopping = False
        self._server = await loop.create_server(
            lambda: _Connection(self), host, port, backlog=self.bounds.backlog
        )
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        """Stop listening and close every connection; safe to call twice."""
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping = True  # a connection accepted before the close is closed on sight
        server.close()
        for connection in list(self._connections):
            connection.drop(None)
        await server.wait_closed()

    # -- called by the connections ----------------------------------------------------

    def _methods(self, path: str) -> tuple[str, ...]:
        """The methods `path` answers (none: no route serves it)."""
        if path in self._posts:
            return _POST
        return _METHODS if path in self._routes else ()

    def _page(self, request: _Request, body: bytes) -> Page | asyncio.Future[Page]:
        path = request.path
        try:
            post = self._posts.get(path)
            if post is not None:
                return post(request.headers, body)
            return self._routes[path]()  # `_methods` let through only known paths
        except Exception as exc:
            log.warning("listener.route_failed", path=path, error=type(exc).__name__)
            return _plain(HTTPStatus.INTERNAL_SERVER_ERROR)

    def _refused(self, status: int) -> None:
        """A request refused before any route saw it (a body over `max_body`)."""
        if self._on_refused is not None:
            self._on_refused(status)

    def _opened(self, connection: _Connection) -> None:
        self._connections[connection] = None
        if self._stopping:
            connection.drop(None)
        elif len(self._connections) > self.bounds.limit:
            next(iter(self._connections)).drop("limit")

    def _active(self, connection: _Connection) -> None:
        if connection in self._connections:
            del self._connections[connection]
            self._connections[connection] = None

    def _closed(self, connection: _Connection) -> None:
        self._connections.pop(connection, None)

    def _dropped(self, connection: _Connection, reason: str | None) -> None:
        # Out of the count at once: the next connection of this same callback batch
        # must not pick it again.
        self._connections.pop(connection, None)
        if reason is None:
            return
        if self._on_drop is not None:
            self._on_drop(reason)
        if reason == "limit":
            self._limited += 1
            now = self._clock()
            if self._warned_at is None or now - self._warned_at >= WARN_EVERY:
                log.warning(
                    "metrics.connections_limited",
                    limit=self.bounds.limit,
                    closed=self._limited,
                    detail="more connections than the limit: the least recently active closed",
                )
                self._warned_at, self._limited = now, 0
