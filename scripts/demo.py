"""The main job, on this machine: `make run`.

Validates the example manifests in recordings.d/, starts the built-in Agora
emulator on a free loopback port and runs the daemon (`orchestrator run`) on the
examples with the embedded SQLite store (in .demo/). To show a whole life within
a minute it adds one manifest of its own, `demo-live` (in .demo/, never in
recordings.d/): a window that opens 10 s after start-up and closes 40 s later.
The script edits its layout while it records (the daemon sends one
updateLayout), and the daemon stops it when the window closes. The daemon then
keeps running until Ctrl-C, which ends it cleanly (recordings are left running,
as on a service restart; the next `make run` starts from a fresh store).

The demo's secrets are placeholder values in .demo/ (never use literal secrets in
a real deployment: see README, "Configuration"). `--duration SECONDS` ends the
demo by itself (used by the test of this script).

Exit status: 0 when the daemon started, changed and stopped the demo recording
and exited cleanly; 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / ".demo"
APPS = {
    "main": "0123456789abcdef0123456789abcdef",
    "backup": "fedcba9876543210fedcba9876543210",
}
CUSTOMER_ID = "demo-customer"
CUSTOMER_SECRET = "demo-customer-secret"  # noqa: S105 (the emulator's demo credential)
# Placeholder values for every secret reference the examples use.
ENV_SECRETS = [
    "AGORA_STANDUP_TOKEN",
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
ORCHESTRATOR = (sys.executable, "-m", "orchestrator")
OPENS_AFTER = 10  # seconds after the daemon is ready
RECORDS_FOR = 40
EDIT_AFTER = 15  # seconds after the window opened


def banner(text: str) -> None:
    print(f"\n=== {text}", flush=True)


def demo_manifest(opens: datetime, layout: str) -> str:
    closes = opens + timedelta(seconds=RECORDS_FOR)
    return textwrap.dedent(
        f"""\
        # Written by scripts/demo.py: a short window, so the demo shows a stop.
        name: demo-live
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


def write_demo_files() -> Path:
    if DEMO.exists():
        shutil.rmtree(DEMO)
    credentials = DEMO / "credentials"
    credentials.mkdir(parents=True)
    for name in CREDENTIALS:
        (credentials / name).write_text(f"demo-{name}\n", encoding="utf-8")
    manifests = DEMO / "recordings.d"
    shutil.copytree(ROOT / "recordings.d", manifests)
    lines = ["# Demo config: both App ID profiles point at the local emulator.", "apps:"]
    for name, app_id in APPS.items():
        lines += [
            f"  {name}:",
            f"    appId: {app_id}",
            "    customerId: {env: DEMO_CUSTOMER_ID}",
            "    customerSecret: {env: DEMO_CUSTOMER_SECRET}",
            "    baseUrl: http://127.0.0.1:8765  # the demo overrides it with the emulator's port",
        ]
    lines += [
        "state: {dir: ./state}",
        "manifests: {dir: ./recordings.d, watchInterval: 500ms}",
        "metrics: {address: '127.0.0.1:0'}",
        "logging: {level: info, format: console}",
        "reconcile: {resyncInterval: 15s}",
        "shutdown: {drainTimeout: 5s}",
    ]
    config = DEMO / "config.yaml"
    config.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return config


