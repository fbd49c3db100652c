"""The wire models' ranged integers read their bounds and default from one record.

Covers: each field the reference gives a range and a default (resourceExpiredHour,
maxIdleTime, captureInterval) defaults to its `contract.Range`'s default, takes both
of its ends, and refuses one past either end; the manifest's maxIdleTime defaults to
the same number.
"""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from orchestrator import contract as c
from orchestrator.agora import wire
from orchestrator.manifest.media import Recording

CASES = [
    (wire.AcquireClientRequest, "resourceExpiredHour", c.RESOURCE_HOURS, {}),
    (wire.RecordingConfig, "maxIdleTime", c.IDLE_TIME, {}),
    (wire.SnapshotConfig, "captureInterval", c.CAPTURE_INTERVAL, {"fileType": ["jpg"]}),
]


@pytest.mark.parametrize(("model", "name", "bounds", "rest"), CASES)
def test_a_ranged_field_takes_its_range_and_defaults_to_its_default(
    model: type[wire.Request], name: str, bounds: c.Range, rest: dict[str, Any]
) -> None:
    assert getattr(model.model_validate(rest), name) == bounds.default
    for end in (bounds.low, bounds.high):
        assert getattr(model.model_validate({**rest, name: end}), name) == end
    for outside in (bounds.low - 1, bounds.high + 1):
        with pytest.raises(ValidationError, match=name):
            model.model_validate({**rest, name: outside})


def test_the_reference_ranges_are_the_documented_ones() -> None:
    ranges = [c.RESOURCE_HOURS, c.IDLE_TIME, c.CAPTURE_INTERVAL]
    assert [(r.low, r.high, r.default) for r in ranges] == [
        (1, 720, 72),
        (5, c.UINT32_MAX, 30),
        (5, 3600, 10),
    ]


def test_the_manifest_idle_time_defaults_to_the_reference_default() -> None:
    assert Recording().max_idle_time == c.IDLE_TIME.default
