"""One writer per database file: another name for the daemon's store is refused.

Covers: while `orchestrator run` holds `state/state.db`, an `apply` and a second
`run` whose `--state` names a symlink to that file, then a hard link to it, each
exit 3 naming the daemon's pid (through the symlink also its command, from the
lock file beside the real file); nothing but the daemon's one acquire and start
reaches the API, and the daemon goes on and stops cleanly.
"""

from __future__ import annotations

import pytest

from tests.e2e.conftest import DaemonEnv
from tests.e2e.test_apply_cli import live_recordings
from tests.e2e.test_daemon import MUTATING, calls, manifest, write

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


async def test_a_symlink_or_a_hard_link_to_the_store_is_refused_like_a_second_daemon(
    daemon_env: DaemonEnv,
) -> None:
    write(daemon_env, "a.yaml", manifest("alpha", "room-a", 101))
    root = daemon_env.cli.root
    link = root / "link.db"
    link.symlink_to(daemon_env.cli.state_db)
    hard = root / "hard.db"
    hard.hardlink_to(daemon_env.cli.state_db)
    daemon = await daemon_env.start()
    config = str(daemon_env.cli.config)
    try:
        for command in ("apply", "run"):
            refused = await daemon_env.cli.run(command, "--config", config, "--state", str(link))
            assert refused.code == 3, refused.stderr
            assert f'is in use by "run" (pid {daemon.pid} on ' in refused.stderr
        for command in ("apply", "run"):
            refused = await daemon_env.cli.run(command, "--config", config, "--state", str(hard))
            assert refused.code == 3, refused.stderr
            assert f"state store {hard} is in use by " in refused.stderr
            assert f"(pid {daemon.pid} on " in refused.stderr
        assert daemon.alive
        assert [r["endpoint"] for r in calls(daemon_env, *MUTATING)] == ["acquire", "start"]
        assert len(live_recordings(daemon_env.cli)) == 1
    finally:
        assert await daemon.stop() == 0
