"""`validate`, `schema` and `show`: offline commands on manifests (no network, no secrets).

Exit codes: 0 valid, 1 invalid (any error; warnings too under --strict), 2 usage
(no such path, no manifest file found (only files it skips), bad option). A path
that exists but cannot be read is not a usage error: the loader reports it as an
error at that path.
Heavy modules (pydantic, ruamel.yaml, the model) are imported inside the commands so
that `--help` and the other commands stay fast.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from orchestrator.cli import cli
from orchestrator.cli.context import load_once
from orchestrator.cli.options import ExistingPath, as_of, at_option

if TYPE_CHECKING:
    from orchestrator.manifest.diagnostics import Diagnostic
    from orchestrator.manifest.loaded import LoadedManifest, LoadResult

_PATHS = click.argument(
    "paths",
    nargs=-1,
    required=True,
    # A path that is there but cannot be read is the loader's positioned error (exit 1).
    type=ExistingPath(),
)
_AT = at_option("Search schedule clashes from this instant")


def _load(paths: Sequence[Path], strict: bool, at: datetime | None) -> LoadResult:
    # No config here, so no App IDs: two manifests clash when they name the same profile
    # (`plan`, `apply` and the daemon key the check on App IDs).
    result = load_once(list(paths), strict=strict, now=as_of(at), app_ids=None)
    if not result.files and not result.errors:  # nothing read; at most files skipped
        shown = ", ".join(str(p) for p in paths)
        skipped = "".join(f"\n{d.text()}" for d in result.warnings)
        raise click.UsageError(f"no manifest files (*.yaml, *.yml) found in {shown}{skipped}")
    return result


def _text_line(d: Diagnostic) -> str:
    return d.text()


def _gh_escape(value: str, *, prop: bool) -> str:
    value = value.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    if prop:
        value = value.replace(":", "%3A").replace(",", "%2C")
    return value


def _github_line(d: Diagnostic) -> str:
    """A workflow command; control characters written as escapes first (`one_line`),
    as in the text format: GitHub's escaping covers only `%`, CR, LF (and `:`, `,` in
    properties), and its log shows the rest to whoever reads it."""
    from orchestrator.manifest.diagnostics import one_line

    field = f"{d.field}: " if d.field else ""
    file = _gh_escape(one_line(d.file), prop=True)
    return (
        f"::{d.severity} file={file},line={d.line},col={d.column}::"
        f"{_gh_escape(one_line(field + d.message), prop=False)}"
    )


def _summary(result: LoadResult) -> str:
    errors, warnings = len(result.errors), len(result.warnings)
    verdict = "invalid" if result.failed_files else "valid"
    return (
        f"{verdict}: {len(result.files)} file(s), {len(result.manifests)} valid manifest(s), "
        f"{errors} error(s), {warnings} warning(s)"
    )


@cli.command()
@_PATHS
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json", "github"]),
    default="text",
    show_default=True,
    help="text: file:line:col lines; json: one object; github: Actions annotations.",
)
@click.option("--strict", is_flag=True, help="Warnings (literal secrets) are errors.")
@_AT
def validate(paths: tuple[Path, ...], fmt: str, strict: bool, at: datetime | None) -> None:
    """Check manifests offline: files, or directories (recursively *.yaml, *.yml).

    Exit 0 when every manifest is valid, 1 when any is not, 2 on usage errors.
    """
    result = _load(paths, strict, at)
    if fmt == "json":
        payload = {
            "valid": not result.failed_files,
            "files": len(result.files),
            "manifests": len(result.manifests),
            "errors": len(result.errors),
            "warnings": len(result.warnings),
            "failedFiles": sorted(result.failed_files),
            "unreadable": sorted(result.unreadable),
            "diagnostics": [d.as_dict() for d in result.diagnostics],
        }
        click.echo(json.dumps(payload, indent=2))
    else:
        line = _github_line if fmt == "github" else _text_line
        for diagnostic in result.diagnostics:
            click.echo(line(diagnostic))
        click.echo(_summary(result))
    sys.exit(1 if result.failed_files else 0)


@cli.command()
def schema() -> None:
    """Print the JSON Schema of a manifest (for yaml-language-server and editors)."""
    from orchestrator.manifest.schema import manifest_json_schema

    click.echo(json.dumps(manifest_json_schema(), indent=2))


SHOWN_AHEAD = timedelta(days=366)
"""How far `show` looks for a manifest's next window."""


