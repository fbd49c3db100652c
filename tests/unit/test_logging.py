"""The console log format for people, and what it keeps from the JSON one.

Covers: the fields `ConsoleRenderer` shows for the chatty events (`api.call`,
`reconcile.action`, `reconcile.pass`) and all fields, compact, for any other; what it
leaves out (None, empty, a first attempt) and how it shortens (sids, `_ms` keys);
event names padded so fields start in one column; a traceback on its own lines;
colour only on a TTY and never under NO_COLOR; `configure_logging` picking the
renderer; secrets (by key and by resolved value, in every form a server may echo it:
JSON- or URL-escaped, the base64 of the credential pair) redacted in console lines as
in JSON ones; JSON lines keeping every field, None included.
"""

from __future__ import annotations

import base64
import io
import json
import re
from typing import Any
from urllib.parse import quote, quote_plus

import pytest
import structlog

from orchestrator.logging import EVENT_WIDTH, ConsoleRenderer, configure_logging, wants_color
from orchestrator.secrets import EnvSecret, remember_credentials, resolve_secret

STAMP = "2026-03-01T14:03:07.123456Z"
SID = "8840cd6a90794f02b3b029be35eaa8b3"
API_CALL: dict[str, Any] = {
    "endpoint": "query",
    "app_id": "0123456789abcdef0123456789abcdef",
    "channel": "demo-room",
    "uid": "900001",
    "sid": SID,
    "resource_id": "eyJhIjoi…kgJ77Q",
    "status": 200,
    "code": None,
    "attempt": 1,
    "latency_ms": 7.4,
    "outcome": "ok",
    "event": "api.call",
    "level": "info",
    "timestamp": STAMP,
}
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def render(event: dict[str, Any], *, colors: bool = False) -> str:
    return ConsoleRenderer(colors=colors)(None, "info", dict(event))


def fields(line: str) -> str:
    """The line after the time, the level and the event name."""
    return line.split(maxsplit=3)[3]


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        (
            API_CALL,
            "endpoint=query channel=demo-room uid=900001 sid=8840cd6a…eaa8b3 "
            "status=200 latency=7.4ms outcome=ok",
        ),
        (
            {
                **API_CALL,
                "endpoint": "start",
                "status": 503,
                "attempt": 2,
                "outcome": "retry",
                "error": "RetryableError",
                "reason": "service unavailable",
            },
            "endpoint=start channel=demo-room uid=900001 sid=8840cd6a…eaa8b3 status=503 "
            "attempt=2 latency=7.4ms outcome=retry error=RetryableError "
            'reason="service unavailable"',
        ),
        (
            {
                "manifest": "demo-live",
                "action": "stop",
                "reason": "window over",
                "outcome": "ok",
                "session_id": 2,
                "detail": "stopped: window over",
                "event": "reconcile.action",
            },
            'manifest=demo-live action=stop outcome=ok reason="window over" '
            'detail="stopped: window over"',
        ),
        (
            {
                "trigger": "resync",
                "duration_ms": 1.7,
                "actions": 0,
                "failed": 0,
                "query_failures": 0,
                "untracked": [],
                "held": {"weekly-standup": "backoff"},
                "live": 2,
                "event": "reconcile.pass",
            },
            "trigger=resync actions=0 failed=0 held=weekly-standup:backoff live=2",
        ),
        (  # an event the console has no list for: every field, compact
            {
                "manifests": "/srv/recordings.d",
                "apps": ["backup", "main"],
                "watch": True,
                "missing": None,
                "duration_ms": 88.6,
                "event": "daemon.started",
            },
            "manifests=/srv/recordings.d apps=backup,main watch=true duration=88.6ms",
        ),
    ],
    ids=["api.call", "api.call-retry", "reconcile.action", "reconcile.pass", "unknown"],
)
def test_each_event_shows_the_fields_that_matter(event: dict[str, Any], expected: str) -> None:
    line = render({"level": "info", "timestamp": STAMP, **event})
    assert fields(line) == expected


def test_a_line_starts_with_the_time_level_and_event() -> None:
    line = render(API_CALL)
    assert re.fullmatch(r"\d\d:\d\d:07 info    api\.call {11}endpoint=query .*", line), line


def test_fields_start_in_one_column_whatever_the_event_and_level() -> None:
    lines = [
        render({**API_CALL, "level": "warning", "outcome": "error"}),
        render({"event": "reconcile.pass", "level": "info", "timestamp": STAMP, "live": 1}),
        render({"event": "daemon.ready", "level": "debug", "timestamp": STAMP, "summary": "x"}),
    ]
    starts = {len(line) - len(fields(line)) for line in lines}
    assert starts == {len("14:03:07 warning ") + EVENT_WIDTH + 1}, lines


def test_a_traceback_follows_on_its_own_lines() -> None:
    line = render(
        {
            "event": "reconcile.action",
            "level": "error",
            "timestamp": STAMP,
            "manifest": "m",
            "outcome": "crashed",
            "exception": "Traceback (most recent call last):\n  ...\nKeyError: 'x'\n",
        }
    )
    first, *rest = line.split("\n")
    assert fields(first) == "manifest=m outcome=crashed"
    assert rest == ["Traceback (most recent call last):", "  ...", "KeyError: 'x'"]


