"""The resync's query budget: each App ID's queries spread over the resync interval,
within `reconcile.queryShare` of its rate limit.

Without it a resync sent every live session's `query` at once, and at hundreds of
live sessions on one App ID the queries took the whole 10 requests per second while
the starts due at a window boundary queued behind them. Now the rate limiter gives
mutating calls priority and caps queries at the share (agora/pacing.py), and this
module spaces one resync's queries evenly over most of the interval
(`SPREAD` of it, so that a round ends before the next resync is due), never faster
than the share allows. One round over an App ID's live sessions then takes
`query_cycle_seconds`; when that is longer than the resync interval the daemon warns
(once per App ID until it fits again) and `orchestrator_query_cycle_seconds` shows it.

Must never: send a request (it only waits), or read the wall clock (monotonic time
and sleep are injectable).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence

import structlog

from orchestrator.agora.pacing import query_spacing
from orchestrator.config import Config
from orchestrator.reconcile.refresh import Pace
from orchestrator.runtime import QueryBudgetLine, query_budget
from orchestrator.state import SessionRecord

log = structlog.get_logger("orchestrator.daemon")

#: The part of the resync interval one round of queries is spread over.
SPREAD = 0.8


class QueryBudget:
    """Spaces the resync's queries of each App ID (`pace`), and reports each App ID's
    query cycle (`on_cycle(app_id, seconds)`), with the running config's share and
    interval."""

    def __init__(
        self,
        config: Callable[[], Config],
        *,
        on_cycle: Callable[[str, float], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._config = config
        self._on_cycle = on_cycle
        self._clock = clock
        self._sleep = sleep
        self._slow: set[str] = set()  # App IDs warned about, until their cycle fits

    def pace(
        self,
        sessions: Sequence[SessionRecord],
        *,
        still: Callable[[SessionRecord], bool] = lambda _: True,
    ) -> Pace:
        """The waits of one resync over `sessions`: the n-th query of an App ID goes
        n spacings after the round began, if `still` says it is to go then (a replica:
        its App ID was not handed over meanwhile)."""
        config = self._config()
        lines = query_budget(config, sessions)
        self._report(lines)
        spread = config.reconcile.resync_interval.total_seconds() * SPREAD
        spacing = {
            b.app_id: query_spacing(b.live, b.rate, b.share, spread) for b in lines if b.live
        }
        order: dict[int, float] = {}
        seen: Counter[str] = Counter()
        for session in sessions:
            order[session.id] = seen[session.app_id] * spacing.get(session.app_id, 0.0)
            seen[session.app_id] += 1
        began = self._clock()

        async def wait(session: SessionRecord) -> bool:
            delay = began + order.get(session.id, 0.0) - self._clock()
            if delay > 0:
                await self._sleep(delay)
            return still(session)

        return wait

    def _report(self, lines: Sequence[QueryBudgetLine]) -> None:
        for b in lines:
            if self._on_cycle is not None:
                self._on_cycle(b.app_id, b.cycle_s)
            if b.too_long and b.app_id not in self._slow:
                self._slow.add(b.app_id)
                log.warning(
                    "budget.cycle_too_long",
                    app_id=b.app_id,
                    live=b.live,
                    cycle_s=round(b.cycle_s, 1),
                    resync_s=b.resync_s,
                    detail=(
                        "one round of queries over this App ID's live sessions takes longer "
                        "than reconcile.resyncInterval at reconcile.queryShare of its rate "
                        "limit: exits are noticed later than the interval says (turn on "
                        "notifications, lengthen the interval, or raise the share)"
                    ),
                )
            elif not b.too_long:
                self._slow.discard(b.app_id)
