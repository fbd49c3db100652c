"""The emulator's control API over HTTP (what the demo, benchmarks and users drive).

Covers: channel join/leave/users (roles), sessions listing, abort, fault injection
(next-N and seeded fractions, clearing), clock advance, settings, request log with
the Authorization header removed, reset, and rejecting bad control input.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import agora_bodies as bodies
import pytest

from orchestrator.agora.errors import RetryableError
from orchestrator.emulator import is_loopback

if TYPE_CHECKING:
    from conftest import EmulatorHandle

pytestmark = pytest.mark.integration


async def test_channel_users_and_sessions(emulator: EmulatorHandle) -> None:
    app = emulator.app_id
    client = emulator.client()
    rid = await client.acquire(app, bodies.acquire())
    sid = await client.start(app, rid, "mix", bodies.start_recording())
    async with emulator.control() as control:
        joined = await control.post(
            "/channel/join", json={"app_id": app, "cname": bodies.CNAME, "uid": "123"}
        )
        assert joined.json()["users"] == {"123": "broadcaster"}
        users = await control.put(
            "/channel/users",
            json={
                "app_id": app,
                "cname": bodies.CNAME,
                "users": ["5", {"uid": "6", "role": "audience"}],
            },
        )
        assert users.json()["users"] == {"5": "broadcaster", "6": "audience"}
        left = await control.post(
            "/channel/leave", json={"app_id": app, "cname": bodies.CNAME, "uid": "5"}
        )
        assert left.json()["users"] == {"6": "audience"}
        channels = (await control.get("/channels")).json()["channels"]
        assert channels == [{"app_id": app, "cname": bodies.CNAME, "users": {"6": "audience"}}]
        (session,) = (await control.get("/sessions")).json()["sessions"]
        assert session["sid"] == sid and session["live"] is True
        assert session["seen_uids"] == ["123", "5", "6"]  # communication: everyone counts
        assert "storageConfig" not in str(session)
        bad = await control.post(
            "/channel/join", json={"app_id": app, "cname": "x", "uid": "1", "role": "king"}
        )
        assert bad.status_code == 400
        missing = await control.post("/sessions/nope/abort")
        assert missing.status_code == 404


async def test_faults_clock_settings_and_requests(emulator: EmulatorHandle) -> None:
    app = emulator.app_id
    client = emulator.client()
    async with emulator.control() as control:
        queued = await control.post(
            "/faults/next", json={"endpoint": "acquire", "kind": "error", "count": 1, "status": 503}
        )
        assert queued.json()["next"][0]["status"] == 503
        await client.acquire(app, bodies.acquire())
        assert [r["status"] for r in emulator.emu.requests()] == [503, 200]

        faults = await control.put("/faults", json={"error_rate": 1.0, "seed": 3})
        assert faults.json()["error_rate"] == 1.0
        with pytest.raises(RetryableError):
            await client.acquire(app, bodies.acquire())
        cleared = await control.delete("/faults")
        assert cleared.json()["error_rate"] == 0.0 and cleared.json()["next"] == []
        assert (await control.put("/faults", json={"error_rate": 2})).status_code == 400
        assert (await control.put("/faults", json={"bogus": 1})).status_code == 400

        before = (await control.get("/clock")).json()["now"]
        after = (await control.post("/clock/advance", json={"seconds": 3600})).json()
        assert after["offset"] == 3600.0 and after["now"] >= before + 3600
        assert (await control.post("/clock/advance", json={"seconds": -1})).status_code == 400

        settings = await control.put(
            "/settings", json={"resource_ttl": 30, "uploading_status": "backuped"}
        )
        assert settings.json()["resource_ttl"] == 30.0
        assert settings.json()["uploading_status"] == "backuped"
        assert (
            await control.put("/settings", json={"uploading_status": "lost"})
        ).status_code == 400

        requests = (await control.get("/requests", params={"endpoint": "acquire"})).json()[
            "requests"
        ]
        assert len(requests) >= 3
        assert all("Authorization" not in r["headers"] for r in requests)
        assert all(r["body"]["cname"] == bodies.CNAME for r in requests)
        assert (await control.delete("/requests")).json() == {"requests": []}

        await control.post("/reset")
        assert (await control.get("/sessions")).json() == {"sessions": []}
        assert (await control.get("/nothing-here")).status_code == 404


def test_only_loopback_peers_may_control() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("127.8.9.10")
    assert not is_loopback("10.0.0.1") and not is_loopback("192.168.1.2")
    assert not is_loopback(None) and not is_loopback("not-an-ip")
