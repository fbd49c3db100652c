"""Fixtures of the reliability suite: the rig, the scale, and where figures go.

Three sizes (`ORCHESTRATOR_RELIABILITY_SCALE`):

- `ci` (the default, what `make test` runs): every scenario and invariant, with
  fewer kills, exits and rounds and windows spread over less time;
- `full`: the sizes docs/reliability.md describes and measured its figures at
  (`benchmarks/reliability_bench.py` runs the suite so and collects them);
- `long`: `full` with 2x recordings, 4x kills and exits, 2x the time spread and
  10x property cases (`ORCHESTRATOR_RELIABILITY_LONG=1` says the same).

Each test records its measured figures with the `figures` fixture: they are printed
at the end of the test (`-s` shows them) and, when
`ORCHESTRATOR_RELIABILITY_REPORT=FILE` is set, appended to FILE as one JSON line per
test (what docs/reliability.md is written from). Figures are measured, not asserted:
the tests assert what happened, its order, and that nothing extra did.
"""

from __future__ import annotations

import json
import math
import os
import platform
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.reliability.rig import Rig

SCALE_FLAG = "ORCHESTRATOR_RELIABILITY_SCALE"
LONG_FLAG = "ORCHESTRATOR_RELIABILITY_LONG"
REPORT_FLAG = "ORCHESTRATOR_RELIABILITY_REPORT"


@dataclass(frozen=True)
class Scale:
    """Multipliers over the `full` sizes."""

    name: str  # ci, full or long
    manifests: int  # recordings (and App IDs, to keep each under its rate limit)
    kills: float  # kills, exits and rounds
    duration: float  # spread of windows over time
    cases: int  # property-based cases and mutated files
    lengths: tuple[float, float] = (20.0, 60.0)  # seconds a scenario 1-2 window lasts

    @property
    def long(self) -> bool:
        return self.name == "long"

    def times(self, count: int, *, least: int = 1) -> int:
        """`count` (a `full` figure of kills, exits or rounds) at this scale."""
        return max(least, math.ceil(count * self.kills))


SCALES = {
    # Shorter windows, opening over 45 s instead of 120 s, and 12 kills: every kind
    # of moment a kill can land on (start-up, a pass, an action between its answer and
    # its record) is still hit; the full count is for `full` and `long`.
    "ci": Scale("ci", manifests=1, kills=0.4, duration=0.375, cases=1, lengths=(20.0, 40.0)),
    "full": Scale("full", manifests=1, kills=1.0, duration=1.0, cases=1),
    "long": Scale("long", manifests=2, kills=4.0, duration=2.0, cases=10),
}


def current_scale() -> Scale:
    if os.environ.get(LONG_FLAG) == "1":
        return SCALES["long"]
    name = os.environ.get(SCALE_FLAG, "ci") or "ci"
    if name not in SCALES:
        raise pytest.UsageError(f"{SCALE_FLAG}={name}: one of {', '.join(SCALES)}")
    return SCALES[name]


@pytest.fixture
def scale() -> Scale:
    return current_scale()


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    (tmp_path / "recordings.d").mkdir()
    the_rig = Rig(tmp_path)
    try:
        yield the_rig
    finally:
        await the_rig.close()


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    """A dict the test fills with what it measured; printed and saved at teardown."""
    data: dict[str, Any] = {}
    started = time.monotonic()
    yield data
    record = {
        "test": request.node.name,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} cpu, "
        f"Python {platform.python_version()}",
        "scale": current_scale().name,
        "seconds": round(time.monotonic() - started, 1),
        **data,
    }
    text = json.dumps(record, sort_keys=True, default=str)
    print(f"\nreliability figures: {text}")
    target = os.environ.get(REPORT_FLAG)
    if target:
        with open(target, "a", encoding="utf-8") as handle:
            handle.write(text + "\n")
