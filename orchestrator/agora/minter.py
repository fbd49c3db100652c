"""Tokens for starts: one `TokenMinter` per app profile that has an App Certificate.

A recording of such a project needs a token for its channel and uid in every `start`
(the reference: 如果你的项目已启用 App 证书,则务必在该参数中传入你项目的动态秘钥),
and Cloud Recording cannot renew it: the recorder leaves the channel when the token
expires. So a token is minted for each start, just before it is sent, and is never
kept: not in the store, not in a log line, not in a `repr`. Only its expiry is kept
(the session's `expires_at`), so that the planner rolls the session over in time.

How long a token is valid: until the window's end plus `TOKEN_MARGIN` (a stop that
comes a little late still finds its recorder), or the profile's `tokenLifetime`,
whichever comes first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from orchestrator.agora.token import build_rtc_token, new_salt

#: A token outlives its window by this much: the window's stop is planned at its end,
#: and may come a pass later.
TOKEN_MARGIN = timedelta(minutes=5)


@dataclass(frozen=True)
class MintedToken:
    """A token for one start (a secret) and the instant it stops admitting the recorder."""

    token: str = field(repr=False)
    expires_at: datetime


@dataclass(frozen=True)
class TokenMinter:
    """Mints join tokens for the recordings of one app profile.

    `reference` describes where the certificate comes from (`<env:NAME>`), for
    messages; the certificate itself never leaves this object."""

    app: str
    app_id: str
    certificate: str = field(repr=False)
    lifetime: timedelta
    reference: str

    def mint(self, channel: str, uid: int, *, now: datetime, window_end: datetime) -> MintedToken:
        """A token admitting `uid` to `channel`, issued at `now` (whole seconds) and
        valid until `window_end + TOKEN_MARGIN` or for `lifetime`, the sooner."""
        issued = int(now.timestamp())
        start = datetime.fromtimestamp(issued, UTC)
        until = min(window_end + TOKEN_MARGIN, start + self.lifetime)
        seconds = max(1, int((until - start).total_seconds()))
        token = build_rtc_token(
            self.app_id,
            self.certificate,
            channel,
            uid,
            expires_in=seconds,
            issued_at=issued,
            salt=new_salt(),
        )
        return MintedToken(token, start + timedelta(seconds=seconds))