def test_colour_codes_only_when_asked() -> None:
    plain = render(API_CALL)
    coloured = render(API_CALL, colors=True)
    assert "\x1b[" not in plain
    assert "\x1b[" in coloured
    assert ANSI.sub("", coloured) == plain


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_wants_color_on_a_terminal_unless_no_color(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    assert wants_color(_Terminal()) is True
    assert wants_color(io.StringIO()) is False
    monkeypatch.setenv("NO_COLOR", "1")
    assert wants_color(_Terminal()) is False


@pytest.mark.parametrize(
    ("terminal", "no_color", "coloured"),
    [(False, None, False), (True, None, True), (True, "1", False)],
    ids=["pipe", "terminal", "terminal-NO_COLOR"],
)
def test_configure_logging_console_colours_a_terminal_only(
    monkeypatch: pytest.MonkeyPatch, terminal: bool, no_color: str | None, coloured: bool
) -> None:
    stream = _Terminal() if terminal else io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    if no_color is None:
        monkeypatch.delenv("NO_COLOR", raising=False)
    else:
        monkeypatch.setenv("NO_COLOR", no_color)
    configure_logging("info", json=False)
    try:
        structlog.get_logger().info("reconcile.pass", trigger="resync", live=1)
    finally:
        structlog.reset_defaults()
    line = stream.getvalue()
    assert ("\x1b[" in line) is coloured
    assert fields(ANSI.sub("", line)).rstrip() == "trigger=resync live=1"


def test_auto_picks_the_console_on_a_terminal_and_json_elsewhere(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    for stream, is_json in ((_Terminal(), False), (io.StringIO(), True)):
        monkeypatch.setattr("sys.stderr", stream)
        configure_logging("info", json=None)
        try:
            structlog.get_logger().info("daemon.ready", summary="ok")
        finally:
            structlog.reset_defaults()
        text = stream.getvalue()
        assert text.startswith("{") is is_json, text


def test_console_lines_are_redacted_like_json_ones(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LOGGING_TEST_SECRET", "s3cr3t-value-for-the-console")
    secret = resolve_secret(EnvSecret(env="LOGGING_TEST_SECRET"))
    configure_logging("info", json=False)
    try:
        log = structlog.get_logger()
        log.info("test.event", customer_secret="cs-value", channel="room-1")
        log.warning("reconcile.action", manifest="m", outcome="failed", error=f"bad {secret}")
        log.warning("api.call", endpoint="stop", reason=f"echo: {secret}", status=400)
    finally:
        structlog.reset_defaults()
    err = capsys.readouterr().err
    assert "cs-value" not in err
    assert secret not in err
    lines = err.splitlines()
    assert fields(lines[0]) == "customer_secret=*** channel=room-1"
    assert fields(lines[1]) == 'manifest=m outcome=failed error="bad ***"'
    assert fields(lines[2]) == 'endpoint=stop status=400 reason="echo: ***"'


def test_json_lines_keep_every_field(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("info", json=True)
    event = {k: v for k, v in API_CALL.items() if k not in ("event", "level", "timestamp")}
    try:
        structlog.get_logger().info("api.call", **event)
    finally:
        structlog.reset_defaults()
    line = json.loads(capsys.readouterr().err)
    assert {k: line[k] for k in event} == event
    assert (line["event"], line["level"]) == ("api.call", "info")


def test_a_secret_that_contains_another_is_masked_whole(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Both are resolved: the longer one must not be masked as the shorter plus its tail."""
    monkeypatch.setenv("LOGGING_TEST_SHORT", "nested-secret")
    monkeypatch.setenv("LOGGING_TEST_LONG", "nested-secret-with-a-tail")
    short = resolve_secret(EnvSecret(env="LOGGING_TEST_SHORT"))
    long = resolve_secret(EnvSecret(env="LOGGING_TEST_LONG"))
    configure_logging("info", json=True)
    try:
        structlog.get_logger().info("test.event", a=f"x {long} y", b=f"x {short} y")
    finally:
        structlog.reset_defaults()
    line = json.loads(capsys.readouterr().err)
    assert (line["a"], line["b"]) == ("x *** y", "x *** y")


def test_every_echoed_form_of_a_secret_is_redacted(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """What a server may echo into a reason that a log line carries: a storage secret
    JSON-escaped (with and without `ensure_ascii`) or URL-encoded, and the base64 of
    `customerId:customerSecret`, bare or after `Basic `, standard or URL-safe."""
    monkeypatch.setenv("LOGGING_TEST_ECHOED", 'echo/"Secrét+value 2')
    secret = resolve_secret(EnvSecret(env="LOGGING_TEST_ECHOED"))
    remember_credentials("logging-customer", "lg>>?>secret??")  # base64 with `+` and `/`
    pair = b"logging-customer:lg>>?>secret??"
    echoes = {
        "json": json.dumps(secret)[1:-1],
        "json_unicode": json.dumps(secret, ensure_ascii=False)[1:-1],
        "quoted": quote(secret, safe=""),
        "quoted_plus": quote_plus(secret),
        "basic": "Basic " + base64.b64encode(pair).decode(),
        "bare": base64.b64encode(pair).decode().rstrip("="),
        "urlsafe": base64.urlsafe_b64encode(pair).decode(),
    }
    assert len(set(echoes.values()) | {secret}) == len(echoes) + 1  # all different
    configure_logging("info", json=True)
    try:
        structlog.get_logger().warning(
            "api.call", reason="; ".join(echoes.values()), nested={"echo": list(echoes.values())}
        )
    finally:
        structlog.reset_defaults()
    err = capsys.readouterr().err
    line = json.loads(err)
    assert line["reason"] == "***; ***; ***; ***; Basic ***; ***; ***"
    for echo in [*echoes.values(), base64.b64encode(pair).decode()]:
        assert echo not in err and json.dumps(echo)[1:-1] not in err
    assert "Secr" not in err and "logging-customer" not in line["reason"]