def _show_secret(ref: Any) -> str:
    from orchestrator.secrets import LiteralSecret

    return "***" if isinstance(ref, LiteralSecret) else f"<{ref.describe()}>"


def _described(item: LoadedManifest, now: datetime) -> dict[str, Any]:
    from orchestrator.reconcile.translate import TranslationError, translate

    m = item.manifest
    try:
        upcoming = m.build_schedule().windows_between(now, now + SHOWN_AHEAD)
    except ValueError:  # shown as "no upcoming window" rather than a traceback
        upcoming = []
    next_window = (
        {"start": upcoming[0].start.isoformat(), "end": upcoming[0].end.isoformat()}
        if upcoming
        else None
    )
    bodies: dict[str, Any] = {}
    try:
        requests = translate(m)
    except TranslationError as exc:
        bodies["error"] = str(exc)
    else:
        bodies["acquire"] = requests.acquire.to_wire()
        bodies["start"] = requests.start.resolved(_show_secret).to_wire()
        bodies["update"] = requests.update.to_wire()
        if requests.update_layout is not None:
            bodies["updateLayout"] = requests.update_layout.to_wire()
    return {
        "name": m.name,
        "file": item.file,
        "line": item.line,
        "app": m.app,
        "channel": m.channel,
        "uid": m.recording_uid,
        "uidAuto": m.uid == "auto",
        "rolloverUid": m.rollover_uid,
        "rolloverUidAuto": m.rollover_uid_setting is None,
        "mode": str(m.mode),
        "schedule": m.schedule.describe(),
        "nextWindow": next_window,
        "suspend": m.suspend,
        "updatePolicy": str(m.update_policy),
        "startingDeadline": (
            int(m.starting_deadline.total_seconds()) if m.starting_deadline else None
        ),
        "labels": dict(m.labels),
        "secrets": {path: _show_secret(ref) for path, ref in m.secret_refs()},
        "bodies": bodies,
    }


def _show_text(info: dict[str, Any]) -> None:
    uid = f"{info['uid']} (auto)" if info["uidAuto"] else str(info["uid"])
    rollover = f"{info['rolloverUid']}{' (auto)' if info['rolloverUidAuto'] else ''}"
    click.echo(f"== {info['name']}  ({info['file']}:{info['line']})")
    click.echo(
        f"   app {info['app']}, channel '{info['channel']}', uid {uid}, rolloverUid {rollover}, "
        f"mode {info['mode']}"
    )
    window = info["nextWindow"]
    always = info["schedule"] == "always"  # its one window spans every instant
    if always:
        upcoming = ""
    elif window is None:  # said, not left out: `0 12 29 2 *` fires once in four years
        upcoming = f"; no window within {SHOWN_AHEAD.days} days"
    else:
        upcoming = f"; next window {window['start']} .. {window['end']}"
    click.echo(f"   schedule: {info['schedule']}{upcoming}")
    deadline = info["startingDeadline"]
    click.echo(
        f"   suspend: {'yes' if info['suspend'] else 'no'}, updatePolicy: {info['updatePolicy']}"
        f", startingDeadline: {f'{deadline}s' if deadline is not None else 'none'}"
    )
    if info["labels"]:
        labels = ", ".join(f"{k}={v}" for k, v in sorted(info["labels"].items()))
        click.echo(f"   labels: {labels}")
    for name, body in info["bodies"].items():
        click.echo(f"   {name} body:")
        for text in json.dumps(body, indent=2).splitlines():
            click.echo(f"     {text}")
    click.echo("")


@cli.command()
@_PATHS
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
)
@click.option("--strict", is_flag=True, help="Warnings (literal secrets) are errors.")
@_AT
def show(paths: tuple[Path, ...], fmt: str, strict: bool, at: datetime | None) -> None:
    """Show each manifest and the exact API bodies it would send (secrets as references).

    Nothing is resolved or sent: a secret appears as <env:NAME>, <file:PATH>,
    <credential:NAME>, or *** for a literal. Exit codes as for `validate`.
    """
    result = _load(paths, strict, at)
    for diagnostic in result.diagnostics:
        click.echo(diagnostic.text(), err=True)
    if result.failed_files:
        click.echo(_summary(result), err=True)
        sys.exit(1)
    now = as_of(at)
    described = [_described(item, now) for item in result.manifests]
    if fmt == "json":
        click.echo(json.dumps(described, indent=2))
    else:
        for info in described:
            _show_text(info)
        click.echo(_summary(result))
    sys.exit(0)
