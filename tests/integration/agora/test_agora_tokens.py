"""The emulator verifies `start` tokens under an App Certificate, as Agora does.

Covers: a certificate set through the control API (for every App ID, or for one);
a valid token records and the recorder is removed at the token's expiry (status 8
for the linger, then 404); a token signed with another certificate, for another
channel, another uid or another App ID, an expired token, a text that is not a token,
and no token at all: each start is answered 200 with a sid, the recorder never
records (status 4, no users seen), the session ends a few seconds after the start
with the reason in its description, and query answers 404 at once; the join
privilege expiring before the token; without a certificate tokens are not read; the
certificate never appears in a control-API answer, an error or a log line.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import agora_bodies as bodies
import pytest
from structlog.testing import capture_logs

from orchestrator.agora.errors import NotFoundError
from orchestrator.agora.token import build_rtc_token

if TYPE_CHECKING:
    from conftest import EmulatorHandle

pytestmark = pytest.mark.integration

CERTIFICATE = "5cfd2fd1755d40ecb72977518be15d3b"
OTHER_CERTIFICATE = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
SALT = 77_001
PUBLISHER = "123"


def _token(
    emulator: EmulatorHandle,
    *,
    certificate: str = CERTIFICATE,
    app_id: str | None = None,
    cname: str = bodies.CNAME,
    uid: int = int(bodies.UID),
    expires_in: int = 3600,
    issued_ago: int = 0,
    privilege_expires_in: int | None = None,
) -> tuple[str, int]:
    """A token minted at the emulator's clock (minus `issued_ago`), and its issue time."""
    issued_at = int(emulator.emu.clock.now()) - issued_ago
    token = build_rtc_token(
        app_id or emulator.app_id,
        certificate,
        cname,
        uid,
        expires_in=expires_in,
        issued_at=issued_at,
        salt=SALT,
        privilege_expires_in=privilege_expires_in,
    )
    return token, issued_at


def _start_body(token: str | None) -> dict[str, Any]:
    body = bodies.start_recording()
    if token is None:
        del body["clientRequest"]["token"]
    else:
        body["clientRequest"]["token"] = token
    return body


