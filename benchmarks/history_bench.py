"""Benchmark: a pass's read of each manifest's newest finished session against a long
history (`Store.latest_ended`, read by every pass, `plan`, `apply` and `status`), and
what keeping it costs a write.

The store keeps every session it ever had: a year of 300 manifests with hourly
windows is 2.6 million finished sessions. Each store is filled with `--sessions`
finished sessions of `--manifests` manifests (one in five failed) and one live
session per manifest, then `latest_ended()` is timed through the store's own code
(the ids schema version 6's triggers keep, each session looked up by its id), in rounds
with the same call running each statement it had before, swapped in for the timing
alone: a max(id) GROUP BY over every finished session (until 2026-12-05) and a loose
index scan of `sessions_by_manifest` (until 2026-12-07). One warm-up of each, then
`--runs` rounds; medians, and the ratio of each baseline's median to the new one's.

A PostgreSQL replica (a writer) keeps the sessions it read with their row versions
and reads again only those whose version changed (state/latest.py): its read is
timed in rounds against a reader's, with nothing written in between and with one in
a hundred manifests' newest finished sessions written again by another connection.

Writes (`--writes N`): N sessions created and finished through the store (the
writer), in blocks of 50 alternating between the store as it is and the same store
with the triggers dropped: the median time of one create and finish with and
without them.

The statements are timed through a reader (`status`, `plan`), which reads the
database every time: SQLite's writer, the daemon, reads it once and then keeps it
from its own writes (state/latest.py). SQLite: a real file. PostgreSQL: a
throwaway cluster on loopback, when its server binaries are installed
(`--no-postgres` skips it).

    .venv/bin/python benchmarks/history_bench.py [--runs 7] [--sessions 1000,100000,300000]
        [--manifests 300] [--writes 0]
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
from collections.abc import Mapping
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
#: The statements `latest_ended` ran before (the baselines).
_SELECTED = ", ".join(f"s.{c}" for c in SESSION_COLUMNS)
BEFORE = {
    "GROUP BY": (
        f"SELECT {_SELECTED} FROM sessions s JOIN ("  # noqa: S608 (the store's column names)
        "SELECT manifest, max(id) AS id FROM sessions WHERE phase IN ('ended', 'failed') "
        "GROUP BY manifest) latest ON latest.id = s.id"
    ),
    "loose scan": (
        "WITH RECURSIVE names(manifest) AS (SELECT min(manifest) FROM sessions "  # noqa: S608
        "UNION ALL SELECT (SELECT min(manifest) FROM sessions "
        "WHERE manifest > names.manifest) FROM names WHERE names.manifest IS NOT NULL) "
        f"SELECT {_SELECTED} FROM names "
        "JOIN sessions s ON s.id = (SELECT f.id FROM sessions f "
        "WHERE f.manifest = names.manifest AND f.phase IN ('ended', 'failed') "
        "ORDER BY f.id DESC LIMIT 1)"
    ),
}
#: What drops version 6's triggers, per dialect (for the writes' baseline).
DROP_TRIGGERS = {
    "sqlite": [
        f"DROP TRIGGER latest_finished_on_{event}"
        for event in ("insert", "update", "leave", "delete")
    ],
    "postgres": ["DROP TRIGGER latest_finished_keep ON sessions"],
}


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


Timings = dict[str, list[float]]  # seconds, by statement ("after" and each baseline)


async def rounds(store: SqlStore, runs: int, manifests: int = MANIFESTS) -> Timings:
    """Seconds of `latest_ended()` with each statement, in rounds, after a warm-up
    each; every statement's answer checked equal."""
    queries: Any = store._queries  # the statement is swapped for the baselines' timing
    statements = {"after": queries.latest_ended, **BEFORE}
    found: list[Any] = []

    async def timed(statement: str) -> float:
        queries.latest_ended = statement
        try:
            started = time.perf_counter()
            latest = await store.latest_ended()
            took = time.perf_counter() - started
        finally:
            queries.latest_ended = statements["after"]
        found.append(latest)
        return took

    for statement in statements.values():  # warm-ups
        await timed(statement)
    timings: Timings = {name: [] for name in statements}
    for _ in range(runs):
        for name, statement in statements.items():
            timings[name].append(await timed(statement))
    assert all(latest == found[0] for latest in found), "the statements disagree"
    assert len(found[0]) == manifests, len(found[0])
    return timings


