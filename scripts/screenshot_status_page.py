"""The README's picture of the status page: `.venv/bin/python scripts/screenshot_status_page.py`.

Runs what the demo runs (scripts/demo.py, on the test suite's process harness): the
emulator and the daemon on the example manifests of recordings.d/, in a temporary
directory. It adds three manifests so that the page shows each kind of row: demo-live,
whose window is open now (recording until it closes); town-hall, which records and
whose file is then broken (its last known good version stays in force, the file and
line show under "Files that do not load"); partner-sync, on a profile whose App ID the
emulator refuses (failing, with its error and next attempt). The examples add an
always-on recording, a suspended one and several waiting for their windows. Once the
daemon's log shows all that, it opens the page in Debian's chromium through Playwright
and saves a full-page PNG, 1200 px wide (default docs/screenshots/status-page.png).

Must never: download a browser (it drives /usr/bin/chromium, or says it is missing),
leave a process running (the harness ends each one by its pid), or put a real secret
anywhere (the demo's placeholders only).

Exit status: 0 when the PNG was written, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the harness lives in tests/harness, the demo in scripts/

from scripts import demo  # noqa: E402
from tests.harness import Processes, WaitTimeout, merged, write_config  # noqa: E402
from tests.harness.browser import CHROMIUM_ARGS, chromium  # noqa: E402

OUTPUT = ROOT / "docs" / "screenshots" / "status-page.png"
WIDTH = 1200
REPLICA = "recorder-1"
KEPT = "town-hall"
FAILING = "partner-sync"
REFUSED_APP_ID = "0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f"  # not one the emulator accepts
WITHIN = 60.0  # seconds for any step the script waits for


def example(name: str, channel: str, uid: int, *, app: str = "main") -> str:
    """A manifest like the demo's, named `name`, open for the next hour."""
    opens = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    text = demo.demo_manifest(opens, opens + timedelta(hours=1), "adaptive")
    return (
        text.replace(f"name: {demo.LIVE}", f"name: {name}")
        .replace("app: main", f"app: {app}")
        .replace("channel: demo-room", f"channel: {channel}")
        .replace("uid: 900001", f"uid: {uid}")
    )


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / f"{name}.yaml"
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)  # whole or not at all: the daemon watches the directory
    return path


def configure(workdir: Path, base_url: str) -> Path:
    """The demo's config, plus a profile the emulator refuses and a replica name."""
    config = demo.write_demo_config(workdir, base_url)
    # JSON after its `# ` comment lines (tests/harness/config.py `write_config`)
    lines = config.read_text(encoding="utf-8").splitlines(keepends=True)
    data = json.loads("".join(line for line in lines if not line.startswith("#")))
    main = data["apps"]["main"]
    changes = {"apps": {"trial": {**main, "appId": REFUSED_APP_ID}}, "replica": {"name": REPLICA}}
    return write_config(config, merged(data, changes), comment=demo.CONFIG_HEADER)


def run(workdir: Path, output: Path, browser: str) -> None:
    demo.write_demo_files(workdir)
    extra = {name: f"demo-{name.lower()}" for name in demo.ENV_SECRETS}
    extra["CREDENTIALS_DIRECTORY"] = str(workdir / "credentials")
    extra["DEMO_CUSTOMER_ID"] = demo.CUSTOMER_ID
    extra["DEMO_CUSTOMER_SECRET"] = demo.CUSTOMER_SECRET
    processes = Processes(workdir, extra)
    try:
        emulator = processes.emulator(
            list(demo.APPS.values()),
            customer_id=demo.CUSTOMER_ID,
            customer_secret=demo.CUSTOMER_SECRET,
        ).started_blocking(within=WITHIN)
        config = configure(workdir, emulator.base_url)
        demo.certify(emulator, demo.APPS["backup"])
        manifests = workdir / "recordings.d"
        opens = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
        write(
            manifests, demo.LIVE, demo.demo_manifest(opens, opens + timedelta(hours=2), "floating")
        )
        good = example(KEPT, "town-hall", 900002)
        kept = write(manifests, KEPT, good)
        write(manifests, FAILING, example(FAILING, "partner-room", 900003, app="trial"))

        daemon = processes.daemon(config, notify=False)
        daemon.ready_blocking(within=WITHIN)
        daemon.wait_event_blocking(
            "reconcile.action", within=WITHIN, manifest=KEPT, action="start", outcome="ok"
        )
        write(manifests, KEPT, good.replace("uid: 900002", "uid: 0"))
        daemon.wait_event_blocking("manifest.invalid", within=WITHIN)
        daemon.wait_event_blocking(
            "reconcile.action", within=WITHIN, manifest=FAILING, outcome="failed"
        )
        address = daemon.wait_event_blocking("metrics.listening", within=WITHIN)["address"]

        with sync_playwright() as playwright:
            launched = playwright.chromium.launch(executable_path=browser, args=CHROMIUM_ARGS)
            try:
                page = launched.new_page(viewport={"width": WIDTH, "height": 900})
                page.goto(f"http://{address}/", wait_until="load")
                # The page as of a pass that saw the broken file and the refused start.
                page.wait_for_selector(f'#files tr[data-file="{kept}"]', timeout=WITHIN * 1000)
                page.wait_for_selector(
                    f'#recordings tr[data-manifest="{FAILING}"] >> text=next attempt',
                    timeout=WITHIN * 1000,
                )
                output.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(output), full_page=True)
            finally:
                launched.close()
    finally:
        processes.close_blocking(within=10)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=OUTPUT, help="the PNG to write")
    args = parser.parse_args()
    browser = chromium()
    if browser is None:
        print("no chromium on PATH: install Debian's `chromium` package", file=sys.stderr)
        return 1
    # The page shows each manifest's file: a short path reads best.
    with tempfile.TemporaryDirectory(prefix="orchestrator-") as tmp:
        try:
            run(Path(tmp), args.output.resolve(), browser)
        except WaitTimeout as exc:
            print(f"screenshot not taken: waited in vain for {exc}", file=sys.stderr)
            return 1
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
