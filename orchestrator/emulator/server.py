"""A local emulator of the Cloud Recording RESTful API, served over real HTTP (aiohttp).

Tests, the demo, the benchmarks and users without an Agora account run the client
against it. It answers like the reference: the six endpoints at their paths, Basic
auth, the exact content type, error bodies (`{"code": N, "reason": ...}` and the
gateway's `{"message": ...}`), 10 requests per second per App ID, resource expiry,
idle exit, status codes and file lists by mode (the rules live in `state.py`). With
a notification target it sends Agora's NCS notifications of what happens to sessions
(`notices.py` says which, `notify.py` delivers them after the answer).

A control API under `/_emulator/` (no auth, loopback peers only) puts users in
channels, injects faults (`faults.py`) and failovers, moves the clock, changes TTLs,
sets App Certificates and the notification target, and shows what the emulator
received, holds and notified. See docs/emulator.md for its routes.

It must never log request bodies or the Authorization header, and never answer,
log or repr an App Certificate or the NCS secret (routes say only where one is set).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import contextlib
import ipaddress
import json
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import asdict
from typing import Any

import structlog
from aiohttp import web

from orchestrator.contract import ErrorCode
from orchestrator.emulator.config import NOT_SERVED, EmulatorClock, EmulatorConfig
from orchestrator.emulator.faults import FaultConfig, NextFault, known_fields, pick_fault
from orchestrator.emulator.notices import Announcer
from orchestrator.emulator.notify import DeliveryControls, NotificationSender, NotifyTarget
from orchestrator.emulator.state import (
    ROLE_AUDIENCE,
    ROLE_BROADCASTER,
    Answer,
    EmulatorState,
    Settings,
    error,
)

CONTENT_TYPE = "application/json;charset=utf-8"
CONTROL_PREFIX = "/_emulator"
#: Seconds a failover makes a session's sid routes answer 404 unless told otherwise
#: (an emulator choice: Agora documents no number).
FAILOVER_SECONDS = 45.0

NO_ROUTE = Answer(404, {"message": "no Route matched with those values"})
BAD_CREDENTIALS = Answer(401, {"message": "Invalid authentication credentials"})
INVALID_APPID = Answer(400, {"message": "invalid appid"})
RATE_LIMITED = Answer(429, {"message": "API rate limit exceeded"})
LOST = Answer(504, {"message": "The upstream server is timing out"})

log = structlog.get_logger("orchestrator.emulator")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Emulator:
    """The emulator: state, clock, faults, notifications, and the aiohttp application
    serving them.

    Use `running_emulator()` to serve it; its methods are the control API for code
    in the same process (tests), and `/_emulator/...` is the same over HTTP.
    """

    def __init__(self, config: EmulatorConfig | None = None) -> None:
        self.config = config or EmulatorConfig()
        self.clock = EmulatorClock()
        self.state = self._new_state()
        self.faults = FaultConfig()
        self._rng = random.Random(self.config.seed)
        self.next_faults: list[NextFault] = []
        self._released = asyncio.Event()  # set by clear_faults: held answers go out now
        self.received: list[dict[str, Any]] = []
        self._windows: dict[str, collections.deque[float]] = {}
        self.announcer = Announcer()
        self.notifications = NotificationSender(self.config.notify, self._announce)
        self.base_url = ""
        self.app = self._build_app()

    @property
    def settings(self) -> Settings:
        return self.state.settings

    @property
    def control_url(self) -> str:
        return self.base_url + CONTROL_PREFIX

    def _new_state(self) -> EmulatorState:
        # Settings and certificates belong to the configuration: a reset keeps them.
        return EmulatorState(self.config.settings, certificates=self.config.certificates)

    # ------------------------------------------------------------ control (in process)

    def join(self, app_id: str, cname: str, uid: str, role: str = ROLE_BROADCASTER) -> None:
        if role not in (ROLE_BROADCASTER, ROLE_AUDIENCE):
            raise ValueError(f"role must be {ROLE_BROADCASTER!r} or {ROLE_AUDIENCE!r}")
        self.state.join(app_id, cname, uid, role, self.clock.now())
        self._announce()

    def leave(self, app_id: str, cname: str, uid: str) -> None:
        self.state.leave(app_id, cname, uid, self.clock.now())
        self._announce()

    def set_users(self, app_id: str, cname: str, users: dict[str, str]) -> None:
        self.state.set_users(app_id, cname, users, self.clock.now())
        self._announce()

    def advance(self, seconds: float) -> float:
        now = self.clock.advance(seconds)
        self._announce()
        return now

    def abort(self, sid: str) -> bool:
        aborted = self.state.abort(sid, self.clock.now())
        self._announce()
        return aborted

    def failover(
        self, sid: str, seconds: float, *, notify: bool = True, new_uid: str | None = None
    ) -> dict[str, Any] | None:
        """The live session `sid` fails over: its recorder rejoins as `new_uid` (None:
        one derived from the sid) and records on; its sid routes answer 404 for
        `seconds` (emulator clock); NCS tells of it (event 12) when `notify`. Its
        description, or None if it is unknown or ended."""
        now = self.clock.now()
        session = self.state.fail_over(sid, now, seconds, new_uid=new_uid, notify=notify)
        self._announce()
        return None if session is None else session.describe(now)

    def set_notify(self, url: str | None, secret: str = "") -> None:
        """Send NCS notifications to `url`, signed with `secret` (None: send none). What
        happened while none were sent is never told."""
        target = None if url is None else NotifyTarget(url, secret)
        if target is not None and self.notifications.target is None:
            self.state.settle(self.clock.now())
            self.announcer.baseline(self.state.sessions.values())
        self.notifications.configure(target)

    def notified(self, sid: str | None = None) -> list[dict[str, Any]]:
        """Every notification delivery (one per copy): state, attempts, last status."""
        deliveries = self.notifications.deliveries
        return [d.describe() for d in deliveries if sid is None or d.notice.payload.sid == sid]

    def _announce(self) -> None:
        """Queue the notifications of what happened since the last look (when on)."""
        if self.notifications.target is None:
            return
        now = self.clock.now()
        self.state.settle(now)
        uploading = self.settings.uploading_status
        sessions = self.state.sessions.values()
        for notice in self.announcer.announce(sessions, now, uploading_status=uploading):
            self.notifications.send(notice)

    def set_faults(self, faults: FaultConfig) -> None:
        self.faults = faults
        if faults.seed is not None:
            self._rng = random.Random(faults.seed)

    def fail_next(
        self,
        endpoint: str,
        kind: str,
        count: int = 1,
        *,
        status: int = 500,
        seconds: float = 0.0,
        code: int | None = None,
        body: str | None = None,
        content_type: str | None = None,
    ) -> None:
        self.next_faults.append(
            NextFault.from_json(
                {
                    "endpoint": endpoint,
                    "kind": kind,
                    "count": count,
                    "status": status,
                    "seconds": seconds,
                    "code": code,
                    "body": body,
                    "content_type": content_type,
                }
            )
        )

    def clear_faults(self) -> None:
        """No more faults; what `delay` and `hold` keep waiting goes on now."""
        self.faults = FaultConfig()
        self.next_faults.clear()
        self._released.set()
        self._released = asyncio.Event()

    def set_app_certificate(self, certificate: str | None, app_id: str | None = None) -> None:
        """Verify the tokens of later starts with `certificate` (32 hex digits): for
        `app_id`, or for every App ID without one of its own; None removes it. Sessions
        already started keep what their start's token gave them."""
        if app_id is not None and not self.config.serves(app_id):
            raise ValueError(NOT_SERVED)
        self.config.certificates.set(certificate, app_id)

    def clear_app_certificates(self) -> None:
        self.config.certificates.clear()

    def app_certificates(self) -> dict[str, Any]:
        """Where a certificate is set (`default`, `app_ids`), never what it is."""
        return self.config.certificates.describe()

    def sessions(self) -> list[dict[str, Any]]:
        now = self.clock.now()
        self.state.settle(now)
        self._announce()
        return [s.describe(now) for s in self.state.sessions.values()]

    def requests(self, endpoint: str | None = None) -> list[dict[str, Any]]:
        return [r for r in self.received if endpoint is None or r["endpoint"] == endpoint]

    # ------------------------------------------------------------ gateway

    def _authorized(self, header: str | None) -> bool:
        if not header or not header.startswith("Basic "):
            return False
        try:
            decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return False
        customer_id, _, secret = decoded.partition(":")
        return (customer_id, secret) == (self.config.customer_id, self.config.customer_secret)

    def _admit(self, app_id: str, now: float) -> bool:
        """Sliding one-second window of admitted requests per App ID; `now` on the
        monotonic clock, as the daemon's limiter measures (a second is a duration
        here, whatever the wall clock's slew)."""
        window = self._windows.setdefault(app_id, collections.deque())
        while window and now - window[0] >= 1.0:
            window.popleft()
        if len(window) >= self.settings.rate_limit:
            return False
        window.append(now)
        return True

    async def _api(self, request: web.Request, endpoint: str) -> tuple[Answer, Any]:
        """Gateway checks, faults, then the endpoint; returns (answer, parsed body)."""
        app_id = request.match_info["appid"]
        if not self._authorized(request.headers.get("Authorization")):
            return BAD_CREDENTIALS, None
        if not self.config.serves(app_id):
            return INVALID_APPID, None
        if not self._admit(app_id, time.monotonic()):
            return RATE_LIMITED, None
        body: Any = None
        raw = await request.read()
        if request.method == "POST":
            if request.headers.get("Content-Type") != CONTENT_TYPE:
                return error(ErrorCode.BAD_HEADER, f"Content-Type must be {CONTENT_TYPE}"), _parse(
                    raw
                )
            body = _parse(raw)
            if not isinstance(body, dict):
                return error(ErrorCode.BAD_HEADER, "the request body is not a JSON object"), body
        low, high = self.faults.latency
        if high > 0:
            await asyncio.sleep(self._rng.uniform(low, high))
        fault = pick_fault(self.next_faults, self.faults, self._rng, endpoint)
        if fault is not None:
            if fault.kind == "error":
                return Answer(fault.status, {"message": "An unexpected error occurred"}), body
            if fault.kind == "code65":
                return error(
                    ErrorCode.NETWORK_JITTER,
                    "request not completed, retry with the same resource ID",
                ), body
            if fault.kind == "answer":
                if fault.body is not None:
                    raw = fault.body.encode()
                    return Answer(fault.status, {}, raw, fault.content_type), body
                if fault.code is None:
                    return Answer(fault.status, {"message": "injected gateway error"}), body
                return error(fault.code, "injected error", fault.status), body
            if fault.kind == "delay":
                await self._held(fault.seconds)
        answer = self._dispatch(endpoint, request, app_id, body)
        if fault is not None and fault.kind == "hold":
            await self._held(fault.seconds)
        if fault is not None and fault.kind == "lost":
            return LOST, body
        return answer, body

    async def _held(self, seconds: float) -> None:
        """`seconds`, or less when the faults are cleared (the emulator stopping too)."""
        released = self._released
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(released.wait(), seconds)

    def _dispatch(self, endpoint: str, request: web.Request, app_id: str, body: Any) -> Answer:
        now = self.clock.now()
        match = request.match_info
        # Every POST reaching here carries a JSON object (checked in `_api`).
        body = body if body is not None else {}
        state = self.state
        if endpoint == "acquire":
            app = self.config.apps.get(app_id)
            if app is not None and not app.recording_enabled:
                return error(
                    ErrorCode.NO_RECORDING_PERMISSION,
                    "cloud recording is not enabled for this App ID",
                )
            return state.acquire(app_id, body, now)
        resource_id, mode = match["resourceid"], match["mode"]
        if endpoint == "start":
            return state.start(app_id, resource_id, mode, body, now)
        sid = match["sid"]
        if endpoint == "query":
            return state.query(app_id, resource_id, sid, mode, now)
        if endpoint == "update":
            return state.update(app_id, resource_id, sid, mode, body, now)
        if endpoint == "updateLayout":
            return state.update_layout(app_id, resource_id, sid, mode, body, now)
        return state.stop(app_id, resource_id, sid, mode, body, now)

    def _endpoint_handler(self, endpoint: str) -> Handler:
        async def handle(request: web.Request) -> web.StreamResponse:
            arrived = self.clock.now()
            answer, body = await self._api(request, endpoint)
            self._record(request, endpoint, body, answer, arrived)
            response = _respond(answer)
            if self.notifications.target is not None:
                # The answer leaves before NCS tells of what the call did (a caller
                # gone meanwhile changes nothing: Agora would tell all the same).
                with suppress(ConnectionError):
                    await response.prepare(request)
                    await response.write_eof()
                self._announce()
            return response

        return handle

    def _record(
        self,
        request: web.Request,
        endpoint: str | None,
        body: Any,
        answer: Answer,
        arrived: float,
    ) -> None:
        headers = {k: v for k, v in request.headers.items() if k.lower() != "authorization"}
        self.received.append(
            {
                "time": arrived,  # emulator clock when the request arrived
                "endpoint": endpoint,
                "method": request.method,
                "path": request.path,
                "headers": headers,
                "body": body,
                "status": answer.status,
                "code": answer.code,
            }
        )
        log.info(
            "emulator.request",
            endpoint=endpoint,
            method=request.method,
            path=request.path,
            status=answer.status,
            code=answer.code,
        )

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith(CONTROL_PREFIX + "/") or request.path == CONTROL_PREFIX:
            if not is_loopback(request.remote):
                return web.json_response({"message": "control API is loopback only"}, status=403)
            if request.match_info.http_exception is not None:
                return web.json_response({"message": "no such control route"}, status=404)
            try:
                return await handler(request)
            except (ValueError, TypeError, KeyError) as exc:
                return web.json_response({"message": str(exc)}, status=400)
        if request.match_info.http_exception is not None:
            await request.read()
            self._record(request, None, None, NO_ROUTE, self.clock.now())
            return _respond(NO_ROUTE)
        return await handler(request)

    # ------------------------------------------------------------ control (HTTP)

    async def _c_requests(self, request: web.Request) -> web.StreamResponse:
        if request.method == "DELETE":
            self.received.clear()
            return web.json_response({"requests": []})
        return web.json_response({"requests": self.requests(request.query.get("endpoint"))})

    async def _c_sessions(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({"sessions": self.sessions()})

    async def _c_abort(self, request: web.Request) -> web.StreamResponse:
        if not self.abort(request.match_info["sid"]):
            return web.json_response({"message": "no live session with that sid"}, status=404)
        return web.json_response({"aborted": request.match_info["sid"]})

    async def _c_channel(self, request: web.Request) -> web.StreamResponse:
        action = request.match_info["action"]
        data = await _control_body(request)
        app_id, cname = str(data["app_id"]), str(data["cname"])
        if action == "join":
            self.join(app_id, cname, str(data["uid"]), str(data.get("role", ROLE_BROADCASTER)))
        elif action == "leave":
            self.leave(app_id, cname, str(data["uid"]))
        elif action == "users":
            users: dict[str, str] = {}
            for user in data["users"]:
                if isinstance(user, dict):
                    users[str(user["uid"])] = str(user.get("role", ROLE_BROADCASTER))
                else:
                    users[str(user)] = ROLE_BROADCASTER
            if any(role not in (ROLE_BROADCASTER, ROLE_AUDIENCE) for role in users.values()):
                raise ValueError("role must be broadcaster or audience")
            self.set_users(app_id, cname, users)
        else:
            return web.json_response({"message": "no such control route"}, status=404)
        users_now = self.state.channels.get((app_id, cname), {})
        return web.json_response({"app_id": app_id, "cname": cname, "users": users_now})

    async def _c_channels(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(
            {
                "channels": [
                    {"app_id": app, "cname": cname, "users": users}
                    for (app, cname), users in self.state.channels.items()
                ]
            }
        )

    async def _c_faults(self, request: web.Request) -> web.StreamResponse:
        if request.method == "DELETE":
            self.clear_faults()
        elif request.method == "PUT":
            data = await _control_body(request)
            if "latency" in data:
                data["latency"] = tuple(data["latency"])
            if "endpoints" in data:
                data["endpoints"] = tuple(data["endpoints"])
            self.set_faults(FaultConfig.from_json(data))
        return web.json_response(self._faults_json())

    async def _c_next_fault(self, request: web.Request) -> web.StreamResponse:
        self.next_faults.append(NextFault.from_json(await _control_body(request)))
        return web.json_response(self._faults_json())

    def _faults_json(self) -> dict[str, Any]:
        # Every field of the settings, as PUT takes them back (tuples answer as arrays).
        return {**asdict(self.faults), "next": [vars(n) for n in self.next_faults]}

    async def _c_clock(self, request: web.Request) -> web.StreamResponse:
        if request.method == "POST":
            data = await _control_body(request)
            seconds = data["seconds"]
            if isinstance(seconds, bool) or not isinstance(seconds, int | float):
                raise ValueError("seconds must be a number")
            self.advance(float(seconds))
        return web.json_response({"now": self.clock.now(), "offset": self.clock.offset})

    async def _c_settings(self, request: web.Request) -> web.StreamResponse:
        if request.method == "PUT":
            self.settings.update(await _control_body(request))
        return web.json_response(vars(self.settings))

    async def _c_certificates(self, request: web.Request) -> web.StreamResponse:
        if request.method == "DELETE":
            self.clear_app_certificates()
        elif request.method == "PUT":
            data = known_fields(
                ("certificate", "app_id"), await _control_body(request), "certificate fields"
            )
            certificate, app_id = data["certificate"], data.get("app_id")
            if certificate is not None and not isinstance(certificate, str):
                raise ValueError("certificate must be a string or null")
            if app_id is not None and not isinstance(app_id, str):
                raise ValueError("app_id must be a string or left out")
            self.set_app_certificate(certificate, app_id)
        return web.json_response(self.app_certificates())

    async def _c_reset(self, request: web.Request) -> web.StreamResponse:
        self.state = self._new_state()
        self.received.clear()
        self.clear_faults()
        self._windows.clear()
        self.announcer.forget()
        self.notifications.clear()  # the target and delivery controls are configuration
        return web.json_response({"reset": True})

    async def _c_failover(self, request: web.Request) -> web.StreamResponse:
        data = await _control_body(request) if request.can_read_body else {}
        known_fields(("seconds", "notify", "new_uid"), data, "failover fields")
        seconds, notify = data.get("seconds", FAILOVER_SECONDS), data.get("notify", True)
        new_uid = data.get("new_uid")
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
            raise ValueError("seconds must be a number >= 0")
        if not isinstance(notify, bool):
            raise ValueError("notify must be a boolean")
        if new_uid is not None and not isinstance(new_uid, str):
            raise ValueError("new_uid must be a string of digits or left out")
        sid = request.match_info["sid"]
        described = self.failover(sid, float(seconds), notify=notify, new_uid=new_uid)
        if described is None:
            return web.json_response({"message": "no live session with that sid"}, status=404)
        return web.json_response(described)

    async def _c_notify(self, request: web.Request) -> web.StreamResponse:
        if request.method == "DELETE":
            self.set_notify(None)
        elif request.method == "PUT":
            data = await _control_json(request)
            data = {"url": None} if data is None else data
            if not isinstance(data, dict) or "url" not in data:
                raise ValueError('the body must be {"url": ..., "secret": ...}, or null')
            known_fields(("url", "secret"), data, "notify fields")
            url, secret = data["url"], data.get("secret", "")
            if url is not None and not isinstance(url, str):
                raise ValueError("url must be a string or null")
            self.set_notify(url, secret)
        return web.json_response(self.notifications.describe())

    async def _c_delivery(self, request: web.Request) -> web.StreamResponse:
        if request.method == "DELETE":
            self.notifications.controls = DeliveryControls()
        elif request.method == "PUT":
            data = await _control_body(request)
            self.notifications.controls = DeliveryControls.from_json(data)
        return web.json_response(self.notifications.controls.describe())

    async def _c_notifications(self, request: web.Request) -> web.StreamResponse:
        if request.method == "DELETE":
            self.notifications.clear()
        return web.json_response({"notifications": self.notified(request.query.get("sid"))})

    def _build_app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        base = "/v1/apps/{appid}/cloud_recording"
        rid = base + "/resourceid/{resourceid}"
        routes = [
            web.post(base + "/acquire", self._endpoint_handler("acquire")),
            web.post(rid + "/mode/{mode}/start", self._endpoint_handler("start")),
            web.post(rid + "/sid/{sid}/mode/{mode}/update", self._endpoint_handler("update")),
            web.post(
                rid + "/sid/{sid}/mode/{mode}/updateLayout",
                self._endpoint_handler("updateLayout"),
            ),
            web.get(
                rid + "/sid/{sid}/mode/{mode}/query",
                self._endpoint_handler("query"),
                allow_head=False,
            ),
            web.post(rid + "/sid/{sid}/mode/{mode}/stop", self._endpoint_handler("stop")),
        ]
        c = CONTROL_PREFIX
        routes += [
            web.get(c + "/requests", self._c_requests, allow_head=False),
            web.delete(c + "/requests", self._c_requests),
            web.get(c + "/sessions", self._c_sessions, allow_head=False),
            web.post(c + "/sessions/{sid}/abort", self._c_abort),
            web.post(c + "/sessions/{sid}/failover", self._c_failover),
            web.get(c + "/channels", self._c_channels, allow_head=False),
            web.post(c + "/channel/{action}", self._c_channel),
            web.put(c + "/channel/{action}", self._c_channel),
            web.get(c + "/faults", self._c_faults, allow_head=False),
            web.put(c + "/faults", self._c_faults),
            web.delete(c + "/faults", self._c_faults),
            web.post(c + "/faults/next", self._c_next_fault),
            web.get(c + "/clock", self._c_clock, allow_head=False),
            web.post(c + "/clock/advance", self._c_clock),
            web.get(c + "/settings", self._c_settings, allow_head=False),
            web.put(c + "/settings", self._c_settings),
            web.get(c + "/certificates", self._c_certificates, allow_head=False),
            web.put(c + "/certificates", self._c_certificates),
            web.delete(c + "/certificates", self._c_certificates),
            web.post(c + "/reset", self._c_reset),
        ]
        for path, handler in (
            ("/notify", self._c_notify),
            ("/notify/delivery", self._c_delivery),
            ("/notifications", self._c_notifications),
        ):
            routes.append(web.get(c + path, handler, allow_head=False))
            routes.append(web.delete(c + path, handler))
            if handler != self._c_notifications:
                routes.append(web.put(c + path, handler))
        app.add_routes(routes)
        return app


def _parse(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return raw.decode("utf-8", "replace")


async def _control_json(request: web.Request) -> Any:
    try:
        return await request.json()
    except ValueError:
        raise ValueError("the control request body must be JSON") from None


async def _control_body(request: web.Request) -> dict[str, Any]:
    data = await _control_json(request)
    if not isinstance(data, dict):
        raise ValueError("the control request body must be a JSON object")
    return data


def _respond(answer: Answer) -> web.Response:
    if answer.raw is not None:
        response = web.Response(body=answer.raw, status=answer.status)
        # Exactly the injected type, or none at all (aiohttp would add its default).
        response.headers.popall("Content-Type", None)
        if answer.content_type is not None:
            response.headers["Content-Type"] = answer.content_type
        return response
    return web.json_response(answer.body, status=answer.status)


def is_loopback(remote: str | None) -> bool:
    if remote is None:
        return False
    try:
        return ipaddress.ip_address(remote).is_loopback
    except ValueError:
        return False


def _url(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


@asynccontextmanager
async def running_emulator(
    config: EmulatorConfig | None = None, *, host: str = "127.0.0.1", port: int = 0
) -> AsyncIterator[Emulator]:
    """Serve an emulator on `host:port` (0 picks a free port) for the duration of the block."""
    emulator = Emulator(config)
    runner = web.AppRunner(emulator.app, access_log=None, handle_signals=False)
    await runner.setup()
    # The notifications' one task lives exactly as long as the server.
    sender = asyncio.create_task(emulator.notifications.run(), name="emulator-notifications")
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound = runner.addresses[0]
        emulator.base_url = _url(host, int(bound[1]))
        yield emulator
    finally:
        sender.cancel()
        with suppress(asyncio.CancelledError):
            await sender
        emulator.clear_faults()  # what `delay` or `hold` keeps goes now: no wait to stop
        await runner.cleanup()
