"""The local emulator of the Cloud Recording RESTful API (`orchestrator emulator`).

Product code, not part of the client: tests, the demo, the benchmarks and users
without an Agora account serve it on loopback and point the client at it. It sits
above `orchestrator.agora` (it shares the request checks of `agora.wire`) and
nothing below the CLI imports it. `server.py` is the aiohttp application and the
control API; `state.py` holds the rules, synchronous and clock-free.

It needs aiohttp, the optional extra `agora-recording-orchestrator[emulator]`:
importing this package without it raises `ModuleNotFoundError`, which
`orchestrator emulator` turns into one line. Nothing else in the orchestrator may import it.
"""

from orchestrator.emulator.server import (
    CONTROL_PREFIX,
    AppConfig,
    Emulator,
    EmulatorClock,
    EmulatorConfig,
    FaultConfig,
    NextFault,
    is_loopback,
    running_emulator,
)
from orchestrator.emulator.state import AppCertificates, Settings

__all__ = [
    "CONTROL_PREFIX",
    "AppCertificates",
    "AppConfig",
    "Emulator",
    "EmulatorClock",
    "EmulatorConfig",
    "FaultConfig",
    "NextFault",
    "Settings",
    "is_loopback",
    "running_emulator",
]
