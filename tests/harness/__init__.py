"""The one process harness of the tests, the benchmarks and the demo.

- `processes`: `Processes` starts and owns children in one directory (the emulator
  with `--port 0`, the daemon with its JSON log in a file and a NOTIFY_SOCKET,
  one-off CLI runs) and ends them by pid; `EmulatorProcess` (its address read back,
  its control API), `Daemon` (ready, events, metrics address read back, stop, kill).
- `config`: the daemon's config built as data, validated by the config model,
  written as JSON.
- `logs`: `JsonLog`, a JSON-lines file read as it grows; `event_time`.
- `notify`: `NotifySocket`, a real systemd notify socket.
- `waits`: `wait_until` (asyncio) and `wait_until_blocking`: every wait is for an
  event and bounded.

Scripts run from the repository root (`benchmarks/*.py`, `scripts/demo.py`) import
it after putting the root on `sys.path`; nothing needs installing.

Must never: pick a free port and hand it to another process, signal a process it
did not start, or wait without a bound.
"""

from tests.harness.config import config_data, credentials, merged, write_config
from tests.harness.logs import Event, JsonLog, event_time, parse_event
from tests.harness.notify import NotifySocket
from tests.harness.processes import (
    Child,
    Completed,
    Daemon,
    EmulatorProcess,
    Processes,
    child_env,
    gone,
    orchestrator,
    run_cli,
    start_cli,
)
from tests.harness.waits import WaitTimeout, wait_until, wait_until_blocking

__all__ = [
    "Child",
    "Completed",
    "Daemon",
    "EmulatorProcess",
    "Event",
    "JsonLog",
    "NotifySocket",
    "Processes",
    "WaitTimeout",
    "child_env",
    "config_data",
    "credentials",
    "event_time",
    "gone",
    "merged",
    "orchestrator",
    "parse_event",
    "run_cli",
    "start_cli",
    "wait_until",
    "wait_until_blocking",
    "write_config",
]
