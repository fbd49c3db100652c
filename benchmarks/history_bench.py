"""Benchmark: a pass's read of each manifest's newest finished session against a long
history (`Store.latest_ended`, read by every pass, `plan`, `apply` and `status`).

The store keeps every session it ever had: a year of 300 manifests with hourly
windows is 2.6 million finished sessions. Each store is filled with `--sessions`
finished sessions of 300 manifests (one in five failed) and one live session per
manifest, then `latest_ended()` is timed through the store's own code, alternating
with the same call running the statement it had before (a max(id) GROUP BY over
every finished session: the baseline, swapped in for the timing alone), pair by
pair, after one warm-up of each. Medians of `--runs` pairs, and the ratio of the
medians.

SQLite: a real file, read by a reader (`status`, `plan`), which reads the database
every time: SQLite's writer, the daemon, reads it once and then keeps it from its own
writes (state/latest.py). PostgreSQL: a throwaway cluster on loopback, when its server
binaries are installed (`--no-postgres` skips it).

    .venv/bin/python benchmarks/history_bench.py [--runs 7] [--sessions 1000,100000,300000]
        [--manifests 300]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
from replicas_bench import end_cluster, start_cluster  # noqa: E402

from orchestrator.state import EndKind, Phase, open_store  # noqa: E402
from orchestrator.state.base import SqlStore  # noqa: E402
from orchestrator.state.columns import SESSION_COLUMNS  # noqa: E402
from orchestrator.state.postgres import open_postgres_store  # noqa: E402
from tests.postgres import PostgresCluster  # noqa: E402

MANIFESTS = 300
#: The statement `latest_ended` ran before (the baseline).
_SELECTED = ", ".join(f"s.{c}" for c in SESSION_COLUMNS)
BEFORE = (
    f"SELECT {_SELECTED} FROM sessions s JOIN ("  # noqa: S608 (the store's column names)
    "SELECT manifest, max(id) AS id FROM sessions WHERE phase IN ('ended', 'failed') "
    "GROUP BY manifest) latest ON latest.id = s.id"
)


def copies_of_session_1(first: int, last: int, values: Mapping[str, str]) -> str:
    """An INSERT of a copy of session 1 for each `i` from `first` to `last`, the columns
    in `values` set to their SQL expressions of `i`: the same SQL in both dialects, but
    for what an expression uses."""
    copied = [c for c in SESSION_COLUMNS if c != "id" and c not in values]
    names = ", ".join([*values, *copied])
    chosen = ", ".join([*values.values(), *(f"s.{c}" for c in copied)])
    return (
        f"WITH RECURSIVE n(i) AS (SELECT {first} UNION ALL SELECT i + 1 FROM n "  # noqa: S608
        f"WHERE i < {last}) INSERT INTO sessions ({names}) "
        f"SELECT {chosen} FROM n, sessions s WHERE s.id = 1"
    )


def fill_statements(count: int, manifests: int = MANIFESTS) -> list[str]:
    """Copy session 1 (finished) `count - 1` times over `manifests` names, one in five
    failed, then add one live session per manifest."""
    return [
        copies_of_session_1(
            2,
            count,
            {
                "manifest": f"'manifest-' || (i % {manifests})",
                "uid": "i",
                "phase": "CASE WHEN i % 5 = 0 THEN 'failed' ELSE 'ended' END",
            },
        ),
        copies_of_session_1(
            0,
            manifests - 1,
            {"manifest": "'manifest-' || i", "uid": f"{count} + 1 + i", "phase": "'running'"},
        ),
    ]


async def first_session(store: SqlStore, ended_at: datetime | None = None, **fields: Any) -> None:
    """Session 1, stopped at `ended_at` (now when None), which `copies_of_session_1`
    copies; `fields` replace its defaults."""
    created = await store.create_session(
        **{
            "manifest": "manifest-1",
            "app": "main",
            "app_id": "a" * 32,
            "channel": "room",
            "uid": 1,
            "mode": "mix",
            **fields,
        }
    )
    await store.record_outcome(
        created.id,
        phase=Phase.ENDED,
        ended_at=ended_at or datetime.now(UTC),
        end_kind=EndKind.STOPPED,
        end_reason="stopped: its window closed",
    )


async def pairs(
    store: SqlStore, runs: int, manifests: int = MANIFESTS
) -> tuple[list[float], list[float]]:
    """(after, before) seconds of `latest_ended()`, alternating, after a warm-up each."""
    queries: Any = store._queries  # the statement is swapped for the baseline's timing
    after_sql = queries.latest_ended
    found: dict[str, list[Any]] = {}

    async def timed(statement: str) -> float:
        queries.latest_ended = statement
        try:
            started = time.perf_counter()
            latest = await store.latest_ended()
            took = time.perf_counter() - started
        finally:
            queries.latest_ended = after_sql
        found.setdefault(statement, []).append(latest)
        return took

    after: list[float] = []
    before: list[float] = []
    await timed(after_sql)  # warm-ups
    await timed(BEFORE)
    for _ in range(runs):
        after.append(await timed(after_sql))
        before.append(await timed(BEFORE))
    answers = [latest for answers in found.values() for latest in answers]
    assert all(latest == answers[0] for latest in answers), "the two statements disagree"
    assert len(answers[0]) == manifests, len(answers[0])
    return after, before


async def sqlite_case(
    count: int, runs: int, tmp: Path, manifests: int = MANIFESTS
) -> tuple[list[float], list[float]]:
    path = tmp / f"state-{count}.db"
    async with open_store(f"sqlite:///{path}", create=True) as store:
        await first_session(store)
    db = sqlite3.connect(path)
    for statement in fill_statements(count, manifests):
        db.execute(statement)
    db.commit()  # no ANALYZE: the store never runs it (PostgreSQL's autovacuum does)
    db.close()
    # A reader: SQLite's writer reads it once, then keeps it from its own writes
    # (state/latest.py); a reader (`status`, `plan`) reads the database every time.
    async with open_store(f"sqlite:///{path}", writer=False) as store:
        return await pairs(store, runs, manifests)


async def postgres_case(
    cluster: PostgresCluster, count: int, runs: int, manifests: int = MANIFESTS
) -> tuple[list[float], list[float]]:
    url = cluster.url(cluster.create_database())
    store = await open_postgres_store(url, create=True)
    try:
        await first_session(store)
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            for statement in fill_statements(count, manifests):
                await conn.execute(statement)
            await conn.execute("ANALYZE sessions")
        return await pairs(store, runs, manifests)
    finally:
        await store.aclose()


def row(backend: str, count: int, after: list[float], before: list[float]) -> str:
    def ms(values: list[float]) -> str:
        return f"{statistics.median(values) * 1000:.2f} ms"

    ratio = statistics.median(before) / statistics.median(after)
    spread = f"{min(after) * 1000:.2f}-{max(after) * 1000:.2f}"
    return f"| {backend} | {count:,} | {ms(before)} | {ms(after)} ({spread}) | {ratio:.1f}x |"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--sessions", default="1000,100000,300000")
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--manifests", type=int, default=MANIFESTS)
    args = parser.parse_args()
    counts = [int(c) for c in args.sessions.split(",")]
    print(
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC; {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, SQLite {sqlite3.sqlite_version}, load average "
        f"{os.getloadavg()[0]:.2f}; {args.manifests} manifests, {args.runs} pairs each"
    )
    print("| store | finished sessions | before (median) | after (median, min-max) | x |")
    print("|---|---:|---:|---:|---:|")
    tmp = Path(tempfile.mkdtemp(prefix="orch-bench-history-"))
    cluster: PostgresCluster | None = None
    if not args.no_postgres:
        try:
            cluster = start_cluster()
        except SystemExit as exc:  # no server binaries, or no user to run them as
            print(f"PostgreSQL skipped: {exc}")
    try:
        cases: list[tuple[str, int, Callable[[], Awaitable[tuple[list[float], list[float]]]]]]
        cases = [
            ("SQLite", n, lambda n=n: sqlite_case(n, args.runs, tmp, args.manifests))
            for n in counts
        ]
        if cluster is not None:
            cases += [
                ("PostgreSQL", n, lambda n=n: postgres_case(cluster, n, args.runs, args.manifests))
                for n in counts
            ]
        for backend, count, case in cases:
            after, before = await case()
            print(row(backend, count, after, before), flush=True)
    finally:
        if cluster is not None:
            end_cluster(cluster)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
