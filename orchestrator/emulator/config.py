"""What an emulator is started with: who may call it (`EmulatorConfig`: credentials,
App IDs, certificates, the notification target, settings) and its clock.

The clock is real time plus an offset that only moves forward, so a test moves time
instead of sleeping. It must never repr a secret (the customer secret is a local test
credential; certificates and the NCS secret stay out of every repr).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field

from orchestrator.emulator.notify import NotifyTarget
from orchestrator.emulator.state import AppCertificates, Settings

_APP_ID = re.compile(r"[0-9a-f]{32}")
#: Never names the App ID: it may be a certificate typed in the wrong place.
NOT_SERVED = "a certificate is given for an App ID this emulator does not serve"


@dataclass(frozen=True)
class AppConfig:
    """One App ID the emulator knows. `recording_enabled=False` answers acquire with 62."""

    recording_enabled: bool = True


@dataclass
class EmulatorConfig:
    """Who may call the emulator. With no `apps`, any 32-hex-digit App ID is accepted.
    `certificates`: the App Certificates `start` tokens are verified with (none: tokens
    are not read); ValueError if one is for an App ID it does not serve. `notify`:
    where NCS notifications go (None: nowhere, until the control API sets one)."""

    customer_id: str = "emulator"
    customer_secret: str = "emulator-secret"  # noqa: S105  # a local test credential, not a secret
    apps: dict[str, AppConfig] = field(default_factory=dict)
    settings: Settings = field(default_factory=Settings)
    seed: int | None = None
    certificates: AppCertificates = field(default_factory=AppCertificates)
    notify: NotifyTarget | None = None

    def __post_init__(self) -> None:
        if not all(self.serves(app_id) for app_id in self.certificates.by_app):
            raise ValueError(NOT_SERVED)

    def serves(self, app_id: str) -> bool:
        """Whether requests for `app_id` reach the endpoints (else: invalid appid)."""
        if self.apps:
            return app_id in self.apps
        return bool(_APP_ID.fullmatch(app_id))


class EmulatorClock:
    """Real time plus an offset the control API can move forward (never backward)."""

    def __init__(self) -> None:
        self._wall0 = time.time()
        self._mono0 = time.monotonic()
        self.offset = 0.0

    def now(self) -> float:
        return self._wall0 + (time.monotonic() - self._mono0) + self.offset

    def advance(self, seconds: float) -> float:
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        self.offset += seconds
        return self.now()