async def _set_certificate(
    emulator: EmulatorHandle, certificate: str | None, app_id: str | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {"certificate": certificate}
    if app_id is not None:
        body["app_id"] = app_id
    async with emulator.control() as control:
        answer = await control.put("/certificates", json=body)
    assert answer.status_code == 200, answer.text
    assert CERTIFICATE not in answer.text
    described: dict[str, Any] = answer.json()
    return described


@pytest.fixture(autouse=True)
def _fast(emulator: EmulatorHandle) -> None:
    """Each helper call makes its own client (own rate limiter): the emulator's limit
    is raised so that they never see a 429 (tests/integration/conftest.py)."""
    emulator.emu.settings.update({"rate_limit": 1000})


async def _start(emulator: EmulatorHandle, token: str | None) -> tuple[str, str]:
    client = emulator.client()
    rid = await client.acquire(emulator.app_id, bodies.acquire())
    sid = await client.start(emulator.app_id, rid, "mix", _start_body(token))
    return rid, sid


def _session(emulator: EmulatorHandle, sid: str) -> dict[str, Any]:
    (session,) = [s for s in emulator.emu.sessions() if s["sid"] == sid]
    return session


async def _status(emulator: EmulatorHandle, rid: str, sid: str) -> Any:
    answer = await emulator.client().query(emulator.app_id, rid, sid, "mix")
    return answer.serverResponse.status


async def test_a_valid_token_records_until_it_expires(emulator: EmulatorHandle) -> None:
    assert await _set_certificate(emulator, CERTIFICATE) == {"default": True, "app_ids": []}
    emulator.emu.join(emulator.app_id, bodies.CNAME, PUBLISHER)
    token, issued_at = _token(emulator, expires_in=600)
    rid, sid = await _start(emulator, token)

    emulator.emu.advance(2)
    assert await _status(emulator, rid, sid) == 5
    session = _session(emulator, sid)
    assert session["live"] and session["seen_uids"] == [PUBLISHER]
    assert session["token_refused"] is None
    assert session["token_expires_at"] == issued_at + 600

    emulator.emu.advance(issued_at + 590 - emulator.emu.clock.now())
    assert await _status(emulator, rid, sid) == 5  # occupied: no idle exit either

    emulator.emu.advance(11)
    assert await _status(emulator, rid, sid) == 8  # removed, visible for the linger
    ended = _session(emulator, sid)
    assert (ended["live"], ended["end_reason"]) == (False, "token expired")
    assert ended["ended_at"] == issued_at + 600
    emulator.emu.advance(emulator.emu.settings.ended_linger)
    with pytest.raises(NotFoundError):
        await _status(emulator, rid, sid)


async def test_the_join_privilege_expiring_first_removes_the_recorder(
    emulator: EmulatorHandle,
) -> None:
    await _set_certificate(emulator, CERTIFICATE)
    emulator.emu.join(emulator.app_id, bodies.CNAME, PUBLISHER)
    token, issued_at = _token(emulator, expires_in=3600, privilege_expires_in=60)
    rid, sid = await _start(emulator, token)
    assert _session(emulator, sid)["token_expires_at"] == issued_at + 60
    emulator.emu.advance(issued_at + 50 - emulator.emu.clock.now())
    assert await _status(emulator, rid, sid) == 5
    emulator.emu.advance(11)
    assert await _status(emulator, rid, sid) == 8
    assert _session(emulator, sid)["end_reason"] == "token expired"


#: How each kind of bad token is made, and the check Agora's would fail.
BAD_TOKENS = {
    "another certificate": ({"certificate": OTHER_CERTIFICATE}, "signature"),
    "another channel": ({"cname": "another-room"}, "channel"),
    "another uid": ({"uid": 527842}, "uid"),
    "another App ID": ({"app_id": f"{0xA2:032x}"}, "app_id"),
    "expired": ({"expires_in": 3600, "issued_ago": 3601}, "expired"),
}


@pytest.mark.parametrize(("minted", "refusal"), list(BAD_TOKENS.values()), ids=list(BAD_TOKENS))
async def test_a_bad_token_starts_but_never_records(
    emulator: EmulatorHandle, minted: dict[str, Any], refusal: str
) -> None:
    await _set_certificate(emulator, CERTIFICATE)
    token, _ = _token(emulator, **minted)
    await _assert_refused(emulator, token, refusal)


async def test_no_token_or_a_text_that_is_not_one_is_refused(emulator: EmulatorHandle) -> None:
    await _set_certificate(emulator, CERTIFICATE)
    await _assert_refused(emulator, None, "missing")
    # The reference's example carries "<token if any>", which is no 007 token. Its own
    # (channel, uid) is free again: the refused session above has ended.
    await _assert_refused(emulator, "<token if any>", "version")


async def _assert_refused(emulator: EmulatorHandle, token: str | None, refusal: str) -> None:
    emulator.emu.join(emulator.app_id, bodies.CNAME, PUBLISHER)
    rid, sid = await _start(emulator, token)  # answered 200 with a sid, as Agora does
    assert await _status(emulator, rid, sid) == 4

    emulator.emu.advance(emulator.emu.settings.warmup)
    assert await _status(emulator, rid, sid) == 4  # it never joins, so never records
    live = _session(emulator, sid)
    assert live["live"] and live["seen_uids"] == [] and live["token_refused"] == refusal

    emulator.emu.advance(emulator.emu.settings.token_refused_exit)
    with pytest.raises(NotFoundError):  # no exit status lingers: it never recorded
        await _status(emulator, rid, sid)
    ended = _session(emulator, sid)
    assert ended["end_reason"] == f"token refused: {refusal}"
    within = emulator.emu.settings.warmup + emulator.emu.settings.token_refused_exit
    assert ended["ended_at"] - ended["started_at"] == pytest.approx(within)
    assert ended["token_expires_at"] is None
    if token is not None:
        assert token not in str(ended)
    emulator.emu.leave(emulator.app_id, bodies.CNAME, PUBLISHER)


async def test_a_certificate_for_one_app_id_leaves_the_others_alone(
    emulator: EmulatorHandle,
) -> None:
    other = emulator.app_ids[1]
    assert await _set_certificate(emulator, CERTIFICATE, other) == {
        "default": False,
        "app_ids": [other],
    }
    client = emulator.client()
    # The first App ID has no certificate: the reference's placeholder token records.
    rid, sid = await _start(emulator, "<token if any>")
    emulator.emu.advance(2)
    assert await _status(emulator, rid, sid) == 5
    # The second verifies: the placeholder is refused, its own valid token admitted.
    for uid, token, refusal in (
        ("2", "<token if any>", "version"),
        ("3", _token(emulator, app_id=other, uid=3)[0], None),
    ):
        rid_other = await client.acquire(other, bodies.acquire(uid=uid))
        body = bodies.start_recording(uid=uid)
        body["clientRequest"]["token"] = token
        sid_other = await client.start(other, rid_other, "mix", body)
        assert _session(emulator, sid_other)["token_refused"] == refusal


async def test_without_a_certificate_tokens_are_not_read(emulator: EmulatorHandle) -> None:
    async with emulator.control() as control:
        assert (await control.get("/certificates")).json() == {"default": False, "app_ids": []}
    emulator.emu.join(emulator.app_id, bodies.CNAME, PUBLISHER)
    expired, _ = _token(emulator, expires_in=60, issued_ago=3600)
    rid, sid = await _start(emulator, expired)
    emulator.emu.advance(3 * 3600)
    assert await _status(emulator, rid, sid) == 5
    session = _session(emulator, sid)
    assert (session["token_refused"], session["token_expires_at"]) == (None, None)

    # A certificate set and removed again: later starts are not checked either.
    await _set_certificate(emulator, CERTIFICATE)
    assert await _set_certificate(emulator, None) == {"default": False, "app_ids": []}
    rid2 = await emulator.client().acquire(emulator.app_id, bodies.acquire(uid="9"))
    sid2 = await emulator.client().start(
        emulator.app_id, rid2, "mix", bodies.start_recording(uid="9")
    )
    assert _session(emulator, sid2)["token_refused"] is None


async def test_a_session_keeps_what_its_start_token_gave_it(emulator: EmulatorHandle) -> None:
    """Setting a certificate later changes only later starts, as a project's would."""
    rid, sid = await _start(emulator, "<token if any>")
    emulator.emu.set_app_certificate(CERTIFICATE)
    emulator.emu.advance(2)
    assert await _status(emulator, rid, sid) == 5


async def test_the_certificate_is_never_answered_or_logged(
    emulator: EmulatorHandle, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    answers: list[str] = []
    with capture_logs() as logs:
        async with emulator.control() as control:
            for body in (
                {"certificate": CERTIFICATE},
                {"certificate": CERTIFICATE, "app_id": emulator.app_ids[1]},
            ):
                answer = await control.put("/certificates", json=body)
                assert answer.status_code == 200
                answers.append(answer.text)
            token, _ = _token(emulator)
            await _start(emulator, token)
            await _start_refused(emulator)
            refused = [
                await control.put("/certificates", json=body)
                for body in (
                    {"certificate": CERTIFICATE[:-1]},  # 31 digits
                    {"certificate": CERTIFICATE[:-1] + "z"},  # not hex
                    {"certificate": CERTIFICATE, "app_id": "f" * 32},  # not served
                    {"certificate": CERTIFICATE, "app_id": CERTIFICATE},  # swapped
                    {"certificate": CERTIFICATE, "bogus": CERTIFICATE},
                    {"certificate": [CERTIFICATE]},
                )
            ]
            assert [r.status_code for r in refused] == [400] * len(refused)
            answers += [r.text for r in refused]
            for route in (
                "/certificates",
                "/settings",
                "/sessions",
                "/requests",
                "/faults",
                "/clock",
                "/channels",
            ):
                answer = await control.get(route)
                assert answer.status_code == 200
                answers.append(answer.text)
            cleared = await control.delete("/certificates")
            answers.append(cleared.text)
    answers += [repr(emulator.emu.config), repr(emulator.emu.state.certificates)]
    texts = answers + [str(event) for event in logs] + [caplog.text]
    assert any("emulator.request" in str(event) for event in logs)  # the logs were seen
    for text in texts:
        assert CERTIFICATE not in text
        assert CERTIFICATE[:-1] not in text
    assert cleared.json() == {"default": False, "app_ids": []}


async def _start_refused(emulator: EmulatorHandle) -> None:
    client = emulator.client()
    rid = await client.acquire(emulator.app_id, bodies.acquire(uid="5"))
    sid = await client.start(emulator.app_id, rid, "mix", bodies.start_recording(uid="5"))
    assert _session(emulator, sid)["token_refused"] == "version"
