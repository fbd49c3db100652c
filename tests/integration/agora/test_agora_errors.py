"""Every error the emulator answers reaches the client as the right exception.

Covers: gateway errors (no route 404, 401 bad credentials, invalid appid, 429, code 8
for content type and non-JSON bodies), code 62, 1013 (bad channel names), 432, 1001,
1003, 7, 53, 433 (resource expiry via the clock), 49 (stop twice), 404 (ended
sessions, resourceExpiredHour), 435 (stop without users), 1028, idle exit then 404,
abnormal exit (status 20) then 404.
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING

import agora_bodies as bodies
import httpx
import pytest

from orchestrator.agora.client import RetryPolicy
from orchestrator.agora.errors import (
    AlreadyStartedError,
    NoFilesError,
    NotFoundError,
    PermanentError,
    RateLimitedError,
    RecordingExistsError,
    ResourceExpiredError,
    StopAlreadyEndedError,
)

if TYPE_CHECKING:
    from conftest import EmulatorHandle

pytestmark = pytest.mark.integration


def _auth(handle: EmulatorHandle) -> str:
    raw = f"{handle.customer_id}:{handle.customer_secret}".encode()
    return "Basic " + base64.b64encode(raw).decode()


async def _started(handle: EmulatorHandle, mode: str = "mix") -> tuple[str, str]:
    client = handle.client()
    rid = await client.acquire(handle.app_id, bodies.acquire())
    body = bodies.start_recording() if mode == "mix" else bodies.start_individual()
    sid = await client.start(handle.app_id, rid, mode, body)
    return rid, sid


async def test_wrong_path_or_method_is_no_route(emulator: EmulatorHandle) -> None:
    async with httpx.AsyncClient(base_url=emulator.base_url) as http:
        headers = {"Authorization": _auth(emulator)}
        wrong_method = await http.get(
            f"/v1/apps/{emulator.app_id}/cloud_recording/acquire", headers=headers
        )
        wrong_path = await http.post(f"/v1/apps/{emulator.app_id}/recording/acquire")
    for response in (wrong_method, wrong_path):
        assert response.status_code == 404
        assert response.json() == {"message": "no Route matched with those values"}


async def test_bad_credentials_are_401(emulator: EmulatorHandle) -> None:
    client = emulator.client(customer_secret="not-the-secret")
    with pytest.raises(PermanentError) as caught:
        await client.acquire(emulator.app_id, bodies.acquire())
    assert caught.value.status == 401
    assert "Invalid authentication credentials" in caught.value.reason


async def test_unknown_app_id_is_invalid_appid(emulator: EmulatorHandle) -> None:
    with pytest.raises(PermanentError) as caught:
        await emulator.client().acquire("f" * 32, bodies.acquire())
    assert caught.value.reason == "invalid appid"


async def test_app_without_cloud_recording_is_62(emulator: EmulatorHandle) -> None:
    with pytest.raises(PermanentError) as caught:
        await emulator.client().acquire(emulator.disabled_app_id, bodies.acquire())
    assert caught.value.code == 62


@pytest.mark.parametrize(
    ("content_type", "content"),
    [
        ("application/json", b'{"cname": "a", "uid": "1"}'),
        ("application/json; charset=utf-8", b'{"cname": "a", "uid": "1"}'),
        ("application/json;charset=utf-8", b"{not json"),
        ("application/json;charset=utf-8", b'["a list"]'),
    ],
)
async def test_content_type_and_json_are_code_8(
    emulator: EmulatorHandle, content_type: str, content: bytes
) -> None:
    async with httpx.AsyncClient(base_url=emulator.base_url) as http:
        response = await http.post(
            f"/v1/apps/{emulator.app_id}/cloud_recording/acquire",
            content=content,
            headers={"Authorization": _auth(emulator), "Content-Type": content_type},
        )
    assert response.status_code == 400
    assert response.json()["code"] == 8


@pytest.mark.parametrize(
    "cname",
    ["", "x" * 65, "room/1", "room*", "频道", 'quote"d', "a'b"],
)
async def test_bad_channel_names_are_1013(emulator: EmulatorHandle, cname: str) -> None:
    client = emulator.client(validate=False)
    with pytest.raises(PermanentError) as caught:
        await client.acquire(emulator.app_id, bodies.acquire(cname=cname))
    assert caught.value.code == 1013


async def test_every_allowed_channel_character_is_accepted(emulator: EmulatorHandle) -> None:
    allowed = "aZ09 !#$%&()+-:;<=.>?@[]^_{}|~,"
    rid = await emulator.client().acquire(emulator.app_id, bodies.acquire(cname=allowed))
    assert rid


async def test_start_not_matching_the_resource_is_432(emulator: EmulatorHandle) -> None:
    client = emulator.client()
    rid = await client.acquire(emulator.app_id, bodies.acquire())
    for body in (bodies.start_recording(uid="1"), bodies.start_recording(cname="other")):
        with pytest.raises(PermanentError) as caught:
            await client.start(emulator.app_id, rid, "mix", body)
        assert caught.value.code == 432
    with pytest.raises(PermanentError) as caught:
        await client.start(emulator.app_ids[1], rid, "mix", bodies.start_recording())
    assert caught.value.code == 432


async def test_undecodable_resource_id_is_1001(emulator: EmulatorHandle) -> None:
    client = emulator.client()
    rid = await client.acquire(emulator.app_id, bodies.acquire())
    for bad in ("not-a-resource-id", rid[:-3] + ("AAA" if rid[-3:] != "AAA" else "BBB")):
        with pytest.raises(PermanentError) as caught:
            await client.start(emulator.app_id, bad, "mix", bodies.start_recording())
        assert caught.value.code == 1001


async def test_sid_or_app_not_matching_is_1003(emulator: EmulatorHandle) -> None:
    rid, sid = await _started(emulator)
    client = emulator.client()
    with pytest.raises(PermanentError) as caught:
        await client.query(emulator.app_id, rid, "0" * 32, "mix")
    assert caught.value.code == 1003
    with pytest.raises(PermanentError) as caught:
        await client.query(emulator.app_ids[1], rid, sid, "mix")
    assert caught.value.code == 1003


async def test_second_start_on_a_resource_is_7(emulator: EmulatorHandle) -> None:
    rid, _sid = await _started(emulator)
    with pytest.raises(AlreadyStartedError) as caught:
        await emulator.client().start(emulator.app_id, rid, "mix", bodies.start_recording())
    assert caught.value.code == 7


async def test_second_live_recording_of_channel_and_uid_is_53(emulator: EmulatorHandle) -> None:
    await _started(emulator)
    client = emulator.client()
    rid2 = await client.acquire(emulator.app_id, bodies.acquire())
    with pytest.raises(RecordingExistsError) as caught:
        await client.start(emulator.app_id, rid2, "mix", bodies.start_recording())
    assert caught.value.code == 53
    # Another uid in the same channel is a different recording.
    rid3 = await client.acquire(emulator.app_id, bodies.acquire(uid="527842"))
    assert await client.start(emulator.app_id, rid3, "mix", bodies.start_recording(uid="527842"))


async def test_resource_id_expires_after_five_minutes(emulator: EmulatorHandle) -> None:
    client = emulator.client()
    rid = await client.acquire(emulator.app_id, bodies.acquire())
    emulator.emu.advance(301)
    with pytest.raises(ResourceExpiredError) as caught:
        await client.start(emulator.app_id, rid, "mix", bodies.start_recording())
    assert caught.value.code == 433


async def test_resource_ttl_is_configurable(emulator: EmulatorHandle) -> None:
    emulator.emu.settings.update({"resource_ttl": 10})
    client = emulator.client()
    rid = await client.acquire(emulator.app_id, bodies.acquire())
    emulator.emu.advance(9)
    assert await client.start(emulator.app_id, rid, "mix", bodies.start_recording())
    rid2 = await client.acquire(emulator.app_id, bodies.acquire(uid="2"))
    emulator.emu.advance(11)
    with pytest.raises(ResourceExpiredError):
        await client.start(emulator.app_id, rid2, "mix", bodies.start_recording(uid="2"))


async def test_stop_twice_is_49(emulator: EmulatorHandle) -> None:
    rid, sid = await _started(emulator)
    emulator.emu.join(emulator.app_id, bodies.CNAME, "123")
    client = emulator.client()
    await client.stop(emulator.app_id, rid, sid, "mix", bodies.stop())
    with pytest.raises(StopAlreadyEndedError) as caught:
        await client.stop(emulator.app_id, rid, sid, "mix", bodies.stop())
    assert caught.value.code == 49
    assert isinstance(caught.value, NotFoundError)


async def test_calls_on_a_stopped_session_are_404(emulator: EmulatorHandle) -> None:
    rid, sid = await _started(emulator)
    emulator.emu.join(emulator.app_id, bodies.CNAME, "123")
    client = emulator.client()
    await client.stop(emulator.app_id, rid, sid, "mix", bodies.stop())
    with pytest.raises(NotFoundError) as caught:
        await client.query(emulator.app_id, rid, sid, "mix")
    assert caught.value.status == 404
    with pytest.raises(NotFoundError):
        await client.update(emulator.app_id, rid, sid, "mix", bodies.update())
    with pytest.raises(NotFoundError):
        await client.update_layout(emulator.app_id, rid, sid, "mix", bodies.update_layout())


async def test_stop_without_any_user_is_435(emulator: EmulatorHandle) -> None:
    rid, sid = await _started(emulator)
    with pytest.raises(NoFilesError) as caught:
        await emulator.client().stop(emulator.app_id, rid, sid, "mix", bodies.stop())
    assert caught.value.code == 435
    (session,) = emulator.emu.sessions()
    assert session["end_reason"] == "stopped"


async def test_idle_exit_then_404(emulator: EmulatorHandle) -> None:
    rid, sid = await _started(emulator)  # maxIdleTime 30 in the reference example
    app = emulator.app_id
    client = emulator.client()
    emulator.emu.join(app, bodies.CNAME, "123")
    emulator.emu.advance(100)  # occupied: no idle exit however long
    assert (await client.query(app, rid, sid, "mix")).serverResponse.status == 5
    emulator.emu.leave(app, bodies.CNAME, "123")
    emulator.emu.advance(29)
    assert (await client.query(app, rid, sid, "mix")).serverResponse.status == 5
    emulator.emu.advance(2)
    exited = await client.query(app, rid, sid, "mix")
    assert exited.serverResponse.status == 8  # exited, still visible for a moment
    emulator.emu.advance(emulator.emu.settings.ended_linger + 1)
    with pytest.raises(NotFoundError):
        await client.query(app, rid, sid, "mix")
    with pytest.raises(NotFoundError) as caught:
        await client.stop(app, rid, sid, "mix", bodies.stop())
    assert not isinstance(caught.value, StopAlreadyEndedError)
    # The channel is free again: a new recording of (channel, uid) may start.
    rid2 = await client.acquire(app, bodies.acquire())
    assert await client.start(app, rid2, "mix", bodies.start_recording())


async def test_abnormal_exit_is_status_20_then_404(emulator: EmulatorHandle) -> None:
    rid, sid = await _started(emulator)
    emulator.emu.join(emulator.app_id, bodies.CNAME, "123")
    async with emulator.control() as control:
        response = await control.post(f"/sessions/{sid}/abort")
        assert response.status_code == 200
    client = emulator.client()
    assert (await client.query(emulator.app_id, rid, sid, "mix")).serverResponse.status == 20
    emulator.emu.advance(emulator.emu.settings.ended_linger + 1)
    with pytest.raises(NotFoundError):
        await client.query(emulator.app_id, rid, sid, "mix")


async def test_calls_after_resource_expired_hour_are_404(emulator: EmulatorHandle) -> None:
    client = emulator.client()
    app = emulator.app_id
    body = bodies.acquire()
    body["clientRequest"]["resourceExpiredHour"] = 1
    rid = await client.acquire(app, body)
    sid = await client.start(app, rid, "mix", bodies.start_recording())
    emulator.emu.join(app, bodies.CNAME, "123")
    emulator.emu.advance(3599)
    assert (await client.query(app, rid, sid, "mix")).serverResponse.status == 5
    emulator.emu.advance(2)
    with pytest.raises(NotFoundError):
        await client.query(app, rid, sid, "mix")
    with pytest.raises(NotFoundError):
        await client.stop(app, rid, sid, "mix", bodies.stop())


async def test_update_layout_with_a_bad_body_is_1028(emulator: EmulatorHandle) -> None:
    rid, sid = await _started(emulator)
    body = bodies.update_layout()
    body["clientRequest"]["layoutConfig"][0]["x_axis"] = 1.5
    with pytest.raises(PermanentError) as caught:
        await emulator.client(validate=False).update_layout(emulator.app_id, rid, sid, "mix", body)
    assert caught.value.code == 1028


async def test_update_layout_of_an_individual_recording_is_1028(
    emulator: EmulatorHandle,
) -> None:
    rid, sid = await _started(emulator, mode="individual")
    with pytest.raises(PermanentError) as caught:
        await emulator.client().update_layout(
            emulator.app_id, rid, sid, "individual", bodies.update_layout()
        )
    assert caught.value.code == 1028


async def test_more_than_ten_per_second_is_429(emulator: EmulatorHandle) -> None:
    async with httpx.AsyncClient(base_url=emulator.base_url) as http:
        statuses = []
        for _ in range(12):
            response = await http.post(
                f"/v1/apps/{emulator.app_id}/cloud_recording/acquire",
                json=bodies.acquire(),
                headers={
                    "Authorization": _auth(emulator),
                    "Content-Type": "application/json;charset=utf-8",
                },
            )
            statuses.append(response.status_code)
        # Another App ID has its own budget.
        other = await http.post(
            f"/v1/apps/{emulator.app_ids[1]}/cloud_recording/acquire",
            json=bodies.acquire(),
            headers={
                "Authorization": _auth(emulator),
                "Content-Type": "application/json;charset=utf-8",
            },
        )
    assert statuses[:10] == [200] * 10
    assert statuses[10:] == [429, 429]
    assert other.status_code == 200
    # The client maps it to a retryable rate-limit error.
    client = emulator.client(retry=RetryPolicy(max_attempts=1))
    with pytest.raises(RateLimitedError):
        await client.acquire(emulator.app_id, bodies.acquire())
