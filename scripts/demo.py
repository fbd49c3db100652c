"""The main job, on this machine: `make run`.

Validates the example manifests in recordings.d/, starts the built-in Agora
emulator on a free loopback port and runs the daemon (`orchestrator run`) on the
examples with the embedded SQLite store (in .demo/). Once the daemon is ready it
adds one manifest of its own, `demo-live` (in .demo/, never in recordings.d/),
whose window opens one step (10 s) later and lasts three; one step after the
daemon started it, the demo edits its layout (the daemon sends one updateLayout),
and the daemon stops it when the window closes. The `backup` profile has an App
Certificate (the emulator verifies every start's token with it) and 1-minute
tokens, so its always-on example, support-lobby, rolls over to a successor session
about 40 s after it started (`rolloverLead` 20 s), and every 40 s after; the demo
says so at the first. The daemon's receiver of Agora's notifications (NCS) is on,
and the emulator posts its signed notifications there: once the layout changed, the
demo kills demo-live's recorder at the emulator, and the daemon, told by the
`recorder_leave` notification, starts it again at once (no resync needed). The
daemon then keeps running
until Ctrl-C, which ends it cleanly (recordings are left running, as on a service
restart; the next `make run` starts from a fresh store).

The demo reads the daemon's JSON log (its stderr, in .demo/daemon-0.log) as it
grows and shows it in the console format (`orchestrator.logging.ConsoleRenderer`);
every `===` banner is printed when the daemon's log shows the thing it announces,
or, for the demo's own acts (adding the manifest, editing it), at the moment it does
them. It never announces ahead. The emulator, the daemon, the config (built as
data, checked by the config model) and the log are the test suite's process harness
(tests/harness), so the demo runs what the tests run.

Ctrl-C: a terminal sends SIGINT to its whole foreground process group. Under
`make run` that group holds make as well, and make ends by killing itself with
the signal whatever its recipe does (the shell then reports 130), so the demo
takes the terminal's foreground for itself while it runs (see `take_terminal`) and
gives it back at the end. The daemon runs in a process group of its own, and the
demo passes a Ctrl-C on to it once it has begun (its first log line), so that one
pressed as it starts is a clean stop too. SIGTERM (a `kill`, `timeout`) and SIGHUP (a
closed terminal) end the demo the same way: the daemon and the emulator never
outlive it.

The demo's secrets are placeholder values in .demo/ (never use literal secrets in
a real deployment: see docs/configuration.md). `--duration SECONDS` ends the demo
by itself, `--step SECONDS` sets its pace and `--workdir` its directory (the tests
use the last two).

Exit status: 0 when the daemon exited cleanly and every step the demo waited for
happened in time (all of them, unless Ctrl-C ended the demo first); 1 otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the process harness lives in tests/harness

from orchestrator.logging import ConsoleRenderer, wants_color  # noqa: E402
from tests.harness import (  # noqa: E402
    EmulatorProcess,
    Processes,
    WaitTimeout,
    config_data,
    orchestrator,
    parse_event,
    write_config,
)

APPS = {
    "main": "0123456789abcdef0123456789abcdef",
    "backup": "fedcba9876543210fedcba9876543210",
}
CUSTOMER_ID = "demo-customer"
CUSTOMER_SECRET = "demo-customer-secret"  # noqa: S105 (the emulator's demo credential)
# Placeholder values for every secret reference the examples use.
ENV_SECRETS = [
    "S3_KEY",
    "QINIU_AK",
    "QINIU_SK",
    "OSS_ACCESS_KEY",
    "OSS_SECRET_KEY",
    "VOD_ACCESS_KEY",
    "VOD_SECRET_KEY",
    "KS3_AK",
    "KS3_SK",
]
CREDENTIALS = ["s3-secret", "cos-id", "cos-key"]
# The `backup` profile's App Certificate (a placeholder: 32 hex digits, as Agora's),
# read from a credential file like the others; the emulator verifies tokens with it.
CERTIFICATE_CREDENTIAL = "backup-app-certificate"
# The secret Agora's notifications are signed with (a placeholder, as a credential).
NCS_CREDENTIAL = "ncs-secret"
DEMO_NCS_SECRET = "demo-ncs-secret"  # noqa: S105 (the demo's placeholder)
DEMO_CERTIFICATE = "0d3e4f5a6b7c8d9e0f1a2b3c4d5e6f70"
TOKEN_LIFETIME = "1m"  # noqa: S105 (a duration; short, so that a rollover shows early)
ROLLOVER_LEAD = "20s"
ROLLING = "support-lobby"  # recordings.d/ops.yaml: always on, app backup
LIVE = "demo-live"
STEP = 10.0  # seconds: window opens one step after ready, edit one step after start
WINDOW_STEPS = 3  # the window lasts three steps: the stop comes two steps after the edit
READY_WITHIN = 60.0  # seconds for the daemon to become ready (a cold start on a busy machine)
POLL = 0.1  # seconds between two looks at the daemon's log when nothing came
LATE = 20.0  # how late an awaited step of the daemon may be before the demo calls it missed
EXIT_WITHIN = 15.0  # seconds for the daemon to exit after SIGINT (its drain is 5 s)
EMULATOR_WITHIN = 30.0  # seconds for the emulator to listen
CONFIG_HEADER = "Demo config: both App ID profiles point at the local emulator."

INTRO = """\
orchestrator demo: the daemon (`orchestrator run`) keeps live recordings equal to
the manifests: here the examples in recordings.d/, against a local emulator of the
Agora Cloud Recording API (no Agora account; nothing leaves this machine).

