"""Shared fixtures for integration tests: the Agora emulator over real loopback HTTP.

Use the `emulator` fixture in any async test::

    async def test_something(emulator: EmulatorHandle) -> None:
        client = emulator.client()                    # an AgoraClient for it (closed for you)
        rid = await client.acquire(emulator.app_id, {...})
        emulator.emu.join(emulator.app_id, "room", "123")   # control: users, faults, clock
        emulator.emu.advance(301)                     # move its clock instead of sleeping

`emulator.emu` is the in-process `orchestrator.emulator.Emulator`; its methods
are the control API (`join`, `leave`, `set_users`, `advance`, `abort`, `fail_next`,
`set_faults`, `clear_faults`, `requests`, `sessions`, `settings`,
`set_app_certificate`), and the same is served over HTTP under `emulator.control_url`.
The emulator starts without an App Certificate (tokens are not read); a test that
needs one sets it: `emulator.emu.set_app_certificate(CERT)` (every App ID) or
`emulator.emu.set_app_certificate(CERT, app_id)`. Each test gets a fresh emulator on
127.0.0.1 with a free port.

The emulator enforces 10 requests per second per App ID, and `client()` gives each
client its own `RateLimiter(10)`, so a test making many calls waits in real time. To
go faster, raise both: `emulator.emu.settings.update({"rate_limit": 1000})` and
`emulator.client(limiter=RateLimiter(per_second=1000))`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from orchestrator.agora.client import AgoraClient, RateLimiter, RetryPolicy
from orchestrator.emulator import AppConfig, Emulator, EmulatorConfig, running_emulator

CUSTOMER_ID = "test-customer"
CUSTOMER_SECRET = "test-customer-secret"
#: Four valid App IDs the emulator knows; the first is `EmulatorHandle.app_id`.
APP_IDS = tuple(f"{n:032x}" for n in (0xA1, 0xA2, 0xA3, 0xA4))
#: An App ID the emulator knows but without cloud recording enabled (acquire -> 62).
DISABLED_APP_ID = f"{0xD15AB1ED:032x}"


async def _no_sleep(_seconds: float) -> None:
    return None


#: Retries without waiting, so tests stay fast; pass `retry=` to `client()` to override.
FAST_RETRY = RetryPolicy(max_attempts=4, base_delay=0.0, max_delay=0.0, sleep=_no_sleep)


@dataclass
class EmulatorHandle:
    """A running emulator plus what a test needs to talk to it."""

    emu: Emulator
    base_url: str
    control_url: str
    app_ids: tuple[str, ...]
    disabled_app_id: str
    customer_id: str
    customer_secret: str
    _clients: list[AgoraClient] = field(default_factory=list)
    _https: list[httpx.AsyncClient] = field(default_factory=list)

    @property
    def app_id(self) -> str:
        return self.app_ids[0]

    def client(self, **overrides: Any) -> AgoraClient:
        """An AgoraClient for this emulator (fast retries, own rate limiter); closed at teardown.

        Keyword arguments override AgoraClient's: `limiter=`, `retry=`, `timeout=`,
        `validate=False` (send bodies the client would refuse, to see the emulator's
        answer), `customer_secret=` (to see a 401).
        """
        options: dict[str, Any] = {
            "customer_id": self.customer_id,
            "customer_secret": self.customer_secret,
            "base_url": self.base_url,
            "limiter": RateLimiter(),
            "retry": FAST_RETRY,
        }
        options.update(overrides)
        client = AgoraClient(**options)
        self._clients.append(client)
        return client

    def control(self) -> httpx.AsyncClient:
        """A plain httpx client rooted at the control API (closed at teardown)."""
        http = httpx.AsyncClient(base_url=self.control_url, timeout=5.0)
        self._https.append(http)
        return http

    async def aclose(self) -> None:
        for client in self._clients:
            await client.aclose()
        for http in self._https:
            await http.aclose()


@pytest.fixture
async def emulator() -> AsyncIterator[EmulatorHandle]:
    """A fresh Agora emulator on 127.0.0.1 (free port) for one test."""
    apps = {app_id: AppConfig() for app_id in APP_IDS}
    apps[DISABLED_APP_ID] = AppConfig(recording_enabled=False)
    config = EmulatorConfig(
        customer_id=CUSTOMER_ID, customer_secret=CUSTOMER_SECRET, apps=apps, seed=1
    )
    async with running_emulator(config, host="127.0.0.1", port=0) as emu:
        handle = EmulatorHandle(
            emu=emu,
            base_url=emu.base_url,
            control_url=emu.control_url,
            app_ids=APP_IDS,
            disabled_app_id=DISABLED_APP_ID,
            customer_id=CUSTOMER_ID,
            customer_secret=CUSTOMER_SECRET,
        )
        try:
            yield handle
        finally:
            await handle.aclose()
