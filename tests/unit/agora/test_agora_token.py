"""AccessToken2 ("007") tokens: `build_rtc_token`, `parse_token`, `verify_rtc_token`.

Covers Agora's two published vectors reproduced byte for byte (uid 2882341273 and uid
0, from AgoraIO/Tools' AccessToken2Test.py, see
/work/shared/reference/agora-accesstoken2-vectors.md) and verified; a round trip
through `parse_token`; every way a token can fail, each with its reason (a change of
one character anywhere, another certificate, App ID, channel or uid, a token or
privilege past its expiry, no RTC service, no join privilege, another version, text
that is not a 007 token in its one canonical spelling); what a token for uid 0
admits; Agora's privilege expire 0; argument checks; a hypothesis property over the
reference's channel characters, uids and expiries; and that no message of any error
carries the certificate or the token.

Tokens that `build_rtc_token` cannot make (other services, privilege expire 0,
trailing bytes) are packed here from the published layout by `_pack_token`, an
independent writing of the format, so the reader is tested on what Agora may send.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import struct
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.agora.token import (
    MAX_SALT,
    MalformedTokenError,
    RtcPrivilege,
    ServiceType,
    TokenCheck,
    TokenError,
    TokenFailure,
    build_rtc_token,
    new_salt,
    parse_token,
    verify_rtc_token,
)
from orchestrator.contract import CHANNEL_CHARSET, MAX_CHANNEL_BYTES, UINT32_MAX
from orchestrator.errors import OrchestratorError

# Agora's published inputs (AgoraIO/Tools, python3/test/AccessToken2Test.py).
APP_ID = "970CA35de60c44645bbae8a215061b33"
CERTIFICATE = "5CFd2fd1755d40ecb72977518be15d3b"
CHANNEL = "7d72365eb983485397e3e3f9d460bdda"
UID = 2882341273
EXPIRE = 600
SALT = 1
ISSUED_AT = 1111111

# Agora's published outputs for those inputs.
TOKEN_FOR_UID = (
    "007eJxTYBBbsMMnKq7p9Hf/HcIX5kce9b518kCiQgSr5Zrp4X1Tu6UUGCzNDZwdjU1TUs0Mkk1MzExMk5ISUy0"
    "SjQxNDcwMk4yN3b8IMEQwMTAwMoAwBIL4CgzmKeZGxmamqUmWFsYmFqbGluapxqnGaZYpJmYGSSkpiVwMRhYW"
    "RsYmhkbmxgDCaiTj"
)
TOKEN_FOR_ANY_UID = (
    "007eJxTYLhzZP08Lxa1Pg57+TcXb/3cZ3wi4V6kbpbOog0G2dOYk20UGCzNDZwdjU1TUs0Mkk1MzExMk5ISUy0"
    "SjQxNDcwMk4yN3b8IMEQwMTAwMoAwBIL4CgzmKeZGxmamqUmWFsYmFqbGluapxqnGaZYpJmYGSSkpiQwMADac"
    "Imo="
)
OTHER_APP_ID = "0123456789abcdef0123456789ABCDEF"
OTHER_CERTIFICATE = "5CFd2fd1755d40ecb72977518be15d3c"
BASE64_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def _verify(
    token: str,
    *,
    app_id: str = APP_ID,
    certificate: str = CERTIFICATE,
    channel: str = CHANNEL,
    uid: int = UID,
    now: float = ISSUED_AT,
) -> TokenCheck:
    return verify_rtc_token(
        token, app_id=app_id, certificate=certificate, channel=channel, uid=uid, now=now
    )


def _build(uid: int = UID, **changes: int) -> str:
    arguments = {"expires_in": EXPIRE, "issued_at": ISSUED_AT, "salt": SALT} | changes
    return build_rtc_token(APP_ID, CERTIFICATE, CHANNEL, uid, **arguments)


# ------------------------------------------------------- the format, written again


def _string(value: bytes) -> bytes:
    return struct.pack("<H", len(value)) + value


def _service(kind: int, privileges: dict[int, int], tail: bytes) -> bytes:
    packed = b"".join(struct.pack("<HI", key, value) for key, value in privileges.items())
    return struct.pack("<HH", kind, len(privileges)) + packed + tail


def _rtc(privileges: dict[int, int], channel: str = CHANNEL, account: str = str(UID)) -> bytes:
    return _service(1, privileges, _string(channel.encode()) + _string(account.encode()))


def _pack_token(
    *services: bytes,
    expire: int = EXPIRE,
    certificate: str = CERTIFICATE,
    trailer: bytes = b"",
    count: int | None = None,
) -> str:
    """A 007 token signed with `certificate`, packed from the published layout."""
    signed = (
        _string(APP_ID.encode())
        + struct.pack("<IIIH", ISSUED_AT, expire, SALT, len(services) if count is None else count)
        + b"".join(services)
        + trailer
    )
    key = hmac.new(struct.pack("<I", ISSUED_AT), certificate.encode(), hashlib.sha256).digest()
    key = hmac.new(struct.pack("<I", SALT), key, hashlib.sha256).digest()
    signature = hmac.new(key, signed, hashlib.sha256).digest()
    return "007" + base64.b64encode(zlib.compress(_string(signature) + signed)).decode()


# -------------------------------------------------------------- Agora's vectors


@pytest.mark.parametrize(("uid", "expected"), [(UID, TOKEN_FOR_UID), (0, TOKEN_FOR_ANY_UID)])
def test_the_published_vectors_are_reproduced_byte_for_byte(uid: int, expected: str) -> None:
    assert _build(uid) == expected


@pytest.mark.parametrize("token", [TOKEN_FOR_UID, TOKEN_FOR_ANY_UID])
def test_the_published_vectors_verify(token: str) -> None:
    check = _verify(token, now=ISSUED_AT + EXPIRE - 1)
    assert check == TokenCheck(None, ISSUED_AT + EXPIRE)
    assert check.ok


def test_the_independent_packing_agrees_with_the_published_vector() -> None:
    # The test's own writing of the format is the oracle for the cases below.
    assert _pack_token(_rtc({1: EXPIRE})) == TOKEN_FOR_UID


def test_a_built_token_parses_back_to_what_was_built() -> None:
    parsed = parse_token(_build(4242, expires_in=3600, privilege_expires_in=1800, salt=77))
    assert (parsed.version, parsed.app_id, parsed.issued_at) == ("007", APP_ID, ISSUED_AT)
    assert (parsed.expire, parsed.salt, parsed.expires_at) == (3600, 77, ISSUED_AT + 3600)
    assert [service.type for service in parsed.services] == [ServiceType.RTC]
    rtc = parsed.rtc
    assert rtc is not None
    assert (rtc.channel, rtc.account) == (CHANNEL, "4242")
    assert rtc.privileges == ((RtcPrivilege.JOIN_CHANNEL, 1800),)
    assert len(parsed.signature) == 32
    any_uid = parse_token(TOKEN_FOR_ANY_UID).rtc
    assert any_uid is not None
    assert any_uid.account == ""


def test_a_fresh_salt_changes_the_token_and_both_verify() -> None:
    salts = {new_salt() for _ in range(20)}
    assert all(1 <= salt <= MAX_SALT for salt in salts)
    assert len(salts) > 1
    tokens = {_build(salt=salt) for salt in salts}
    assert len(tokens) == len(salts)
    assert all(_verify(token).ok for token in tokens)


# --------------------------------------------------------------- failing tokens


@pytest.mark.parametrize("token", [TOKEN_FOR_UID, TOKEN_FOR_ANY_UID])
def test_a_change_of_one_character_anywhere_fails(token: str) -> None:
    for position, original in enumerate(token):
        for replacement in {"A", "B", "0", "/", "7"} - {original}:
            changed = token[:position] + replacement + token[position + 1 :]
            check = _verify(changed, now=ISSUED_AT)
            assert check.failure is not None, (position, replacement)
            if position < 3:
                assert check.failure is TokenFailure.VERSION


@pytest.mark.parametrize(
    ("changes", "failure"),
    [
        ({"certificate": OTHER_CERTIFICATE}, TokenFailure.SIGNATURE),
        ({"certificate": CERTIFICATE.lower()}, TokenFailure.SIGNATURE),
        ({"app_id": OTHER_APP_ID}, TokenFailure.APP_ID),
        ({"app_id": APP_ID.lower()}, TokenFailure.APP_ID),
        ({"channel": CHANNEL + "x"}, TokenFailure.CHANNEL),
        ({"channel": CHANNEL.upper()}, TokenFailure.CHANNEL),
        ({"uid": UID + 1}, TokenFailure.UID),
        ({"uid": 0}, TokenFailure.UID),
        ({"now": ISSUED_AT + EXPIRE}, TokenFailure.EXPIRED),
        ({"now": ISSUED_AT + 10**9}, TokenFailure.EXPIRED),
    ],
)
def test_a_token_checked_against_something_else_fails_for_that_reason(
    changes: dict[str, object], failure: TokenFailure
) -> None:
    check = _verify(TOKEN_FOR_UID, **changes)  # type: ignore[arg-type]
    assert check == TokenCheck(failure, ISSUED_AT + EXPIRE)
    assert not check.ok


def test_a_token_is_good_until_the_second_before_it_expires() -> None:
    assert _verify(TOKEN_FOR_UID, now=ISSUED_AT + EXPIRE - 0.001).ok
    assert _verify(TOKEN_FOR_UID, now=ISSUED_AT + EXPIRE).failure is TokenFailure.EXPIRED


def test_a_token_for_uid_0_admits_any_uid() -> None:
    for uid in (1, 42, UID, UINT32_MAX):
        assert _verify(TOKEN_FOR_ANY_UID, uid=uid).ok
    assert _verify(TOKEN_FOR_ANY_UID, channel="other").failure is TokenFailure.CHANNEL


def test_a_token_built_for_one_app_does_not_verify_for_another() -> None:
    token = build_rtc_token(
        OTHER_APP_ID, CERTIFICATE, CHANNEL, UID, expires_in=EXPIRE, issued_at=ISSUED_AT, salt=9
    )
    assert _verify(token, app_id=OTHER_APP_ID).ok
    assert _verify(token).failure is TokenFailure.APP_ID


def test_the_join_privilege_expires_on_its_own() -> None:
    token = _build(expires_in=3600, privilege_expires_in=60)
    assert _verify(token, now=ISSUED_AT + 59).ok
    assert _verify(token, now=ISSUED_AT + 60).failure is TokenFailure.PRIVILEGE_EXPIRED
    assert _verify(token, now=ISSUED_AT + 3600).failure is TokenFailure.EXPIRED


def test_a_privilege_longer_than_the_token_ends_with_the_token() -> None:
    token = _build(expires_in=60, privilege_expires_in=3600)
    assert _verify(token, now=ISSUED_AT + 59).ok
    assert _verify(token, now=ISSUED_AT + 60).failure is TokenFailure.EXPIRED


def test_agoras_privilege_expire_0_lasts_as_long_as_the_token() -> None:
    # Agora's builders write 0 for the privilege when no privilege expiry is given.
    token = _pack_token(_rtc({1: 0}))
    assert _verify(token, now=ISSUED_AT + EXPIRE - 1).ok
    assert _verify(token, now=ISSUED_AT + EXPIRE).failure is TokenFailure.EXPIRED


@pytest.mark.parametrize(
    ("token", "failure"),
    [
        (_pack_token(_rtc({2: EXPIRE, 3: EXPIRE})), TokenFailure.NO_JOIN_PRIVILEGE),
        (_pack_token(_rtc({})), TokenFailure.NO_JOIN_PRIVILEGE),
        (_pack_token(_service(2, {1: EXPIRE}, _string(b"user"))), TokenFailure.NO_RTC_SERVICE),
        (_pack_token(), TokenFailure.NO_RTC_SERVICE),
        (_pack_token(_rtc({1: EXPIRE}), certificate=OTHER_CERTIFICATE), TokenFailure.SIGNATURE),
        ("006" + TOKEN_FOR_UID[3:], TokenFailure.VERSION),
        ("", TokenFailure.VERSION),
        ("007", TokenFailure.MALFORMED),
    ],
)
def test_what_a_token_lacks_is_the_reason_it_fails(token: str, failure: TokenFailure) -> None:
    assert _verify(token).failure is failure


def test_other_services_beside_rtc_are_read_and_do_not_stop_it() -> None:
    token = _pack_token(
        _rtc({1: EXPIRE, 2: EXPIRE, 3: EXPIRE, 4: EXPIRE}),
        _service(2, {1: EXPIRE}, _string(b"test_user")),
        _service(4, {1: EXPIRE}, b""),
        _service(7, {1: EXPIRE}, _string(b"room") + _string(b"user") + struct.pack("<h", -1)),
    )
    parsed = parse_token(token)
    assert [service.type for service in parsed.services] == [1, 2, 4, 7]
    assert parsed.services[1].fields == ("test_user",)
    assert (parsed.services[3].fields, parsed.services[3].role) == (("room", "user"), -1)
    assert _verify(token).ok


# ------------------------------------------------------------ malformed tokens


def _payload_token(payload: bytes) -> str:
    return "007" + base64.b64encode(zlib.compress(payload)).decode()


_VALID_PAYLOAD = zlib.decompress(base64.b64decode(TOKEN_FOR_UID[3:]))

MALFORMED = {
    "not base64": "007" + "!" * 16,
    "base64 with a space": TOKEN_FOR_UID[:40] + " " + TOKEN_FOR_UID[40:],
    "base64 without its padding": TOKEN_FOR_ANY_UID.rstrip("="),
    # 'o' -> 'p' changes only the two unused low bits of the last base64 character:
    # the same bytes, spelled another way.
    "non-canonical base64": TOKEN_FOR_ANY_UID[:-2] + "p=",
    "not zlib": "007" + base64.b64encode(b"not zlib at all").decode(),
    "zlib cut short": "007" + base64.b64encode(zlib.compress(_VALID_PAYLOAD)[:-6]).decode(),
    "bytes after the zlib data": "007"
    + base64.b64encode(zlib.compress(_VALID_PAYLOAD) + b"\0\0\0").decode(),
    "payload cut short": _payload_token(_VALID_PAYLOAD[:-3]),
    "empty payload": _payload_token(b""),
    "bytes after the last service": _pack_token(_rtc({1: EXPIRE}), trailer=b"\0"),
    "more services than it holds": _pack_token(_rtc({1: EXPIRE}), count=2),
    "an unknown service": _pack_token(_service(99, {1: EXPIRE}, b"")),
    "a service twice": _pack_token(_rtc({1: EXPIRE}), _rtc({1: EXPIRE})),
    "a privilege twice": _pack_token(
        struct.pack("<HH", 1, 2)
        + struct.pack("<HI", 1, EXPIRE) * 2
        + _string(CHANNEL.encode())
        + _string(b"1")
    ),
    "a channel that is not UTF-8": _pack_token(
        _service(1, {1: EXPIRE}, _string(b"\xff\xfe") + _string(b"1"))
    ),
    "a bomb": _payload_token(b"\0" * (1 << 20)),
    "too long": "007" + "A" * 8192,
}


@pytest.mark.parametrize("token", MALFORMED.values(), ids=MALFORMED.keys())
def test_a_malformed_token_raises_and_fails_verification(token: str) -> None:
    with pytest.raises(MalformedTokenError) as raised:
        parse_token(token)
    assert raised.value.failure is TokenFailure.MALFORMED
    assert isinstance(raised.value, TokenError)
    assert isinstance(raised.value, OrchestratorError)
    assert token not in str(raised.value)
    assert _verify(token) == TokenCheck(TokenFailure.MALFORMED)


def test_a_token_of_another_version_raises_with_that_reason() -> None:
    with pytest.raises(MalformedTokenError) as raised:
        parse_token("006" + TOKEN_FOR_UID[3:])
    assert raised.value.failure is TokenFailure.VERSION


# --------------------------------------------------------------- bad arguments


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"app_id": APP_ID[:-1]}, "app_id"),
        ({"app_id": APP_ID[:-1] + "g"}, "app_id"),
        ({"certificate": CERTIFICATE + "0"}, "certificate"),
        ({"certificate": CERTIFICATE[:-1] + "z"}, "certificate"),
        ({"channel": ""}, "channel"),
        ({"channel": "x" * 70_000}, "channel"),
        ({"uid": -1}, "uid"),
        ({"uid": UINT32_MAX + 1}, "uid"),
        ({"uid": True}, "uid"),
        ({"expires_in": 0}, "expires_in"),
        ({"expires_in": UINT32_MAX + 1}, "expires_in"),
        ({"issued_at": -1}, "issued_at"),
        ({"salt": 2**32}, "salt"),
        ({"privilege_expires_in": 0}, "privilege_expires_in"),
    ],
)
def test_build_refuses_an_argument_that_cannot_go_into_a_token(
    changes: dict[str, object], named: str
) -> None:
    arguments: dict[str, object] = {
        "app_id": APP_ID,
        "certificate": CERTIFICATE,
        "channel": CHANNEL,
        "uid": UID,
        "expires_in": EXPIRE,
        "issued_at": ISSUED_AT,
        "salt": SALT,
    } | changes
    with pytest.raises(TokenError) as raised:
        build_rtc_token(**arguments)  # type: ignore[arg-type]
    message = str(raised.value)
    assert message.startswith(named)
    assert CERTIFICATE not in message
    assert str(arguments["certificate"]) not in message


@pytest.mark.parametrize(
    "changes",
    [
        {"app_id": "nope"},
        {"certificate": CERTIFICATE[:-1]},
        {"certificate": CERTIFICATE + CERTIFICATE},
        {"uid": -5},
    ],
)
def test_verify_refuses_bad_arguments_without_echoing_them(changes: dict[str, object]) -> None:
    with pytest.raises(TokenError) as raised:
        _verify(TOKEN_FOR_UID, **changes)  # type: ignore[arg-type]
    message = str(raised.value)
    assert CERTIFICATE[:-1] not in message
    assert TOKEN_FOR_UID not in message
    assert "nope" not in message


def test_no_result_or_record_carries_the_certificate_or_the_token() -> None:
    shown = [repr(parse_token(TOKEN_FOR_UID)), repr(_verify(TOKEN_FOR_UID, uid=1))]
    shown += [str(failure) for failure in TokenFailure]
    for text in shown:
        assert CERTIFICATE not in text
        assert TOKEN_FOR_UID[3:40] not in text


# ----------------------------------------------------------------- properties

_channels = st.text(alphabet=sorted(CHANNEL_CHARSET), min_size=1, max_size=MAX_CHANNEL_BYTES)
_uids = st.integers(1, UINT32_MAX)
_seconds = st.integers(1, UINT32_MAX)


@settings(max_examples=150, deadline=None)
@given(
    channel=_channels,
    uid=_uids,
    other_uid=_uids,
    expires_in=_seconds,
    privilege_expires_in=_seconds,
    issued_at=st.integers(0, UINT32_MAX),
    salt=st.integers(1, MAX_SALT),
)
def test_a_built_token_verifies_and_names_only_its_uid(
    channel: str,
    uid: int,
    other_uid: int,
    expires_in: int,
    privilege_expires_in: int,
    issued_at: int,
    salt: int,
) -> None:
    token = build_rtc_token(
        APP_ID,
        CERTIFICATE,
        channel,
        uid,
        expires_in=expires_in,
        issued_at=issued_at,
        salt=salt,
        privilege_expires_in=privilege_expires_in,
    )
    last_good = issued_at + min(expires_in, privilege_expires_in) - 1

    def check(**changes: object) -> TokenCheck:
        arguments: dict[str, object] = {"channel": channel, "uid": uid, "now": issued_at}
        return _verify(token, **(arguments | changes))  # type: ignore[arg-type]

    assert check() == TokenCheck(None, issued_at + expires_in)
    assert check(now=last_good).ok
    assert not check(now=last_good + 1).ok
    if other_uid != uid:
        assert check(uid=other_uid).failure is TokenFailure.UID
    parsed = parse_token(token)
    assert parsed.rtc is not None
    assert (parsed.rtc.channel, parsed.rtc.account) == (channel, str(uid))
