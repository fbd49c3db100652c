"""The command line: one click group, one module per family of commands.

Exit codes are part of the interface (README and docs/cli.md): 0 success, 1 a failure
the command was asked to find (invalid manifests, failed actions), 2 usage (but
`plan`'s usage errors exit 1: its `--detailed-exitcode` gives 2 for changes), 3
another process holds the state store, 130 a
command stopped by Ctrl-C (`run` and `emulator` stop cleanly on it: 0), 141 its reader
went away (a broken pipe).

A failed write of the output (a full disk: one `error: cannot write output` line and
exit 1; a closed pipe: nothing and 141) is answered in `main`, for every command: a
traceback must never be what a command leaves behind.

A command's module is imported only when that command runs (`COMMANDS`): `validate`
in CI must not pay for asyncio, the store or the emulator's command. `--help`, an
unknown command (whose error suggests the nearest names) and shell completion import
them all, so they list every command as if all were imported up front.
"""

from __future__ import annotations

import errno
import importlib
import io
import os
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import click

from orchestrator import __version__

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

COMMANDS: Mapping[str, str] = {
    "apply": "orchestrator.cli.reconcile",
    "emulator": "orchestrator.cli.emulator",
    "init": "orchestrator.cli.reconcile",
    "plan": "orchestrator.cli.plan",
    "run": "orchestrator.cli.run",
    "schema": "orchestrator.cli.manifests",
    "show": "orchestrator.cli.manifests",
    "status": "orchestrator.cli.status",
    "validate": "orchestrator.cli.manifests",
}
"""Each command and the module that defines it (with `@cli.command`, when imported)."""


INTERRUPTED = 130
"""The exit code of a command stopped by Ctrl-C (SIGINT): 128 + the signal's number, as
a shell reports it; never 1, which `status`, `validate` and `apply` give as an answer."""


class LazyGroup(click.Group):
    """A group whose commands are imported when they are looked up (see `COMMANDS`)."""

    def __init__(self, *args: Any, lazy: Mapping[str, str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = lazy

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.lazy, *self.commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands:
            module = self.lazy.get(cmd_name)
            # An unknown name loads every command, so that click's "Did you mean"
            # (from `self.commands`) weighs them all.
            for name in [module] if module is not None else sorted(set(self.lazy.values())):
                importlib.import_module(name)
        return self.commands.get(cmd_name)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            # Not click's "Aborted!" and exit 1: a script would read 1 as an answer.
            click.echo(err=True)  # ends the terminal's ^C line
            echo_error("interrupted")
            ctx.exit(INTERRUPTED)


@click.group(cls=LazyGroup, lazy=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="orchestrator")
def cli() -> None:
    """Declarative orchestrator for Agora Cloud Recording."""


def echo_error(problem: object) -> None:
    """A problem on stderr, each of its lines as `error: ...` (a config may have several)."""
    lines = str(problem).splitlines() or [""]
    click.echo("\n".join(f"error: {line}" for line in lines), err=True)


BROKEN_PIPE = 141
"""The exit code of a command whose reader went away (`orchestrator validate | head -1`):
128 + SIGPIPE, as a shell reports a Unix tool that the signal ended."""


class OutputError(Exception):
    """A write to stdout failed. Not an OSError: nothing that handles a file's or a
    socket's errors may take it for one of its own (click's handler of a broken pipe
    included), so it reaches `main` whatever the command was doing."""

    def __init__(self, cause: OSError) -> None:
        super().__init__(cause.strerror or str(cause))
        self.errno = cause.errno


class _Stdout(io.FileIO):
    """File descriptor 1, its failed writes raised as OutputError."""

    def write(self, data: ReadableBuffer, /) -> int:
        try:
            return super().write(data)
        except OSError as exc:
            raise OutputError(exc) from None


def _guard_stdout() -> None:
    """Put `_Stdout` under `sys.stdout`, buffered and encoded as Python set it up."""
    stream = sys.stdout
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):
        return  # no stdout at all, or one a caller put there: nothing to guard
    sys.stdout = io.TextIOWrapper(
        io.BufferedWriter(_Stdout(fd, "wb", closefd=False)),
        encoding=stream.encoding,
        errors=stream.errors,
        line_buffering=bool(stream.line_buffering),
    )


def main() -> None:
    _guard_stdout()
    try:
        try:
            cli(prog_name="orchestrator")
        finally:
            if sys.stdout is not None:
                sys.stdout.flush()  # what is still buffered fails here, where it is answered
    except KeyboardInterrupt:  # before a command runs (a command's own: `LazyGroup.invoke`)
        click.echo(err=True)
        echo_error("interrupted")
        sys.exit(INTERRUPTED)
    except OutputError as exc:
        # What is left in the buffers goes nowhere, not into a second error at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        if exc.errno == errno.EPIPE:
            sys.exit(BROKEN_PIPE)  # quietly: whoever reads has all it wanted
        echo_error(f"cannot write output: {exc}")
        sys.exit(1)
