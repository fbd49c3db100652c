"""Children the harness starts: the emulator, the daemon, one-off CLI runs.

`Processes` owns every child started through it, in one directory: each child's
stdout and stderr go to files there (the daemon's stderr is its JSON log,
`daemon-N.log`), and `close()` ends every child still running by its pid (SIGTERM,
then SIGKILL), whatever happened. Ports are never chosen here: the emulator runs
with `--port 0` and prints its address (`EmulatorProcess.started`), the daemon's
metrics bind port 0 and it logs `metrics.listening` (`Daemon.metrics_url`).

Each wait comes twice: `async` for the tests (nothing blocks the event loop, which
may serve an in-process emulator to the very daemon being waited for) and
`_blocking` for plain scripts (the demo, the daemon benchmark).

Must never: signal a process it did not start, signal by name or group, or wait
without a bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from signal import SIGKILL, SIGTERM
from typing import Any

import httpx

from tests.harness.logs import Event, JsonLog, event_time
from tests.harness.notify import NotifySocket
from tests.harness.waits import WaitTimeout, wait_until, wait_until_blocking

PYTHON = sys.executable
#: Variables a child must not inherit: ORCHESTRATOR_* are config keys (the suite's
#: own flags are spelled so too), the systemd ones change how the daemon behaves.
_NOT_INHERITED = ("ORCHESTRATOR_", "NOTIFY_", "WATCHDOG_", "LISTEN_")
_NOT_INHERITED_NAMES = ("CREDENTIALS_DIRECTORY", "STATE_DIRECTORY")
_LISTENING = re.compile(r"listening on (http://\S+) control (http://\S+)")
# Loopback only: never a proxy from the environment.
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def orchestrator(*args: str) -> list[str]:
    """The command line of `orchestrator ARGS` with this interpreter."""
    return [PYTHON, "-m", "orchestrator", *args]


_SIGINT_DEFAULT = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
    "os.execv(sys.argv[1], sys.argv[1:])"
)


def interruptible(command: Sequence[str]) -> list[str]:
    """`command` with SIGINT's default action, as a terminal's foreground job has it,
    also where the suite runs with SIGINT ignored (a shell's background job passes that
    on, and a command then rightly ignores Ctrl-C): set, then kept across exec."""
    return [PYTHON, "-c", _SIGINT_DEFAULT, *command]


def gone(pid: int) -> bool:
    """Whether process `pid` has exited (a zombie no one reaped counts as exited)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state == "Z"


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without what would steer a child (`_NOT_INHERITED`),
    plus `extra`."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(_NOT_INHERITED) and k not in _NOT_INHERITED_NAMES
    }
    env.update(extra or {})
    return env


@dataclass
class Completed:
    code: int
    stdout: str
    stderr: str


class Child:
    """One child process, known by its pid; its stderr (and stdout) in files."""

    def __init__(
        self, name: str, popen: subprocess.Popen[bytes], stderr: Path | None, stdout: Path | None
    ) -> None:
        self.name = name
        self.popen = popen
        self.stderr = stderr
        self.stdout = stdout

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None

    @property
    def returncode(self) -> int | None:
        return self.popen.poll()

    def describe(self) -> str:
        state = "running" if self.alive else f"exit {self.returncode}"
        tail = ""
        if self.stderr is not None and self.stderr.exists():
            lines = self.stderr.read_text(encoding="utf-8", errors="replace").splitlines()
            tail = "\n" + "\n".join(lines[-30:])
        return f"{self.name} (pid {self.pid}, {state}){tail}"

    def signal(self, number: int) -> None:
        """Send `number` by pid, if it still runs."""
        if self.alive:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, number)

    async def exited(self, within: float = 30) -> int:
        """Its exit status, once it exited (bounded)."""
        await wait_until(lambda: not self.alive, within=within, what=f"{self.name} to exit")
        return self.popen.wait()

    def exited_blocking(self, within: float = 30) -> int:
        try:
            return self.popen.wait(timeout=within)
        except subprocess.TimeoutExpired:
            raise WaitTimeout(f"{self.name} to exit: not within {within:g} s") from None

    async def stop(self, within: float = 30, number: int = SIGTERM) -> int:
        """`number` (SIGTERM), then its exit status; SIGKILL and an AssertionError when
        it does not exit within `within` seconds."""
        self.signal(number)
        try:
            return await self.exited(within)
        except WaitTimeout:
            await self.kill()
            raise AssertionError(f"{self.name} ignored signal {number} for {within:g} s") from None

    def stop_blocking(self, within: float = 30, number: int = SIGTERM) -> int:
        self.signal(number)
        try:
            return self.exited_blocking(within)
        except WaitTimeout:
            self.kill_blocking()
            raise AssertionError(f"{self.name} ignored signal {number} for {within:g} s") from None

    async def kill(self, within: float = 30) -> int:
        """SIGKILL by pid and reap."""
        self.signal(SIGKILL)
        return await self.exited(within)

    def kill_blocking(self, within: float = 30) -> int:
        self.signal(SIGKILL)
        return self.exited_blocking(within)


