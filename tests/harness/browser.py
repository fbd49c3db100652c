"""Debian's chromium for the status page's browser tests and its screenshot.

Playwright for Python drives the chromium Debian installs (`make test` installs it as
root when missing); no browser is ever downloaded. Headless (Playwright's default),
as root in CI (hence no sandbox), and nothing on the network but the page: no
updates, no sync, no QUIC probes.

Must never: download a browser, or look for one anywhere but PATH and /usr/bin.
"""

from __future__ import annotations

import os
import shutil

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium() -> str | None:
    """Debian's chromium (its launcher script), or None when it is not installed."""
    return shutil.which("chromium", path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/bin"]))
