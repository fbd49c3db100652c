"""Structured logging: one configuration for the CLI, the daemon and the emulator.

Two renderings of one event stream. JSON lines on stderr for machines (journald, log
shippers): every field of every event, the complete record. `ConsoleRenderer` for
people (`logging.format: console`, or `auto` when stderr is a TTY): one short line per
event, the time, the level and the event name first, then only the fields that matter
for that event (`CONSOLE_FIELDS`), aligned, coloured on a TTY only and never when
`NO_COLOR` is set. Event names and keys are stable and are part of the interface.

Two last-line-of-defence processors run before either renderer: one masks the values
of keys that name secrets (`orchestrator.secrets.SECRET_KEYS`), one removes every
secret value this process has resolved, in every form a server may echo it (JSON- or
URL-escaped, the base64 of the customer's credential pair: `orchestrator.secrets.
mask_secrets`, which the API error scrubber uses too), from every string of the
event, whatever key or nesting it arrives under. Code must still never pass a secret
to a log call, and a renderer must never run before them.

Records of other libraries (standard `logging`), and what Python would print itself
(an event loop's, a thread's or a `__del__`'s exception, a warning), go through the
same processors and renderer as `library.log` and `*.exception` events: a JSON log
holds nothing but JSON lines.
"""

from __future__ import annotations

import asyncio
import contextlib
import json as _json
import logging
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Mapping, MutableMapping
from datetime import datetime
from typing import Any, Final, TextIO

import structlog

from orchestrator.secrets import MASK, is_secret_key, mask_secrets, masked_forms


