"""The reliability rig: the emulator and the daemon as processes, on loopback.

One `Rig` per test: a temp directory with a config, a manifests directory, a state
directory and one log file per process it starts (each daemon incarnation writes
its own JSON log, `daemon-N.log`). Everything it starts is ended by its pid at
`close()`, whatever happened; every wait is bounded in time.

The emulator's clock is real time (this suite never moves it), so its recorded
`started_at`/`ended_at` and request times are directly comparable with the
windows written into the manifests and with `time.time()` here.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import random
import shutil
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from orchestrator.reconcile.reconciler import untracked
from orchestrator.state import SessionRecord, connect_store
from tests.reliability.invariants import FOREVER, Desired, EmuSession, Evidence

PYTHON = sys.executable
KEEP_FLAG = "ORCHESTRATOR_RELIABILITY_KEEP"  # a directory: each rig's files are copied there

# Placeholder secrets, distinctive enough that finding one anywhere is a real leak.
CUSTOMER_ID = "rel-customer-5c1d0e"
CUSTOMER_SECRET = "rel-customer-secret-9a7e41"
SECRET_ENV = {
    "REL_CUSTOMER_ID": CUSTOMER_ID,
    "REL_CUSTOMER_SECRET": CUSTOMER_SECRET,
    "REL_TOKEN": "rel-token-value-3f88b2",
    "REL_S3_KEY": "rel-s3-access-6d02c7",
    "REL_S3_SECRET": "rel-s3-secret-b81f5e",
}
# What an Authorization header would carry: a leak of it is a leak of both.
BASIC_AUTH = base64.b64encode(f"{CUSTOMER_ID}:{CUSTOMER_SECRET}".encode()).decode()
SECRET_VALUES = (*SECRET_ENV.values(), BASIC_AUTH)

APP_IDS = tuple(f"{0x5E1AB0 + i:032x}" for i in range(8))
LISTENER_UID = "9000"  # the broadcaster every test channel holds, so nothing idles out
MUTATING = ("acquire", "start", "update", "updateLayout", "stop")

# Loopback only: never a proxy from the environment.
_HTTP_TIMEOUT = httpx.Timeout(10.0)


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")


def event_time(event: dict[str, Any]) -> float:
    stamp = str(event.get("timestamp", "")).replace("Z", "+00:00")
    return datetime.fromisoformat(stamp).timestamp()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def windows_schedule(pairs: list[tuple[float, float]]) -> str:
    inner = ", ".join(f"{{start: '{iso(a)}', end: '{iso(b)}'}}" for a, b in pairs)
    return f"{{windows: [{inner}]}}"


def recording_manifest(
    name: str,
    app: str,
    channel: str,
    uid: int,
    schedule: str,
    *,
    max_idle: int = 300,
    layout: str = "adaptive",
) -> str:
    """A valid mix-mode manifest whose secrets are all references."""
    return (
        f"name: {name}\n"
        f"app: {app}\n"
        f"channel: {channel}\n"
        f"uid: {uid}\n"
        "mode: mix\n"
        f"schedule: {schedule}\n"
        "token: {env: REL_TOKEN}\n"
        "recording:\n"
        "  channelType: live\n"
        "  streams: audio+video\n"
        f"  maxIdleTime: {max_idle}\n"
        "  subscribe: {audio: [7, 8]}\n"
        "transcoding: {width: 640, height: 360, fps: 15, bitrate: 500}\n"
        f"layout: {{type: {layout}, background: '#000000'}}\n"
        "storage:\n"
        "  vendor: aws-s3\n"
        "  region: us-east-1\n"
        "  bucket: reliability\n"
        "  accessKey: {env: REL_S3_KEY}\n"
        "  secretKey: {env: REL_S3_SECRET}\n"
        "  fileNamePrefix: [rel]\n"
    )


@dataclass(frozen=True)
class Planned:
    desired: Desired
    filename: str
    text: str


def workload(
    rig: Rig,
    rng: random.Random,
    count: int,
    *,
    prefix: str,
    t0: float,
    first_open: tuple[float, float],
    length: tuple[float, float],
    always_every: int = 10,
    max_idle: int = 300,
) -> list[Planned]:
    """`count` recordings spread over the rig's App IDs: every `always_every`-th is
    always on, the others have one explicit window opening `first_open` seconds after
    `t0` (a negative start: already open) and lasting `length` seconds. Each has its
    own channel; files hold one to three documents."""
    profiles = sorted(rig.apps)
    planned: list[Planned] = []
    for i in range(count):
        app = profiles[i % len(profiles)]
        name, channel, uid = f"{prefix}-{i:03d}", f"{prefix}-room-{i:03d}", 10_000 + i
        if always_every and i % always_every == 0:
            schedule, windows = "always", ((t0 - 3600.0, FOREVER),)
        else:
            start = t0 + rng.uniform(*first_open)
            end = start + rng.uniform(*length)
            schedule, windows = windows_schedule([(start, end)]), ((start, end),)
        text = recording_manifest(name, app, channel, uid, schedule, max_idle=max_idle)
        desired = Desired(name, rig.apps[app], channel, uid, windows)
        planned.append(Planned(desired, f"{prefix}-{i // 3:03d}.yaml", text))
    return planned


def write_workload(rig: Rig, planned: list[Planned]) -> None:
    files: dict[str, list[str]] = {}
    for p in planned:
        files.setdefault(p.filename, []).append(p.text)
    for filename, documents in files.items():
        rig.write_manifest(filename, "---\n".join(documents))


class LogFile:
    """A JSON-lines log written by a child, read incrementally."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._partial = b""
        self._events: list[dict[str, Any]] = []

    def events(self) -> list[dict[str, Any]]:
        if self.path.exists():
            with self.path.open("rb") as handle:
                handle.seek(self._offset)
                data = handle.read()
                self._offset = handle.tell()
            lines = (self._partial + data).split(b"\n")
            self._partial = lines.pop()
            for line in lines:
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                if isinstance(event, dict):
                    self._events.append(event)
        return self._events

    def named(self, name: str, **match: Any) -> list[dict[str, Any]]:
        return [
            e
            for e in self.events()
            if e.get("event") == name and all(e.get(k) == v for k, v in match.items())
        ]


