"""A local emulator of the Cloud Recording RESTful API, served over real HTTP (aiohttp).

Tests, the demo, the benchmarks and users without an Agora account run the client
against it. It answers like the reference: the six endpoints at their paths, Basic
auth, the exact content type, error bodies (`{"code": N, "reason": ...}` and the
gateway's `{"message": ...}`), 10 requests per second per App ID, resource expiry,
idle exit, status codes and file lists by mode (the rules live in `state.py`).

A control API under `/_emulator/` (no auth, loopback peers only) puts users in
channels, injects faults, moves the clock, changes TTLs, sets App Certificates and
shows what the emulator received and holds. See docs/emulator.md for its routes.

It must never log request bodies or the Authorization header, and never answer,
log or repr an App Certificate (its routes say only where one is set).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import ipaddress
import json
import random
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import structlog
from aiohttp import web

from orchestrator.contract import ErrorCode
from orchestrator.emulator.state import (
    ROLE_AUDIENCE,
    ROLE_BROADCASTER,
    Answer,
    AppCertificates,
    EmulatorState,
    Settings,
    error,
)

CONTENT_TYPE = "application/json;charset=utf-8"
CONTROL_PREFIX = "/_emulator"
ENDPOINTS = ("acquire", "start", "update", "updateLayout", "query", "stop")
FAULT_KINDS = ("lost", "error", "code65", "delay", "hold", "answer")
_APP_ID = re.compile(r"[0-9a-f]{32}")

NO_ROUTE = Answer(404, {"message": "no Route matched with those values"})
BAD_CREDENTIALS = Answer(401, {"message": "Invalid authentication credentials"})
INVALID_APPID = Answer(400, {"message": "invalid appid"})
RATE_LIMITED = Answer(429, {"message": "API rate limit exceeded"})
LOST = Answer(504, {"message": "The upstream server is timing out"})
#: Never names the App ID: it may be a certificate typed in the wrong place.
_NOT_SERVED = "a certificate is given for an App ID this emulator does not serve"

log = structlog.get_logger("orchestrator.emulator")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class AppConfig:
    """One App ID the emulator knows. `recording_enabled=False` answers acquire with 62."""

    recording_enabled: bool = True


@dataclass
class EmulatorConfig:
    """Who may call the emulator. With no `apps`, any 32-hex-digit App ID is accepted.
    `certificates`: the App Certificates `start` tokens are verified with (none: tokens
    are not read); ValueError if one is for an App ID it does not serve."""

    customer_id: str = "emulator"
    customer_secret: str = "emulator-secret"  # noqa: S105  # a local test credential, not a secret
    apps: dict[str, AppConfig] = field(default_factory=dict)
    settings: Settings = field(default_factory=Settings)
    seed: int | None = None
    certificates: AppCertificates = field(default_factory=AppCertificates)

    def __post_init__(self) -> None:
        if not all(self.serves(app_id) for app_id in self.certificates.by_app):
            raise ValueError(_NOT_SERVED)

    def serves(self, app_id: str) -> bool:
        """Whether requests for `app_id` reach the endpoints (else: invalid appid)."""
        if self.apps:
            return app_id in self.apps
        return bool(_APP_ID.fullmatch(app_id))


class EmulatorClock:
    """Real time plus an offset the control API can move forward (never backward)."""

    def __init__(self) -> None:
        self._wall0 = time.time()
        self._mono0 = time.monotonic()
        self.offset = 0.0

    def now(self) -> float:
        return self._wall0 + (time.monotonic() - self._mono0) + self.offset

    def advance(self, seconds: float) -> float:
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        self.offset += seconds
        return self.now()


def _known_fields(fields: Iterable[str], data: dict[str, Any], what: str) -> dict[str, Any]:
    """`data`, if it names only `fields`; ValueError naming the others (never a value)."""
    unknown = set(data) - set(fields)
    if unknown:
        raise ValueError(f"unknown {what}: {sorted(unknown)}")
    return data


@dataclass
class FaultConfig:
    """Random faults, deterministic for a given `seed` and request order.

    error_rate: fraction answered `error_status` (the action does not happen);
    code65_rate: fraction answered code 65 (the action does not happen);
    lost_rate: fraction whose action happens but whose answer is a 504;
    latency: (min, max) seconds added before every answer.
    """

    error_rate: float = 0.0
    error_status: int = 500
    code65_rate: float = 0.0
    lost_rate: float = 0.0
    latency: tuple[float, float] = (0.0, 0.0)
    seed: int | None = None
    endpoints: tuple[str, ...] = ENDPOINTS

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FaultConfig:
        config = cls(**_known_fields(cls.__dataclass_fields__, data, "fault settings"))
        for rate in (config.error_rate, config.code65_rate, config.lost_rate):
            if not 0.0 <= float(rate) <= 1.0:
                raise ValueError("rates must be between 0 and 1")
        low, high = config.latency
        if not 0 <= low <= high:
            raise ValueError("latency must be [min, max] with 0 <= min <= max")
        if not 500 <= int(config.error_status) <= 599:
            raise ValueError("error_status must be a 5xx status")
        config.latency = (float(low), float(high))
        config.endpoints = tuple(config.endpoints)
        if not set(config.endpoints) <= set(ENDPOINTS):
            raise ValueError(f"endpoints must be among {ENDPOINTS}")
        return config


@dataclass
class NextFault:
    """Fail the next `count` calls to `endpoint` ("*" for any) with `kind`.

    kind "lost": the action happens, the answer is 504; "error": answered `status`
    (default 500) without acting; "code65": answered code 65 without acting;
    "delay": the action happens after `seconds` (to make a client time out);
    "hold": the action happens at once, the answer is held `seconds` (to kill a
    client between an action taking effect and its answer arriving);
    "answer": answered `status` with `{"code": code, "reason": ...}` (or, without a
    code, the gateway's `{"message": ...}`) without acting: any error of the
    reference, placed exactly; or, with `body`, answered `status` (200-599) with
    exactly that text and `content_type` (none if not given): an answer that is not
    Agora's, such as a proxy's `404 <html>nginx</html>` or an empty 404.
    """

    endpoint: str
    kind: str
    count: int = 1
    status: int = 500
    seconds: float = 0.0
    code: int | None = None
    body: str | None = None
    content_type: str | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> NextFault:
        fault = cls(**_known_fields(cls.__dataclass_fields__, data, "fault fields"))
        if fault.endpoint != "*" and fault.endpoint not in ENDPOINTS:
            raise ValueError(f"endpoint must be '*' or one of {ENDPOINTS}")
        if fault.kind not in FAULT_KINDS:
            raise ValueError(f"kind must be one of {FAULT_KINDS}")
        if fault.count < 1:
            raise ValueError("count must be at least 1")
        if fault.body is not None or fault.content_type is not None:
            if fault.kind != "answer":
                raise ValueError("body and content_type belong to an answer fault")
            if fault.code is not None:
                raise ValueError("an answer with a body carries no code: the body is sent as is")
            if not isinstance(fault.body, str):
                raise ValueError("body must be a string (the answer's exact text)")
            if fault.content_type is not None and (
                not isinstance(fault.content_type, str) or not fault.content_type.isprintable()
            ):
                raise ValueError("content_type must be a printable string")
            if not 200 <= int(fault.status) <= 599:
                raise ValueError("an answer with a body needs a status of 200-599")
        elif fault.kind == "answer" and not 400 <= int(fault.status) <= 599:
            raise ValueError("an answer fault needs an error status (400-599)")
        return fault


class Emulator:
    """The emulator: state, clock, faults, and the aiohttp application serving them.

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
        self.received: list[dict[str, Any]] = []
        self._windows: dict[str, collections.deque[float]] = {}
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

    def leave(self, app_id: str, cname: str, uid: str) -> None:
        self.state.leave(app_id, cname, uid, self.clock.now())

    def set_users(self, app_id: str, cname: str, users: dict[str, str]) -> None:
        self.state.set_users(app_id, cname, users, self.clock.now())

    def advance(self, seconds: float) -> float:
        return self.clock.advance(seconds)

    def abort(self, sid: str) -> bool:
        return self.state.abort(sid, self.clock.now())

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
        self.faults = FaultConfig()
        self.next_faults.clear()

    def set_app_certificate(self, certificate: str | None, app_id: str | None = None) -> None:
        """Verify the tokens of later starts with `certificate` (32 hex digits): for
        `app_id`, or for every App ID without one of its own; None removes it. Sessions
        already started keep what their start's token gave them."""
        if app_id is not None and not self.config.serves(app_id):
            raise ValueError(_NOT_SERVED)
        self.config.certificates.set(certificate, app_id)

    def clear_app_certificates(self) -> None:
        self.config.certificates.clear()

    def app_certificates(self) -> dict[str, Any]:
        """Where a certificate is set (`default`, `app_ids`), never what it is."""
        return self.config.certificates.describe()

    def sessions(self) -> list[dict[str, Any]]:
        now = self.clock.now()
        self.state.settle(now)
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
        """Sliding one-second window of admitted requests per App ID."""
        window = self._windows.setdefault(app_id, collections.deque())
        while window and now - window[0] >= 1.0:
            window.popleft()
        if len(window) >= self.settings.rate_limit:
            return False
        window.append(now)
        return True

    def _pick_fault(self, endpoint: str) -> NextFault | None:
        for fault in self.next_faults:
            if fault.endpoint in ("*", endpoint):
                fault.count -= 1
                if fault.count == 0:
                    self.next_faults.remove(fault)
                return fault
        faults = self.faults
        if endpoint not in faults.endpoints:
            return None
        # Always draw all three, so one request consumes the same randomness whatever happens.
        draws = (self._rng.random(), self._rng.random(), self._rng.random())
        if draws[0] < faults.error_rate:
            return NextFault(endpoint, "error", status=faults.error_status)
        if draws[1] < faults.code65_rate:
            return NextFault(endpoint, "code65")
        if draws[2] < faults.lost_rate:
            return NextFault(endpoint, "lost")
        return None

    async def _api(self, request: web.Request, endpoint: str) -> tuple[Answer, Any]:
        """Gateway checks, faults, then the endpoint; returns (answer, parsed body)."""
        app_id = request.match_info["appid"]
        if not self._authorized(request.headers.get("Authorization")):
            return BAD_CREDENTIALS, None
        if not self.config.serves(app_id):
            return INVALID_APPID, None
        if not self._admit(app_id, self.clock.now()):
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
        fault = self._pick_fault(endpoint)
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
                await asyncio.sleep(fault.seconds)
        answer = self._dispatch(endpoint, request, app_id, body)
        if fault is not None and fault.kind == "hold":
            await asyncio.sleep(fault.seconds)
        if fault is not None and fault.kind == "lost":
            return LOST, body
        return answer, body

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
            return _respond(answer)

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
            data = _known_fields(
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
        return web.json_response({"reset": True})

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
        app.add_routes(routes)
        return app


def _parse(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return raw.decode("utf-8", "replace")


async def _control_body(request: web.Request) -> dict[str, Any]:
    try:
        data = await request.json()
    except ValueError:
        raise ValueError("the control request body must be JSON") from None
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
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound = runner.addresses[0]
        emulator.base_url = _url(host, int(bound[1]))
        yield emulator
    finally:
        await runner.cleanup()
