"""Structured logging: one configuration for the CLI, the daemon and the emulator.

JSON lines on stderr (journald-friendly), a console renderer when stderr is a TTY.
Event names are stable (`api.call`, `reconcile.action`, ...) and are part of the
interface. A last-line-of-defence processor masks values of keys that name
secrets; code must still never pass a secret to a log call.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

_SECRET_KEY_PARTS = ("secret", "password", "token", "authorization", "accesskey", "secretkey")


def _mask_secret_keys(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key in list(event_dict):
        lowered = key.lower().replace("_", "")
        if any(part in lowered for part in _SECRET_KEY_PARTS):
            event_dict[key] = "***"
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
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
        ),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
