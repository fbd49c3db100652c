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
    """Wall-clock time plus an offset the control API can move forward; never backward.

    The wall clock, as Agora's servers and the daemon keep time (windows, token
    expiry, request stamps compared with instants a test or the daemon took). Not the
    monotonic clock: the two can run apart (the wall clock ran 0.5 % faster than the
    monotonic one on the CI machine), and an emulator up for a minute then
    stamped a start 30 ms before the window the daemon had waited for. A wall clock
    stepped back holds this one until it catches up.
    """

    def __init__(self) -> None:
        self.offset = 0.0
        self._last = 0.0

    def now(self) -> float:
        self._last = max(self._last, time.time() + self.offset)
        return self._last

    def advance(self, seconds: float) -> float:
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        self.offset += seconds
        return self.now()
