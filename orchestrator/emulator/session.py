"""One recording session of the emulator: its lifecycle, its failovers and what it has
recorded.

A `Session` is what a `start` created: it settles on its own (idle exit, the
resource's expiry, the token's expiry or refusal) when asked at a given `now`,
moves to another recorder uid on a failover, and answers `query` and `stop` with the
status and file lists Agora would send. Synchronous and clock-free: every instant is
an argument, so `state.py` can evaluate it lazily and a test can move the clock.

It must never hold a token or a certificate (only what the channel made of the
token), nor put one in a description.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from orchestrator import contract
from orchestrator.contract import ServiceStatus
from orchestrator.emulator.tokens import TokenVerdict

# What a recording with Aliyun VOD answers instead of a `status` (`recordingService`),
# for each status the emulator's sessions go through.
_RECORDING_SERVICE = {
    ServiceStatus.STARTED: "serviceReady",
    ServiceStatus.RECORDING: "serviceInProgress",
    ServiceStatus.EXITED: "serviceCompleted",
    ServiceStatus.EXITED_ABNORMALLY: "serviceAbnormal",
}

#: `Session.end_reason` of a recorder the channel removed when its token expired.
END_TOKEN_EXPIRED = "token expired"  # noqa: S105  # an end reason, not a password
#: The start of `Session.end_reason` of a recorder whose token the channel refused.
END_TOKEN_REFUSED = "token refused"  # noqa: S105  # an end reason, not a password


@dataclass
class Resource:
    resource_id: str
    app_id: str
    cname: str
    uid: str
    acquired_at: float
    expired_hour: int
    sid: str | None = None


@dataclass(frozen=True)
class Failover:
    """The recorder moved to another server at `at` and rejoined as `new_uid`: the
    recording goes on, but its sid routes answer 404 until `until`. `notify`: whether
    NCS tells of it (event 12)."""

    at: float
    old_uid: str
    new_uid: str
    until: float
    notify: bool = True


@dataclass
class Session:
    sid: str
    resource_id: str
    app_id: str
    cname: str
    uid: str  # the uid the session was started with (its resource's)
    mode: str
    kind: str  # "recording" | "snapshot" | "vod"
    started_at: float
    expires_at: float
    max_idle: int
    channel_type: int
    stream_types: int
    prefix: str
    subscription: dict[str, list[str] | None]
    layout: dict[str, Any] | None
    file_types: tuple[str, ...] = contract.DEFAULT_RECORDING_FILE_TYPES  # avFileType
    idle_since: float | None = None
    seen: dict[str, float] = field(default_factory=dict)  # publisher uid -> first seen
    ended_at: float | None = None
    # "stopped" | "idle" | "aborted" | "expired" | "token expired" | "token refused: <check>"
    end_reason: str | None = None
    token: TokenVerdict | None = None  # None: no App Certificate, the token was not read
    failovers: list[Failover] = field(default_factory=list)

    @property
    def joined(self) -> bool:
        """Whether the recorder is in the channel: not when its token was refused."""
        return self.token is None or self.token.refused is None

    @property
    def recorder_uid(self) -> str:
        """The uid the recorder is in the channel with now (a new one after a failover)."""
        return self.failovers[-1].new_uid if self.failovers else self.uid

    @property
    def uids(self) -> tuple[str, ...]:
        """Every uid the recorder has had: a sid route's body may name any of them."""
        return (self.uid, *(f.new_uid for f in self.failovers))

    def failover_until(self, now: float) -> float | None:
        """When the failover in progress at `now` ends (None: none is), while it lives."""
        if self.ended_at is not None or not self.failovers:
            return None
        until = self.failovers[-1].until
        return until if now < until else None

    def fail_over(self, now: float, seconds: float, new_uid: str, *, notify: bool) -> Failover:
        """Move the recorder to `new_uid`; its sid routes answer 404 for `seconds`."""
        failover = Failover(now, self.recorder_uid, new_uid, now + seconds, notify)
        self.failovers.append(failover)
        return failover

    def next_uid(self, taken: set[str]) -> str:
        """A uid for the recorder after a failover: derived from the sid, so the same
        session moves to the same uids, and none in `taken` or had before."""
        n = len(self.failovers)
        while True:
            digest = hashlib.sha256(f"{self.sid}/failover/{n}".encode()).digest()
            uid = str(int.from_bytes(digest[:4], "big") % contract.UINT32_MAX + 1)
            if uid not in taken and uid not in self.uids:
                return uid
            n += 1

    def settle(self, now: float) -> None:
        """Apply whatever happened on its own up to `now` (idle exit, expiry, the
        token's expiry or refusal)."""
        if self.ended_at is not None:
            return
        deadline, reason = self.expires_at, "expired"
        if self.token is not None and self.token.until < deadline:
            deadline = self.token.until
            refused = self.token.refused
            reason = END_TOKEN_EXPIRED if refused is None else f"{END_TOKEN_REFUSED}: {refused}"
        if self.idle_since is not None and self.idle_since + self.max_idle < deadline:
            deadline, reason = self.idle_since + self.max_idle, "idle"
        if now >= deadline:
            self.ended_at, self.end_reason = deadline, reason

    def describe(self, now: float) -> dict[str, Any]:
        failover_until = self.failover_until(now)
        return {
            "sid": self.sid,
            "resource_id": self.resource_id,
            "app_id": self.app_id,
            "cname": self.cname,
            "uid": self.uid,
            "recorder_uid": self.recorder_uid,
            "mode": self.mode,
            "kind": self.kind,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "end_reason": self.end_reason,
            "live": self.ended_at is None,
            "in_failover": failover_until is not None,
            "failover_until": failover_until,
            "failovers": [vars(f) for f in self.failovers],
            "max_idle": self.max_idle,
            "idle_since": self.idle_since,
            "seen_uids": sorted(self.seen),
            "subscription": self.subscription,
            "layout": self.layout,
            "file_types": list(self.file_types),
            # What the channel made of the token (never the token itself).
            "token_refused": None if self.token is None else self.token.refused,
            "token_expires_at": (
                self.token.until if self.token is not None and self.joined else None
            ),
        }

    # ------------------------------------------------------------ answers

    def status(self, now: float, warmup: float) -> int:
        if self.ended_at is not None:
            aborted = self.end_reason == "aborted"
            return ServiceStatus.EXITED_ABNORMALLY if aborted else ServiceStatus.EXITED
        warming = now - self.started_at < warmup
        if warming or not self.joined:  # a refused recorder never starts recording
            return ServiceStatus.STARTED
        return ServiceStatus.RECORDING

    def server_response(
        self, now: float, *, warmup: float, status_as_string: bool, final: bool = False
    ) -> dict[str, Any]:
        """The `serverResponse` of a `query` (or, `final`, of a `stop`) at `now`."""
        status: int | str = int(self.status(now, warmup))
        if status_as_string:
            status = str(status)
        start_ms = self._start_ms()
        if self.kind == "vod":
            state = "inProgress" if self.seen and self.idle_since is None else "idle"
            name = f"{self.sid}_{self.cname}.m3u8"
            video_id = hashlib.sha256(self.sid.encode()).hexdigest()[:32]
            service = _RECORDING_SERVICE[
                ServiceStatus.EXITED if final else ServiceStatus(int(status))
            ]
            return {
                "extensionServiceState": [
                    {
                        "payload": {
                            "state": state,
                            "videoInfo": [{"fileName": name, "videoId": video_id}]
                            if self.seen
                            else [],
                        },
                        "serviceName": contract.ALIYUN_VOD_SERVICE,
                    }
                ],
                "subServiceStatus": {"recordingService": service},
            }
        if self.kind == "snapshot":
            return {"status": status, "sliceStartTime": start_ms}
        if self.mode == "mix" and contract.MP4 not in self.file_types:
            # with only an M3U8, Agora answers the mix file list as one string
            return {
                "status": status,
                "fileListMode": "string",
                "fileList": f"{self._base()}.m3u8" if self.seen else "",
                "sliceStartTime": start_ms,
            }
        return {
            "status": status,
            "fileListMode": "json",
            "fileList": self.files(),
            "sliceStartTime": start_ms,
        }

    def files(self) -> list[dict[str, Any]]:
        """What it has recorded so far as a JSON file list (`filename`, `trackType`,
        `uid`, `mixedAllUser`, `isPlayable`, `sliceStartTime`): nothing before a user
        was seen, and nothing for snapshots or VOD (the emulator keeps no such files)."""
        if self.kind != "recording" or not self.seen:
            return []
        if self.mode == "mix":
            return self._mixed_files()
        return self._individual_files()

    def _start_ms(self) -> int:
        return int(min([self.started_at, *self.seen.values()]) * 1000)

    def _base(self) -> str:
        return f"{self.prefix}{self.sid}_{self.cname}"

    def _mixed_files(self) -> list[dict[str, Any]]:
        """A mix recording's M3U8 and, with MP4 asked for, its first MP4
        (`<sid>_<cname>_0.mp4`): all users."""
        base = self._base()
        names = [f"{base}.m3u8"]
        if contract.MP4 in self.file_types:
            names.append(f"{base}_0.mp4")
        track = {0: "audio", 1: "video", 2: "audio_and_video"}[self.stream_types]
        return [
            {
                "filename": name,
                "trackType": track,
                "uid": "0",
                "mixedAllUser": True,
                "isPlayable": True,
                "sliceStartTime": self._start_ms(),
            }
            for name in names
        ]

    def _individual_files(self) -> list[dict[str, Any]]:
        sub = self.subscription
        audio_lists = (
            sub["subscribeAudioUids"] is not None or sub["unSubscribeAudioUids"] is not None
        )
        video_lists = (
            sub["subscribeVideoUids"] is not None or sub["unSubscribeVideoUids"] is not None
        )
        tracks = {0: ("audio",), 1: ("video",), 2: ("audio", "video")}[self.stream_types]
        files = []
        for uid, first_seen in sorted(self.seen.items(), key=lambda item: item[1]):
            for track in tracks:
                if track == "audio":
                    wanted = _subscribed(
                        uid, sub["subscribeAudioUids"], sub["unSubscribeAudioUids"], video_lists
                    )
                else:
                    wanted = _subscribed(
                        uid, sub["subscribeVideoUids"], sub["unSubscribeVideoUids"], audio_lists
                    )
                if not wanted:
                    continue
                files.append(
                    {
                        "filename": f"{self._base()}__uid_s_{uid}__uid_e_{track}.m3u8",
                        "trackType": track,
                        "uid": uid,
                        "mixedAllUser": False,
                        "isPlayable": True,
                        "sliceStartTime": int(first_seen * 1000),
                    }
                )
        return files


def _subscribed(uid: str, sub: list[str] | None, unsub: list[str] | None, other: bool) -> bool:
    """Whether one kind (audio or video) of `uid` is recorded, per the reference's list rules."""
    if sub is not None:
        return uid in sub or contract.ALL_STREAMS in sub
    if unsub is not None:
        return uid not in unsub
    # A list for the other kind only means this kind is not subscribed at all.
    return not other
