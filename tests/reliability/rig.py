"""The reliability rig: the emulator and the daemon as processes, on loopback.

One `Rig` per test: a temp directory with a config, a manifests directory, a state
directory and one log file per process it starts (each daemon incarnation writes
its own JSON log, `daemon-N.log`). The processes, the config and the waits are the
harness's (tests/harness); this module adds what the bad-day scenarios share: the
workload, the emulator's and the store's view, and the evidence for the checker.
Everything it starts is ended by its pid at `close()`, whatever happened; every
wait is bounded in time.

The emulator's clock is real time (this suite never moves it), so its recorded
`started_at`/`ended_at` and request times are directly comparable with the
windows written into the manifests and with `time.time()` here.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import random
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from orchestrator.state import EndKind, Phase, SessionRecord, connect_store
from tests.harness import (
    Completed,
    Daemon,
    EmulatorProcess,
    Processes,
    config_data,
    event_time,
    merged,
    wait_until,
    write_config,
)
from tests.reliability.invariants import FOREVER, Desired, EmuSession, Evidence

__all__ = [
    "LISTENER_UID",
    "MUTATING",
    "Completed",
    "Daemon",
    "Rig",
    "event_time",
    "owned",
    "recording_manifest",
    "windows_schedule",
    "workload",
    "write_workload",
]

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


def owned(daemon: Daemon) -> set[str]:
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
    """A temp dir, one emulator process, daemon incarnations, CLI runs: the children
    are the harness's (tests/harness), which ends each by its pid at `close()`."""

    root: Path
    apps: dict[str, str] = field(default_factory=dict)  # profile name -> App ID
    daemons: list[Daemon] = field(default_factory=list)
    outputs: list[tuple[str, str]] = field(default_factory=list)  # CLI outputs kept
    # A PostgreSQL store shared by replicas (None: SQLite in ./state).
    state_url: str | None = None
    processes: Processes = field(init=False)
    _emulator: EmulatorProcess | None = None

    def __post_init__(self) -> None:
        # No ORCHESTRATOR_* (the suite's own flags are ORCHESTRATOR_RELIABILITY_*,
        # which the config loader would take as keys), no systemd variables.
        self.processes = Processes(self.root, SECRET_ENV)

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
    def daemon(self) -> Daemon:
        return self.daemons[-1]

    @property
    def emulator(self) -> EmulatorProcess:
        assert self._emulator is not None, "start_emulator() first"
        return self._emulator

    @property
    def base_url(self) -> str:
        return self.emulator.base_url

    # -- processes ------------------------------------------------------------------

    async def start_emulator(
        self, apps: int = 1, *, seed: int = 7, certificate: str | None = None
    ) -> None:
        """The emulator serving `apps` App IDs; with `certificate`, it verifies every
        start's token with it (then `write_config(certificate=...)` for the daemon)."""
        self.apps = {f"app{i}": APP_IDS[i] for i in range(apps)}
        emulator = self.processes.emulator(
            list(self.apps.values()),
            customer_id=CUSTOMER_ID,
            customer_secret=CUSTOMER_SECRET,
            seed=seed,
            certificate=certificate,
        )
        self._emulator = await emulator.started(within=30)

    def write_config(
        self,
        *,
        resync: str = "5s",
        backoff: tuple[str, str] = ("1s", "5s"),
        metrics: bool = False,
        watch_interval: str = "100ms",
        drain: str = "5s",
        claim_interval: str = "2s",
        log_level: str = "info",
        changes: Mapping[str, Any] | None = None,
    ) -> None:
        """The daemon's config (tests/harness/config.py); `metrics` binds port 0 (each
        incarnation's address: `Daemon.metrics_url`). `log_level: debug` logs every
        successful `query` call too (they are debug lines), for tests that count each
        replica's calls from its log. `changes` are merged into the document last."""
        state = {"url": self.state_url} if self.state_url else {"dir": "./state"}
        data = config_data(
            self.apps,
            self.base_url,
            state=state,
            resync=resync,
            backoff=backoff,
            watch_interval=watch_interval,
            metrics=metrics,
            log_level=log_level,
            drain=drain,
            customer=("REL_CUSTOMER_ID", "REL_CUSTOMER_SECRET"),
            changes=merged({"replica": {"claimInterval": claim_interval}}, changes or {}),
        )
        self.manifests.mkdir(exist_ok=True)
        write_config(self.config, data)

    async def start_daemon(
        self,
        *,
        ready: bool = True,
        within: float = 90,
        wrapper: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
    ) -> Daemon:
        """`env`: variables set beside the rig's own."""
        extra = None if env is None else {**self.processes.env, **env}
        daemon = self.processes.daemon(self.config, wrapper=wrapper, env=extra)
        self.daemons.append(daemon)
        if ready:
            await daemon.ready(within=within)
        return daemon

    def tail(self, daemon: Daemon, lines: int = 30) -> str:
        return daemon.log.tail(lines)

    async def kill_daemon(self, daemon: Daemon | None = None) -> None:
        """SIGKILL by pid and reap."""
        await (daemon or self.daemon).kill()

    async def stop_daemon(self, daemon: Daemon | None = None, within: float = 30) -> int:
        """SIGTERM by pid; the exit status (SIGKILL and an AssertionError if it hangs)."""
        return await (daemon or self.daemon).stop(within)

    async def cli(self, *args: str, within: float = 60, keep: bool = True) -> Completed:
        """`python -m orchestrator ARGS` to completion (bounded); output kept for the
        secrets check."""
        done = await self.processes.cli(*args, within=within)
        if keep:
            self.outputs.append((f"cli {' '.join(args)}", done.stdout + done.stderr))
        return done

    async def close(self) -> None:
        """End every child this rig started, by pid: SIGTERM, then SIGKILL."""
        await self.processes.close()
        keep = os.environ.get(KEEP_FLAG)
        if keep:
            target = Path(keep) / f"{self.root.name}-{int(time.time())}"
            shutil.copytree(self.root, target, ignore=shutil.ignore_patterns("*.sock", "notify-*"))

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
        return await self.emulator.control(method, path, body)

    async def set_users(self, app_id: str, cname: str, users: list[str]) -> None:
        await self.emulator.set_users(app_id, cname, users)

    async def sessions(self) -> list[dict[str, Any]]:
        return await self.emulator.sessions()

    async def requests(self, endpoint: str | None = None) -> list[dict[str, Any]]:
        return await self.emulator.requests(endpoint)

    async def windows_closed(
        self, desired: list[Desired], *, within: float = 60, alive: Daemon | None = None
    ) -> None:
        """Once every window of `desired` has closed and no session is live on a target
        outside its windows (each stop has reached the API): bounded by `within`
        seconds after the last window's end. `alive` (the current daemon) must stay up.

        A session the store holds as unmanageable is left out: its sid is unknown (a
        kill between a start's answer and its record), so no stop can reach it and,
        with a broadcaster in the channel, it records until Agora ends it. The
        invariants account for it (logged, in the metrics and `status`)."""
        ends = [w[1] for d in desired for w in d.windows if w[1] != FOREVER]
        last = max(ends, default=time.time())
        windowed = {d.target: d for d in desired if any(w[1] != FOREVER for w in d.windows)}

        async def closed() -> bool:
            now = time.time()
            if now < last:
                return False
            stoppable: list[dict[str, Any]] = []
            for s in await self.sessions():
                d = windowed.get((str(s["app_id"]), str(s["cname"]), str(s["uid"])))
                if d is not None and s["live"] and not any(a <= now < b for a, b in d.windows):
                    stoppable.append(s)
            if not stoppable:
                return True
            rows, _ = await self.store_view()
            lost = {r.resource_id for r in rows if r.phase is Phase.UNMANAGEABLE}
            return all(s["resource_id"] in lost for s in stoppable)

        await wait_until(
            closed,
            within=max(0.0, last - time.time()) + within,
            what="every window closed and its recording stopped",
            every=0.25,
            alive=alive or self.daemon,
        )

    async def _get(self, path: str) -> httpx.Response:
        url = await self.daemon.metrics_url()
        async with httpx.AsyncClient(timeout=_HTTP_TIMEOUT, trust_env=False) as http:
            return await http.get(f"{url}{path}")

    async def metrics(self) -> dict[str, float]:
        """The current daemon's /metrics as {'name{labels}': value}."""
        answer = await self._get("/metrics")
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
        return (await self._get(path)).status_code

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
            latest = await store.latest_ended()
        finally:
            await store.aclose()
        # What the store keeps, wanted or not (`untracked` lists only the wanted ones).
        recording = {s.manifest for s in live}
        found = sorted(
            name
            for name, s in latest.items()
            if s.end_kind is EndKind.UNTRACKED and name not in recording
        )
        return sorted([*live, *ended], key=lambda s: s.id), found

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