def start_emulator(env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    banner("orchestrator emulator --port 0 (in the background)")
    emulator_env = dict(env)
    emulator_env["ORCHESTRATOR_EMULATOR_CUSTOMER_ID"] = CUSTOMER_ID
    emulator_env["ORCHESTRATOR_EMULATOR_CUSTOMER_SECRET"] = CUSTOMER_SECRET
    app_args = [arg for app_id in APPS.values() for arg in ("--app", app_id)]
    emulator = subprocess.Popen(  # noqa: S603 (our own CLI)
        [*ORCHESTRATOR, "emulator", "--port", "0", "--log-level", "warning", *app_args],
        env=emulator_env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,  # Ctrl-C is the daemon's; the demo ends the emulator itself
    )
    assert emulator.stdout is not None
    line = emulator.stdout.readline()
    print(line.rstrip(), flush=True)
    match = re.search(r"(http://127\.0\.0\.1:\d+)", line)
    if not match:
        raise SystemExit("the emulator did not start")
    return emulator, match.group(1)


def emulator_requests(base_url: str) -> list[dict[str, object]]:
    with urllib.request.urlopen(f"{base_url}/_emulator/requests", timeout=5) as answer:  # noqa: S310 (loopback)
        data = json.load(answer)
    return list(data.get("requests", data) if isinstance(data, dict) else data)


def join_channel(base_url: str, app_id: str, cname: str, uid: str) -> None:
    """A simulated broadcaster in the demo channel, so the recording has files to list."""
    body = json.dumps({"app_id": app_id, "cname": cname, "uid": uid}).encode()
    request = urllib.request.Request(  # noqa: S310 (loopback)
        f"{base_url}/_emulator/channel/join",
        data=body,
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=5):  # noqa: S310 (loopback)
        pass


def demo_calls(base_url: str) -> list[str]:
    out = []
    for r in emulator_requests(base_url):
        body = r.get("body")
        if isinstance(body, dict) and body.get("cname") == "demo-room":
            out.append(str(r.get("endpoint")))
    return out


def wait_for(predicate: object, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.25)
    return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=None, help="end after this many seconds")
    args = parser.parse_args()

    config = write_demo_files()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_")}
    env.update({name: f"demo-{name.lower()}" for name in ENV_SECRETS})
    env["CREDENTIALS_DIRECTORY"] = str(DEMO / "credentials")
    env["DEMO_CUSTOMER_ID"] = CUSTOMER_ID
    env["DEMO_CUSTOMER_SECRET"] = CUSTOMER_SECRET

    banner("orchestrator validate recordings.d")
    validate = subprocess.run([*ORCHESTRATOR, "validate", "recordings.d"], env=env, cwd=ROOT)  # noqa: S603
    if validate.returncode != 0:
        return 1

    emulator, base_url = start_emulator(env)
    for name in APPS:
        env[f"ORCHESTRATOR_APPS__{name.upper()}__BASE_URL"] = base_url
    join_channel(base_url, APPS["main"], "demo-room", "4242")
    live = DEMO / "recordings.d" / "demo-live.yaml"
    opens = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=OPENS_AFTER + 5)
    live.write_text(demo_manifest(opens, "adaptive"), encoding="utf-8")

    banner(
        f"orchestrator run --config {config.relative_to(ROOT)}   "
        f"(demo-live records {opens:%H:%M:%S}-"
        f"{opens + timedelta(seconds=RECORDS_FOR):%H:%M:%S} UTC; Ctrl-C ends the demo)"
    )
    daemon = subprocess.Popen(  # noqa: S603 (our own CLI)
        [*ORCHESTRATOR, "run", "--config", str(config)], env=env, cwd=ROOT
    )
    ok = True
    interrupted = False
    try:
        ok &= wait_for(lambda: "start" in demo_calls(base_url), OPENS_AFTER + 30)
        banner("demo: demo-live is recording; editing its layout (adaptive -> floating)")
        edit_at = opens + timedelta(seconds=EDIT_AFTER)
        time.sleep(max(0.0, (edit_at - datetime.now(UTC)).total_seconds()))
        tmp = live.with_name(".demo-live.yaml.tmp")
        tmp.write_text(demo_manifest(opens, "floating"), encoding="utf-8")
        tmp.replace(live)
        ok &= wait_for(lambda: "updateLayout" in demo_calls(base_url), 10)
        banner("demo: the daemon changed the live layout; the window closes next")
        ok &= wait_for(lambda: "stop" in demo_calls(base_url), RECORDS_FOR + 20)
        banner(
            "demo: start, live change and stop done "
            + ("as expected" if ok else "with problems (see above)")
            + "; the daemon keeps running: press Ctrl-C to end it"
        )
        remaining = None if args.duration is None else max(0.0, args.duration)
        daemon.wait(timeout=remaining)
    except subprocess.TimeoutExpired:
        daemon.send_signal(signal.SIGINT)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        try:
            code = daemon.wait(timeout=15)
        except subprocess.TimeoutExpired:
            daemon.kill()
            code = daemon.wait()
        emulator.terminate()
        emulator.wait(timeout=10)
        if emulator.stdout is not None:
            emulator.stdout.close()
    ok &= code == 0
    banner(f"done: daemon exited {code}" + (" on Ctrl-C" if interrupted else ""))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