Once the daemon is ready, the demo adds one manifest of its own, demo-live, with a
short window, and you watch its whole life: the window opens and the daemon starts
the recording; the demo edits the manifest's layout and the daemon changes the live
recording; the demo kills the recorder at the emulator, Agora's notification tells
the daemon and it starts the recording again at once; the window closes and the
daemon stops it. That takes under a minute.
The `backup` profile mints 1-minute tokens (Agora's are valid 24 hours at most), so
its always-on lobby rolls over to a new session about every 40 s, without a gap.
Lines that start with === are the demo's; the others are the daemon's log.

The daemon then keeps running. Press Ctrl-C at any time to end the demo (the
daemon exits cleanly and leaves recordings running, as on a service restart)."""


def banner(text: str) -> None:
    line = f"=== {text}"
    if wants_color(sys.stdout):
        line = f"\x1b[1;36m{line}\x1b[0m"
    print(f"\n{line}", flush=True)


def clock(instant: datetime) -> str:
    """Local wall-clock time, as the console log shows it."""
    return f"{instant.astimezone():%H:%M:%S}"


def demo_manifest(opens: datetime, closes: datetime, layout: str) -> str:
    return textwrap.dedent(
        f"""\
        # Written by scripts/demo.py: a short window, so the demo shows a stop.
        name: {LIVE}
        app: main
        channel: demo-room
        uid: 900001
        mode: mix
        schedule:
          windows:
            - {{start: "{opens.isoformat()}", end: "{closes.isoformat()}"}}
        recording: {{channelType: live, streams: audio+video, maxIdleTime: 300}}
        transcoding: {{width: 640, height: 360, fps: 15, bitrate: 500}}
        layout: {{type: {layout}, background: "#000000"}}
        storage:
          vendor: aws-s3
          region: us-east-1
          bucket: demo-recordings
          accessKey: {{env: S3_KEY}}
          secretKey: {{credential: s3-secret}}
        """
    )


def shown(path: Path) -> Path:
    """A path as a person at the checkout's root would type it."""
    return path.relative_to(ROOT) if path.is_relative_to(ROOT) else path


def write_demo_files(workdir: Path) -> None:
    """The demo's directory, made afresh: manifests and credentials."""
    config = workdir / "config.yaml"
    if workdir.exists():
        header = f"# {CONFIG_HEADER}"
        ours = config.is_file() and config.read_text(encoding="utf-8").startswith(header)
        if any(workdir.iterdir()) and not ours:
            raise SystemExit(f"{workdir} exists and is not a demo directory: not removing it")
        shutil.rmtree(workdir)
    credentials = workdir / "credentials"
    credentials.mkdir(parents=True)
    for name in CREDENTIALS:
        (credentials / name).write_text(f"demo-{name}\n", encoding="utf-8")
    (credentials / CERTIFICATE_CREDENTIAL).write_text(f"{DEMO_CERTIFICATE}\n", encoding="utf-8")
    (credentials / NCS_CREDENTIAL).write_text(f"{DEMO_NCS_SECRET}\n", encoding="utf-8")
    shutil.copytree(ROOT / "recordings.d", workdir / "recordings.d")
    # Written now, so that the directory is recognised as the demo's; the daemon's
    # config replaces it once the emulator's address is known (`write_demo_config`).
    config.write_text(f"# {CONFIG_HEADER}\n", encoding="utf-8")


def write_demo_config(workdir: Path, base_url: str) -> Path:
    """The daemon's config: both profiles at the emulator, JSON logs (the demo reads
    them and shows them in the console format), metrics on a port of its choosing."""
    data = config_data(
        APPS,
        base_url,
        resync="15s",
        watch_interval="500ms",
        customer=("DEMO_CUSTOMER_ID", "DEMO_CUSTOMER_SECRET"),
        changes={
            "apps": {
                "backup": {
                    "appCertificate": {"credential": CERTIFICATE_CREDENTIAL},
                    "tokenLifetime": TOKEN_LIFETIME,
                }
            },
            "reconcile": {
                # The daemon's own default backoff: the demo shows the daemon as deployed.
                "restartBackoff": {"initial": "10s", "max": "10m"},
                "rolloverLead": ROLLOVER_LEAD,
            },
            # Agora's notifications, on a port of the daemon's choosing (it logs it).
            "notifications": {
                "address": "127.0.0.1:0",
                "secret": {"credential": NCS_CREDENTIAL},
            },
        },
    )
    return write_config(workdir / "config.yaml", data, comment=CONFIG_HEADER)


def take_terminal() -> Callable[[], None]:
    """Become the terminal's foreground process group; returns what gives it back.

    Only when the demo shares its terminal's foreground group with the program that
    started it (make): Ctrl-C then reaches the demo and the emulator it starts (they
    share the new group; the daemon has its own and is told by the demo), not make,
    which sees its recipe exit 0. A shell does the
    same for each job. Without a terminal, or when the demo already leads its own
    group (run from a shell), nothing changes. Ctrl-Z is ignored meanwhile: the shell
    waits on make and could not resume a group it does not know was stopped.
    """
    try:
        tty = os.open("/dev/tty", os.O_RDWR)
    except OSError:
        return lambda: None  # no controlling terminal (CI, a test)
    try:
        previous = os.tcgetpgrp(tty)
    except OSError:
        os.close(tty)
        return lambda: None
    if previous != os.getpgrp() or os.getpgrp() == os.getpid():
        os.close(tty)  # in the background, or already a group of its own
        return lambda: None
    # A process outside the foreground group that sets it is sent SIGTTOU.
    ttou = signal.signal(signal.SIGTTOU, signal.SIG_IGN)
    tstp = signal.signal(signal.SIGTSTP, signal.SIG_IGN)
    os.setpgid(0, 0)
    os.tcsetpgrp(tty, os.getpgrp())

    def give_back() -> None:
        # OSError: the group that had it is gone (make was killed); the shell takes over.
        with contextlib.suppress(OSError):
            os.tcsetpgrp(tty, previous)
        os.close(tty)
        signal.signal(signal.SIGTSTP, tstp)
        signal.signal(signal.SIGTTOU, ttou)

    return give_back


def start_emulator(processes: Processes) -> EmulatorProcess | None:
    """The emulator, once it listens (None when it did not start)."""
    banner("orchestrator emulator --port 0   (in the background)")
    emulator = processes.emulator(
        list(APPS.values()),
        customer_id=CUSTOMER_ID,
        customer_secret=CUSTOMER_SECRET,
        new_session=True,  # Ctrl-C is the daemon's; the demo ends the emulator itself
    )
    try:
        emulator.started_blocking(within=EMULATOR_WITHIN)
    except WaitTimeout as exc:
        print(exc, flush=True)
        return None
    print(emulator.listening_line, flush=True)
    return emulator


def certify(emulator: EmulatorProcess, app_id: str) -> None:
    """The emulator verifies the tokens of `app_id`'s starts with the demo certificate."""
    emulator.control_blocking(
        "PUT", "/certificates", {"certificate": DEMO_CERTIFICATE, "app_id": app_id}
    )


def notify_daemon(emulator: EmulatorProcess, event: dict[str, Any]) -> None:
    """The emulator posts its signed notifications to the daemon's receiver."""
    url = f"http://{event['address']}{event['path']}"
    emulator.control_blocking("PUT", "/notify", {"url": url, "secret": DEMO_NCS_SECRET})


def kill_recorder(emulator: EmulatorProcess, cname: str) -> str | None:
    """Abort the live session of `cname` at the emulator (as if Agora's recorder
    crashed); its sid, or None when none is live."""
    for session in emulator.control_blocking("GET", "/sessions")["sessions"]:
        if session["cname"] == cname and session["live"]:
            emulator.control_blocking("POST", f"/sessions/{session['sid']}/abort")
            return str(session["sid"])
    return None


def join_channel(emulator: EmulatorProcess, app_id: str, cname: str, uid: str) -> None:
    """A simulated broadcaster in the demo channel, so the recording has files to list."""
    emulator.control_blocking(
        "POST", "/channel/join", {"app_id": app_id, "cname": cname, "uid": uid}
    )


Event = dict[str, Any]


def live_action(action: str) -> Callable[[Event], bool]:
    """Whether an event is the daemon's report of `action` done on demo-live."""

    def matches(event: Event) -> bool:
        return (
            event.get("event") == "reconcile.action"
            and event.get("manifest") == LIVE
            and event.get("action") == action
            and event.get("outcome") == "ok"
        )

    return matches


@dataclass
class Wait:
    """A step the demo waits for: an event of the daemon's log, before a deadline."""

    what: str
    matches: Callable[[Event], bool]
    deadline: float  # time.monotonic()
    then: Callable[[Event], None]


class Demo:
    """The demo's steps, each taken when the daemon's log shows the one before."""

    def __init__(self, workdir: Path, step: float, emulator: EmulatorProcess) -> None:
        self.emulator = emulator
        self.killed_at: float | None = None
        self.live = workdir / "recordings.d" / f"{LIVE}.yaml"
        self.step = step
        self.opens = self.closes = datetime.now(UTC)
        self.wait: Wait | None = Wait(
            "the daemon to be ready",
            lambda event: event.get("event") == "daemon.ready",
            time.monotonic() + READY_WITHIN,
            self._ready,
        )
        self.edit_at: float | None = None
        self.missed = False
        self.finished = False
        self.rolled_over = False

    def on_event(self, event: Event) -> None:
        if event.get("event") == "notifications.listening":
            notify_daemon(self.emulator, event)
        if self.wait is not None and self.wait.matches(event):
            then, self.wait = self.wait.then, None
            then(event)
        if (
            not self.rolled_over
            and event.get("event") == "session.rolled_over"
            and event.get("manifest") == ROLLING
        ):
            self.rolled_over = True
            banner(
                f"{ROLLING} rolled over: its token (1 minute here) would expire, so the "
                f"daemon started session #{event.get('session_id')} on the manifest's "
                f"rolloverUid, saw it recording, then stopped #{event.get('predecessor_id')} "
                f"(both recorded for {event.get('overlap_s')} s: no gap). It does so "
                "before every expiry"
            )

    def on_tick(self, now: float) -> None:
        if self.edit_at is not None and now >= self.edit_at:
            self.edit_at = None
            self._edit()
        if self.wait is not None and now > self.wait.deadline:
            banner(f"demo: waited in vain for {self.wait.what}; see the log above")
            self.wait = None
            self.missed = True

    def _ready(self, _event: Event) -> None:
        self.opens = (datetime.now(UTC) + timedelta(seconds=self.step)).replace(microsecond=0)
        self.closes = self.opens + timedelta(seconds=WINDOW_STEPS * self.step)
        self._write("adaptive")
        banner(
            f"the daemon is ready. The demo adds {shown(self.live)}: window "
            f"{clock(self.opens)}-{clock(self.closes)}; the daemon picks it up by itself"
        )
        self._expect(f"{LIVE} to start", live_action("start"), self.opens, self._started)

    def _started(self, _event: Event) -> None:
        banner(f"the window opened: the daemon started {LIVE} (acquire, then start)")
        self.edit_at = time.monotonic() + self.step

    def _edit(self) -> None:
        banner(f"the demo edits {LIVE}'s layout now: adaptive -> floating")
        self._write("floating")
        self._expect(
            "the layout change", live_action("updateLayout"), datetime.now(UTC), self._changed
        )

    def _changed(self, _event: Event) -> None:
        banner(
            "the daemon changed the live recording's layout (updateLayout). The demo "
            "kills its recorder at the emulator now, as if Agora's recorder crashed"
        )
        self.killed_at = time.monotonic()
        if kill_recorder(self.emulator, "demo-room") is None:
            banner(f"demo: {LIVE} was not live at the emulator")
            self.missed = True
            return
        self._expect(
            f"{LIVE} to start again", live_action("start"), datetime.now(UTC), self._restarted
        )

    def _restarted(self, _event: Event) -> None:
        took = time.monotonic() - (self.killed_at or time.monotonic())
        banner(
            f"Agora's notification (recorder_leave, signed, posted to the daemon's receiver) "
            f"told the daemon the recording had ended; it started {LIVE} again "
            f"{took:.1f} s after the kill, without waiting for its resync. "
            f"The window closes at {clock(self.closes)}"
        )
        self._expect(f"{LIVE} to stop", live_action("stop"), self.closes, self._stopped)

    def _stopped(self, _event: Event) -> None:
        banner(
            f"the window closed: the daemon stopped {LIVE}. That was its whole life: "
            "start, live change, a crash restarted at once, stop. The daemon keeps running "
            "(its resync polls the live recordings quietly); press Ctrl-C to end the demo"
        )
        self.finished = True

    def _expect(
        self,
        what: str,
        matches: Callable[[Event], bool],
        due: datetime,
        then: Callable[[Event], None],
    ) -> None:
        late = (due - datetime.now(UTC)).total_seconds() + LATE
        self.wait = Wait(what, matches, time.monotonic() + max(late, LATE), then)

    def _write(self, layout: str) -> None:
        # Whole or not at all: the daemon's watch never reads half a file.
        tmp = self.live.with_name(f".{LIVE}.yaml.tmp")
        tmp.write_text(demo_manifest(self.opens, self.closes, layout), encoding="utf-8")
        tmp.replace(self.live)


class Interrupt:
    """SIGINT (Ctrl-C), SIGTERM (a `kill`, `timeout`) and SIGHUP (a closed terminal) as
    a flag the main loop reads: nothing is cut in the middle, and the daemon and the
    emulator, each in a process group of its own, are ended before the demo is (the
    signals' default would end the demo alone and leave them running)."""

    def __init__(self) -> None:
        self.seen = False
        self.name = "Ctrl-C"
        for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(number, self._handle)

    def _handle(self, signum: int, _frame: object) -> None:
        if not self.seen:
            self.seen = True
            self.name = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name


def run_daemon(
    processes: Processes,
    emulator: EmulatorProcess,
    config: Path,
    workdir: Path,
    args: argparse.Namespace,
    ctrl_c: Interrupt,
) -> int:
    """Run the daemon, show its log and the demo's steps; returns the exit status."""
    banner(f"orchestrator run --config {shown(config)}   (the daemon; its log follows)")
    # In a process group of its own: a terminal's Ctrl-C reaches the demo alone, which
    # passes it on once the daemon has begun (its first line). In its first tenth of a
    # second Python has not taken SIGINT over yet: the signal would kill it outright,
    # or interrupt an import with a traceback.
    daemon = processes.daemon(config, notify=False, new_session=True)
    spawned_at = time.monotonic()
    render = ConsoleRenderer(colors=wants_color(sys.stderr))
    demo = Demo(workdir, args.step, emulator)
    ends_at = None if args.duration is None else time.monotonic() + args.duration
    signalled_at: float | None = None
    shown_lines = 0
    while True:
        exited = not daemon.alive  # before reading: then the log is read to its end
        lines = daemon.log.lines(shown_lines)
        shown_lines += len(lines)
        for line in lines:
            event = show(line, render)
            if event is not None and signalled_at is None:
                demo.on_event(event)
        if exited:
            break
        now = time.monotonic()
        if signalled_at is None:
            if not (ctrl_c.seen or (ends_at is not None and now >= ends_at)):
                demo.on_tick(now)
            elif shown_lines > 0 or now >= spawned_at + EXIT_WITHIN:  # it has begun
                daemon.signal(signal.SIGINT)
                signalled_at = now
        elif now > signalled_at + EXIT_WITHIN:
            banner(f"the daemon did not exit within {EXIT_WITHIN:g} s of SIGINT: killed")
            daemon.child.kill_blocking()
            break
        if not lines:
            time.sleep(POLL)
    code = daemon.child.exited_blocking(EXIT_WITHIN)
    # A Ctrl-C in the very instant the daemon is spawned reaches it while it is still
    # in the demo's process group (between fork and setsid): it dies of the signal
    # having done nothing, not even logged. That is the stop that was asked for.
    unborn = ctrl_c.seen and shown_lines == 0 and code == -signal.SIGINT
    if unborn:
        banner("done: the Ctrl-C stopped the daemon as it was being started")
    else:
        banner(f"done: the daemon exited {code}" + (f" on {ctrl_c.name}" if ctrl_c.seen else ""))
    if (code != 0 and not unborn) or demo.missed:
        return 1
    return 0 if demo.finished or ctrl_c.seen else 1


def show(line: str, render: ConsoleRenderer) -> Event | None:
    """Print one line of the daemon's log for a person; its event, when it is one."""
    event = parse_event(line)
    if event is None:
        print(line, file=sys.stderr, flush=True)  # not a log event (a crash's last words)
        return None
    print(render(None, "", event), file=sys.stderr, flush=True)
    return event


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--duration", type=float, default=None, help="end this long after the daemon started"
    )
    parser.add_argument(
        "--step", type=float, default=STEP, help=f"seconds between the demo's steps ({STEP:g})"
    )
    parser.add_argument(
        "--workdir", type=Path, default=ROOT / ".demo", help="the demo's files (.demo)"
    )
    args = parser.parse_args()
    if not args.step >= 1:
        parser.error("--step must be at least 1 second")

    print(INTRO, flush=True)
    ctrl_c = Interrupt()
    give_back = take_terminal()
    try:
        return run(args, ctrl_c)
    finally:
        give_back()


