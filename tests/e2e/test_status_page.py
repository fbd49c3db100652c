"""The daemon's status page (`/`) in headless Chromium, and `/api/v1/status` against
its schema.

`orchestrator run` runs as a process against the in-process emulator; Debian's
chromium, driven by Playwright's async API (the emulator serves from the test's event
loop: nothing here blocks it), opens the page on the daemon's metrics address.

Covers:
- every manifest shows what it should be doing and what it does: an always-on one
  recording (with its session), one whose window is later waiting for it (at the
  window's start), a suspended one; the counts (wanted, live, held, failing, not
  loading), the verdict, the timeline, the actions and the App IDs;
- a window opening shows on the open page as recording within 3 s of the window's
  start (and not before it), without a reload;
- a recording killed at the emulator (Agora's notification tells the daemon) shows
  on the open page with its new session within 3 s of the kill, without a reload;
- a manifest whose file stops validating shows its file, line, column and field in
  "Files that do not load", its row keeps the last known good version (still
  recording, no stop sent), the verdict turns bad, and the fix clears it all;
- in each of these, the page logs no console error, throws no error, fails no request
  and loads nothing but itself from the daemon;
- `/api/v1/status` validates against `STATUS_SCHEMA` (every field the daemon sends,
  and nothing else; each named in docs/status-page.md), with a recording whose App ID
  the API refuses (failing: `why` filled) beside the three above, and with a file that
  does not load; it agrees with what was set up; no secret value is in the JSON or the
  HTML; the HTML as fetched (no script run) names every manifest, its state and what
  it should do, and loads nothing from elsewhere.

No browser is ever downloaded: without chromium the browser tests skip, saying why,
or fail when ORCHESTRATOR_REQUIRE_TOOLS=1 (CI). Timings are taken from the page's own
clock (`Date.now()` when the change showed; same machine as the test's clock).
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
from playwright.async_api import (
    Browser,
    ConsoleMessage,
    Locator,
    Page,
    Request,
    async_playwright,
    expect,
)
from playwright.async_api import Error as PlaywrightError

from tests.e2e.conftest import SECRET_ENV, DaemonEnv
from tests.e2e.test_apply_cli import live_recordings
from tests.e2e.test_daemon import calls, manifest, write
from tests.e2e.test_notifications import live, recording, start_notified
from tests.harness import wait_until
from tests.harness.browser import CHROMIUM_ARGS, chromium

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

REQUIRE_FLAG = "ORCHESTRATOR_REQUIRE_TOOLS"
SHOWS_WITHIN = 3.0  # seconds from a change at the daemon to the open page showing it
BOUND_MS = 20_000  # a bound for waits that are not measured (a loaded machine)
MARK = "opened once"  # set on `window` at load: still there means no navigation
ROWS = "#recordings tr[data-manifest]"


def unavailable(reason: str) -> None:
    """Skip (or, when the tools are required, fail) a test that needs the browser."""
    if os.environ.get(REQUIRE_FLAG) == "1":
        pytest.fail(f"{reason} (and {REQUIRE_FLAG}=1)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    executable = chromium()
    if executable is None:
        unavailable(
            "no chromium on PATH: the status page tests drive Debian's `chromium` package "
            "(`make test` installs it as root); no browser is downloaded"
        )
    assert executable is not None
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            await launched.close()


# -- the page, watched ----------------------------------------------------------------


@dataclass
class Watched:
    """An open status page and what it did: errors, requests, navigations."""

    page: Page
    origin: str
    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    refreshes: int = 0  # the page's own fetches of itself
    navigations: int = 0

    def row(self, name: str) -> Locator:
        return self.page.locator(f'#recordings tr[data-manifest="{name}"]')

    def cell(self, name: str, column: int) -> Locator:
        """Column 0 manifest, 1 should, 2 is, 3 why not."""
        return self.row(name).locator("td").nth(column)

    def count(self, label: str) -> Locator:
        return self.page.locator(f'#counts li[data-count="{label}"]')

    async def shown_at(self, condition: str, arg: Any, *, timeout_ms: float) -> float:
        """Epoch seconds, by the page's clock, at which the JavaScript `condition`
        (a function of `arg`, truthy once the page shows what is awaited) first held."""
        handle = await self.page.wait_for_function(
            f"(arg) => ({condition})(arg) ? Date.now() : null", arg=arg, timeout=timeout_ms
        )
        return float(await handle.json_value()) / 1000

    async def refreshed(self) -> None:
        """Once the page fetched itself again (its refresh, every second) and got it."""
        async with self.page.expect_response(
            lambda r: r.request.resource_type == "fetch", timeout=BOUND_MS
        ) as answer:
            pass
        assert (await answer.value).status == 200

    async def assert_not_reloaded(self) -> None:
        assert await self.page.evaluate("window.statusPageTest") == MARK
        assert self.navigations == 1, f"the page navigated {self.navigations} times"

    def problems(self) -> list[str]:
        foreign = [u for u in self.requests if not u.startswith(f"{self.origin}/")]
        return self.errors + [f"loaded from elsewhere: {u}" for u in foreign]


@contextlib.asynccontextmanager
async def opened(browser: Browser, origin: str) -> AsyncIterator[Watched]:
    """The status page at `origin`, watched from before it loads; on a clean exit,
    fails if it logged a console error, threw, failed a request or loaded anything
    that the daemon did not serve. Closed before the daemon stops (a refresh that
    finds no daemon would log an error of its own)."""
    context = await browser.new_context(viewport={"width": 1200, "height": 900})
    page = await context.new_page()
    watched = Watched(page, origin)

    def console(message: ConsoleMessage) -> None:
        if message.type == "error":
            watched.errors.append(f"console: {message.text} at {message.location}")

    def page_error(error: PlaywrightError) -> None:
        watched.errors.append(f"page error: {error}")

    def request(request: Request) -> None:
        if not request.url.startswith("data:"):
            watched.requests.append(request.url)
        if request.resource_type == "fetch":
            watched.refreshes += 1

    def failed(request: Request) -> None:
        watched.errors.append(f"request failed: {request.url} {request.failure}")

    def navigated(frame: Any) -> None:
        if frame == page.main_frame:
            watched.navigations += 1

    page.on("console", console)
    page.on("pageerror", page_error)
    page.on("request", request)
    page.on("requestfailed", failed)
    page.on("framenavigated", navigated)
    try:
        await page.goto(f"{origin}/", wait_until="load")
        await page.evaluate(f"window.statusPageTest = {MARK!r}")
        yield watched
        problems = watched.problems()  # before closing: a refresh cut short is no error
    finally:
        await context.close()
    assert problems == [], problems
    assert watched.refreshes > 0, "the page never fetched itself again: it does not update"


# -- manifests --------------------------------------------------------------------------


def windows(*spans: tuple[datetime, datetime]) -> str:
    """A `windows:` schedule (flow style) of explicit [start, end) pairs."""
    items = ", ".join(f"{{start: '{s.isoformat()}', end: '{e.isoformat()}'}}" for s, e in spans)
    return f"{{windows: [{items}]}}"


def suspended(name: str, channel: str, uid: int) -> str:
    return manifest(name, channel, uid) + "suspend: true\n"


def human(at: datetime) -> str:
    """An instant as the page writes it (docs/status-page.md)."""
    return f"{at.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"


def whole_second_after(seconds: float) -> datetime:
    """The first whole second at least `seconds` from now (windows are written to the
    second)."""
    return datetime.fromtimestamp(math.ceil(time.time() + seconds), UTC)


def secret_values(env: DaemonEnv) -> dict[str, str]:
    """The secrets the daemon was given (SECRET_ENV, the customer's filled in)."""
    values = {name: env.cli.env.get(name, "") for name in SECRET_ENV}
    return {name: value for name, value in values.items() if value}


def assert_no_secret(env: DaemonEnv, *texts: str) -> None:
    secrets = secret_values(env)
    assert set(secrets) == set(SECRET_ENV)  # every one is checked, the customer's too
    for name, value in secrets.items():
        for text in texts:
            assert value not in text, f"{name}'s value is shown"


# JavaScript conditions on the open page.
RECORDING_ROW = (
    "(name) => document.querySelector("
    '`#recordings tr[data-manifest="${name}"][data-doing="recording"]`)'
)
# The row of `name` records a session other than `before` ("session #N" in its text).
OTHER_SESSION = """([name, before]) => {
  const row = document.querySelector(`#recordings tr[data-manifest="${name}"]`);
  if (!row || row.dataset.doing !== "recording") return false;
  const found = /session #(\\d+)/.exec(row.textContent);
  return found !== null && found[1] !== before;
}"""


async def status(origin: str) -> dict[str, Any]:
    """`/api/v1/status`, validated against `STATUS_SCHEMA`."""
    async with httpx.AsyncClient(base_url=origin, timeout=10, trust_env=False) as http:
        answer = await http.get("/api/v1/status")
    assert answer.status_code == 200
    doc: dict[str, Any] = answer.json()
    jsonschema.validate(doc, STATUS_SCHEMA, cls=jsonschema.Draft202012Validator)
    return doc


def session_number(text: str) -> str:
    found = re.search(r"session #(\d+)", text)
    assert found is not None, f"no session in {text!r}"
    return found.group(1)


def write_three(daemon_env: DaemonEnv) -> datetime:
    """An always-on recording (lobby), one whose window opens in an hour (later; its
    start returned) and a suspended one (paused)."""
    later = whole_second_after(3600)
    write(daemon_env, "lobby.yaml", manifest("lobby", "lobby", 101))
    write(
        daemon_env,
        "later.yaml",
        manifest("later", "room-l", 102, schedule=windows((later, later + timedelta(minutes=30)))),
    )
    write(daemon_env, "paused.yaml", suspended("paused", "room-p", 103))
    return later


# -- the page in a browser --------------------------------------------------------------


async def test_every_manifest_shows_what_it_should_do_and_does(
    daemon_env: DaemonEnv, browser: Browser
) -> None:
    later = write_three(daemon_env)
    daemon = await daemon_env.start()
    try:
        async with opened(browser, await daemon.metrics_url()) as page:
            await expect(page.page.locator(ROWS)).to_have_count(3, timeout=BOUND_MS)
            # lobby: wanted always, recording its session
            lobby = page.row("lobby")
            await expect(lobby).to_have_attribute("data-doing", "recording", timeout=BOUND_MS)
            await expect(lobby).to_have_class("good")
            await expect(page.cell("lobby", 1)).to_have_text("record (always)")
            doing = page.cell("lobby", 2)
            await expect(doing).to_contain_text(
                re.compile(
                    r"^recording session #\d+, sid \S+, uid 101, "
                    r"since \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC, owner \S+"
                )
            )
            await expect(page.cell("lobby", 3)).to_have_text("")
            # later: waits for its window, at its start
            await expect(page.row("later")).to_have_attribute("data-doing", "idle")
            await expect(page.row("later")).to_have_class("idle")
            await expect(page.cell("later", 1)).to_have_text(
                f"wait for its next window at {human(later)}"
            )
            # paused: suspended
            await expect(page.row("paused")).to_have_attribute("data-doing", "idle")
            await expect(page.row("paused")).to_have_class("idle")
            await expect(page.cell("paused", 1)).to_have_text("suspended")
            # the counts, coloured, and the verdict
            for label, value in (
                ("wanted", "1"),
                ("live", "1"),
                ("held", "0"),
                ("failing", "0"),
                ("not loading", "0"),
            ):
                await expect(page.count(label).locator("b")).to_have_text(value)
                await expect(page.count(label)).to_have_class("good")
            await expect(page.page.locator("#verdict")).to_have_class(re.compile(r"\bgood\b"))
            await expect(page.page.locator("#verdict")).to_contain_text("All is well")
            await expect(page.page.locator("#files")).to_have_count(0)
            # what happens next, what was done, the App ID
            timeline = page.page.locator("#timeline tr", has_text="later")
            await expect(timeline).to_contain_text(
                f"{human(later)} → {human(later + timedelta(minutes=30))}"
            )
            paused_lane = page.page.locator("#timeline tr", has_text="paused")
            await expect(paused_lane.locator("td").nth(1)).to_have_text("suspended")
            start = page.page.locator("#actions tr", has_text="lobby")
            await expect(start).to_have_count(1)
            await expect(start).to_contain_text("start")
            await expect(start).to_have_class("good")
            app = page.page.locator("#apps tr", has_text=daemon_env.cli.emulator.app_id)
            await expect(app).to_have_count(1)
            await expect(app).to_contain_text(re.compile(r"\d+ of 10/s"))
            await page.refreshed()  # and it survives its refresh, without error
            await expect(lobby).to_have_attribute("data-doing", "recording")
            assert_no_secret(daemon_env, await page.page.content())
            await page.assert_not_reloaded()
    finally:
        assert await daemon.stop() == 0


async def test_a_window_opening_shows_within_3_s_without_a_reload(
    daemon_env: DaemonEnv, browser: Browser
) -> None:
    write(daemon_env, "lobby.yaml", manifest("lobby", "lobby", 101))
    daemon = await daemon_env.start()
    try:
        async with opened(browser, await daemon.metrics_url()) as page:
            opens = whole_second_after(6)
            closes = opens + timedelta(minutes=5)
            write(
                daemon_env,
                "win.yaml",
                manifest("win", "room-w", 102, schedule=windows((opens, closes))),
            )
            # The new manifest shows, waiting for its window, before the window opens.
            await expect(page.row("win")).to_have_attribute(
                "data-doing", "idle", timeout=max(0.0, opens.timestamp() - time.time()) * 1000
            )
            await expect(page.cell("win", 1)).to_have_text(
                f"wait for its next window at {human(opens)}"
            )
            shown = await page.shown_at(RECORDING_ROW, "win", timeout_ms=BOUND_MS)
            took = shown - opens.timestamp()
            print(f"window start -> recording on the page: {took:.3f} s")
            assert 0 <= took <= SHOWS_WITHIN, took
            await expect(page.cell("win", 1)).to_have_text(f"record until {human(closes)}")
            await expect(page.count("live").locator("b")).to_have_text("2")
            await page.assert_not_reloaded()
        # The API saw the start at or after the window's start (the page was not early).
        (start,) = [
            r
            for r in daemon_env.cli.emulator.emu.requests("start")
            if r["body"]["cname"] == "room-w"
        ]
        assert float(start["time"]) >= opens.timestamp()
    finally:
        assert await daemon.stop() == 0


async def test_a_killed_recording_shows_restarted_within_3_s_without_a_reload(
    daemon_env: DaemonEnv, browser: Browser
) -> None:
    # A 5-minute resync: only Agora's notification can tell the daemon of the kill.
    write(daemon_env, "lobby.yaml", recording("lobby", "lobby"))
    daemon = await start_notified(daemon_env, resync="5m")
    emu = daemon_env.cli.emulator.emu
    try:
        async with opened(browser, await daemon.metrics_url()) as page:
            row = page.row("lobby")
            await expect(row).to_have_attribute("data-doing", "recording", timeout=BOUND_MS)
            before = session_number(await page.cell("lobby", 2).inner_text())
            (victim,) = live(daemon_env, "lobby")
            started = float(victim["started_at"])
            await wait_until(  # recorded long enough to count as healthy: no backoff
                lambda: emu.clock.now() - started >= 1.2, within=5, what="a recording of 1.2 s"
            )
            killed = time.time()
            assert emu.abort(victim["sid"])
            shown = await page.shown_at(OTHER_SESSION, ["lobby", before], timeout_ms=BOUND_MS)
            took = shown - killed
            print(f"kill -> new session on the page: {took:.3f} s")
            assert took <= SHOWS_WITHIN, took
            # The session shown is the one now live at the emulator.
            (successor,) = live(daemon_env, "lobby")
            assert successor["sid"] != victim["sid"]
            head, _, tail = (await page.cell("lobby", 2).locator("code").inner_text()).partition(
                "…"
            )
            assert successor["sid"].startswith(head) and successor["sid"].endswith(tail)
            starts = page.page.locator("#actions tr", has_text="lobby").filter(has_text="start")
            await expect(starts).to_have_count(2, timeout=BOUND_MS)
            await expect(page.page.locator("#verdict")).to_have_class(re.compile(r"\bgood\b"))
            await page.assert_not_reloaded()
    finally:
        assert await daemon.stop() == 0


async def test_a_broken_manifest_shows_its_file_and_line_and_keeps_recording(
    daemon_env: DaemonEnv, browser: Browser
) -> None:
    good = manifest("alpha", "room-a", 101)
    path = daemon_env.cli.manifests / "a.yaml"
    write(daemon_env, path.name, good)
    daemon = await daemon_env.start()
    try:
        async with opened(browser, await daemon.metrics_url()) as page:
            await expect(page.row("alpha")).to_have_attribute(
                "data-doing", "recording", timeout=BOUND_MS
            )
            broken = good.replace("uid: 101\n", "uid: 0\n")
            line = broken.splitlines().index("uid: 0") + 1
            write(daemon_env, path.name, broken)
            failing = page.page.locator(f'#files tr[data-file="{path}"]')
            await expect(failing).to_have_count(1, timeout=BOUND_MS)
            cells = failing.locator("td")
            await expect(cells.nth(0)).to_have_text(str(path))
            await expect(cells.nth(1)).to_have_text(f"{line}:{len('uid: ') + 1}")
            await expect(cells.nth(2)).to_have_text("uid")
            await expect(cells.nth(3)).to_contain_text("0 is not a uid")
            # Its last known good version is in force: still recording, marked so.
            await expect(page.row("alpha")).to_have_attribute("data-doing", "recording")
            await expect(page.cell("alpha", 3)).to_contain_text(
                "its file does not load: the last known good version is in force"
            )
            doc = await status(page.origin)
            assert doc["files_failing"] == [
                {
                    "file": str(path),
                    "line": line,
                    "column": len("uid: ") + 1,
                    "field": "uid",
                    "message": doc["files_failing"][0]["message"],
                    "severity": "error",
                }
            ]
            (alpha,) = doc["recordings"]
            assert alpha["kept"] is True and alpha["uid"] == 101
            assert alpha["doing"]["state"] == "recording"
            await expect(page.count("not loading").locator("b")).to_have_text("1")
            await expect(page.count("not loading")).to_have_class("bad")
            await expect(page.page.locator("#verdict")).to_have_class(re.compile(r"\bbad\b"))
            assert len(live_recordings(daemon_env.cli)) == 1
            # The fix clears it all, on the same open page.
            write(daemon_env, path.name, good)
            await expect(page.page.locator("#files")).to_have_count(0, timeout=BOUND_MS)
            await expect(page.page.locator("#verdict")).to_have_class(re.compile(r"\bgood\b"))
            await expect(page.cell("alpha", 3)).to_have_text("")
            await page.assert_not_reloaded()
        assert calls(daemon_env, "stop") == []
        assert len(live_recordings(daemon_env.cli)) == 1
    finally:
        assert await daemon.stop() == 0


# -- /api/v1/status -----------------------------------------------------------------------

INSTANT = {
    "type": "string",
    # ISO 8601 with its offset (docs/status-page.md: "Times are ISO 8601 with their offset")
    "pattern": r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?[+-]\d\d:\d\d$",
}
MAYBE_INSTANT = {"anyOf": [INSTANT, {"type": "null"}]}
MAYBE_STRING = {"type": ["string", "null"]}
COUNT = {"type": "integer", "minimum": 0}


def strict(properties: dict[str, Any]) -> dict[str, Any]:
    """An object with exactly these fields, each required."""
    return {
        "type": "object",
        "properties": properties,
        "required": sorted(properties),
        "additionalProperties": False,
    }


WINDOW = strict({"start": INSTANT, "end": MAYBE_INSTANT})  # end null: always
LIVE_SESSION = {
    "session_id": {"type": "integer", "minimum": 1},
    "sid": MAYBE_STRING,
    "uid": {"type": "integer", "minimum": 1},
    "since": MAYBE_INSTANT,
    "owner": MAYBE_STRING,
}
DOING = {
    "type": "object",
    "properties": {
        "state": {"enum": ["recording", "starting", "stopping", "unmanageable", "idle"]},
        **LIVE_SESSION,
    },
    "required": ["state"],
    "additionalProperties": False,
    # A live session comes with all its fields, or none of them.
    "dependentRequired": {name: sorted(LIVE_SESSION) for name in LIVE_SESSION},
}
RECORDING = strict(
    {
        "manifest": {"type": "string", "minLength": 1},
        "app_id": {"type": "string", "minLength": 1},
        "channel": {"type": "string", "minLength": 1},
        "uid": {"type": "integer", "minimum": 1},
        "file": {"type": "string", "minLength": 1},
        "should": strict(
            {
                "state": {"enum": ["record", "wait", "suspended", "ended"]},
                "text": {"type": "string", "minLength": 1},
                "window": {"anyOf": [WINDOW, {"type": "null"}]},
            }
        ),
        "doing": DOING,
        "ok": {"type": "boolean"},
        "why": {
            "anyOf": [
                {"type": "null"},
                strict(
                    {
                        "reason": {
                            "enum": [
                                "starting",
                                "failing",
                                "backoff",
                                "held",
                                "missed",
                                "unmanageable",
                                "stopping",
                            ]
                        },
                        "message": MAYBE_STRING,
                        "last_error": MAYBE_STRING,
                        "last_error_at": MAYBE_INSTANT,
                        "next_attempt": MAYBE_INSTANT,
                    }
                ),
            ]
        },
        "kept": {"type": "boolean"},
    }
)
STATUS_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "orchestrator /api/v1/status, version 1",
    **strict(
        {
            "version": {"const": 1},
            "generated_at": INSTANT,
            "as_of": MAYBE_INSTANT,
            "replica": {"type": "string", "minLength": 1},
            "ready": {"type": "boolean"},
            "ok": {"type": "boolean"},
            "summary": {"type": "string"},
            "counts": strict(
                {
                    name: COUNT
                    for name in (
                        "manifests",
                        "wanted",
                        "live",
                        "held",
                        "failing",
                        "starting",
                        "not_recording",
                        "files_failing",
                        "live_without_manifest",
                    )
                }
            ),
            "recordings": {"type": "array", "items": RECORDING},
            "files_failing": {
                "type": "array",
                "items": strict(
                    {
                        # A finding at no place in a file: file "", line and column 0.
                        "file": {"type": "string"},
                        "line": COUNT,
                        "column": COUNT,
                        "field": {"type": "string"},
                        "message": {"type": "string", "minLength": 1},
                        "severity": {"enum": ["error", "warning", "note"]},
                    }
                ),
            },
            "problems": {"type": "array", "items": {"type": "string"}},
            "live_without_manifest": {
                "type": "array",
                "items": strict(
                    {
                        "manifest": {"type": "string", "minLength": 1},
                        "app_id": {"type": "string", "minLength": 1},
                        "channel": {"type": "string", "minLength": 1},
                        "uid": {"type": "integer", "minimum": 1},
                        "file": MAYBE_STRING,
                        "state": {"enum": ["recording", "starting", "stopping", "unmanageable"]},
                        **LIVE_SESSION,
                        "why": {"type": "string", "minLength": 1},
                    }
                ),
            },
            "timeline": strict(
                {
                    "horizon_hours": {"const": 24},
                    "lanes": {
                        "type": "array",
                        "items": strict(
                            {
                                "manifest": {"type": "string", "minLength": 1},
                                "suspended": {"type": "boolean"},
                                "windows": {"type": "array", "items": WINDOW, "maxItems": 48},
                                "more_windows": {"type": "boolean"},
                                "next": {"type": "string", "minLength": 1},
                                "skipped": MAYBE_STRING,
                                "waits_until": MAYBE_INSTANT,
                            }
                        ),
                    },
                }
            ),
            "actions": {
                "type": "array",
                "maxItems": 50,
                "items": strict(
                    {
                        "at": INSTANT,
                        "manifest": {"type": "string", "minLength": 1},
                        "action": {
                            "enum": [
                                "start",
                                "stop",
                                "update",
                                "updateLayout",
                                "restart",
                                "resume",
                                "rollover",
                            ]
                        },
                        "outcome": {"enum": ["ok", "failed"]},
                        "reason": {"type": "string"},
                        "message": {"type": "string"},
                        "session_id": {"type": ["integer", "null"], "minimum": 1},
                    }
                ),
            },
            "apps": {
                "type": "array",
                "items": strict(
                    {
                        "app_id": {"type": "string", "minLength": 1},
                        "owner": MAYBE_STRING,
                        "rate_limit": {"type": "integer", "minimum": 1},
                        "rate_in_use": COUNT,
                        "query_cycle_seconds": {"type": ["number", "null"], "minimum": 0},
                    }
                ),
            },
        }
    ),
}
DOC = Path(__file__).resolve().parents[2] / "docs" / "status-page.md"


