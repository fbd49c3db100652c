"""Replicas benchmark: takeover after a SIGKILL, and the reconcile pass on PostgreSQL.

Everything runs as processes on loopback: a throwaway PostgreSQL cluster
(tests/postgres.py's `PostgresCluster`, in a temp dir, run as the `postgres` OS user
when this runs as root), `orchestrator emulator` and `orchestrator run` daemons
started through the reliability rig (tests/reliability/rig.py). Only what this
script started is ever ended, by its pid (the rig's `close()`, the cluster's own
`pg_ctl stop`).

- `takeover`: three App IDs, one always-on recording each (live at the emulator),
  two daemons on one PostgreSQL database. `--kills` times: wait until each daemon
  owns an App ID and a random part of a claim interval more (seeded), SIGKILL the
  daemon owning the chosen App ID (the three in turn), and measure from the kill to
  the survivor's first `api.call` for that App ID (its JSON log). Also logged: the
  kill to the survivor's `ownership.gained` (claim round), and that to the call
  (the adoption: a query of each live session). Then a fresh daemon is started so
  that two run again. Done with claimInterval 5s (the default) and 1s. Goal: max
  <= 10 s.
- `pass`: 1,000 manifests (one window each, a week away: nothing due, nothing live)
  on three App IDs, one daemon, resyncInterval 1s; the `duration_ms` of its
  `reconcile.pass` events with trigger `resync` (the first two skipped), per store:
  SQLite (`state.dir`) and PostgreSQL (`state.url`), runs interleaved; median of the
  passes of each run, then the median over the runs and the ratio PG / SQLite.

Run: `.venv/bin/python benchmarks/replicas_bench.py [--kills 10] [--runs 3]
[--passes 15] [--json FILE]` (about 6 minutes on 2 cores); `--report FILE` renders a
saved `--json` file again.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.harness import wait_until  # noqa: E402
from tests.postgres import PostgresCluster, _server_os_user, find_bindir  # noqa: E402
from tests.reliability.rig import (  # noqa: E402
    LISTENER_UID,
    Daemon,
    Rig,
    event_time,
    owned,
    recording_manifest,
    windows_schedule,
)

SEED = 20261128


# -- helpers ----------------------------------------------------------------------------


def split(rig: Rig, daemons: list[Daemon]) -> bool:
    mine = [owned(d) for d in daemons]
    every = set().union(*mine)
    return every == set(rig.apps.values()) and sum(len(m) for m in mine) == len(every) and all(mine)


def quantile_text(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} s (min {min(values):.2f}, max {max(values):.2f})"


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    bindir, _ = find_bindir()
    version = ""
    if bindir is not None:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            version = subprocess.run(
                [str(bindir / "postgres"), "--version"],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            ).stdout.strip()
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "system": f"{platform.system()} {platform.release()} {platform.machine()}",
        "postgres": version,
        "load_average": os.getloadavg(),
    }


# -- the cluster ----------------------------------------------------------------------------


def start_cluster() -> PostgresCluster:
    bindir, why = find_bindir()
    if bindir is None:
        raise SystemExit(f"PostgreSQL server binaries not found: {why}")
    os_user, why = _server_os_user()
    if why:
        raise SystemExit(f"cannot start PostgreSQL: {why}")
    root = Path(tempfile.mkdtemp(prefix="orch-bench-pg-"))
    cluster = PostgresCluster(bindir, root, os_user)
    try:
        cluster.init()
        cluster.start()
        cluster.create_role()
    except BaseException:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
        raise
    return cluster


def end_cluster(cluster: PostgresCluster) -> None:
    cluster.stop()
    shutil.rmtree(cluster.root, ignore_errors=True)


async def new_rig(state_url: str | None) -> Rig:
    root = Path(tempfile.mkdtemp(prefix="orch-bench-rig-"))
    (root / "recordings.d").mkdir()
    return Rig(root, state_url=state_url)


async def end_rig(rig: Rig, keep: bool) -> None:
    await rig.close()
    if not keep:
        shutil.rmtree(rig.root, ignore_errors=True)


# -- takeover ---------------------------------------------------------------------------------


async def takeover(
    cluster: PostgresCluster, claim_interval: int, kills: int, keep: bool
) -> dict[str, Any]:
    rng = random.Random(SEED + claim_interval)
    database = cluster.create_database()
    rig = await new_rig(cluster.url(database))
    samples: list[dict[str, Any]] = []
    try:
        await rig.start_emulator(apps=3, seed=SEED)
        rig.write_config(resync="10s", claim_interval=f"{claim_interval}s", log_level="debug")
        init = await rig.cli("init", "--config", str(rig.config))
        if init.code != 0:
            raise RuntimeError(init.stderr)
        texts = []
        for i, (profile, app_id) in enumerate(sorted(rig.apps.items())):
            channel = f"bench-room-{i}"
            texts.append(recording_manifest(f"bench-{i}", profile, channel, 40_000 + i, "always"))
            await rig.set_users(app_id, channel, [LISTENER_UID])
        rig.write_manifest("always.yaml", "---\n".join(texts))
        daemons = [await rig.start_daemon(within=90), await rig.start_daemon(within=90)]

        async def all_live() -> bool:
            return sum(1 for s in await rig.sessions() if s["ended_at"] is None) == 3

        await wait_until(all_live, within=60, what="the recordings to start")
        apps = sorted(rig.apps.values())
        for k in range(kills):
            await wait_until(
                functools.partial(split, rig, daemons),
                within=20 * claim_interval + 30,
                what="split",
            )
            # Land anywhere in the claim rounds' phase.
            await asyncio.sleep(1.0 + rng.uniform(0, claim_interval))
            chosen = apps[k % len(apps)]
            (victim,) = [d for d in daemons if chosen in owned(d)]
            (survivor,) = [d for d in daemons if d is not victim]
            taken = sorted(owned(victim))
            killed = time.time()
            await rig.kill_daemon(victim)

            def calls(d: Daemon, app: str, after: float) -> list[dict[str, Any]]:
                return [
                    e
                    for e in d.log.named("api.call")
                    if e.get("app_id") == app and event_time(e) >= after
                ]

            def done(
                survivor: Daemon = survivor, after: float = killed, taken: list[str] = taken
            ) -> bool:
                return all(calls(survivor, a, after) for a in taken)

            await wait_until(done, within=60, what="the survivor's first calls")
            first = calls(survivor, chosen, killed)[0]
            gained = next(
                e
                for e in survivor.log.named("ownership.gained")
                if event_time(e) >= killed and chosen in e["app_ids"]
            )
            sample = {
                "kill": k,
                "app_id": chosen,
                "victim_owned": len(taken),
                "takeover_s": round(event_time(first) - killed, 3),
                "claimed_s": round(event_time(gained) - killed, 3),
                "adopted_s": round(event_time(first) - event_time(gained), 3),
                "first_endpoint": first.get("endpoint"),
                "others_s": [
                    round(event_time(calls(survivor, a, killed)[0]) - killed, 3)
                    for a in taken
                    if a != chosen
                ],
            }
            samples.append(sample)
            print(f"  claimInterval {claim_interval}s kill {k + 1}/{kills}: {sample}", flush=True)
            daemons = [survivor, await rig.start_daemon(within=90)]
        await wait_until(
            functools.partial(split, rig, daemons), within=20 * claim_interval + 30, what="split"
        )
        requests = await rig.requests()
        sessions = await rig.sessions()
        code53 = sum(1 for r in requests if r.get("code") == 53)
        acquire_start_stop = sum(
            1 for r in requests if r.get("endpoint") in ("acquire", "start", "stop")
        )
        for d in daemons:
            await rig.stop_daemon(d)
    finally:
        await end_rig(rig, keep)
        with contextlib.suppress(Exception):
            cluster.drop_database(database)
    values = [s["takeover_s"] for s in samples]
    return {
        "claim_interval_s": claim_interval,
        "kills": len(samples),
        "takeover_median_s": round(statistics.median(values), 3),
        "takeover_max_s": round(max(values), 3),
        "takeover_min_s": round(min(values), 3),
        "claimed_median_s": round(statistics.median(s["claimed_s"] for s in samples), 3),
        "claimed_max_s": round(max(s["claimed_s"] for s in samples), 3),
        "adopted_median_s": round(statistics.median(s["adopted_s"] for s in samples), 3),
        "adopted_max_s": round(max(s["adopted_s"] for s in samples), 3),
        "first_endpoints": sorted({str(s["first_endpoint"]) for s in samples}),
        "sessions": len(sessions),
        "code53": code53,
        "acquire_start_stop_total": acquire_start_stop,
        "samples": samples,
    }


# -- the reconcile pass ------------------------------------------------------------------------


def write_idle_manifests(rig: Rig, count: int) -> None:
    """`count` manifests, ten to a file, each with one window a week away."""
    t0 = time.time() + 7 * 86_400
    profiles = sorted(rig.apps)
    documents: list[str] = []
    for i in range(count):
        start = t0 + 60.0 * i
        schedule = windows_schedule([(start, start + 1800.0)])
        documents.append(
            recording_manifest(
                f"idle-{i:04d}",
                profiles[i % len(profiles)],
                f"idle-room-{i:04d}",
                50_000 + i,
                schedule,
            )
        )
    for n in range(0, count, 10):
        rig.write_manifest(f"idle-{n // 10:03d}.yaml", "---\n".join(documents[n : n + 10]))


async def pass_run(
    state_url: str | None, manifests: int, passes: int, keep: bool
) -> dict[str, Any]:
    rig = await new_rig(state_url)
    try:
        await rig.start_emulator(apps=3, seed=SEED)
        rig.write_config(resync="1s", claim_interval="5s", log_level="debug")
        init = await rig.cli("init", "--config", str(rig.config))
        if init.code != 0:
            raise RuntimeError(init.stderr)
        write_idle_manifests(rig, manifests)
        daemon = await rig.start_daemon(within=180)

        def resyncs() -> list[dict[str, Any]]:
            return daemon.log.named("reconcile.pass", trigger="resync")

        await wait_until(
            lambda: len(resyncs()) >= passes + 2, within=passes * 4 + 60, what="resync passes"
        )
        durations = [float(e["duration_ms"]) for e in resyncs()[2 : passes + 2]]
        first = daemon.log.named("reconcile.pass", trigger="start")
        reloaded = daemon.log.named("manifests.reloaded", trigger="start")
        summary = (daemon.log.named("daemon.ready") or [{}])[0].get("summary", "")
        calls = len(daemon.log.named("api.call"))
        await rig.stop_daemon(daemon)
    finally:
        await end_rig(rig, keep)
    return {
        "store": "postgresql" if state_url else "sqlite",
        "median_ms": round(statistics.median(durations), 1),
        "min_ms": round(min(durations), 1),
        "max_ms": round(max(durations), 1),
        "passes": len(durations),
        "first_pass_ms": first[0]["duration_ms"] if first else None,
        "reload_ms": reloaded[0]["duration_ms"] if reloaded else None,
        "ready_summary": summary,
        "api_calls": calls,
    }


async def pass_time(
    cluster: PostgresCluster, manifests: int, runs: int, passes: int, keep: bool
) -> dict[str, Any]:
    pairs: list[dict[str, Any]] = []
    for r in range(runs):
        database = cluster.create_database()
        try:
            order = ["sqlite", "postgresql"] if r % 2 == 0 else ["postgresql", "sqlite"]
            got: dict[str, Any] = {}
            for kind in order:
                url = cluster.url(database) if kind == "postgresql" else None
                got[kind] = await pass_run(url, manifests, passes, keep)
                print(f"  pass run {r + 1}/{runs} {kind}: {got[kind]}", flush=True)
            got["ratio"] = round(got["postgresql"]["median_ms"] / got["sqlite"]["median_ms"], 2)
            pairs.append(got)
        finally:
            with contextlib.suppress(Exception):
                cluster.drop_database(database)
    sqlite = [p["sqlite"]["median_ms"] for p in pairs]
    pg = [p["postgresql"]["median_ms"] for p in pairs]
    return {
        "manifests": manifests,
        "runs": runs,
        "passes_per_run": passes,
        "sqlite_median_ms": round(statistics.median(sqlite), 1),
        "postgresql_median_ms": round(statistics.median(pg), 1),
        "ratio_of_medians": round(statistics.median(pg) / statistics.median(sqlite), 2),
        "paired_ratios": [p["ratio"] for p in pairs],
        "pairs": pairs,
    }


# -- report ----------------------------------------------------------------------------------


def render(result: dict[str, Any]) -> str:
    lines = [
        f"Date: {result['date']}",
        f"Machine: {result['machine']}",
        f"Command: `{result['command']}` ({result['seconds']:.0f} s)",
        "",
        "| claimInterval | kills | takeover median | takeover max | kill -> claimed "
        "(median, max) | claimed -> first call (median, max) | first call | goal max <= 10 s |",
        "|---|---:|---:|---:|---:|---:|---|---|",
    ]
    for t in result["takeover"]:
        lines.append(
            f"| {t['claim_interval_s']}s | {t['kills']} | {t['takeover_median_s']:.2f} s | "
            f"{t['takeover_max_s']:.2f} s | {t['claimed_median_s']:.2f} s, "
            f"{t['claimed_max_s']:.2f} s | {t['adopted_median_s']:.3f} s, "
            f"{t['adopted_max_s']:.3f} s | {', '.join(t['first_endpoints'])} | "
            f"{'**pass**' if t['takeover_max_s'] <= 10 else '**MISS**'} |"
        )
    for t in result["takeover"]:
        lines.append(
            f"\nclaimInterval {t['claim_interval_s']}s, at the emulator over the whole run: "
            f"{t['sessions']} sessions ever, {t['code53']} answers with code 53, "
            f"{t['acquire_start_stop_total']} acquire/start/stop calls in all "
            + (
                "(the three recordings' first acquire and start: no kill restarted or stopped one)."
                if t["acquire_start_stop_total"] == 6
                else "(more than the first three acquire and start: a recording was "
                "restarted or stopped)."
            )
        )
    p = result["pass"]
    lines += [
        "",
        "| store | pass with nothing due, median of run medians | run medians | x SQLite |",
        "|---|---:|---|---:|",
        f"| SQLite | {p['sqlite_median_ms']:.1f} ms | "
        + ", ".join(f"{x['sqlite']['median_ms']:.1f}" for x in p["pairs"])
        + " | 1.00 |",
        f"| PostgreSQL | {p['postgresql_median_ms']:.1f} ms | "
        + ", ".join(f"{x['postgresql']['median_ms']:.1f}" for x in p["pairs"])
        + f" | **{p['ratio_of_medians']:.2f}** |",
        "",
        f"Paired ratios (PG / SQLite, run by run): {p['paired_ratios']}",
    ]
    return "\n".join(lines)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    started = time.monotonic()
    result: dict[str, Any] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "command": ".venv/bin/python benchmarks/replicas_bench.py " + " ".join(sys.argv[1:]),
    }
    cluster = await asyncio.to_thread(start_cluster)
    try:
        async with asyncio.timeout(args.budget):
            result["takeover"] = []
            for interval in (5, 1):
                print(f"takeover, claimInterval {interval}s", flush=True)
                result["takeover"].append(await takeover(cluster, interval, args.kills, args.keep))
            print("reconcile pass, PostgreSQL vs SQLite", flush=True)
            result["pass"] = await pass_time(
                cluster, args.manifests, args.runs, args.passes, args.keep
            )
    finally:
        await asyncio.to_thread(end_cluster, cluster)
    result["seconds"] = time.monotonic() - started
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=10, help="kills per claimInterval")
    parser.add_argument("--runs", type=int, default=3, help="pass: runs per store")
    parser.add_argument("--passes", type=int, default=15, help="pass: resync passes per run")
    parser.add_argument("--manifests", type=int, default=1000, help="pass: manifests")
    parser.add_argument("--budget", type=float, default=900, help="hard bound, seconds")
    parser.add_argument("--json", type=Path, default=None, help="save the results here")
    parser.add_argument("--keep", action="store_true", help="keep the rigs' temp dirs")
    parser.add_argument("--report", type=Path, default=None, help="render a saved --json file")
    args = parser.parse_args()
    if args.report is not None:
        result = json.loads(args.report.read_text(encoding="utf-8"))
        print(render(result))
        return 0
    result = asyncio.run(run(args))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1, default=str), encoding="utf-8")
    print()
    print(render(result))
    ok = all(t["takeover_max_s"] <= 10 and t["code53"] == 0 for t in result["takeover"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
