"""The main job, end to end on this machine: `make run`.

Validates the example manifests in recordings.d/, starts the built-in Agora
emulator on a free loopback port, and runs the CLI against it with the embedded
SQLite store (in .demo/): plan, apply, status, and a second plan that shows the
steady state. Every step is a real `orchestrator` process, exactly as a user
would run it; the demo's secrets are placeholder values in .demo/ (never use
literal secrets in a real deployment: see README, "Configuration").

Exit status: 0 when every step behaved as expected, 1 otherwise.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
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


def banner(text: str) -> None:
    print(f"\n=== {text}", flush=True)


def orchestrator(*args: str, env: dict[str, str], expect: tuple[int, ...] = (0,)) -> int:
    banner("orchestrator " + " ".join(args))
    code = subprocess.run(  # noqa: S603 (our own CLI)
        [sys.executable, "-m", "orchestrator", *args], env=env, cwd=ROOT, check=False
    ).returncode
    if code not in expect:
        print(f"unexpected exit status {code} (expected {expect})", file=sys.stderr)
    return code if code not in expect else 0


def write_demo_files() -> Path:
    if DEMO.exists():
        shutil.rmtree(DEMO)
    credentials = DEMO / "credentials"
    credentials.mkdir(parents=True)
    for name in CREDENTIALS:
        (credentials / name).write_text(f"demo-{name}\n", encoding="utf-8")
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
        "manifests: {dir: ../recordings.d}",
        "metrics: {address: null}",
        "logging: {level: warning, format: console}",
    ]
    config = DEMO / "config.yaml"
    config.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return config


def main() -> int:
    config = write_demo_files()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_")}
    env.update({name: f"demo-{name.lower()}" for name in ENV_SECRETS})
    env["CREDENTIALS_DIRECTORY"] = str(DEMO / "credentials")
    env["DEMO_CUSTOMER_ID"] = CUSTOMER_ID
    env["DEMO_CUSTOMER_SECRET"] = CUSTOMER_SECRET

    failures = orchestrator("validate", "recordings.d", env=env)

    banner("orchestrator emulator --port 0 (in the background)")
    emulator_env = dict(env)
    emulator_env["ORCHESTRATOR_EMULATOR_CUSTOMER_ID"] = CUSTOMER_ID
    emulator_env["ORCHESTRATOR_EMULATOR_CUSTOMER_SECRET"] = CUSTOMER_SECRET
    app_args = [arg for app_id in APPS.values() for arg in ("--app", app_id)]
    emulator = subprocess.Popen(  # noqa: S603 (our own CLI)
        [
            sys.executable,
            "-m",
            "orchestrator",
            "emulator",
            "--port",
            "0",
            "--log-level",
            "warning",
            *app_args,
        ],
        env=emulator_env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert emulator.stdout is not None
        line = emulator.stdout.readline()
        print(line.rstrip())
        match = re.search(r"(http://127\.0\.0\.1:\d+)", line)
        if not match:
            print("the emulator did not start", file=sys.stderr)
            return 1
        for name in APPS:
            env[f"ORCHESTRATOR_APPS__{name.upper()}__BASE_URL"] = match.group(1)
        cfg = ["--config", str(config)]
        failures |= orchestrator("plan", *cfg, "--horizon", "48h", env=env)
        failures |= orchestrator("apply", *cfg, env=env)
        failures |= orchestrator("status", *cfg, env=env)
        failures |= orchestrator("plan", *cfg, "--detailed-exitcode", env=env)
    finally:
        emulator.terminate()
        emulator.wait(timeout=10)
        if emulator.stdout is not None:
            emulator.stdout.close()
    banner("done: " + ("every step as expected" if not failures else "some step failed"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
