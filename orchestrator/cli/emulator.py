"""`emulator`: serve the local Agora Cloud Recording emulator until SIGTERM or SIGINT.

Exit codes: 0 after a clean shutdown on SIGTERM/SIGINT, 1 when the address cannot be
bound, 2 usage, and also when aiohttp (the extra `agora-recording-orchestrator[emulator]`) is not
installed: the command is then unavailable, as an unknown command would be, and one
line on stderr says what to install. One line on stdout says where it listens, so
scripts can wait for it; logs go to stderr. The customer secret, the App
Certificates and the NCS secret (`--notify-secret`) are never printed, not even in an
error about them.

`orchestrator.emulator` is imported only here and only when the command runs, so
no other command (and not `emulator --help`) needs aiohttp.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from typing import TYPE_CHECKING

import click

from orchestrator.cli import cli

if TYPE_CHECKING:
    from orchestrator.emulator import EmulatorConfig

USAGE = 2  # README and docs/cli.md: a command this install cannot run is a usage error
MISSING_EXTRA = (
    "error: the emulator needs aiohttp: install the package with its extra, from a path "
    "(pip install '/path/to/checkout[emulator]'; never a bare name, see README)"
)


def _missing_extra(exc: ModuleNotFoundError) -> bool:
    """Whether the import failed on a third-party module (aiohttp or one of its own)."""
    # A missing module of ours is a bug and keeps its traceback.
    return exc.name is not None and exc.name.partition(".")[0] != "orchestrator"


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    default=8765,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Port to listen on (0 picks a free one; the line on stdout names it).",
)
@click.option(
    "--app",
    "apps",
    multiple=True,
    metavar="APPID",
    help="An App ID to accept (repeatable). Without any, every 32-hex-digit App ID is accepted.",
)
@click.option(
    "--customer-id",
    envvar="ORCHESTRATOR_EMULATOR_CUSTOMER_ID",
    default="emulator",
    show_default=True,
    help="Customer ID for HTTP Basic auth (env ORCHESTRATOR_EMULATOR_CUSTOMER_ID).",
)
@click.option(
    "--customer-secret",
    envvar="ORCHESTRATOR_EMULATOR_CUSTOMER_SECRET",
    default="emulator-secret",
    show_default=True,
    help="Customer secret for HTTP Basic auth (env ORCHESTRATOR_EMULATOR_CUSTOMER_SECRET).",
)
@click.option(
    "--app-certificate",
    "app_certificates",
    multiple=True,
    envvar="ORCHESTRATOR_EMULATOR_APP_CERTIFICATE",
    metavar="[APPID=]CERT",
    help="An App Certificate (32 hex digits) that start tokens must be minted from: for "
    "every App ID, or as APPID=CERT for one (repeatable; APPID=CERT wins for its App ID). "
    "Without any, tokens are not read (env ORCHESTRATOR_EMULATOR_APP_CERTIFICATE, "
    "several separated by spaces).",
)
@click.option(
    "--notify",
    "notify_url",
    envvar="ORCHESTRATOR_EMULATOR_NOTIFY",
    metavar="URL",
    default=None,
    help="POST Agora NCS notifications (recorder started, failover, exits, file lists) "
    "to URL, signed with --notify-secret (env ORCHESTRATOR_EMULATOR_NOTIFY).",
)
@click.option(
    "--notify-secret",
    envvar="ORCHESTRATOR_EMULATOR_NOTIFY_SECRET",
    metavar="SECRET",
    default=None,
    help="The NCS secret notifications are signed with; needed with --notify, never "
    "printed (env ORCHESTRATOR_EMULATOR_NOTIFY_SECRET: keeps it off the command line).",
)
@click.option("--seed", type=int, default=None, help="Seed for random fault injection.")
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
)
def emulator(
    host: str,
    port: int,
    apps: tuple[str, ...],
    customer_id: str,
    customer_secret: str,
    app_certificates: tuple[str, ...],
    notify_url: str | None,
    notify_secret: str | None,
    seed: int | None,
    log_level: str,
) -> None:
    """Serve a local Agora Cloud Recording API emulator (control API under /_emulator)."""
    default, by_app = _split_certificates(app_certificates)
    if (notify_url is None) != (notify_secret is None):
        raise click.UsageError("--notify and --notify-secret go together: give both or neither")
    try:
        from orchestrator.emulator import AppCertificates, AppConfig, EmulatorConfig, NotifyTarget
    except ModuleNotFoundError as exc:
        if not _missing_extra(exc):
            raise
        click.echo(MISSING_EXTRA, err=True)
        sys.exit(USAGE)
    from orchestrator.logging import configure_logging

    configure_logging(log_level)
    notify = None
    if notify_url is not None and notify_secret is not None:
        try:
            notify = NotifyTarget(notify_url, notify_secret)
        except ValueError as exc:  # names neither the URL nor the secret
            raise click.BadParameter(
                str(exc), param_hint="'--notify' / '--notify-secret'"
            ) from None
    try:
        config = EmulatorConfig(
            customer_id=customer_id,
            customer_secret=customer_secret,
            apps={app_id: AppConfig() for app_id in apps},
            seed=seed,
            certificates=AppCertificates(default, by_app),
            notify=notify,
        )
    except ValueError as exc:  # only the certificates are checked; never names a value
        raise click.BadParameter(str(exc), param_hint=CERTIFICATE_OPTION) from None
    try:
        asyncio.run(_serve(config, host, port))
    except OSError as exc:
        click.echo(f"orchestrator emulator: cannot listen on {host}:{port}: {exc}", err=True)
        sys.exit(1)


CERTIFICATE_OPTION = "'--app-certificate'"


def _split_certificates(values: tuple[str, ...]) -> tuple[str | None, dict[str, str]]:
    """The certificate for every App ID (a bare CERT) and those for one (APPID=CERT);
    a usage error for one given twice. `EmulatorConfig` checks the rest. No message
    names a value: a certificate typed where an App ID goes must not be printed."""
    default: str | None = None
    by_app: dict[str, str] = {}
    for value in values:
        app_id, named, certificate = value.partition("=")
        if not named:
            if default is not None:
                raise click.BadParameter(
                    "a certificate for every App ID is given twice", param_hint=CERTIFICATE_OPTION
                )
            default = value
            continue
        if not app_id:
            raise click.BadParameter(
                "APPID=CERT needs an App ID before '='", param_hint=CERTIFICATE_OPTION
            )
        if app_id in by_app:
            raise click.BadParameter(
                "an App ID is given a certificate twice", param_hint=CERTIFICATE_OPTION
            )
        by_app[app_id] = certificate
    return default, by_app


async def _serve(config: EmulatorConfig, host: str, port: int) -> None:
    from orchestrator.emulator import running_emulator

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with running_emulator(config, host=host, port=port) as emu:
        click.echo(f"orchestrator emulator listening on {emu.base_url} control {emu.control_url}")
        sys.stdout.flush()
        await stop.wait()
    click.echo("orchestrator emulator stopped", err=True)
