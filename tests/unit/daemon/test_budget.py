"""The resync's query budget (daemon/budget.py): each App ID's queries spread over most
of the resync interval, never faster than its query share allows; the cycle reported
per App ID, and a warning once while it is longer than the interval.

Time is virtual: the pace's sleeps are recorded, never slept.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import structlog

from orchestrator.agora.pacing import DEFAULT_WINDOW
from orchestrator.config import Config
from orchestrator.daemon.budget import SPREAD, QueryBudget
from orchestrator.state import Phase, SessionRecord

T = datetime(2026, 12, 6, tzinfo=UTC)


def config(resync: str = "60s", share: float = 0.5, rate: int = 10) -> Config:
    profile = {"appId": "A", "customerId": {"env": "X"}, "customerSecret": {"env": "Y"}}
    return Config.model_validate(
        {
            "apps": {"main": {**profile, "rateLimit": rate}},
            "reconcile": {"resyncInterval": resync, "queryShare": share},
        }
    )


def sessions(count: int, app_id: str = "A") -> list[SessionRecord]:
    return [
        SessionRecord(
            id=i + 1,
            manifest=f"m{i}",
            app="main",
            app_id=app_id,
            channel=f"c{i}",
            uid=1,
            mode="mix",
            phase=Phase.RUNNING,
            created_at=T,
            updated_at=T,
        )
        for i in range(count)
    ]


class Clock:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(round(seconds, 6))


def budget(cfg: Config, clock: Clock, cycles: list[tuple[str, float]]) -> QueryBudget:
    return QueryBudget(
        lambda: cfg,
        on_cycle=lambda app_id, s: cycles.append((app_id, s)),
        clock=clock,
        sleep=clock.sleep,
    )


def test_a_round_is_spread_over_most_of_the_interval() -> None:
    clock, cycles = Clock(), []
    live = sessions(12)
    wait = budget(config("60s"), clock, cycles).pace(live)

    async def run() -> None:
        for s in live:
            await wait(s)

    asyncio.run(run())
    # 12 sessions over 0.8 x 60 s: one every 4 s, the first at once.
    assert clock.slept == [4.0 * n for n in range(1, 12)]
    assert SPREAD == 0.8
    ((app_id, cycle),) = cycles
    assert app_id == "A" and 2.0 < cycle < 2.5  # 12 x 1.001 s / 5 query slots


def test_never_faster_than_the_share_and_a_long_cycle_is_warned_once() -> None:
    clock, cycles = Clock(), []
    live = sessions(600)
    the_budget = budget(config("60s"), clock, cycles)
    with structlog.testing.capture_logs() as logs:
        wait = the_budget.pace(live)
        the_budget.pace(live)  # the next resync: no second warning
    asyncio.run(wait(live[-1]))
    # 600 sessions at 5 queries a window (faster than 0.8 x 60 s / 600 would ask):
    # one window / 5 apart, the last 599 spacings in.
    (slept,) = clock.slept
    assert abs(slept - 599 * DEFAULT_WINDOW / 5) < 1e-5
    warnings = [e for e in logs if e["event"] == "budget.cycle_too_long"]
    assert len(warnings) == 1
    assert warnings[0]["app_id"] == "A" and warnings[0]["live"] == 600
    assert cycles[0][1] > 60


def test_a_cycle_that_fits_again_is_warned_about_again_when_it_grows() -> None:
    clock: Clock = Clock()
    cycles: list[tuple[str, float]] = []
    the_budget = budget(config("60s"), clock, cycles)
    events: list[Any] = []
    with structlog.testing.capture_logs() as logs:
        the_budget.pace(sessions(600))
        the_budget.pace(sessions(10))
        the_budget.pace(sessions(600))
        events = [e for e in logs if e["event"] == "budget.cycle_too_long"]
    assert len(events) == 2


def test_each_app_id_is_paced_on_its_own() -> None:
    clock, cycles = Clock(), []
    cfg = Config.model_validate(
        {
            "apps": {
                "a": {"appId": "A", "customerId": {"env": "X"}, "customerSecret": {"env": "Y"}},
                "b": {"appId": "B", "customerId": {"env": "X"}, "customerSecret": {"env": "Y"}},
            },
            "reconcile": {"resyncInterval": "10s"},
        }
    )
    live = sessions(2, "A") + [
        SessionRecord(**{**s.__dict__, "id": s.id + 100}) for s in sessions(2, "B")
    ]
    wait = budget(cfg, clock, cycles).pace(live)

    async def run() -> None:
        for s in live:
            await wait(s)

    asyncio.run(run())
    assert clock.slept == [4.0, 4.0]  # the second of each App ID, 0.8 x 10 s / 2 apart
    assert sorted(app for app, _ in cycles) == ["A", "B"]


def test_a_turn_says_whether_its_query_still_goes_once_waited() -> None:
    """A replica's round: an App ID handed over while the round waited is the next
    owner's to query; `still` is asked after each wait, not when the round began."""
    clock, cycles = Clock(), []
    live = sessions(3)
    owned = {"A"}
    wait = budget(config("60s"), clock, cycles).pace(live, still=lambda s: s.app_id in owned)

    async def run() -> list[bool]:
        answers = [await wait(live[0])]
        owned.clear()  # handed over after the first query
        return answers + [await wait(s) for s in live[1:]]

    assert asyncio.run(run()) == [True, False, False]
    assert clock.slept == [16.0, 32.0]  # each waited for its turn first
    plain = budget(config("60s"), clock, cycles).pace(live)
    assert asyncio.run(plain(live[2]))  # no `still`: every query goes
