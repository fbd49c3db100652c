"""The CLI on a PostgreSQL store shared by replicas (processes, real server).

Covers: `init` lays the schema; `apply` takes the App ID locks a replica would,
acts only on the App IDs it got and names the ones another replica owns (and
whom), and so does `plan`, which says it left their manifests out; `status` shows
who owns which App ID and since when; `plan --offline` needs no store at all,
whatever the URL; no command prints the password.
"""

from __future__ import annotations

import json
import random
import time
from urllib.parse import urlsplit

import pytest

from orchestrator.state.postgres import PostgresOwnership, open_postgres_store
from tests.reliability.rig import LISTENER_UID, Rig, workload, write_workload

pytestmark = [pytest.mark.postgres, pytest.mark.e2e]


async def test_apply_acts_only_on_the_app_ids_it_can_lock(rig: Rig) -> None:
    assert rig.state_url is not None
    await rig.start_emulator(apps=2, seed=3)
    rig.write_config()
    init = await rig.cli("init", "--config", str(rig.config))
    assert init.code == 0, init.stderr
    assert "schema version" in init.stdout
    planned = workload(
        rig,
        random.Random(1),
        4,
        prefix="cli",
        t0=time.time(),
        first_open=(0, 0),
        length=(0, 0),
        always_every=1,
    )
    write_workload(rig, planned)
    for p in planned:
        await rig.set_users(p.desired.app_id, p.desired.channel, [LISTENER_UID])
    app0, app1 = rig.apps["app0"], rig.apps["app1"]
    store = await open_postgres_store(rig.state_url)
    other = PostgresOwnership(store, "replica-elsewhere")
    try:
        assert await other.claim(app0)  # another replica owns app0
        done = await rig.cli("apply", "--config", str(rig.config))
        assert done.code == 0, done.stdout + done.stderr
        assert f"note: skipped App ID {app0}: owned by replica replica-elsewhere" in done.stdout
        started = {p.desired.name for p in planned if p.desired.app_id == app1}
        for name in started:
            assert f"start        {name}" in done.stdout.replace("ok    ", "")
        sessions = await rig.sessions()
        assert {s["app_id"] for s in sessions if s["live"]} == {app1}
        requests = await rig.requests()
        assert requests and all(f"/apps/{app1}/" in r["path"] for r in requests)

        status = await rig.cli("status", "--config", str(rig.config), "--format", "json")
        assert status.code == 0, status.stderr
        owners = {o["app_id"]: o for o in json.loads(status.stdout)["owners"]}
        assert owners[app0]["replica"] == "replica-elsewhere" and owners[app0]["since"]
        assert owners[app1]["replica"] is None  # apply's lock went with it
        text = await rig.cli("status", "--config", str(rig.config))
        assert f"{app0}: replica-elsewhere since " in text.stdout

        # Defect: a plan that could look at no App ID said "everything is as desired"
        # and drew "(no manifests)": it says whose manifests it left out.
        theirs = sum(1 for p in planned if p.desired.app_id == app0)
        plan = await rig.cli("plan", "--config", str(rig.config))
        assert plan.code == 0, plan.stdout + plan.stderr
        assert (
            f"Actions: none for the App IDs this plan may act on; {theirs} manifest(s) of "
            "App IDs that running replicas own are theirs to plan" in plan.stdout
        )
        assert await other.claim(app1)
        plan = await rig.cli("plan", "--config", str(rig.config))
        assert plan.code == 0, plan.stdout + plan.stderr
        assert "(no manifests of the App IDs this plan may act on)" in plan.stdout
        assert "everything is as desired" not in plan.stdout
    finally:
        await other.aclose()
        await store.aclose()
    password = urlsplit(rig.state_url).password
    assert password
    for _, output in rig.outputs:
        assert password not in output


async def test_plan_offline_needs_no_store_whatever_the_url(rig: Rig) -> None:
    await rig.start_emulator(apps=1, seed=3)
    # Port 1 (tcpmux): nothing listens there, and nothing may connect anyway.
    rig.state_url = "postgresql://orch:secret-pw@127.0.0.1:1/nowhere"
    rig.write_config()
    planned = workload(
        rig,
        random.Random(1),
        2,
        prefix="off",
        t0=time.time(),
        first_open=(0, 0),
        length=(0, 0),
        always_every=1,
    )
    write_workload(rig, planned)
    done = await rig.cli("plan", "--offline", "--config", str(rig.config), within=60)
    assert done.code == 0, done.stdout + done.stderr
    assert "planned from an empty state" in done.stdout
    assert "secret-pw" not in done.stdout + done.stderr
    for p in planned:
        assert p.desired.name in done.stdout
