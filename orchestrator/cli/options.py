"""The options several commands share, declared once: where the config, the manifests
and the store are (`sources`), the instant a command judges schedules at (`at_option`,
read back by `as_of`), the text-or-JSON output format, and the option types that bound
a value before any command sees it (`HORIZON`, `LIMIT`).

A value out of range must never reach a command: it is click's usage error (exit 2,
one line), not a traceback from the schedule or the store far below.

It must never import a heavy module (pydantic, the manifest model, the store) at import
time: every command's `--help` imports it. The bounds are the schedule module's, read
when a value is converted (the command imports that module anyway).
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import click

_Command = TypeVar("_Command", bound=Callable[..., Any])


class ExistingPath(click.Path):
    """A path that is there: only one that is not (no such file, a dangling symlink,
    a file where a directory should be, an empty argument) is refused (exit 2). One
    that is there but cannot be looked at (under a directory without search
    permission, a symlink loop) goes on to the loader, which says why at that path
    (exit 1); `click.Path(exists=True)` called it one that does not exist."""

    def __init__(self) -> None:
        super().__init__(path_type=Path, readable=False)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if value == "":  # click would make it `.`: the working directory
            self.fail("Path '' does not exist.", param, ctx)
        path = super().convert(value, param, ctx)
        try:
            os.stat(path)
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.ENOTDIR):
                self.fail(f"Path {click.format_filename(value)!r} does not exist.", param, ctx)
        return path


def _source(
    name: str, dest: str, help: str, kind: click.ParamType[Any] | None = None
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
    ExistingPath(),
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


def instant(text: str) -> datetime:
    """An instant (ISO 8601, as `datetime.fromisoformat` reads it: fractions of a second,
    `Z`, minutes alone, or a date; naive means UTC), so that what `plan` and `status`
    print is taken back, within the span schedules are computed over, `FAR_PAST` to
    `FAR_FUTURE`: a window, a horizon or a clash search around an instant outside it
    would leave the range of `datetime`. ValueError says why not."""
    from orchestrator.schedule import FAR_FUTURE, FAR_PAST

    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"{text!r} is not an ISO 8601 instant: like 2026-12-07T09:00:00+01:00, "
            "2026-12-07T09:00Z or 2026-12-07"
        ) from None
    # Compared, not converted: an offset near the ends of `datetime` cannot overflow.
    if not FAR_PAST <= as_of(at) < FAR_FUTURE:
        last = (FAR_FUTURE - timedelta(days=1)).date()
        raise ValueError(
            f"{text} is out of range: schedules are computed from {FAR_PAST.date()} to {last} (UTC)"
        )
    return at


class _Instant(click.ParamType[datetime]):
    """`instant` as an option's type."""

    name = "instant"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> datetime:
        try:
            return value if isinstance(value, datetime) else instant(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


def at_option(what: str) -> Callable[[_Command], _Command]:
    """`--at`, an instant (ISO 8601, or a date) passed as `at`; `what` says what it is for."""
    return click.option(
        "--at",
        "at",
        type=_Instant(),
        default=None,
        help=f"{what} (default: now; naive means UTC; from 1970-01-01 to 8999-12-31).",
    )


class _Horizon(click.ParamType[timedelta]):
    """A duration (the manifests' grammar) longer than 0 and no longer than a schedule
    can be expanded over at once (`MAX_CRON_RANGE`), as a `timedelta`."""

    name = "duration"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> timedelta:
        if isinstance(value, timedelta):
            return value
        from orchestrator.manifest.scalars import parse_duration
        from orchestrator.schedule import MAX_CRON_RANGE

        try:
            span = parse_duration(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)
        if not span:
            self.fail(f"{value} shows no time: give a horizon longer than 0, like 24h", param, ctx)
        if span > MAX_CRON_RANGE:
            self.fail(
                f"{value} is longer than {MAX_CRON_RANGE.days}d, the most a schedule spans",
                param,
                ctx,
            )
        return span


HORIZON = click.option(
    "--horizon",
    type=_Horizon(),
    default="24h",
    show_default=True,
    help="How far the timeline reaches (more than 0, at most 3660d).",
)

LIMIT = click.option(
    "--limit",
    # A store reads a negative limit as "all of them"; the command line does not offer it.
    type=click.IntRange(0, 1_000_000),
    default=20,
    show_default=True,
    help="How many ended sessions to show (0 to 1000000).",
)


def as_of(at: datetime | None) -> datetime:
    """The instant `--at` named (a naive one is UTC), or now."""
    if at is None:
        return datetime.now(UTC)
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)
