"""The duration grammar, one for manifests and the daemon config.

See docs/configuration.md, "Durations".

Covers, from one table: every form the grammar reads (units d h m s ms, largest
first, combined, blanks between parts; a whole number of seconds as a number or
as text) and what it refuses (fractions, units out of order or written twice,
negative numbers, booleans, other words), through `parse_duration` itself, through
the daemon config (`shutdown.drainTimeout`, which keeps milliseconds and refuses
zero by its own check) and through a manifest (`startingDeadline`, whole seconds:
milliseconds that do not add up to a second are refused); `show_duration` writes
what the grammar reads back; whole-second fields with a range (`maxIdleTime`)
refuse leftover milliseconds by that range check.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from manifest_docs import MIX, errors_of, with_
from pydantic_core import PydanticCustomError

from orchestrator.config import ConfigError, load_config
from orchestrator.manifest.model import Manifest
from orchestrator.manifest.scalars import parse_duration, show_duration

_S = timedelta(seconds=1)

# (as written in YAML, what it stands for; None: not a duration)
DURATIONS: list[tuple[Any, timedelta | None]] = [
    ("45s", 45 * _S),
    ("90s", 90 * _S),
    ("10m", timedelta(minutes=10)),
    ("30m", timedelta(minutes=30)),
    ("1h30m", timedelta(hours=1, minutes=30)),
    ("1h 30m", timedelta(hours=1, minutes=30)),
    ("500 ms", timedelta(milliseconds=500)),
    ("2h", timedelta(hours=2)),
    ("1d", timedelta(days=1)),
    ("1d2h3m4s", timedelta(days=1, hours=2, minutes=3, seconds=4)),
    ("0s", timedelta(0)),
    ("500ms", timedelta(milliseconds=500)),
    ("1500ms", timedelta(milliseconds=1500)),
    ("2s500ms", timedelta(milliseconds=2500)),
    ("3000ms", 3 * _S),
    ("1m30s250ms", timedelta(seconds=90, milliseconds=250)),
    ("90", 90 * _S),
    (45, 45 * _S),
    (45.0, 45 * _S),
    (0, timedelta(0)),
    ("2.5s", None),
    ("1.5h", None),
    (0.5, None),
    ("30m1h", None),
    ("1h1h", None),
    ("1x", None),
    ("soon", None),
    ("m", None),
    ("", None),
    ("-5s", None),
    (-5, None),
    (True, None),
    ([30], None),
]


@pytest.mark.parametrize(("written", "expected"), DURATIONS)
def test_parse_duration(written: Any, expected: timedelta | None) -> None:
    if expected is None:
        with pytest.raises(PydanticCustomError, match="invalid duration"):
            parse_duration(written)
    else:
        assert parse_duration(written) == expected
        assert parse_duration(show_duration(expected)) == expected


@pytest.mark.parametrize(("written", "expected"), DURATIONS)
def test_the_config_reads_the_same_durations(
    tmp_path: Path, written: Any, expected: timedelta | None
) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(f"shutdown: {{drainTimeout: {json.dumps(written)}}}\n", encoding="utf-8")
    if expected is None or expected == timedelta(0):
        refused = "invalid duration" if expected is None else "must be longer than zero"
        with pytest.raises(ConfigError, match=f"shutdown.drainTimeout: {refused}"):
            load_config(path, environ={})
    else:
        assert load_config(path, environ={}).shutdown.drain_timeout == expected


@pytest.mark.parametrize(("written", "expected"), DURATIONS)
def test_manifests_read_the_same_durations(written: Any, expected: timedelta | None) -> None:
    doc = with_(MIX, startingDeadline=written)
    if expected is None:
        [(field, message)] = errors_of(doc)
        assert field == "startingDeadline" and message.startswith("invalid duration")
    elif expected % _S:
        assert errors_of(doc) == [
            (
                "startingDeadline",
                f"{written!r} is not a whole number of seconds: "
                "use a duration like 90s, 30m or 1h30m",
            )
        ]
    else:
        assert Manifest.model_validate(doc).starting_deadline == expected


@pytest.mark.parametrize(("written", "seconds"), [("6000ms", 6), ("5500ms", None), ("5s", 5)])
def test_whole_second_ranges_refuse_milliseconds(written: str, seconds: int | None) -> None:
    doc = with_(MIX, recording={"maxIdleTime": written})
    if seconds is None:
        [(field, message)] = errors_of(doc)
        assert field == "recording.maxIdleTime" and "5 to 4294967295 seconds" in message
    else:
        assert Manifest.model_validate(doc).recording.max_idle_time == seconds
