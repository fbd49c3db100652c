"""Structured logging: one configuration for the CLI, the daemon and the emulator.

JSON lines on stderr (journald-friendly), a console renderer when stderr is a TTY.
Event names are stable (`api.call`, `reconcile.action`, ...) and are part of the
interface. Two last-line-of-defence processors: one masks the values of keys
that name secrets (`orchestrator.secrets.SECRET_KEYS`), one removes every secret
value this process has resolved (`orchestrator.secrets.resolved_values`) from
every string of the event, whatever key or nesting it arrives under. Code must
still never pass a secret to a log call.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

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


def _redact(value: Any, secrets: frozenset[str]) -> Any:
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
    secrets = resolved_values()
    if secrets:
        for key in list(event_dict):
            event_dict[key] = _redact(event_dict[key], secrets)
    return event_dict


def configure_logging(level: str = "info", *, json: bool | None = None) -> None:
    """Configure structlog once per process. `json=None` picks JSON unless stderr is a TTY."""
    use_json = (not sys.stderr.isatty()) if json is None else json
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _mask_secret_keys,
            structlog.processors.format_exc_info,
            redact_secret_values,  # after format_exc_info: tracebacks are text by now
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
        ),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