def run(args: argparse.Namespace, ctrl_c: Interrupt) -> int:
    workdir = args.workdir.resolve()
    write_demo_files(workdir)
    extra = {name: f"demo-{name.lower()}" for name in ENV_SECRETS}
    extra["CREDENTIALS_DIRECTORY"] = str(workdir / "credentials")
    extra["DEMO_CUSTOMER_ID"] = CUSTOMER_ID
    extra["DEMO_CUSTOMER_SECRET"] = CUSTOMER_SECRET
    processes = Processes(workdir, extra)

    banner("orchestrator validate recordings.d")
    validate = subprocess.run(orchestrator("validate", "recordings.d"), env=processes.env, cwd=ROOT)  # noqa: S603
    if ctrl_c.seen:
        return 0
    if validate.returncode != 0:
        return 1

    try:
        emulator = start_emulator(processes)
        if emulator is None:
            banner("the emulator did not start")
            return 1
        if ctrl_c.seen:
            return 0
        config = write_demo_config(workdir, emulator.base_url)
        certify(emulator, APPS["backup"])
        join_channel(emulator, APPS["main"], "demo-room", "4242")
        return run_daemon(processes, emulator, config, workdir, args, ctrl_c)
    finally:
        processes.close_blocking(within=10)  # the emulator (and anything left), by pid


if __name__ == "__main__":
    sys.exit(main())
