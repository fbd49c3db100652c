"""What the emulator's channel makes of a `start`'s token, and the App Certificates it
checks tokens with.

A project with an App Certificate admits nobody to a channel without a token minted
from it, the recorder included; `check_token` says whether a start's token admits its
recorder and until when. Synchronous and clock-free: `now` is an argument.

It must never put a certificate or a token in an error, a repr or a description
(`AppCertificates.describe` says only where one is set).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from orchestrator.agora.token import (
    RtcPrivilege,
    TokenError,
    TokenFailure,
    parse_token,
    verify_rtc_token,
)

#: What `TokenVerdict.refused` says of a start that carried no token.
TOKEN_MISSING = "missing"  # noqa: S105  # a verdict, not a password
_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")


def _check_certificate(certificate: object) -> str:
    """`certificate` if it is an App Certificate's form (32 hex digits, as Agora issues
    them and `agora.token` requires); ValueError, without the value, if not."""
    if not isinstance(certificate, str) or len(certificate) != 32 or set(certificate) - _HEX_DIGITS:
        raise ValueError("an App Certificate must be a string of 32 hexadecimal digits")
    return certificate


@dataclass
class AppCertificates:
    """The App Certificates that `start` tokens are verified with: `default` for every
    App ID, `by_app` for one App ID (it wins over `default`). An App ID with neither
    has no certificate: its tokens are not read, as for an Agora project without one.

    The values are secrets: they stay out of every repr, answer and log line;
    `describe` says only where one is set.
    """

    default: str | None = field(default=None, repr=False)
    by_app: dict[str, str] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.default is not None:
            _check_certificate(self.default)
        for certificate in self.by_app.values():
            _check_certificate(certificate)

    def set(self, certificate: str | None, app_id: str | None = None) -> None:
        """Set (or, with None, remove) the certificate of `app_id`, or the default."""
        if certificate is not None:
            _check_certificate(certificate)
        if app_id is None:
            self.default = certificate
        elif certificate is None:
            self.by_app.pop(app_id, None)
        else:
            self.by_app[app_id] = certificate

    def clear(self) -> None:
        self.default = None
        self.by_app.clear()

    def for_app(self, app_id: str) -> str | None:
        return self.by_app.get(app_id, self.default)

    def describe(self) -> dict[str, Any]:
        """Where a certificate is set, never what it is."""
        return {"default": self.default is not None, "app_ids": sorted(self.by_app)}


@dataclass(frozen=True)
class TokenVerdict:
    """What the channel made of a start's token, under an App Certificate.

    `refused` is the check the token failed (a `TokenFailure` value, or
    `TOKEN_MISSING`), None when it admits the recorder. `until` is when the recorder
    leaves the channel: for an admitted token, when the token or its join privilege
    expires; for a refused one, when the recorder gives up trying to join.
    """

    refused: str | None
    until: float


def check_token(
    token: object,
    *,
    certificate: str,
    app_id: str,
    cname: str,
    uid: str,
    now: float,
    gives_up_at: float,
) -> TokenVerdict:
    """What the channel makes of a start's `token` (None: the start carried none) at
    `now`; a refused recorder gives up at `gives_up_at`."""
    if not isinstance(token, str):
        return TokenVerdict(TOKEN_MISSING, gives_up_at)
    try:
        check = verify_rtc_token(
            token, app_id=app_id, certificate=certificate, channel=cname, uid=int(uid), now=now
        )
    except TokenError:
        # The certificate was checked when set and the uid by the request's model, so
        # only an App ID that is not 32 hex digits is left: no token admits to it.
        return TokenVerdict(TokenFailure.APP_ID.value, gives_up_at)
    if check.failure is not None:
        return TokenVerdict(check.failure.value, gives_up_at)
    parsed = parse_token(token)  # it verified, so it reads
    until = float(parsed.expires_at)
    rtc = parsed.rtc
    join = None if rtc is None else rtc.privilege_expire(RtcPrivilege.JOIN_CHANNEL)
    # A join privilege that expires before the token removes the recorder then (0: it
    # lasts as long as the token, as `verify_rtc_token` reads it).
    if join:
        until = min(until, float(parsed.issued_at + join))
    return TokenVerdict(None, until)
