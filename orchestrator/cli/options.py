"""The options several commands share, declared once: where the config, the manifests
and the store are (`sources`), the instant a command judges schedules at (`at_option`,
read back by `as_of`), and the text-or-JSON output format.

It must never import a heavy module (pydantic, the manifest model, the store): every
command's `--help` imports it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import click

_Command = TypeVar("_Command", bound=Callable[..., Any])


def _source(
    name: str, dest: str, help: str, kind: click.Path[Path] | None = None
) -> Callable[[_Command], _Command]:
    """An option saying where something is, passed as `dest`; None when it is not given
    (the config's setting, or its default, applies)."""
    return click.option(name, dest, type=kind, default=None, help=help)


CONFIG = _source(
    "--config",
    "config_path",
    "Daemon config file (default: $ORCHESTRATOR_CONFIG; else defaults and environment).",
    click.Path(dir_okay=False, path_type=Path),
)
MANIFESTS = _source(
    "--manifests",
    "manifests_dir",
    "Manifests directory or file (default: manifests.dir of the config).",
    click.Path(exists=True, path_type=Path),
)
STATE = _source(
    "--state",
    "state_url",
    "State store URL, e.g. sqlite:///state.db (default: state.url of the config).",
)
FORMAT = click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")


def sources(command: _Command) -> _Command:
    """`--config`, `--manifests` and `--state`: where a command finds its config, its
    manifests and its store (passed as `config_path`, `manifests_dir`, `state_url`)."""
    return CONFIG(MANIFESTS(STATE(command)))


def at_option(what: str) -> Callable[[_Command], _Command]:
    """`--at`, an instant (ISO 8601, or a date) passed as `at`; `what` says what it is for."""
    return click.option(
        "--at",
        "at",
        type=click.DateTime(formats=["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d"]),
        default=None,
        help=f"{what} (default: now; naive means UTC).",
    )


def as_of(at: datetime | None) -> datetime:
    """The instant `--at` named (a naive one is UTC), or now."""
    if at is None:
        return datetime.now(UTC)
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)
