"""Fixtures of the reliability suite: the rig, the scale, and where figures go.

CI size by default; `ORCHESTRATOR_RELIABILITY_LONG=1` multiplies manifests, kills,
faults, cases and durations (see `Scale`). Each test records its measured figures
with the `figures` fixture: they are printed at the end of the test (`-s` shows
them) and, when `ORCHESTRATOR_RELIABILITY_REPORT=FILE` is set, appended to FILE as
one JSON line per test (what docs/reliability.md is written from).
"""

from __future__ import annotations

import json
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

LONG_FLAG = "ORCHESTRATOR_RELIABILITY_LONG"
REPORT_FLAG = "ORCHESTRATOR_RELIABILITY_REPORT"


@dataclass(frozen=True)
class Scale:
    """Multipliers over the CI sizes."""

    long: bool
    manifests: int  # recordings (and App IDs, to keep each under its rate limit)
    kills: int
    duration: float  # spread of windows over time
    cases: int  # property-based cases and mutated files


def current_scale() -> Scale:
    if os.environ.get(LONG_FLAG) == "1":
        return Scale(long=True, manifests=2, kills=4, duration=2.0, cases=10)
    return Scale(long=False, manifests=1, kills=1, duration=1.0, cases=1)


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
        "long": current_scale().long,
        "seconds": round(time.monotonic() - started, 1),
        **data,
    }
    text = json.dumps(record, sort_keys=True, default=str)
    print(f"\nreliability figures: {text}")
    target = os.environ.get(REPORT_FLAG)
    if target:
        with open(target, "a", encoding="utf-8") as handle:
            handle.write(text + "\n")