class EmulatorProcess:
    """`orchestrator emulator --port 0`: its address is read back from its stdout."""

    def __init__(self, child: Child, app_ids: Sequence[str]) -> None:
        self.child = child
        self.app_ids = tuple(app_ids)
        self.base_url = ""
        self.control_url = ""
        self.listening_line = ""
        self._http: httpx.AsyncClient | None = None

    def _address(self) -> bool:
        assert self.child.stdout is not None
        text = self.child.stdout.read_text(encoding="utf-8", errors="replace")
        for line in text.splitlines():
            found = _LISTENING.search(line)
            if found:
                self.listening_line = line
                self.base_url, self.control_url = found.group(1), found.group(2)
                return True
        return False

    async def started(self, within: float = 30) -> EmulatorProcess:
        """Once it listens (its address known)."""
        await wait_until(
            self._address, within=within, what="the emulator to listen", alive=self.child
        )
        return self

    def started_blocking(self, within: float = 30) -> EmulatorProcess:
        wait_until_blocking(
            self._address, within=within, what="the emulator to listen", alive=self.child
        )
        return self

    # -- the control API (/_emulator) --------------------------------------------------

    async def control(self, method: str, path: str, body: Any = None) -> Any:
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=httpx.Timeout(10.0), trust_env=False)
        answer = await self._http.request(method, f"{self.control_url}{path}", json=body)
        answer.raise_for_status()
        return answer.json()

    def control_blocking(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(  # noqa: S310 (loopback)
            f"{self.control_url}{path}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        with _NO_PROXY.open(request, timeout=30) as answer:
            return json.load(answer)

    async def sessions(self) -> list[dict[str, Any]]:
        return list((await self.control("GET", "/sessions"))["sessions"])

    async def requests(self, endpoint: str | None = None) -> list[dict[str, Any]]:
        query = f"?endpoint={endpoint}" if endpoint else ""
        return list((await self.control("GET", f"/requests{query}"))["requests"])

    def requests_blocking(self, endpoint: str | None = None) -> list[dict[str, Any]]:
        query = f"?endpoint={endpoint}" if endpoint else ""
        return list(self.control_blocking("GET", f"/requests{query}")["requests"])

    async def set_users(self, app_id: str, cname: str, users: list[str]) -> None:
        await self.control(
            "PUT", "/channel/users", {"app_id": app_id, "cname": cname, "users": users}
        )

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None


class Daemon:
    """One `orchestrator run`: its JSON log (stderr, a file) and its NOTIFY_SOCKET."""

    def __init__(
        self, number: int, child: Child, log: JsonLog, notify: NotifySocket | None
    ) -> None:
        self.number = number
        self.child = child
        self.log = log
        self.notify = notify
        self.launched = time.time()
        self.ready_at: float | None = None

    @property
    def pid(self) -> int:
        return self.child.pid

    @property
    def alive(self) -> bool:
        return self.child.alive

    @property
    def returncode(self) -> int | None:
        return self.child.returncode

    @property
    def stdout(self) -> Path:
        assert self.child.stdout is not None
        return self.child.stdout

    def describe(self) -> str:
        return self.child.describe()

    def named(self, name: str, **match: Any) -> list[Event]:
        return self.log.named(name, **match)

    async def wait_event(
        self, name: str, *, within: float = 30, after: int = 0, **match: Any
    ) -> Event:
        """The (`after`+1)-th event `name` matching `match`; fails early if it exits."""
        return await self.log.wait(name, within=within, after=after, alive=self, **match)

    def wait_event_blocking(
        self, name: str, *, within: float = 30, after: int = 0, **match: Any
    ) -> Event:
        return self.log.wait_blocking(name, within=within, after=after, alive=self, **match)

    def _ready(self, event: Event) -> float:
        self.ready_at = event_time(event)
        return self.ready_at

    async def ready(self, within: float = 60) -> float:
        """Once it logged `daemon.ready` (it also sent READY=1): when, epoch seconds."""
        return self._ready(await self.wait_event("daemon.ready", within=within))

    def ready_blocking(self, within: float = 60) -> float:
        return self._ready(self.wait_event_blocking("daemon.ready", within=within))

    async def metrics_url(self, within: float = 30) -> str:
        """http://HOST:PORT of its /metrics, /healthz and /readyz, from the address it
        logged once listening (it binds port 0)."""
        event = await self.wait_event("metrics.listening", within=within)
        return f"http://{event['address']}"

    async def notifications_url(self, within: float = 30) -> str:
        """http://HOST:PORT/PATH of its receiver of Agora's notifications, from the
        address it logged once listening (it binds port 0)."""
        event = await self.wait_event("notifications.listening", within=within)
        return f"http://{event['address']}{event['path']}"

    def _pass_after(self, moment: float, trigger: str | None) -> Event | None:
        for e in self.named("reconcile.pass"):
            began = event_time(e) - float(e.get("duration_ms", 0.0)) / 1000
            if began >= moment and (trigger is None or e.get("trigger") == trigger):
                return e
        return None

    async def pass_after(
        self, moment: float, *, trigger: str | None = "resync", within: float = 30
    ) -> Event:
        """The first `reconcile.pass` (of `trigger`; None: any) that began at `moment`
        (epoch seconds) or later. It is logged once its actions are done, so it shows
        that the daemon has looked at the situation of `moment` and sent all it was
        going to: what a proof that nothing (more) is sent waits for, instead of a
        sleep."""
        return await wait_until(
            lambda: self._pass_after(moment, trigger),
            within=within,
            what=f"a {trigger or 'any'} pass after {moment:.2f}",
            alive=self,
        )

    def signal(self, number: int) -> None:
        self.child.signal(number)

    def _drain(self) -> None:
        if self.notify is not None:
            self.notify.drain()  # what it sent up to its exit (STOPPING=1)

    async def stop(self, within: float = 30) -> int:
        """SIGTERM by pid; its exit status (SIGKILL and an AssertionError if it hangs)."""
        try:
            return await self.child.stop(within)
        finally:
            self._drain()

    def stop_blocking(self, within: float = 30) -> int:
        try:
            return self.child.stop_blocking(within)
        finally:
            self._drain()

    async def kill(self) -> int:
        try:
            return await self.child.kill()
        finally:
            self._drain()

    async def exited(self, within: float = 30) -> int:
        return await self.child.exited(within)


class Processes:
    """Every child started through it, with its files in `root`; `close()` ends each
    one still running, by its pid."""

    def __init__(self, root: Path, env: Mapping[str, str] | None = None) -> None:
        self.root = root
        self.env = child_env(env)
        self.children: list[Child] = []
        self.emulators: list[EmulatorProcess] = []
        self.daemons: list[Daemon] = []

    def spawn(
        self,
        name: str,
        args: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        stdout: Path | None = None,
        stderr: Path | None = None,
        new_session: bool = False,
    ) -> Child:
        """Start `args` in `root` with stdin from /dev/null and its output appended to
        the files `stdout` and `stderr` (default: NAME.out, NAME.log in `root`)."""
        stdout = stdout or self.root / f"{name}.out"
        stderr = stderr or self.root / f"{name}.log"
        with stdout.open("ab") as out, stderr.open("ab") as err:
            popen = subprocess.Popen(
                list(args),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                env=dict(self.env if env is None else env),
                cwd=self.root,
                start_new_session=new_session,
            )
        child = Child(name, popen, stderr, stdout)
        self.children.append(child)
        return child

    def emulator(
        self,
        app_ids: Sequence[str],
        *,
        customer_id: str,
        customer_secret: str,
        seed: int | None = None,
        log_level: str = "warning",
        new_session: bool = False,
        certificate: str | None = None,
    ) -> EmulatorProcess:
        """`orchestrator emulator --port 0` knowing `app_ids` (started; await
        `.started()` for its address); `certificate`: the App Certificate of every App
        ID, with which it verifies each start's token (given in its environment,
        never on its command line)."""
        env = dict(self.env)
        env["ORCHESTRATOR_EMULATOR_CUSTOMER_ID"] = customer_id
        env["ORCHESTRATOR_EMULATOR_CUSTOMER_SECRET"] = customer_secret
        if certificate is not None:
            env["ORCHESTRATOR_EMULATOR_APP_CERTIFICATE"] = certificate
        args = orchestrator("emulator", "--port", "0", "--log-level", log_level)
        if seed is not None:
            args += ["--seed", str(seed)]
        for app_id in app_ids:
            args += ["--app", app_id]
        name = "emulator" if not self.emulators else f"emulator-{len(self.emulators)}"
        emulator = EmulatorProcess(
            self.spawn(name, args, env=env, new_session=new_session), app_ids
        )
        self.emulators.append(emulator)
        return emulator

    def daemon(
        self,
        config: Path,
        *,
        env: Mapping[str, str] | None = None,
        wrapper: Sequence[str] = (),
        notify: bool = True,
        log: Path | None = None,
        new_session: bool = False,
    ) -> Daemon:
        """`orchestrator run --config CONFIG` (started; await `.ready()`): its JSON
        log in `daemon-N.log`, a NOTIFY_SOCKET `notify-N` unless `notify` is false;
        `new_session`: in a session (and process group) of its own."""
        number = len(self.daemons)
        run_env = dict(self.env if env is None else env)
        socket = None
        if notify:
            socket = NotifySocket(self.root / f"notify-{number}")
            run_env["NOTIFY_SOCKET"] = str(socket.path)
        log = log or self.root / f"daemon-{number}.log"
        child = self.spawn(
            f"daemon-{number}",
            [*wrapper, *orchestrator("run", "--config", str(config))],
            env=run_env,
            stdout=self.root / f"daemon-{number}.out",
            stderr=log,
            new_session=new_session,
        )
        daemon = Daemon(number, child, JsonLog(log), socket)
        self.daemons.append(daemon)
        return daemon

    async def cli(
        self, *args: str, within: float = 60, env: Mapping[str, str] | None = None
    ) -> Completed:
        """`orchestrator ARGS` to completion, bounded (SIGKILL and an AssertionError
        past `within`)."""
        return await run_cli(
            args, env=self.env if env is None else env, cwd=self.root, within=within
        )

    def _alive(self) -> list[Child]:
        return [c for c in self.children if c.alive]

    async def close(self, within: float = 15) -> None:
        """End every child still running: SIGTERM, then SIGKILL after `within`."""
        for child in self._alive():
            child.signal(SIGTERM)
        for child in self.children:
            try:
                await child.exited(within)
            except WaitTimeout:
                await child.kill()
        for emulator in self.emulators:
            await emulator.aclose()
        self._close_sockets()

    def close_blocking(self, within: float = 15) -> None:
        for child in self._alive():
            child.signal(SIGTERM)
        for child in self.children:
            try:
                child.exited_blocking(within)
            except WaitTimeout:
                child.kill_blocking()
        self._close_sockets()

    def _close_sockets(self) -> None:
        for daemon in self.daemons:
            if daemon.notify is not None:
                daemon.notify.close()


async def start_cli(
    args: Iterable[str], *, env: Mapping[str, str], cwd: Path, sigint: bool = False
) -> asyncio.subprocess.Process:
    """`orchestrator ARGS` with its output on pipes, for a test that ends it itself;
    `sigint`: one that sends it Ctrl-C (`interruptible`)."""
    command = orchestrator(*args)
    return await asyncio.create_subprocess_exec(
        *(interruptible(command) if sigint else command),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=dict(env),
        cwd=cwd,
    )


async def run_cli(
    args: Iterable[str], *, env: Mapping[str, str], cwd: Path, within: float = 60
) -> Completed:
    """`orchestrator ARGS` to completion, bounded; the event loop keeps running."""
    args = list(args)
    process = await start_cli(args, env=env, cwd=cwd)
    try:
        out, err = await asyncio.wait_for(process.communicate(), within)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, SIGKILL)
        await process.wait()
        raise AssertionError(f"orchestrator {' '.join(args)} ran over {within:g} s") from None
    assert process.returncode is not None
    return Completed(process.returncode, out.decode(errors="replace"), err.decode(errors="replace"))