@dataclass
class Completed:
    code: int
    stdout: str
    stderr: str


@dataclass
class DaemonProcess:
    """One incarnation of `orchestrator run`."""

    number: int
    process: asyncio.subprocess.Process
    log: LogFile
    stdout: Path
    launched: float
    ready_at: float | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def alive(self) -> bool:
        return self.process.returncode is None


def owned(daemon: DaemonProcess) -> set[str]:
    """The App IDs a daemon (a replica on PostgreSQL) owns now, from its ownership
    events."""
    mine: set[str] = set()
    for e in daemon.log.events():
        if e.get("event") == "ownership.gained":
            mine |= set(e["app_ids"])
        elif e.get("event") == "ownership.lost":
            mine -= set(e["app_ids"])
        elif e.get("event") == "ownership.released":
            mine.discard(e["app_id"])
    return mine


@dataclass
class Rig:
    """A temp dir, one emulator process, daemon incarnations, CLI runs."""

    root: Path
    apps: dict[str, str] = field(default_factory=dict)  # profile name -> App ID
    base_url: str = ""
    daemons: list[DaemonProcess] = field(default_factory=list)
    outputs: list[tuple[str, str]] = field(default_factory=list)  # CLI outputs kept
    _children: list[asyncio.subprocess.Process] = field(default_factory=list)
    _http: httpx.AsyncClient | None = None
    metrics_port: int | None = None
    # A PostgreSQL store shared by replicas (None: SQLite in ./state).
    state_url: str | None = None

    # -- paths ----------------------------------------------------------------------

    @property
    def manifests(self) -> Path:
        return self.root / "recordings.d"

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def state_db(self) -> Path:
        return self.root / "state" / "state.db"

    @property
    def daemon(self) -> DaemonProcess:
        return self.daemons[-1]

    def env(self) -> dict[str, str]:
        """The children's environment: no ORCHESTRATOR_* (the suite's own flags are
        ORCHESTRATOR_RELIABILITY_*, which the config loader would take as keys), no
        systemd variables, the placeholder secrets."""
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("ORCHESTRATOR_", "NOTIFY_", "WATCHDOG_", "LISTEN_"))
            and k not in ("CREDENTIALS_DIRECTORY", "STATE_DIRECTORY")
        }
        env.update(SECRET_ENV)
        return env

    # -- processes ------------------------------------------------------------------

    async def _spawn(
        self, args: list[str], *, stdout: Path, stderr: Path, env: dict[str, str] | None = None
    ) -> asyncio.subprocess.Process:
        with stdout.open("ab") as out, stderr.open("ab") as err:
            process = await asyncio.create_subprocess_exec(
                *args,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                env=self.env() if env is None else env,
                cwd=self.root,
            )
        self._children.append(process)
        return process

    async def start_emulator(self, apps: int = 1, *, seed: int = 7) -> None:
        self.apps = {f"app{i}": APP_IDS[i] for i in range(apps)}
        env = self.env()
        env["ORCHESTRATOR_EMULATOR_CUSTOMER_ID"] = CUSTOMER_ID
        env["ORCHESTRATOR_EMULATOR_CUSTOMER_SECRET"] = CUSTOMER_SECRET
        args = [PYTHON, "-m", "orchestrator", "emulator", "--port", "0", "--seed", str(seed)]
        args += ["--log-level", "warning"]
        for app_id in self.apps.values():
            args += ["--app", app_id]
        out = self.root / "emulator.out"
        process = await self._spawn(args, stdout=out, stderr=self.root / "emulator.log", env=env)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and process.returncode is None:
            text = out.read_text(encoding="utf-8", errors="replace") if out.exists() else ""
            words = [w for w in text.split() if w.startswith("http://127.0.0.1:")]
            if words:
                self.base_url = words[0]
                break
            await asyncio.sleep(0.05)
        if not self.base_url:
            raise AssertionError("the emulator did not start: " + self.read("emulator.log"))
        self._http = httpx.AsyncClient(timeout=_HTTP_TIMEOUT, trust_env=False)

    def write_config(
        self,
        *,
        resync: str = "5s",
        backoff: tuple[str, str] = ("1s", "5s"),
        metrics: bool = False,
        watch_interval: str = "300ms",
        drain: str = "5s",
        claim_interval: str = "2s",
        log_level: str = "info",
    ) -> None:
        """`log_level: debug` logs every successful `query` call too (they are debug
        lines), for tests that count each replica's calls from its log."""
        lines = ["apps:"]
        for name, app_id in self.apps.items():
            lines += [
                f"  {name}:",
                f"    appId: {app_id}",
                "    customerId: {env: REL_CUSTOMER_ID}",
                "    customerSecret: {env: REL_CUSTOMER_SECRET}",
                f"    baseUrl: {self.base_url}",
            ]
        if metrics and self.metrics_port is None:
            self.metrics_port = free_port()
        address = f"'127.0.0.1:{self.metrics_port}'" if metrics else "null"
        state = f"{{url: '{self.state_url}'}}" if self.state_url else "{dir: ./state}"
        lines += [
            f"state: {state}",
            f"replica: {{claimInterval: {claim_interval}}}",
            f"manifests: {{dir: ./recordings.d, watch: true, watchInterval: {watch_interval}}}",
            f"logging: {{level: {log_level}, format: json}}",
            f"metrics: {{address: {address}}}",
            "reconcile:",
            f"  resyncInterval: {resync}",
            f"  restartBackoff: {{initial: {backoff[0]}, max: {backoff[1]}}}",
            f"shutdown: {{drainTimeout: {drain}}}",
        ]
        self.manifests.mkdir(exist_ok=True)
        self.config.write_text("\n".join(lines) + "\n", encoding="utf-8")

    async def start_daemon(
        self, *, ready: bool = True, within: float = 90, wrapper: tuple[str, ...] = ()
    ) -> DaemonProcess:
        number = len(self.daemons)
        log = LogFile(self.root / f"daemon-{number}.log")
        stdout = self.root / f"daemon-{number}.out"
        args = [*wrapper, PYTHON, "-m", "orchestrator", "run", "--config", str(self.config)]
        launched = time.time()
        process = await self._spawn(args, stdout=stdout, stderr=log.path)
        daemon = DaemonProcess(number, process, log, stdout, launched)
        self.daemons.append(daemon)
        if ready:
            await self.wait_ready(daemon, within=within)
        return daemon

    async def wait_ready(self, daemon: DaemonProcess, *, within: float = 90) -> float:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            found = daemon.log.named("daemon.ready")
            if found:
                daemon.ready_at = event_time(found[0])
                return daemon.ready_at
            if not daemon.alive:
                break
            await asyncio.sleep(0.05)
        raise AssertionError(
            f"daemon {daemon.number} not ready within {within}s "
            f"(exit {daemon.process.returncode}):\n" + self.tail(daemon)
        )

    def tail(self, daemon: DaemonProcess, lines: int = 30) -> str:
        text = daemon.log.path.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    async def kill_daemon(self, daemon: DaemonProcess | None = None) -> None:
        """SIGKILL by pid and reap."""
        daemon = daemon or self.daemon
        if daemon.alive:
            with contextlib.suppress(ProcessLookupError):
                os.kill(daemon.pid, signal.SIGKILL)
        await asyncio.wait_for(daemon.process.wait(), 30)

    async def stop_daemon(self, daemon: DaemonProcess | None = None, within: float = 30) -> int:
        """SIGTERM by pid; the exit status (SIGKILL and an AssertionError if it hangs)."""
        daemon = daemon or self.daemon
        if daemon.alive:
            with contextlib.suppress(ProcessLookupError):
                os.kill(daemon.pid, signal.SIGTERM)
        try:
            return await asyncio.wait_for(daemon.process.wait(), within)
        except TimeoutError:
            await self.kill_daemon(daemon)
            raise AssertionError(f"daemon {daemon.number} ignored SIGTERM for {within}s") from None

    async def cli(self, *args: str, within: float = 60, keep: bool = True) -> Completed:
        """`python -m orchestrator ARGS` to completion (bounded); output kept for the
        secrets check."""
        process = await asyncio.create_subprocess_exec(
            PYTHON,
            "-m",
            "orchestrator",
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=self.env(),
            cwd=self.root,
        )
        try:
            out, err = await asyncio.wait_for(process.communicate(), within)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGKILL)
            await process.wait()
            raise AssertionError(f"orchestrator {' '.join(args)} ran over {within}s") from None
        assert process.returncode is not None
        text, errors = out.decode(errors="replace"), err.decode(errors="replace")
        done = Completed(process.returncode, text, errors)
        if keep:
            self.outputs.append((f"cli {' '.join(args)}", done.stdout + done.stderr))
        return done

    async def close(self) -> None:
        """End every child this rig started, by pid: SIGTERM, then SIGKILL."""
        for child in self._children:
            if child.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child.pid, signal.SIGTERM)
        for child in self._children:
            try:
                await asyncio.wait_for(child.wait(), 15)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child.pid, signal.SIGKILL)
                await asyncio.wait_for(child.wait(), 15)
        if self._http is not None:
            await self._http.aclose()
        keep = os.environ.get(KEEP_FLAG)
        if keep:
            target = Path(keep) / f"{self.root.name}-{int(time.time())}"
            shutil.copytree(self.root, target, ignore=shutil.ignore_patterns("*.sock"))

    # -- files ----------------------------------------------------------------------

    def write_manifest(self, filename: str, text: str) -> float:
        """Write atomically (as git does); the wall-clock time of the rename."""
        path = self.manifests / filename
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
        return time.time()

    def read(self, name: str) -> str:
        path = self.root / name
        return path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""

    def events(self) -> list[dict[str, Any]]:
        """Every JSON log event of every daemon incarnation, in order."""
        out: list[dict[str, Any]] = []
        for daemon in self.daemons:
            out += daemon.log.events()
        return out

    def named(self, name: str) -> list[dict[str, Any]]:
        return [e for e in self.events() if e.get("event") == name]

    def passes(self) -> list[tuple[float, float]]:
        """(start, end) of every reconcile pass of every incarnation (from its log)."""
        out = []
        for e in self.named("reconcile.pass"):
            end = event_time(e)
            out.append((end - float(e.get("duration_ms", 0.0)) / 1000, end))
        return out

    def texts(self) -> list[tuple[str, str]]:
        """Everything a person or a log collector could read: each daemon's stderr and
        stdout, the emulator's, and the CLI outputs kept."""
        out = []
        for daemon in self.daemons:
            out.append((daemon.log.path.name, self.read(daemon.log.path.name)))
            out.append((daemon.stdout.name, self.read(daemon.stdout.name)))
        out += [
            ("emulator.log", self.read("emulator.log")),
            ("emulator.out", self.read("emulator.out")),
        ]
        return out + self.outputs

    def state_files(self) -> list[Path]:
        return sorted(p for p in self.state_db.parent.glob("state.db*") if p.is_file())

    # -- the emulator's control API -------------------------------------------------------

    async def control(self, method: str, path: str, body: Any = None) -> Any:
        assert self._http is not None
        answer = await self._http.request(method, f"{self.base_url}/_emulator{path}", json=body)
        answer.raise_for_status()
        return answer.json()

    async def set_users(self, app_id: str, cname: str, users: list[str]) -> None:
        await self.control(
            "PUT", "/channel/users", {"app_id": app_id, "cname": cname, "users": users}
        )

    async def sessions(self) -> list[dict[str, Any]]:
        return list((await self.control("GET", "/sessions"))["sessions"])

    async def requests(self, endpoint: str | None = None) -> list[dict[str, Any]]:
        query = f"?endpoint={endpoint}" if endpoint else ""
        return list((await self.control("GET", f"/requests{query}"))["requests"])

    async def metrics(self) -> dict[str, float]:
        """The daemon's /metrics as {'name{labels}': value}."""
        assert self._http is not None and self.metrics_port is not None
        answer = await self._http.get(f"http://127.0.0.1:{self.metrics_port}/metrics")
        answer.raise_for_status()
        out = {}
        for line in answer.text.splitlines():
            if not line or line.startswith("#"):
                continue
            key, _, value = line.rpartition(" ")
            with contextlib.suppress(ValueError):
                out[key] = float(value)
        return out

    async def health(self, path: str = "/healthz") -> int:
        assert self._http is not None and self.metrics_port is not None
        answer = await self._http.get(f"http://127.0.0.1:{self.metrics_port}{path}")
        return answer.status_code

    # -- the daemon's store -------------------------------------------------------------

    async def store_view(self) -> tuple[list[SessionRecord], list[str]]:
        """Every session row, and the manifests the store reports as untracked (a start
        met 53 with no session of ours on the target); read-only (WAL lets a reader
        in beside a running daemon)."""
        url = self.state_url or f"sqlite:///{self.state_db}"
        store = await connect_store(url, writer=False)
        try:
            live = await store.live_sessions()
            ended = await store.history(limit=1_000_000)
            found = untracked(await store.latest_ended(), live)
        finally:
            await store.aclose()
        return sorted([*live, *ended], key=lambda s: s.id), [s.manifest for s in found]

    # -- evidence for the checker ------------------------------------------------------

    async def evidence(
        self,
        desired: list[Desired],
        *,
        first_ready: float,
        excused: dict[str, list[tuple[float, float]]] | None = None,
        kills: list[float] | None = None,
    ) -> Evidence:
        """What the checker needs, read now (call it after the daemon stopped)."""
        observed_until = time.time()
        raw_sessions = await self.sessions()
        sessions = [EmuSession.from_json(s) for s in raw_sessions]
        requests = await self.requests()
        # For a post-mortem (see KEEP_FLAG): what the emulator saw, without bodies or
        # headers (bodies carry the placeholder storage keys).
        (self.root / "emulator-sessions.json").write_text(json.dumps(raw_sessions, indent=1))
        (self.root / "emulator-requests.jsonl").write_text(
            "".join(
                json.dumps({k: r.get(k) for k in ("time", "endpoint", "path", "status", "code")})
                + "\n"
                for r in requests
            )
        )
        store, untracked_names = await self.store_view()
        logged = [
            e["session_id"]
            for e in self.named("session.unmanageable")
            if isinstance(e.get("session_id"), int)
        ]
        return Evidence(
            desired=desired,
            sessions=sessions,
            requests=requests,
            store=store,
            untracked=untracked_names,
            logged_unmanageable=logged,
            first_ready=first_ready,
            observed_until=observed_until,
            texts=self.texts(),
            state_files=self.state_files(),
            secrets=SECRET_VALUES,
            excused=excused or {},
            downtime=self.downtime(kills or []),
        )

    def downtime(self, kills: list[float]) -> list[tuple[float, float]]:
        """From each kill to the first READY of an incarnation launched after it."""
        ready = []
        for daemon in self.daemons:
            found = daemon.log.named("daemon.ready")
            if found:
                ready.append((daemon.launched, event_time(found[0])))
        out = []
        for killed in kills:
            after = [at for launched, at in ready if launched >= killed]
            out.append((killed, min(after) if after else time.time()))
        return out
