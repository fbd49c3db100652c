"""File descriptors: a flood of idle connections to the metrics address takes nothing
from the API calls, and every line of the daemon's log is JSON (issue 17, item 6).

Covers:
- The daemon run with RLIMIT_NOFILE 1024:1024 (systemd's default soft limit, and no
  hard limit above it to raise it to, so the metrics listener's own bounds must hold)
  while 2,000 idle TCP connections to its metrics address are held open: /healthz
  answers 200, a window that opens and closes during the flood is started and
  stopped (both calls reach the API), the daemon stays up and exits 0 on SIGTERM, no
  line of its log says it ran out of descriptors, and every line of its stderr is one
  JSON object. Before the fix the daemon reached 1,024 descriptors: /healthz timed out
  and the calls failed with ConnectError while the connections were held.
- A library error forced in a running daemon (its descriptor limit lowered under it
  with prlimit(2), so asyncio's accept fails with EMFILE): one JSON event, and /healthz
  answers again once the limit is back. Before the fix asyncio's message and traceback
  were plain text in the JSON log.
- Started with a soft limit below its hard one, the daemon raises the soft limit to
  the hard one and logs it once (`daemon.open_files`).

How fast /healthz answers under the flood and how late the boundaries are is
measured by benchmarks/flood_bench.py (benchmarks/results-flood.md), not asserted:
the bounds here are generous and only catch a hang.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import socket
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.harness import Daemon, parse_event, wait_until
from tests.reliability.rig import LISTENER_UID, Rig, recording_manifest, windows_schedule

pytestmark = [pytest.mark.reliability, pytest.mark.slow]

FLOOD = 2_000
SYSTEMD_SOFT = 1024  # systemd's default soft RLIMIT_NOFILE for a service
# What a line says when a process ran out of descriptors (errno EMFILE, asyncio's
# accept, httpx's connect).
OUT_OF_DESCRIPTORS = ("Too many open files", "out of system resource", "EMFILE")
# Generous: these only catch a hang (the figures are the benchmark's).
ANSWER_WITHIN = 10.0
BOUNDARY_WITHIN = 15.0


def limited(soft: int, hard: int) -> tuple[str, ...]:
    """A command prefix that runs the rest of its command line with RLIMIT_NOFILE
    `soft`:`hard` (set, then exec: the pid, and so the harness's hold on it, stays)."""
    code = (
        "import os, resource, sys\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (int(sys.argv[1]), int(sys.argv[2])))\n"
        "os.execv(sys.argv[3], sys.argv[3:])\n"
    )
    return (sys.executable, "-c", code, str(soft), str(hard))


def address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None, url
    return parts.hostname, parts.port


def raise_own_limit(needed: int) -> None:
    """This process holds the flood's sockets: its soft limit must be above `needed`."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return
    if hard != resource.RLIM_INFINITY and hard < needed:
        pytest.skip(f"RLIMIT_NOFILE hard limit {hard} < {needed}: cannot hold the flood")
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


@dataclass
class Flood:
    sockets: list[socket.socket]
    connected: int  # connections the kernel completed (the server may close them since)
    seconds: float  # to open them all


async def _connect(target: tuple[str, int], sock: socket.socket, within: float) -> bool:
    loop = asyncio.get_running_loop()
    try:
        await asyncio.wait_for(loop.sock_connect(sock, target), within)
    except (TimeoutError, OSError):
        return False  # still a half-open attempt the server's kernel holds
    return True


@contextlib.asynccontextmanager
async def idle_connections(
    target: tuple[str, int], count: int, *, each: float = 3.0, at_once: int = 200
) -> AsyncIterator[Flood]:
    """`count` TCP connections to `target` that never send a byte, held open until the
    block ends (then all closed). Each connect waits at most `each` seconds, `at_once`
    at a time: the whole opening is bounded."""
    raise_own_limit(count + 512)
    sockets: list[socket.socket] = []
    started = time.monotonic()
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setblocking(False)
            sockets.append(sock)
        gate = asyncio.Semaphore(at_once)

        async def one(sock: socket.socket) -> bool:
            async with gate:
                return await _connect(target, sock, each)

        done = await asyncio.gather(*(one(s) for s in sockets))
        yield Flood(sockets, sum(done), time.monotonic() - started)
    finally:
        for sock in sockets:
            sock.close()


async def healthz(url: str) -> tuple[int | None, float]:
    """GET /healthz on a new connection: (status or None, seconds)."""
    began = time.monotonic()
    try:
        async with httpx.AsyncClient(timeout=httpx.Timeout(ANSWER_WITHIN), trust_env=False) as http:
            answer = await http.get(f"{url}/healthz")
    except httpx.HTTPError:
        return None, time.monotonic() - began
    return answer.status_code, time.monotonic() - began


def not_json(daemon: Daemon) -> list[str]:
    return [line for line in daemon.log.lines() if parse_event(line) is None]


def out_of_descriptors(daemon: Daemon) -> list[str]:
    return [line for line in daemon.log.lines() if any(s in line for s in OUT_OF_DESCRIPTORS)]


async def test_a_flood_of_idle_connections_takes_nothing_from_the_api(
    rig: Rig, figures: dict[str, object]
) -> None:
    await rig.start_emulator(apps=1, seed=17)
    rig.write_config(metrics=True, resync="10m")
    app, app_id = next(iter(rig.apps.items()))
    daemon = await rig.start_daemon(wrapper=limited(SYSTEMD_SOFT, SYSTEMD_SOFT))
    url = await daemon.metrics_url()
    channel = "flood-room"
    await rig.set_users(app_id, channel, [LISTENER_UID])

    async with idle_connections(address(url), FLOOD) as flood:
        status, latency = await healthz(url)
        opens = time.time() + 2.0
        closes = opens + 3.0
        schedule = windows_schedule([(opens, closes)])
        rig.write_manifest("flood.yaml", recording_manifest("flood", app, channel, 31, schedule))

        async def stopped() -> list[dict[str, object]]:
            return await rig.requests("stop")

        stops = await wait_until(
            stopped,
            within=closes - time.time() + BOUNDARY_WITHIN,
            what="the window's stop at the API during the flood",
            every=0.2,
            alive=daemon,
        )
        status_after, latency_after = await healthz(url)
        held = sum(1 for s in flood.sockets if s.fileno() >= 0)

    starts = await rig.requests("start")
    figures.update(
        flood=FLOOD,
        connected=flood.connected,
        flood_seconds=round(flood.seconds, 2),
        healthz_seconds=round(latency, 3),
        healthz_after_seconds=round(latency_after, 3),
        start_late=round(float(starts[0]["time"]) - opens, 3) if starts else None,
        stop_late=round(float(stops[0]["time"]) - closes, 3),
    )
    assert held == FLOOD and flood.connected > SYSTEMD_SOFT  # more than the daemon could hold
    assert status == 200, f"/healthz under {FLOOD} idle connections: {status} after {latency:.1f} s"
    assert status_after == 200, f"/healthz after the window: {status_after}"
    assert len(starts) == 1 and len(stops) == 1, (starts, stops)
    assert daemon.alive, daemon.describe()
    assert out_of_descriptors(daemon) == []
    assert not_json(daemon) == []
    assert await rig.stop_daemon() == 0
    assert not_json(daemon) == []


def _lowest_free_descriptor(pid: int) -> int:
    used = {int(name) for name in os.listdir(f"/proc/{pid}/fd")}
    return next(n for n in range(len(used) + 1) if n not in used)


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")
async def test_a_library_error_is_one_json_event(rig: Rig, figures: dict[str, object]) -> None:
    await rig.start_emulator(apps=1, seed=18)
    rig.write_config(metrics=True, resync="10m")
    daemon = await rig.start_daemon()
    url = await daemon.metrics_url()
    assert (await healthz(url))[0] == 200
    limits = resource.prlimit(daemon.pid, resource.RLIMIT_NOFILE)
    seen = len(daemon.log.lines())
    # No descriptor can be opened: the next accept of the metrics listener fails.
    try:
        resource.prlimit(
            daemon.pid, resource.RLIMIT_NOFILE, (_lowest_free_descriptor(daemon.pid), limits[1])
        )
    except PermissionError:
        pytest.skip("prlimit(2) on a child is not permitted here")
    probe = socket.create_connection(address(url), timeout=5)
    try:
        await wait_until(
            lambda: [line for line in daemon.log.lines(seen) if "accept" in line],
            within=ANSWER_WITHIN,
            what="the daemon's accept to fail with EMFILE",
            alive=daemon,
        )
    finally:
        resource.prlimit(daemon.pid, resource.RLIMIT_NOFILE, limits)
        probe.close()
    status, latency = await healthz(url)
    figures.update(healthz_after_seconds=round(latency, 3))
    assert status == 200
    assert not_json(daemon) == []
    events = [parse_event(line) for line in daemon.log.lines(seen)]
    failed = [e for e in events if e is not None and e.get("event") == "loop.exception"]
    assert failed and "out of system resource" in str(failed[0]["message"]), events
    # asyncio logs a failed accept once per slot of the backlog: folded, not a storm.
    assert len(failed) <= 3, len(failed)
    assert "Too many open files" in str(failed[0]["exception"])
    assert daemon.alive
    assert await rig.stop_daemon() == 0


async def test_the_daemon_raises_its_soft_descriptor_limit(rig: Rig) -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard <= SYSTEMD_SOFT:
        pytest.skip(f"RLIMIT_NOFILE hard limit {hard}: nothing above {SYSTEMD_SOFT} to raise to")
    await rig.start_emulator(apps=1, seed=19)
    rig.write_config(metrics=True)
    daemon = await rig.start_daemon(wrapper=limited(SYSTEMD_SOFT, hard))
    assert resource.prlimit(daemon.pid, resource.RLIMIT_NOFILE) == (hard, hard)
    (raised,) = daemon.named("daemon.open_files")
    assert (raised["soft_before"], raised["soft"], raised["hard"]) == (SYSTEMD_SOFT, hard, hard)
    assert await rig.stop_daemon() == 0