BLOCK = 50


async def writes(count: int, kept: SqlStore, bare: SqlStore) -> Timings:
    """Seconds of one create and finish through a writer, in blocks of `BLOCK`
    alternating between a store with the triggers (`kept`) and one without (`bare`)."""
    timings: Timings = {"with triggers": [], "without": []}
    for block in range(max(1, count // BLOCK)):
        order = [("with triggers", kept), ("without", bare)]
        for name, store in order if block % 2 == 0 else reversed(order):
            started = time.perf_counter()
            for i in range(BLOCK):
                created = await store.create_session(
                    manifest=f"manifest-{i % 7}",
                    app="main",
                    app_id="w" * 32,
                    channel="writes",
                    uid=block * BLOCK + i,
                    mode="mix",
                )
                await store.record_outcome(
                    created.id,
                    phase=Phase.ENDED,
                    ended_at=datetime.now(UTC),
                    end_kind=EndKind.STOPPED,
                    end_reason="stopped: its window closed",
                )
            timings[name].append((time.perf_counter() - started) / BLOCK)
    return timings


async def sqlite_case(count: int, runs: int, tmp: Path, manifests: int = MANIFESTS) -> Timings:
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
        return await rounds(store, runs, manifests)


async def postgres_case(
    cluster: PostgresCluster, count: int, runs: int, manifests: int = MANIFESTS
) -> tuple[Timings, Timings]:
    """The statements through a reader (which reads the database every time), then
    a replica's read (a writer: kept by row version) against the reader's, with
    nothing changed and with one in a hundred manifests' sessions written between
    two reads."""
    url = cluster.url(cluster.create_database())
    store = await open_postgres_store(url, create=True)
    reader = await open_postgres_store(url, writer=False)
    try:
        await first_session(store)
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            for statement in fill_statements(count, manifests):
                await conn.execute(statement)
            await conn.execute("ANALYZE sessions")
            statements = await rounds(reader, runs, manifests)
            replica = await replica_rounds(store, reader, conn, runs, manifests)
        return statements, replica
    finally:
        await reader.aclose()
        await store.aclose()


async def replica_rounds(
    replica: SqlStore,
    reader: SqlStore,
    conn: psycopg.AsyncConnection[Any],
    runs: int,
    manifests: int,
) -> Timings:
    """Seconds of the replica's `latest_ended()` and the reader's, in rounds: with
    nothing written since the replica's last read, and with `manifests // 100` newest
    finished sessions written again in between (by another connection, as another
    replica would); both answers checked equal."""
    touch = (
        "UPDATE sessions SET end_reason = end_reason WHERE id IN (SELECT session_id "  # noqa: S608
        f"FROM latest_finished ORDER BY random() LIMIT {max(1, manifests // 100)})"
    )
    timings: Timings = {"replica, unchanged": [], "replica, 1 % written": [], "reader": []}
    await replica.latest_ended()  # warm-ups; the replica keeps what it read
    await reader.latest_ended()
    for _ in range(runs):
        for name in ("replica, unchanged", "replica, 1 % written"):
            if name != "replica, unchanged":
                await conn.execute(touch)
            started = time.perf_counter()
            kept = await replica.latest_ended()
            timings[name].append(time.perf_counter() - started)
        started = time.perf_counter()
        read = await reader.latest_ended()
        timings["reader"].append(time.perf_counter() - started)
        assert kept == read and len(read) == manifests, "the replica and the reader disagree"
    return timings


async def sqlite_writes(count: int, tmp: Path) -> Timings:
    paths = [tmp / "writes-kept.db", tmp / "writes-bare.db"]
    for path in paths:
        async with open_store(f"sqlite:///{path}", create=True):
            pass
    db = sqlite3.connect(paths[1])
    for statement in DROP_TRIGGERS["sqlite"]:
        db.execute(statement)
    db.commit()
    db.close()
    async with (
        open_store(f"sqlite:///{paths[0]}") as kept,
        open_store(f"sqlite:///{paths[1]}") as bare,
    ):
        return await writes(count, kept, bare)


async def postgres_writes(cluster: PostgresCluster, count: int) -> Timings:
    urls = [cluster.url(cluster.create_database()) for _ in range(2)]
    kept = await open_postgres_store(urls[0], create=True)
    bare = await open_postgres_store(urls[1], create=True)
    try:
        async with await psycopg.AsyncConnection.connect(urls[1], autocommit=True) as conn:
            for statement in DROP_TRIGGERS["postgres"]:
                await conn.execute(statement)
        return await writes(count, kept, bare)
    finally:
        await kept.aclose()
        await bare.aclose()


def ms(values: list[float], scale: float = 1000) -> str:
    return f"{statistics.median(values) * scale:.2f}"


def read_row(backend: str, count: int, timings: Timings) -> str:
    after = timings["after"]
    now = statistics.median(after)
    cells = [
        f"{ms(timings[name])} ms ({statistics.median(timings[name]) / now:.1f}x)" for name in BEFORE
    ]
    spread = f"{min(after) * 1000:.2f}-{max(after) * 1000:.2f}"
    return f"| {backend} | {count:,} | {' | '.join(cells)} | {ms(after)} ms ({spread}) |"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--sessions", default="1000,100000,300000")
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--manifests", type=int, default=MANIFESTS)
    parser.add_argument("--writes", type=int, default=0)
    args = parser.parse_args()
    counts = [int(c) for c in args.sessions.split(",") if c]
    print(
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC; {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, SQLite {sqlite3.sqlite_version}, load average "
        f"{os.getloadavg()[0]:.2f}; {args.manifests} manifests, {args.runs} rounds each"
    )
    tmp = Path(tempfile.mkdtemp(prefix="orch-bench-history-"))
    cluster: PostgresCluster | None = None
    if not args.no_postgres:
        try:
            cluster = start_cluster()
        except SystemExit as exc:  # no server binaries, or no user to run them as
            print(f"PostgreSQL skipped: {exc}")
    try:
        if counts:
            titles = " | ".join(f"{name} (median, x the new)" for name in BEFORE)
            print(f"| store | finished sessions | {titles} | new (median, min-max) |")
            print("|---|---:|" + "---:|" * len(BEFORE) + "---:|")
        replicas: list[tuple[int, Timings]] = []
        for n in counts:
            print(
                read_row("SQLite (reader)", n, await sqlite_case(n, args.runs, tmp, args.manifests))
            )
        if cluster is not None:
            for n in counts:
                statements, replica = await postgres_case(cluster, n, args.runs, args.manifests)
                print(read_row("PostgreSQL (reader)", n, statements), flush=True)
                replicas.append((n, replica))
        if replicas:
            names = list(replicas[0][1])
            print(f"\n| PostgreSQL | finished sessions | {' | '.join(names)} (medians) |")
            print("|---|---:|" + "---:|" * len(names))
            for n, timings in replicas:
                cells = " | ".join(f"{ms(timings[name])} ms" for name in names)
                print(f"| {args.manifests:,} manifests | {n:,} | {cells} |", flush=True)
        if args.writes:
            print(
                f"\n| store | create and finish, with triggers | without | x ({args.writes} each) |"
            )
            print("|---|---:|---:|---:|")
            done = [("SQLite", await sqlite_writes(args.writes, tmp))]
            if cluster is not None:
                done.append(("PostgreSQL", await postgres_writes(cluster, args.writes)))
            for backend, timings in done:
                kept, bare = timings["with triggers"], timings["without"]
                ratio = statistics.median(kept) / statistics.median(bare)
                print(f"| {backend} | {ms(kept)} ms | {ms(bare)} ms | {ratio:.2f} |", flush=True)
    finally:
        if cluster is not None:
            end_cluster(cluster)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
