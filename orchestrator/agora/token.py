"""Agora AccessToken2 ("007") tokens: build one for a recording, verify one as Agora would.

Why this exists. An Agora project with an App Certificate enabled admits nobody to a
channel without a token minted from that certificate, and that includes the recorder
Cloud Recording sends in: its `start` request must carry a token for the recording's
channel and uid. Cloud Recording cannot renew a token once the recording runs, so the
orchestrator mints a fresh one for every `start`; `verify_rtc_token` lets the emulator
check what a `start` carries the way Agora does.

What it must never do. Read the clock (the caller passes `issued_at`, `now` and the
salt, so every function here except `new_salt` is pure); log anything; put the
certificate or the token text in an exception message, a `repr` or a result.

The format, as Agora's published token tools write it (all integers little-endian;
a "string" is a uint16 byte length followed by the bytes)::

    token     = "007" + base64(zlib(string(signature) + signed))
    signed    = string(app_id) + uint32(issued_at) + uint32(expire) + uint32(salt)
                + uint16(service count) + services
    service   = uint16(type) + uint16(privilege count)
                + (uint16(privilege) + uint32(privilege expire)) * count + its fields
    RTC (1)   fields: string(channel) + string(uid as decimal text, "" for uid 0)
    key       = HMAC-SHA256(key=uint32(salt), msg=HMAC-SHA256(key=uint32(issued_at),
                                                            msg=certificate text))
    signature = HMAC-SHA256(key, signed)

`expire` and every privilege expire are seconds relative to `issued_at`, not
timestamps; the token is good until `issued_at + expire`. The certificate enters the
HMAC as its 32 characters of text, case and all, not as the 16 bytes they spell.

Where this is stricter than Agora's tools: a token must be base64 in its one
canonical spelling, carry nothing after its last service, and name each service and
privilege once; so no token that differs by a character from a valid one is read as
that token.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import struct
import zlib
from dataclasses import dataclass, field
from enum import Enum, IntEnum

from orchestrator.contract import is_app_credential
from orchestrator.errors import OrchestratorError

VERSION = "007"
UINT16_MAX = 2**16 - 1
UINT32_MAX = 2**32 - 1
#: Agora's token tools draw the salt from 1 .. 99,999,999; `new_salt` does the same.
MAX_SALT = 99_999_999
#: A token for one service is about 150 characters; this bound only keeps a hostile
#: input from costing more than reading it once (Agora states no limit).
MAX_TOKEN_CHARS = 4096
#: What the payload may inflate to at most: far above what a real token holds, so that
#: a small token cannot inflate into a large allocation.
_MAX_PAYLOAD_BYTES = 64 * 1024


class ServiceType(IntEnum):
    """The services a 007 token can grant (Agora's numbering)."""

    RTC = 1
    RTM = 2
    STREAMING = 3
    FPA = 4
    CHAT = 5
    EDUCATION = 7


class RtcPrivilege(IntEnum):
    """The privileges of the RTC service (Agora's numbering). A recorder needs only
    `JOIN_CHANNEL`: it subscribes and never publishes."""

    JOIN_CHANNEL = 1
    PUBLISH_AUDIO = 2
    PUBLISH_VIDEO = 3
    PUBLISH_DATA = 4


class TokenFailure(Enum):
    """Which check a token failed, in the order `verify_rtc_token` makes them."""

    VERSION = "version"  # not a "007" token
    MALFORMED = "malformed"  # not base64, zlib or the 007 layout
    APP_ID = "app_id"  # minted for another App ID
    SIGNATURE = "signature"  # not signed with this certificate, or altered
    NO_RTC_SERVICE = "no_rtc_service"  # grants no RTC service
    CHANNEL = "channel"  # for another channel
    UID = "uid"  # for another uid (a token for uid 0 admits any uid)
    NO_JOIN_PRIVILEGE = "no_join_privilege"  # RTC without the join-channel privilege
    EXPIRED = "expired"  # the whole token: now >= issued_at + expire
    PRIVILEGE_EXPIRED = "privilege_expired"  # now >= issued_at + join privilege expire


class TokenError(OrchestratorError):
    """A token cannot be built from these arguments, or read.

    Sits under `OrchestratorError`::

        TokenError                 a bad argument to build or verify
        └── MalformedTokenError    a text that is not a readable 007 token

    Messages name the argument or the part of the token at fault, never a value of
    the certificate or of the token.
    """


class MalformedTokenError(TokenError):
    """`parse_token` could not read the text: `failure` is `VERSION` or `MALFORMED`."""

    def __init__(self, message: str, failure: TokenFailure) -> None:
        super().__init__(message)
        self.failure = failure


@dataclass(frozen=True)
class ServiceGrant:
    """One service of a token: its privileges (privilege -> expire, seconds after
    issue) and its own text fields (for RTC: channel, then uid text); `role` is the
    education service's role, None for every other service."""

    type: int
    privileges: tuple[tuple[int, int], ...]
    fields: tuple[str, ...]
    role: int | None = None

    def privilege_expire(self, privilege: int) -> int | None:
        """The relative expire of `privilege`, or None if the service lacks it."""
        return dict(self.privileges).get(privilege)


@dataclass(frozen=True)
class RtcGrant:
    """The RTC service of a token: `account` is the uid as decimal text, "" for any uid."""

    channel: str
    account: str
    privileges: tuple[tuple[int, int], ...]

    def privilege_expire(self, privilege: RtcPrivilege) -> int | None:
        return dict(self.privileges).get(privilege)


@dataclass(frozen=True)
class ParsedToken:
    """What a 007 token says. Reading it proves nothing: only `verify_rtc_token`, with
    the certificate, tells whether it is genuine."""

    app_id: str
    issued_at: int
    expire: int
    salt: int
    services: tuple[ServiceGrant, ...]
    signature: bytes = field(repr=False)
    #: The bytes the signature covers, exactly as the token carries them.
    signed: bytes = field(repr=False)
    version: str = VERSION

    @property
    def expires_at(self) -> int:
        """The first second (Unix time) at which the token no longer admits anyone."""
        return self.issued_at + self.expire

    @property
    def rtc(self) -> RtcGrant | None:
        for service in self.services:
            if service.type == ServiceType.RTC:
                channel, account = service.fields  # two, by _LAYOUTS
                return RtcGrant(channel, account, service.privileges)
        return None


@dataclass(frozen=True)
class TokenCheck:
    """The verdict of `verify_rtc_token`: `failure` is None when the token admits the
    uid to the channel at `now`."""

    failure: TokenFailure | None
    #: When the token stops admitting (Unix seconds), if it could be read.
    expires_at: int | None = None

    @property
    def ok(self) -> bool:
        return self.failure is None


# ------------------------------------------------------------------------ building


def new_salt() -> int:
    """A random salt for `build_rtc_token`, from the range Agora's tools use. The one
    function here that is not pure: it reads the system's randomness."""
    return secrets.randbelow(MAX_SALT) + 1


def build_rtc_token(
    app_id: str,
    certificate: str,
    channel: str,
    uid: int,
    *,
    expires_in: int,
    issued_at: int,
    salt: int,
    privilege_expires_in: int | None = None,
) -> str:
    """A 007 token admitting `uid` (0: any uid) to `channel` with the join-channel
    privilege only, valid from `issued_at` (Unix seconds) for `expires_in` seconds.

    The join privilege lasts `privilege_expires_in` seconds after `issued_at`
    (default: as long as the token). `salt` is a random 32-bit number (`new_salt`).
    Raises `TokenError` for an argument that cannot go into a token (Agora's tools
    return "" for a bad App ID or certificate; we say which argument is wrong).
    """
    _check_credential("app_id", app_id)
    _check_credential("certificate", certificate)
    _check_channel(channel)
    _check_uint32("uid", uid, low=0)
    _check_uint32("expires_in", expires_in, low=1)
    _check_uint32("issued_at", issued_at, low=0)
    _check_uint32("salt", salt, low=0)
    privilege_expire = expires_in if privilege_expires_in is None else privilege_expires_in
    _check_uint32("privilege_expires_in", privilege_expire, low=1)

    rtc = (
        _u16(ServiceType.RTC)
        + _u16(1)
        + _u16(RtcPrivilege.JOIN_CHANNEL)
        + _u32(privilege_expire)
        + _text(channel)
        + _text(_account(uid))
    )
    signed = _text(app_id) + _u32(issued_at) + _u32(expires_in) + _u32(salt) + _u16(1) + rtc
    signature = _sign(certificate, issued_at, salt, signed)
    payload = zlib.compress(_bytes(signature) + signed)
    return VERSION + base64.b64encode(payload).decode("ascii")


# ------------------------------------------------------------------------- reading


def parse_token(token: str) -> ParsedToken:
    """Read a 007 token without checking its signature.

    Raises `MalformedTokenError` (its `failure` VERSION or MALFORMED) for anything
    that is not a 007 token written in the one way Agora's tools write it.
    """
    if not isinstance(token, str) or not token.startswith(VERSION):
        raise MalformedTokenError(
            f"the token does not start with {VERSION!r}", TokenFailure.VERSION
        )
    if len(token) > MAX_TOKEN_CHARS:
        raise _malformed(f"the token is longer than {MAX_TOKEN_CHARS} characters")
    body = token[len(VERSION) :]
    try:
        compressed = base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        raise _malformed("the token is not base64 after its version") from None
    # b64decode ignores the unused bits of the last character: without this, two
    # spellings of one token would both verify.
    if base64.b64encode(compressed).decode("ascii") != body:
        raise _malformed("the token's base64 is not in its canonical form")
    payload = _inflate(compressed)

    reader = _Reader(payload)
    signature = reader.bytes_("signature")
    signed_from = reader.offset
    app_id = reader.text("app ID")
    issued_at = reader.u32("issue time")
    expire = reader.u32("expire")
    salt = reader.u32("salt")
    services = tuple(_read_service(reader) for _ in range(reader.u16("service count")))
    reader.finish()
    types = [service.type for service in services]
    if len(set(types)) != len(types):
        raise _malformed("the token names a service twice")
    return ParsedToken(
        app_id=app_id,
        issued_at=issued_at,
        expire=expire,
        salt=salt,
        services=services,
        signature=signature,
        signed=payload[signed_from:],
    )


def verify_rtc_token(
    token: str, *, app_id: str, certificate: str, channel: str, uid: int, now: float
) -> TokenCheck:
    """Whether `token` admits `uid` to `channel` of `app_id` at `now` (Unix seconds),
    checked as Agora checks it: version, App ID, signature with `certificate`, the RTC
    service's channel and uid (a token for uid 0 admits any uid), the join-channel
    privilege, then the token's and the privilege's expiry. The first check that
    fails is the answer.

    A token that fails a check is an answer (`TokenCheck.failure`), not an error;
    `TokenError` is raised only for a bad argument (an App ID or certificate that is
    not 32 hex digits, a uid outside 0 .. 2^32-1).
    """
    _check_credential("app_id", app_id)
    _check_credential("certificate", certificate)
    _check_uint32("uid", uid, low=0)
    try:
        parsed = parse_token(token)
    except MalformedTokenError as error:
        return TokenCheck(error.failure)

    def failed(failure: TokenFailure) -> TokenCheck:
        return TokenCheck(failure, parsed.expires_at)

    if parsed.app_id != app_id:
        return failed(TokenFailure.APP_ID)
    expected = _sign(certificate, parsed.issued_at, parsed.salt, parsed.signed)
    if not hmac.compare_digest(expected, parsed.signature):
        return failed(TokenFailure.SIGNATURE)
    rtc = parsed.rtc
    if rtc is None:
        return failed(TokenFailure.NO_RTC_SERVICE)
    if rtc.channel != channel:
        return failed(TokenFailure.CHANNEL)
    if rtc.account not in ("", _account(uid)):
        return failed(TokenFailure.UID)
    join_expire = rtc.privilege_expire(RtcPrivilege.JOIN_CHANNEL)
    if join_expire is None:
        return failed(TokenFailure.NO_JOIN_PRIVILEGE)
    if now >= parsed.expires_at:
        return failed(TokenFailure.EXPIRED)
    # Agora's own builders write 0 when no privilege expiry is asked for (their
    # `privilege_expire=0` default) and Agora accepts those tokens: 0 means the
    # privilege lasts as long as the token.
    if join_expire != 0 and now >= parsed.issued_at + join_expire:
        return failed(TokenFailure.PRIVILEGE_EXPIRED)
    return TokenCheck(None, parsed.expires_at)


# ----------------------------------------------------------------------- the layout


def _u16(value: int) -> bytes:
    return struct.pack("<H", value)


def _u32(value: int) -> bytes:
    return struct.pack("<I", value)


def _bytes(value: bytes) -> bytes:
    return _u16(len(value)) + value


def _text(value: str) -> bytes:
    return _bytes(value.encode("utf-8"))


def _account(uid: int) -> str:
    """How the RTC service names a uid: its decimal text, or "" for uid 0 (any uid)."""
    return "" if uid == 0 else str(uid)


def _sign(certificate: str, issued_at: int, salt: int, signed: bytes) -> bytes:
    """The signature of `signed`: the certificate's text is the message of the first
    HMAC, keyed by the issue time, whose digest is keyed by the salt."""
    key = hmac.digest(_u32(issued_at), certificate.encode("ascii"), hashlib.sha256)
    key = hmac.digest(_u32(salt), key, hashlib.sha256)
    return hmac.digest(key, signed, hashlib.sha256)


def _inflate(compressed: bytes) -> bytes:
    inflater = zlib.decompressobj()
    try:
        payload = inflater.decompress(compressed, _MAX_PAYLOAD_BYTES)
    except zlib.error:
        raise _malformed("the token's payload is not zlib data") from None
    if inflater.unconsumed_tail:
        raise _malformed(f"the token's payload inflates past {_MAX_PAYLOAD_BYTES} bytes")
    if not inflater.eof or inflater.unused_data:
        raise _malformed("the token's zlib data is cut short or followed by more bytes")
    return payload


#: What each service carries after its privileges: how many strings, and whether an
#: int16 follows them. Agora's tools cannot read a token with a service not listed
#: here either.
_LAYOUTS: dict[int, tuple[int, bool]] = {
    ServiceType.RTC: (2, False),  # channel, uid text
    ServiceType.RTM: (1, False),  # user ID
    ServiceType.STREAMING: (2, False),  # channel, uid text
    ServiceType.FPA: (0, False),
    ServiceType.CHAT: (1, False),  # user ID
    ServiceType.EDUCATION: (2, True),  # room UUID, user UUID; role
}


def _read_service(reader: _Reader) -> ServiceGrant:
    kind = reader.u16("service type")
    layout = _LAYOUTS.get(kind)
    if layout is None:
        raise _malformed(f"the token grants service type {kind}, which is not known")
    privileges = tuple(
        (reader.u16("privilege"), reader.u32("privilege expire"))
        for _ in range(reader.u16("privilege count"))
    )
    if len({privilege for privilege, _ in privileges}) != len(privileges):
        raise _malformed(f"service {kind} of the token names a privilege twice")
    strings, has_role = layout
    fields = tuple(reader.text("service field") for _ in range(strings))
    role = reader.i16("service role") if has_role else None
    return ServiceGrant(kind, privileges, fields, role)


class _Reader:
    """Reads the 007 layout front to back; every shortfall is a `MalformedTokenError`."""

    def __init__(self, payload: bytes) -> None:
        self._payload = payload
        self.offset = 0

    def _take(self, size: int, what: str) -> bytes:
        end = self.offset + size
        if end > len(self._payload):
            raise _malformed(f"the token ends inside its {what}")
        chunk = self._payload[self.offset : end]
        self.offset = end
        return chunk

    def u16(self, what: str) -> int:
        value: int = struct.unpack("<H", self._take(2, what))[0]
        return value

    def i16(self, what: str) -> int:
        value: int = struct.unpack("<h", self._take(2, what))[0]
        return value

    def u32(self, what: str) -> int:
        value: int = struct.unpack("<I", self._take(4, what))[0]
        return value

    def bytes_(self, what: str) -> bytes:
        return self._take(self.u16(what), what)

    def text(self, what: str) -> str:
        try:
            return self.bytes_(what).decode("utf-8")
        except UnicodeDecodeError:
            raise _malformed(f"the token's {what} is not UTF-8") from None

    def finish(self) -> None:
        if self.offset != len(self._payload):
            raise _malformed("the token carries bytes after its last service")


def _malformed(message: str) -> MalformedTokenError:
    return MalformedTokenError(message, TokenFailure.MALFORMED)


# ------------------------------------------------------------------------ arguments


def _check_credential(name: str, value: str) -> None:
    """App IDs and certificates are 32 hex digits; Agora's tools refuse anything else."""
    if not isinstance(value, str) or not is_app_credential(value):
        raise TokenError(f"{name} must be 32 hexadecimal digits")


def _check_channel(channel: str) -> None:
    if not isinstance(channel, str) or not channel:
        raise TokenError("channel must be a non-empty string")
    if len(channel.encode("utf-8")) > UINT16_MAX:
        raise TokenError(f"channel is longer than {UINT16_MAX} bytes")


def _check_uint32(name: str, value: int, *, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= UINT32_MAX:
        raise TokenError(f"{name} must be an integer in {low} .. {UINT32_MAX}")


__all__ = [
    "MAX_SALT",
    "VERSION",
    "MalformedTokenError",
    "ParsedToken",
    "RtcGrant",
    "RtcPrivilege",
    "ServiceGrant",
    "ServiceType",
    "TokenCheck",
    "TokenError",
    "TokenFailure",
    "build_rtc_token",
    "new_salt",
    "parse_token",
    "verify_rtc_token",
]
