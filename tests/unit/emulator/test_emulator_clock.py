"""The emulator's clock keeps wall-clock time (as the daemon and Agora do), moves
forward by `advance`, and never goes backward."""

from __future__ import annotations

import pytest

from orchestrator.emulator import EmulatorClock
from orchestrator.emulator import config as emulator_config


class _Wall:
    def __init__(self, at: float) -> None:
        self.at = at

    def time(self) -> float:
        return self.at


@pytest.fixture
def wall(monkeypatch: pytest.MonkeyPatch) -> _Wall:
    fake = _Wall(1_800_000_000.0)
    monkeypatch.setattr(emulator_config, "time", fake)
    return fake


def test_it_follows_the_wall_clock_however_it_runs(wall: _Wall) -> None:
    clock = EmulatorClock()
    assert clock.now() == wall.at
    # The wall clock runs faster than the monotonic one (slewed): the emulator follows
    # the wall clock, so its stamps compare with the daemon's instants.
    wall.at += 60.3
    assert clock.now() == 1_800_000_060.3


def test_advance_moves_it_forward_only(wall: _Wall) -> None:
    clock = EmulatorClock()
    assert clock.advance(30) == wall.at + 30
    wall.at += 1
    assert clock.now() == wall.at + 30
    with pytest.raises(ValueError, match="only moves forward"):
        clock.advance(-1)


def test_a_wall_clock_stepped_back_holds_it(wall: _Wall) -> None:
    clock = EmulatorClock()
    before = clock.now()
    wall.at -= 5
    assert clock.now() == before
    wall.at += 6
    assert clock.now() == before + 1
