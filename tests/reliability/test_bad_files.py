"""Scenario 4, bad files: broken manifests, unreadable paths and a vanished store.

- **Property**: >= 1,000 mutations (hypothesis; tests/reliability/mutations.py) of
  valid manifests, loaded in-process with `load_manifests` and through a
  long-lived `ManifestCache` (the daemon's path): no exception, every diagnostic
  names the file and has line >= 1 and column >= 1 (and a line inside the file),
  a failed file has an error, the cache agrees with a fresh load, and each case
  takes bounded time.
- **Live**: 30 mutated versions (300 with the long flag) that fail to load,
  written one after another over a file holding two live recordings: the daemon
  stays up, logs positioned `manifest.invalid` events naming the file, and sends
  nothing at all for those recordings (no stop, start, update) while the file is
  broken or when it is fixed.
- **Unreadable paths** (root bypasses mode bits, so the daemon then runs under
  `setpriv` without CAP_DAC_OVERRIDE/CAP_DAC_READ_SEARCH): a file and a
  subdirectory made unreadable (chmod 000) must leave their recordings running
  (DESIGN section 4: nothing that cannot be read is taken as removed).
- **Store removed** under the running daemon: it must not crash and keeps serving
  (what it logs goes to the figures); the next start must adopt every live
  recording without a new acquire or start, or refuse to start (exit 1), never
  begin from an empty store.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator.manifest.loader import LoadResult, ManifestCache, load_file, load_manifests
from tests.harness import wait_until
from tests.reliability.conftest import Scale, current_scale
from tests.reliability.invariants import FOREVER, Desired, check
from tests.reliability.mutations import mutate
from tests.reliability.rig import (
    LISTENER_UID,
    MUTATING,
    Rig,
    event_time,
    recording_manifest,
)

pytestmark = [pytest.mark.reliability, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
SEED = 90210
CASE_BOUND = 5.0  # seconds one load of one mutated file may take (loaded CI machine)
NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
_LINE_BREAKS = re.compile(r"\r\n|[\n\r\x85\u2028\u2029]")


def _valid_sources() -> list[str]:
    """Valid manifests to mutate: the shipped examples and this suite's own kinds."""
    texts = [p.read_text(encoding="utf-8") for p in sorted((ROOT / "recordings.d").glob("*.yaml"))]
    texts.append(recording_manifest("prop-always", "main", "room-1", 11, "always"))
    texts.append(
        recording_manifest(
            "prop-window",
            "main",
            "room-2",
            12,
            "{windows: [{start: '2026-11-27T10:00:00+01:00', end: '2026-11-27T11:00:00Z'}]}",
        )
    )
    texts.append(
        recording_manifest(
            "prop-cron",
            "main",
            "room-3",
            13,
            "{cron: '0 9 * * MON-FRI', timezone: Asia/Shanghai, duration: 30m}",
        )
    )
    return texts


SOURCES = _valid_sources()


def _line_count(data: bytes) -> int:
    text = data.decode("utf-8", errors="replace")
    return len(_LINE_BREAKS.split(text))


def _positioned(result: LoadResult, path: str, data: bytes) -> list[str]:
    """What is wrong with the diagnostics of one file's load (empty: nothing)."""
    problems = []
    limit = _line_count(data) + 1
    for d in result.diagnostics:
        where = f"{d.file}:{d.line}:{d.column} {d.field}: {d.message}"
        if d.file != path:
            problems.append(f"diagnostic names another file: {where}")
        if not (isinstance(d.line, int) and isinstance(d.column, int)):
            problems.append(f"position is not an integer: {where}")
        elif d.line < 1 or d.column < 1:
            problems.append(f"position below 1: {where}")
        elif d.line > limit:
            problems.append(f"line {d.line} past the end of a {limit - 1}-line file: {where}")
        if not d.message:
            problems.append(f"empty message: {where}")
    if path in result.failed_files and not result.errors:
        problems.append("the file failed without an error diagnostic")
    if result.errors and path not in result.failed_files:
        problems.append("an error diagnostic, but the file is not marked failed")
    return problems


def _summary(result: LoadResult) -> tuple[Any, ...]:
    return (
        tuple(d.as_dict().items() for d in result.diagnostics),
        tuple(sorted(result.failed_files)),
        tuple(m.manifest.name for m in result.manifests),
    )


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, ManifestCache]]:
    directory = tmp_path_factory.mktemp("mutations")
    yield directory, ManifestCache([str(directory)])


_STATS: dict[str, Any] = {"cases": 0, "failed": 0, "slowest": 0.0, "diagnostics": 0}


