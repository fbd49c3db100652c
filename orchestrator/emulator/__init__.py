"""The local emulator of the Cloud Recording RESTful API (`orchestrator emulator`).

Product code, not part of the client: tests, the demo, the benchmarks and users
without an Agora account serve it on loopback and point the client at it. It sits
above `orchestrator.agora` (it shares the request checks of `agora.wire` and the NCS
wire format of `agora.ncs`) and nothing below the CLI imports it. `server.py` is the
aiohttp application and the control API; `state.py` holds the rules, synchronous and
clock-free, with one session's lifecycle in `session.py` and token checks in
`tokens.py`; `faults.py` the injected faults; `notices.py` which NCS notifications
the sessions' changes call for and `notify.py` their delivery; `config.py` what an
emulator is started with.

It needs aiohttp, the optional extra `agora-recording-orchestrator[emulator]`:
importing this package without it raises `ModuleNotFoundError`, which
`orchestrator emulator` turns into one line. Nothing else in the orchestrator may import it.
"""

from orchestrator.emulator.config import AppConfig, EmulatorClock, EmulatorConfig
from orchestrator.emulator.faults import FaultConfig, NextFault
from orchestrator.emulator.notify import DeliveryControls, NotifyTarget
from orchestrator.emulator.server import (
    CONTROL_PREFIX,
    Emulator,
    is_loopback,
    running_emulator,
)
from orchestrator.emulator.state import AppCertificates, Settings

__all__ = [
    "CONTROL_PREFIX",
    "AppCertificates",
    "AppConfig",
    "DeliveryControls",
    "Emulator",
    "EmulatorClock",
    "EmulatorConfig",
    "FaultConfig",
    "NextFault",
    "NotifyTarget",
    "Settings",
    "is_loopback",
    "running_emulator",
]
