"""The command line: one click group, one module per family of commands.

Exit codes are part of the interface (README and docs/cli.md): 0 success, 1 a failure
the command was asked to find (invalid manifests, failed actions), 2 usage (and
`plan --detailed-exitcode`: changes), 3 another process holds the state store.
"""

from __future__ import annotations

import click

from orchestrator import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="orchestrator")
def cli() -> None:
    """Declarative orchestrator for Agora Cloud Recording."""


def echo_error(problem: object) -> None:
    """A problem on stderr, each of its lines as `error: ...` (a config may have several)."""
    lines = str(problem).splitlines() or [""]
    click.echo("\n".join(f"error: {line}" for line in lines), err=True)


def _register() -> None:
    # Imported for their side effect of adding commands to `cli`.
    from orchestrator.cli import emulator, manifests, plan, reconcile, run, status  # noqa: F401


def main() -> None:
    _register()
    cli(prog_name="orchestrator")