@settings(
    max_examples=1000 * current_scale().cases,
    deadline=None,  # bounded explicitly below, with room for a loaded machine
    database=None,  # nothing written into the checkout
    derandomize=not current_scale().long,  # CI: the same 1,000 cases every run
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
@given(data=st.data())
def test_mutated_manifests_load_without_crash_and_with_positions(
    data: st.DataObject, workdir: tuple[Path, ManifestCache]
) -> None:
    directory, cache = workdir
    source = data.draw(st.sampled_from(SOURCES), label="source")
    mutated = mutate(source, lambda n: data.draw(st.integers(0, max(0, n - 1))))
    path = directory / "case.yaml"
    path.write_bytes(mutated)
    started = time.perf_counter()
    fresh = load_manifests([str(directory)], now=NOW)
    elapsed = time.perf_counter() - started
    cached = cache.load(now=NOW)
    _STATS["cases"] += 1
    _STATS["failed"] += bool(fresh.failed_files)
    _STATS["diagnostics"] += len(fresh.diagnostics)
    _STATS["slowest"] = max(_STATS["slowest"], elapsed)
    assert elapsed < CASE_BOUND, f"one load took {elapsed:.2f}s"
    problems = _positioned(fresh, str(path), mutated)
    assert not problems, "\n".join(problems)
    assert _summary(cached) == _summary(fresh), "the daemon's cache disagrees with a fresh load"


def test_mutation_figures(figures: dict[str, object]) -> None:
    """Reports what the property test saw (runs after it, in file order: `make test`
    runs pytest-xdist with --dist loadscope, which keeps a module on one worker)."""
    if not _STATS["cases"]:
        pytest.skip("the property test did not run in this session")
    figures.update(
        property_cases=_STATS["cases"],
        property_failing_files=_STATS["failed"],
        property_diagnostics=_STATS["diagnostics"],
        property_slowest_load_s=round(_STATS["slowest"], 3),
    )
    assert _STATS["cases"] >= 1000 * current_scale().cases


# -- the daemon ------------------------------------------------------------------------


def _unprivileged() -> tuple[str, ...]:
    """A wrapper that makes mode bits apply to the daemon, or skip with the reason."""
    if os.geteuid() != 0:
        return ()
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip(
            "running as root, where chmod 000 does not stop reads, and setpriv (to drop "
            "CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH) is not installed"
        )
    caps = "-dac_override,-dac_read_search"
    return (setpriv, f"--inh-caps={caps}", f"--bounding-set={caps}", "--")


async def _live_rig(
    rig: Rig, files: dict[str, list[tuple[str, int]]], *, wrapper: tuple[str, ...] = ()
) -> list[Desired]:
    """An emulator, always-on recordings in the given files, and a READY daemon."""
    await rig.start_emulator(apps=1, seed=SEED)
    rig.write_config(resync="3s", backoff=("1s", "5s"), metrics=True)
    app, app_id = next(iter(rig.apps.items()))
    desired = []
    for filename, recordings in files.items():
        texts = []
        for name, uid in recordings:
            channel = f"{name}-room"
            texts.append(recording_manifest(name, app, channel, uid, "always"))
            desired.append(Desired(name, app_id, channel, uid, ((time.time() - 3600, FOREVER),)))
            await rig.set_users(app_id, channel, [LISTENER_UID])
        rig.write_manifest(filename, "---\n".join(texts))
    await rig.start_daemon(wrapper=wrapper)
    await _wait_live(rig, desired)
    return desired


async def _wait_live(rig: Rig, desired: list[Desired], within: float = 30) -> dict[str, str]:
    """{manifest: sid} once every recording is live at the emulator."""

    async def live() -> dict[str, str] | None:
        found = {
            (s["app_id"], s["cname"], s["uid"]): str(s["sid"])
            for s in await rig.sessions()
            if s["live"]
        }
        if all(d.target in found for d in desired):
            return {d.name: found[d.target] for d in desired}
        return None

    return await wait_until(live, within=within, what="every recording live")


async def _reloaded(rig: Rig, after: int, within: float = 15) -> dict[str, Any]:
    """The first `manifests.reloaded` event of the current daemon past the `after`-th."""
    return await rig.daemon.wait_event("manifests.reloaded", within=within, after=after)


def _touching(requests: list[dict[str, Any]], channels: set[str]) -> list[str]:
    out = []
    for r in requests:
        body = r.get("body")
        cname = body.get("cname") if isinstance(body, dict) else None
        if r["endpoint"] in MUTATING and cname in channels:
            out.append(f"{r['endpoint']} {cname} -> {r['status']}")
    return out


async def test_broken_edits_over_a_live_manifest_change_nothing(
    rig: Rig, scale: Scale, figures: dict[str, object]
) -> None:
    desired = await _live_rig(
        rig, {"target.yaml": [("edit-a", 31), ("edit-b", 32)], "other.yaml": [("edit-c", 33)]}
    )
    path = rig.manifests / "target.yaml"
    good = path.read_text(encoding="utf-8")
    sids = await _wait_live(rig, desired)
    before = len(await rig.requests())

    rng = random.Random(SEED)
    versions: list[bytes] = []
    probe = rig.root / "probe" / "target.yaml"
    probe.parent.mkdir()
    for _ in range(2000):  # bounded: most mutations break the file
        if len(versions) >= 30 * scale.cases:
            break
        candidate = mutate(good, rng.randrange)
        probe.write_bytes(candidate)
        _, diagnostics = load_file(str(probe))
        if candidate not in versions and any(d.severity == "error" for d in diagnostics):
            versions.append(candidate)

    unpositioned: list[str] = []
    reload_latency: list[float] = []
    for i, data in enumerate(versions):
        reloads = len(rig.named("manifests.reloaded"))
        written = time.time()
        if i % 2:
            path.write_bytes(data)  # in place, as some editors do
        else:
            tmp = path.with_name(".target.yaml.tmp")
            tmp.write_bytes(data)
            os.replace(tmp, path)  # renamed over, as git does
        reload = await _reloaded(rig, reloads)
        reload_latency.append(event_time(reload) - written)
        invalid = [
            e
            for e in rig.named("manifest.invalid")
            if e.get("file") == str(path) and event_time(e) >= written - 0.01
        ]
        if not invalid:
            unpositioned.append(f"version {i}: no manifest.invalid for {path.name}")
        for e in invalid:
            line, column = e.get("line"), e.get("column")
            if not (
                isinstance(line, int) and isinstance(column, int) and line >= 1 and column >= 1
            ):
                unpositioned.append(f"version {i}: {e}")
        assert str(path) in reload.get("failing", []), reload
    reloads = len(rig.named("manifests.reloaded"))
    rig.write_manifest("target.yaml", good)
    fixed = await _reloaded(rig, reloads)
    await rig.daemon.pass_after(event_time(fixed))  # what the fix led to has been sent
    touched = _touching((await rig.requests())[before:], {"edit-a-room", "edit-b-room"})
    after = await _wait_live(rig, desired)
    assert rig.daemon.alive and await rig.health() == 200
    assert await rig.stop_daemon() == 0

    first_ready = rig.daemons[0].ready_at
    assert first_ready is not None
    report = check(await rig.evidence(desired, first_ready=first_ready))
    figures.update(report.figures())
    figures.update(
        broken_versions=len(versions),
        manifest_invalid_events=sum(
            1 for e in rig.named("manifest.invalid") if e.get("file") == str(path)
        ),
        reload_latency_max_s=round(max(reload_latency), 3),
        requests_for_broken_recordings=len(touched),
    )
    report.assert_ok()
    assert fixed.get("failing") == [], fixed
    assert not unpositioned, "\n".join(unpositioned[:20])
    assert not touched, f"requests for the recordings of the broken file: {touched}"
    assert after == sids, "a recording of the broken file was restarted"


async def test_an_unreadable_manifest_file_keeps_its_recordings(
    rig: Rig, figures: dict[str, object]
) -> None:
    wrapper = _unprivileged()
    desired = await _live_rig(
        rig, {"top.yaml": [("unread-a", 41)], "locked.yaml": [("unread-b", 42)]}, wrapper=wrapper
    )
    sids = await _wait_live(rig, desired)
    before = len(await rig.requests())
    locked = rig.manifests / "locked.yaml"
    locked.chmod(0)
    try:
        reloads = len(rig.named("manifests.reloaded"))
        os.kill(rig.daemon.pid, signal.SIGHUP)
        reload = await _reloaded(rig, reloads)
        await rig.daemon.pass_after(event_time(reload))  # acted on what it read
        invalid = [e for e in rig.named("manifest.invalid") if e.get("file") == str(locked)]
        touched = _touching((await rig.requests())[before:], {"unread-b-room"})
        after = await _wait_live(rig, desired)
    finally:
        locked.chmod(0o644)
    assert await rig.stop_daemon() == 0
    figures.update(
        unreadable_file_logged=[e.get("message") for e in invalid][:3],
        unreadable_file_failing=reload.get("failing"),
        requests_for_unreadable_file=touched,
    )
    assert invalid, "no manifest.invalid for the unreadable file"
    assert not touched, f"requests for the unreadable file's recording: {touched}"
    assert after == sids


async def test_an_unreadable_subdirectory_keeps_its_recordings(
    rig: Rig, figures: dict[str, object]
) -> None:
    wrapper = _unprivileged()
    desired = await _live_rig(
        rig,
        {"top.yaml": [("subdir-a", 51)], "team/inner.yaml": [("subdir-b", 52)]},
        wrapper=wrapper,
    )
    sids = await _wait_live(rig, desired)
    before = len(await rig.requests())
    team = rig.manifests / "team"
    team.chmod(0)
    try:
        reloads = len(rig.named("manifests.reloaded"))
        os.kill(rig.daemon.pid, signal.SIGHUP)
        reload = await _reloaded(rig, reloads)
        await rig.daemon.pass_after(event_time(reload))  # acted on what it read
        touched = _touching((await rig.requests())[before:], {"subdir-b-room"})
        live = {
            (s["app_id"], s["cname"], s["uid"]): str(s["sid"])
            for s in await rig.sessions()
            if s["live"]
        }
        logged = [
            e for e in rig.events() if e.get("level") in ("warning", "error") and "team" in str(e)
        ]
    finally:
        team.chmod(0o755)
    assert rig.daemon.alive
    assert await rig.stop_daemon() == 0
    figures.update(
        unreadable_dir_reload=reload,
        unreadable_dir_requests=touched,
        unreadable_dir_logged=[
            f"{e.get('event')}: {e.get('message') or e.get('problem')}" for e in logged
        ][:5],
    )
    assert not touched, (
        f"the recording in the unreadable subdirectory was acted on: {touched}; reload: {reload}"
    )
    assert all(live.get(d.target) == sids[d.name] for d in desired)
    assert logged, "nothing logged about the unreadable subdirectory"


async def test_a_store_removed_under_the_daemon(rig: Rig, figures: dict[str, object]) -> None:
    """The daemon must not crash and keeps serving. Then nothing may be lost: either
    the store is back (the next start adopts every live recording without a new
    acquire or start), or the next start refuses (exit 1) rather than beginning
    with an empty store, which would forget and then duplicate every recording."""
    desired = await _live_rig(rig, {"first.yaml": [("store-a", 61), ("store-b", 62)]})
    await _wait_live(rig, desired)
    removed_at = time.time()
    rig.state_db.unlink()
    # Something to do after the loss: a new recording, then a resync or two.
    app, app_id = next(iter(rig.apps.items()))
    await rig.set_users(app_id, "store-c-room", [LISTENER_UID])
    written = rig.write_manifest(
        "second.yaml", recording_manifest("store-c", app, "store-c-room", 63, "always")
    )
    # an edit takes effect within 2 s (docs/operations.md, "The daemon"): coverage counts from then
    desired.append(
        Desired("store-c", app_id, "store-c-room", 63, ((written, FOREVER),), written + 2)
    )
    # Two resyncs after the edit (the first may have begun before the reload).
    await rig.daemon.pass_after(written, within=60)
    await rig.daemon.pass_after(time.time(), within=60)
    alive = rig.daemon.alive
    health = await rig.health() if alive else None
    ready = await rig.health("/readyz") if alive else None
    logged = sorted(
        {
            f"{e.get('event')}: {e.get('detail') or e.get('error') or ''}"[:240]
            for e in rig.events()
            if e.get("level") in ("warning", "error") and event_time(e) >= removed_at
        }
    )
    code = await rig.stop_daemon()
    restored = rig.state_db.exists()

    # The next start: adopts (no acquire, no start), or refuses.
    before = len(await rig.requests())
    again = await rig.start_daemon(ready=False)
    await wait_until(
        lambda: not again.alive or again.log.named("daemon.ready"),
        within=60,
        what="the next start to be ready or to refuse",
    )
    adopted = bool(again.log.named("daemon.ready"))
    if adopted:
        await again.pass_after(event_time(again.log.named("daemon.ready")[0]))
        restart_code = await rig.stop_daemon(again)
    else:
        restart_code = await again.exited(30)
    sent = [r["endpoint"] for r in (await rig.requests())[before:]]
    figures.update(
        store_removed_alive=alive,
        store_removed_healthz=health,
        store_removed_readyz=ready,
        store_removed_logged=logged[:8],
        store_removed_exit=code,
        store_restored_on_disk=restored,
        next_start="adopted" if adopted else f"refused (exit {restart_code})",
        next_start_requests=sorted(set(sent)),
    )
    assert alive, "the daemon died after its store was removed"
    assert health == 200
    assert code == 0
    if adopted:
        assert restart_code == 0
        assert "acquire" not in sent and "start" not in sent, sent
        first_ready = rig.daemons[0].ready_at
        assert first_ready is not None
        report = check(await rig.evidence(desired, first_ready=first_ready))
        figures.update(report.figures())
        report.assert_ok()
    else:
        assert restart_code == 1, rig.tail(again)
        assert not rig.state_db.exists(), "an empty store was created"