def field_names(schema: Any) -> set[str]:
    """Every property name anywhere in `schema`."""
    names: set[str] = set()
    if isinstance(schema, dict):
        for key, value in schema.items():
            if key == "properties":
                names.update(value)
            names |= field_names(value)
    elif isinstance(schema, list):
        for item in schema:
            names |= field_names(item)
    return names


def test_the_schema_is_valid_and_every_field_is_documented() -> None:
    jsonschema.Draft202012Validator.check_schema(STATUS_SCHEMA)
    documented = set(re.findall(r"`\.?([a-z_]+)(?:\[\])?`", DOC.read_text(encoding="utf-8")))
    assert field_names(STATUS_SCHEMA) - documented == set()


async def test_the_json_endpoint_matches_its_schema_and_the_html_needs_no_script(
    daemon_env: DaemonEnv,
) -> None:
    emulator = daemon_env.cli.emulator
    # A profile whose App ID has recording disabled: acquire answers 62, retried.
    main = daemon_env.cli.data["apps"]["main"]
    daemon_env.reconfigure({"apps": {"off": {**main, "appId": emulator.disabled_app_id}}})
    later = write_three(daemon_env)
    write(
        daemon_env,
        "refused.yaml",
        manifest("refused", "room-r", 104).replace("app: main", "app: off"),
    )
    daemon = await daemon_env.start()
    try:
        async with httpx.AsyncClient(
            base_url=await daemon.metrics_url(), timeout=10, trust_env=False
        ) as http:

            async def settled() -> httpx.Response | None:
                answer = await http.get("/api/v1/status")
                assert answer.status_code == 200
                counts = answer.json()["counts"]
                refused = [r for r in answer.json()["recordings"] if r["manifest"] == "refused"]
                told = bool(refused and refused[0]["why"] and refused[0]["why"]["last_error"])
                return answer if told and counts["live"] == 1 else None

            answer: httpx.Response = await wait_until(
                settled, within=20, what="lobby recording, refused failing"
            )
            page = await http.get("/")
    finally:
        assert await daemon.stop() == 0
    assert answer.headers["content-type"] == "application/json"
    doc = answer.json()
    jsonschema.validate(doc, STATUS_SCHEMA, cls=jsonschema.Draft202012Validator)
    # What the document says, against what was set up.
    by_name = {r["manifest"]: r for r in doc["recordings"]}
    assert sorted(by_name) == ["later", "lobby", "paused", "refused"]
    assert {n: (r["should"]["state"], r["doing"]["state"]) for n, r in by_name.items()} == {
        "lobby": ("record", "recording"),
        "later": ("wait", "idle"),
        "paused": ("suspended", "idle"),
        "refused": ("record", "idle"),
    }
    assert by_name["later"]["should"]["window"] == {
        "start": later.isoformat(),
        "end": (later + timedelta(minutes=30)).isoformat(),
    }
    assert by_name["lobby"]["should"]["window"]["end"] is None
    refused = by_name["refused"]
    assert refused["why"]["reason"] in ("failing", "backoff") and not refused["ok"]
    assert "62" in refused["why"]["last_error"] and refused["why"]["next_attempt"]
    assert refused["app_id"] == emulator.disabled_app_id
    assert by_name["lobby"]["file"] == str(daemon_env.cli.manifests / "lobby.yaml")
    assert doc["counts"] == {
        "manifests": 4,
        "wanted": 2,
        "live": 1,
        "held": 0,
        "failing": 1,
        "starting": 0,
        "not_recording": 1,
        "files_failing": 0,
        "live_without_manifest": 0,
    }
    assert doc["ok"] is False and doc["ready"] is True
    (session,) = live_recordings(daemon_env.cli)
    lobby = by_name["lobby"]["doing"]
    assert str(session["sid"]).startswith(lobby["sid"].split("…")[0])
    owners = {a["app_id"]: a["owner"] for a in doc["apps"]}
    assert owners[emulator.app_id] == doc["replica"]  # SQLite: this daemon owns every App ID
    assert lobby["owner"] == doc["replica"]
    assert [(a["manifest"], a["action"], a["outcome"]) for a in doc["actions"]].count(
        ("lobby", "start", "ok")
    ) == 1
    assert {lane["manifest"] for lane in doc["timeline"]["lanes"]} == set(by_name)
    # The HTML as fetched, without running any script: every manifest and its state.
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    html = page.text
    for name, r in by_name.items():
        assert f'data-manifest="{name}" data-doing="{r["doing"]["state"]}"' in html
        assert r["should"]["text"] in html
    assert "All is well" not in html and "Not all is well" in html
    # Nothing loaded from elsewhere: no src, and links only to the daemon's own paths.
    assert " src=" not in html
    assert all(
        not href.startswith(("http:", "https:", "//"))
        for href in re.findall(r"href=\"?([^\s\">]+)", html)
    )
    assert_no_secret(daemon_env, answer.text, html)
