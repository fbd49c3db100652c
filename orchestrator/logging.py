"""Structured logging: one configuration for the CLI, the daemon and the emulator.

Two renderings of one event stream. JSON lines on stderr for machines (journald, log
shippers): every field of every event, the complete record. `ConsoleRenderer` for
people (`logging.format: console`, or `auto` when stderr is a TTY): one short line per
event, the time, the level and the event name first, then only the fields that matter
for that event (`CONSOLE_FIELDS`), aligned, coloured on a TTY only and never when
`NO_COLOR` is set. Event names and keys are stable and are part of the interface.

Two last-line-of-defence processors run before either renderer: one masks the values
of keys that name secrets (`orchestrator.secrets.SECRET_KEYS`), one removes every
secret value this process has resolved (`orchestrator.secrets.resolved_values`) from
every string of the event, whatever key or nesting it arrives under. Code must still
never pass a secret to a log call, and a renderer must never run before them.
"""

from __future__ import annotations

import json as _json
import logging
import os
import re
import sys
from collections.abc import Mapping, MutableMapping
from datetime import datetime
from typing import Any, Final, TextIO

import structlog

from orchestrator.secrets import is_secret_key, resolved_values

_MASK = "***"


def _mask_secret_keys(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key in list(event_dict):
        if is_secret_key(key):
            event_dict[key] = _MASK
    return event_dict


def _redact(value: Any, secrets: tuple[str, ...]) -> Any:
    """`value` with every secret masked; `secrets` longest first, so that a secret
    that contains another is masked whole, not left with its tail showing."""
    if isinstance(value, str):
        for secret in secrets:
            if secret in value:
                value = value.replace(secret, _MASK)
        return value
    if isinstance(value, dict):
        return {k: _redact(v, secrets) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_redact(v, secrets) for v in value]
    if value is None or isinstance(value, bool | int | float):
        return value
    return _redact(str(value), secrets)  # anything else is rendered as text anyway


def redact_secret_values(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Remove every resolved secret value from the event, at any depth."""
    secrets = tuple(sorted(resolved_values(), key=len, reverse=True))
    if secrets:
        for key in list(event_dict):
            event_dict[key] = _redact(event_dict[key], secrets)
    return event_dict


def shorten(identifier: str | None) -> str | None:
    """An ID (resource ID, sid) short enough for a log line, still distinctive."""
    if identifier is None or len(identifier) <= 16:
        return identifier
    return f"{identifier[:8]}…{identifier[-6:]}"


# ---------------------------------------------------------------- the console

CONSOLE_FIELDS: Final[Mapping[str, tuple[str, ...]]] = {
    "api.call": (
        "endpoint",
        "channel",
        "uid",
        "sid",
        "status",
        "code",
        "attempt",
        "latency_ms",
        "outcome",
        "error",
        "reason",
    ),
    "reconcile.action": ("manifest", "action", "outcome", "reason", "detail", "error"),
    "reconcile.pass": ("trigger", "actions", "failed", "held", "live", "untracked"),
    "manifests.reloaded": ("trigger", "manifests", "added", "changed", "removed", "failing"),
    "session.status": ("manifest", "session_id", "previous", "status"),
    "emulator.request": ("endpoint", "method", "status", "code"),
}
"""The fields a person reads in the console, in order, for the events that carry many.

Any other event shows all its fields. A field that is absent, None or empty is left
out, and so is `attempt` 1; the JSON line always has everything."""

#: Events are padded to the longest name above: the fields of the frequent events
#: start in one column, a longer name pushes its own line's fields right.
EVENT_WIDTH: Final = max(len(event) for event in CONSOLE_FIELDS)
_LEVEL_WIDTH: Final = len("warning")
_SHORTENED: Final = frozenset({"sid", "resource_id"})
_BARE = re.compile(r"[^\s=\"',{}\[\]]+")  # a value that needs no quotes

_RESET = "\x1b[0m"
_DIM = "\x1b[2m"
_BOLD = "\x1b[1m"
_LEVEL_COLORS: Final = {
    "debug": "\x1b[34m",  # blue
    "info": "\x1b[32m",  # green
    "warning": "\x1b[33m",  # yellow
    "error": "\x1b[1;31m",  # bold red
    "critical": "\x1b[1;31m",
}


def wants_color(stream: TextIO) -> bool:
    """Colour only for a person at a terminal, and never when NO_COLOR is set (no-color.org)."""
    if os.environ.get("NO_COLOR"):
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def _scalar(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return _json.dumps(value)
    if isinstance(value, float):
        return f"{value:g}"
    text = str(value)
    return text if _BARE.fullmatch(text) else _json.dumps(text, ensure_ascii=False)


def _field(key: str, value: Any) -> tuple[str, str] | None:
    """How one field reads in the console (label, text), or None when it is not worth
    a column: absent, None, empty, or a first attempt. `latency_ms=6.4` reads `latency=6.4ms`."""
    if value is None or value == "" or value == [] or value == {} or value == ():
        return None
    if key == "attempt" and value == 1:
        return None
    if key.endswith("_ms") and isinstance(value, int | float) and not isinstance(value, bool):
        return key.removesuffix("_ms"), f"{value:g}ms"
    if key in _SHORTENED and isinstance(value, str):
        return key, _scalar(shorten(value))
    if isinstance(value, dict):
        return key, ",".join(f"{_scalar(k)}:{_scalar(v)}" for k, v in value.items())
    if isinstance(value, list | tuple | set | frozenset):
        return key, ",".join(_scalar(item) for item in value)
    return key, _scalar(value)


def _clock(timestamp: Any) -> str:
    """The wall-clock time of an ISO timestamp, in local time to the second."""
    try:
        return datetime.fromisoformat(str(timestamp)).astimezone().strftime("%H:%M:%S")
    except ValueError:
        return str(timestamp)


class ConsoleRenderer:
    """A structlog renderer: one aligned line per event for a person at a terminal.

    `14:03:07 info    api.call           endpoint=start channel=room uid=7 sid=8840cd6a…eaa8b3`

    Reads the event dict as the JSON line would carry it (`timestamp` an ISO string,
    `level` a name), so it can also render JSON lines read back from a daemon (the
    demo does). A traceback (`exception`) follows on its own lines.
    """

    def __init__(self, *, colors: bool = False) -> None:
        self._colors = colors

    def __call__(self, _logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> str:
        fields = dict(event_dict)
        event = str(fields.pop("event", ""))
        level = str(fields.pop("level", _method)).lower()
        stamp = fields.pop("timestamp", None)
        exception = fields.pop("exception", None)
        keys = CONSOLE_FIELDS.get(event, tuple(fields))
        shown = [field for key in keys if (field := _field(key, fields.get(key))) is not None]
        head = [
            self._paint(_DIM, _clock(stamp)) if stamp is not None else None,
            self._paint(_LEVEL_COLORS.get(level, ""), level.ljust(_LEVEL_WIDTH)),
            self._paint(_BOLD, event.ljust(EVENT_WIDTH)),
        ]
        body = " ".join(self._paint(_DIM, f"{label}=") + text for label, text in shown)
        line = " ".join(part for part in head if part is not None) + " " + body
        line = line.rstrip()
        if exception:
            line += "\n" + str(exception).rstrip("\n")
        return line

    def _paint(self, color: str, text: str) -> str:
        return f"{color}{text}{_RESET}" if self._colors and color else text


def configure_logging(level: str = "info", *, json: bool | None = None) -> None:
    """Configure structlog once per process. `json=None` picks JSON unless stderr is a TTY."""
    use_json = (not sys.stderr.isatty()) if json is None else json
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if use_json
        else ConsoleRenderer(colors=wants_color(sys.stderr))
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _mask_secret_keys,
            structlog.processors.format_exc_info,
            redact_secret_values,  # after format_exc_info: tracebacks are text by now
            renderer,  # last: what it renders has been through both redactions
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
        ),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