def _mask_secret_keys(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key in list(event_dict):
        if is_secret_key(key):
            event_dict[key] = MASK
    return event_dict


def _redact(value: Any) -> Any:
    """`value` with every remembered secret masked, in every form (`mask_secrets`)."""
    if isinstance(value, str):
        return mask_secrets(value)
    if isinstance(value, dict):
        return {k: _redact(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_redact(v) for v in value]
    if value is None or isinstance(value, bool | int | float):
        return value
    return _redact(str(value))  # anything else is rendered as text anyway


def redact_secret_values(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Remove every resolved secret value, in each of its forms, from the event, at any depth."""
    if masked_forms():
        for key in list(event_dict):
            event_dict[key] = _redact(event_dict[key])
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


class _Unfailing:
    """A text stream whose failed writes are dropped. A line that cannot be written
    (the reader of stderr gone: `orchestrator run 2>&1 | head`) must not raise into
    the code that logged it: a SIGTERM's handler logs before it stops the daemon,
    which then never stopped."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except (OSError, ValueError):  # ValueError: the stream was closed
            return len(text)

    def flush(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self._stream.flush()


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
        # A TextIO in all that PrintLogger uses of one (write, flush).
        logger_factory=structlog.PrintLoggerFactory(
            file=_Unfailing(sys.stderr)  # type: ignore[arg-type]
        ),
        cache_logger_on_first_use=False,
    )
    route_stdlib_logging(level)


# ---------------------------------------------------------------- other libraries
#
# aiohttp, asyncio, APScheduler, httpx and Python itself log through the standard
# `logging` module or print to stderr. Left alone, that is plain text (a traceback
# over several lines) in the middle of the JSON lines. Below, each becomes one event
# of the same stream, through the same processors (so the same redaction) and the
# same renderer.

#: A record of another library is logged from this level up, whatever the configured
#: level: below it they are chatter (httpx logs every request at info) and may carry
#: what our own events deliberately leave out.
LIBRARY_LEVEL: Final = logging.WARNING
_FIELD_LIMIT: Final = 300  # characters of a repr kept in an event (an object, a task)


class _StderrHandler(logging.Handler):
    """Writes each formatted record as one line to the current `sys.stderr`."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
            sys.stderr.write(line + "\n")
            sys.stderr.flush()
        except Exception:
            self.handleError(record)

    def handleError(self, record: logging.LogRecord) -> None:
        # logging's own report is a plain-text traceback: one JSON line instead.
        error = sys.exc_info()[1]
        failed = {
            "event": "library.log_failed",
            "level": "error",
            "logger": record.name,
            "error": type(error).__name__ if error is not None else None,
        }
        with contextlib.suppress(Exception):  # stderr itself is gone: nowhere to say it
            sys.stderr.write(_json.dumps(failed) + "\n")


def _library_event(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """A foreign record as an event of ours: a stable name, the library's logger and
    message as fields, its exception (if any) for `format_exc_info`."""
    record: logging.LogRecord = event_dict["_record"]
    event: dict[str, Any] = {
        "event": "library.log",
        "logger": record.name,
        "message": event_dict.get("event", ""),
    }
    if "exc_info" in event_dict:
        event["exc_info"] = event_dict["exc_info"]
    return event


def route_stdlib_logging(level: str = "info") -> None:
    """Send records of the standard `logging` module (from `LIBRARY_LEVEL`, or `level`
    when higher) through structlog's processors and renderer as configured now
    (`configure_logging` calls it): one `library.log` event per record, with
    `logger`, `message` and the traceback as `exception`. Replaces the handler an
    earlier call installed."""
    chain = list(structlog.get_config()["processors"])
    formatter = structlog.stdlib.ProcessorFormatter(processors=[_library_event, *chain])
    handler = _StderrHandler(
        max(LIBRARY_LEVEL, logging.getLevelNamesMapping().get(level.upper(), logging.INFO))
    )
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _StderrHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= _FIELD_LIMIT else text[: _FIELD_LIMIT - 1] + "…"


class _LoopExceptionLog:
    """The event loop's exception handler: one `loop.exception` event per error, but
    at most one a second for one message, the others folded into the next one's
    `repeated` count. An error in a loop callback can repeat thousands of times a
    second: asyncio (3.11) retries an accept that failed for want of descriptors
    once per slot of the listen backlog, and logs each failure."""

    _KEPT: Final = 100  # messages remembered (they name code, not data: few)

    def __init__(self, every: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._every = every
        self._clock = clock
        self._last: dict[str, tuple[float, int]] = {}  # message -> (logged at, folded since)

    def __call__(self, _loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        message = str(context.get("message", ""))
        now = self._clock()
        last = self._last.get(message)
        if last is not None and now - last[0] < self._every:
            self._last[message] = (last[0], last[1] + 1)
            return
        if len(self._last) >= self._KEPT:
            self._last.clear()
        self._last[message] = (now, 0)
        exc = context.get("exception")
        extra: dict[str, object] = {
            k: _short(v) for k, v in context.items() if k not in ("message", "exception")
        }
        if last is not None and last[1]:
            extra["repeated"] = last[1]
        structlog.get_logger("orchestrator").error(
            "loop.exception",
            message=message,
            error=type(exc).__name__ if exc is not None else None,
            exc_info=exc if isinstance(exc, BaseException) else None,
            **extra,
        )


def _log_thread_exception(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:
        return  # what threading's own hook does
    structlog.get_logger("orchestrator").error(
        "thread.exception",
        thread=args.thread.name if args.thread is not None else None,
        error=args.exc_type.__name__,
        exc_info=(args.exc_type, args.exc_value, args.exc_traceback)
        if args.exc_value is not None
        else None,
    )


def _log_unraisable(args: Any) -> None:  # sys.UnraisableHookArgs
    structlog.get_logger("orchestrator").warning(
        "unraisable.exception",
        message=args.err_msg or "Exception ignored in",
        object=_short(args.object),
        error=args.exc_type.__name__,
        exc_info=(args.exc_type, args.exc_value, args.exc_traceback)
        if args.exc_value is not None
        else None,
    )


def log_process_errors(loop: asyncio.AbstractEventLoop) -> None:
    """For a long-running process (the daemon), once logging is configured: what
    Python would print to stderr by itself is logged as one event instead. The event
    loop's errors ("Task exception was never retrieved", a failed accept) as
    `loop.exception` (at most one a second for one message, with `repeated`); an
    exception that ends a thread as `thread.exception`; one that cannot be raised
    (in `__del__`) as `unraisable.exception`; warnings as `library.log` (logger
    `py.warnings`). Each carries `error` (the exception's type) and its traceback as
    `exception`."""
    loop.set_exception_handler(_LoopExceptionLog())
    threading.excepthook = _log_thread_exception
    sys.unraisablehook = _log_unraisable
    logging.captureWarnings(True)
