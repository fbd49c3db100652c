"""Scenario 4b, a store replaced by a directory: the daemon's backup is the store.

Two always-on recordings, a daemon running. `state.db` is removed and a directory
is made in its place (a bad deploy). The daemon cannot write the store back, so:

- every pass fails and says so: its error names the backup `state.db.restore` and
  what to do, and `/readyz` answers 503 ("the state store failed the last pass");
- the backup is a complete store with both recordings' sids after a second pass
  (the next resync's, then a reload's) too: the second pass used to truncate the
  first one's backup;
- the operator does what docs/operations.md says: stops the daemon (one last backup;
  exit 1 with the error naming it), removes the directory, moves the backup into
  place, checks it with `orchestrator status` and starts the daemon, which
  **adopts** both recordings (no acquire, no start) and the invariants hold.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import time
from pathlib import Path

import pytest

from tests.harness import event_time, wait_until
from tests.reliability.invariants import FOREVER, Desired, check
from tests.reliability.rig import LISTENER_UID, Rig, recording_manifest

pytestmark = [pytest.mark.reliability, pytest.mark.slow]

SEED = 4242


def _sids(path: Path) -> list[str]:
    """The sids of the live sessions in the store file at `path`, read without
    changing it or creating a file beside it (immutable: no WAL, no locks); none
    when the file is empty."""
    if os.path.getsize(path) == 0:
        return []
    db = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True)
    try:
        rows = db.execute("SELECT sid FROM sessions WHERE phase = 'running'").fetchall()
    finally:
        db.close()
    return sorted(str(sid) for (sid,) in rows)


async def _running(rig: Rig, names: list[tuple[str, int]]) -> list[Desired]:
    """An emulator, the always-on recordings `names`, and a READY daemon once every
    one of them records."""
    await rig.start_emulator(apps=1, seed=SEED)
    rig.write_config(resync="2s", backoff=("1s", "5s"), metrics=True)
    app, app_id = next(iter(rig.apps.items()))
    desired, texts = [], []
    for name, uid in names:
        channel = f"{name}-room"
        await rig.set_users(app_id, channel, [LISTENER_UID])
        texts.append(recording_manifest(name, app, channel, uid, "always"))
        desired.append(Desired(name, app_id, channel, uid, ((time.time() - 3600, FOREVER),)))
    rig.write_manifest("backup.yaml", "---\n".join(texts))
    await rig.start_daemon()

    async def live() -> bool:
        found = {(s["app_id"], s["cname"], s["uid"]) for s in await rig.sessions() if s["live"]}
        return all(d.target in found for d in desired)

    await wait_until(live, within=30, what="every recording live")
    return desired


async def test_a_store_replaced_by_a_directory_is_brought_back_from_its_backup(
    rig: Rig, figures: dict[str, object]
) -> None:
    desired = await _running(rig, [("backup-a", 71), ("backup-b", 72)])
    sids = sorted(str(s["sid"]) for s in await rig.sessions() if s["live"])
    backup = rig.state_db.with_name("state.db.restore")

    os.unlink(rig.state_db)
    os.mkdir(rig.state_db)  # a directory where the store was
    await rig.daemon.wait_event("reconcile.pass_failed", within=30)  # the next resync's
    # One more pass, at once: a reload (SIGHUP) is followed by a pass.
    os.kill(rig.daemon.pid, signal.SIGHUP)
    reload = await rig.daemon.wait_event("manifests.reloaded", trigger="SIGHUP")
    second = await wait_until(
        lambda: next(
            (e for e in rig.named("reconcile.pass_failed") if event_time(e) >= event_time(reload)),
            None,
        ),
        within=30,
        what="a pass after the reload",
        alive=rig.daemon,
    )
    failed = rig.named("reconcile.pass_failed")
    ready = await rig.health("/readyz")
    kept = _sids(backup)  # after the second pass met the directory
    assert kept == sids, f"the backup lost the recordings' sids: {kept}"
    # The daemon stops: SIGTERM; what it wrote since the last pass goes into the backup.
    code = await rig.stop_daemon()

    # By hand, as docs/operations.md says.
    os.rmdir(rig.state_db)
    os.replace(backup, rig.state_db)
    status = await rig.cli("status", "--config", str(rig.config))
    before = len(await rig.requests())
    again = await rig.start_daemon()
    assert again.ready_at is not None
    await again.pass_after(again.ready_at)
    sent = [r["endpoint"] for r in (await rig.requests())[before:]]
    restart_code = await rig.stop_daemon(again)

    figures.update(
        store_dir_failed_passes=len(failed),
        store_dir_error=str(second.get("error"))[:300],
        store_dir_readyz=ready,
        store_dir_backup_sids=len(kept),
        store_dir_exit=code,
        store_dir_next_start_requests=sorted(set(sent)),
    )
    assert all(str(backup) in str(e.get("error")) for e in failed), failed
    assert "is a directory" in str(second.get("error")).lower()
    assert ready == 503
    # Exit 1: the store is not back in place, and its last error says where the backup is.
    assert code == 1
    (stopped,) = rig.named("daemon.store_error")
    assert str(backup) in str(stopped.get("error")), stopped
    assert status.code == 0, status.stdout + status.stderr
    assert "backup-a: running" in status.stdout and "backup-b: running" in status.stdout
    assert "acquire" not in sent and "start" not in sent, sent
    assert restart_code == 0
    first_ready = rig.daemons[0].ready_at
    assert first_ready is not None
    report = check(await rig.evidence(desired, first_ready=first_ready))
    figures.update(report.figures())
    report.assert_ok()
