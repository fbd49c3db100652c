"""What the recorder takes in and how it composes it: the manifest's `recording`,
`transcoding` and `layout` sections.

`recording` is recordingConfig (channel type, streams, decryption, the uid lists and
the uid group), `transcoding` and `layout` are the mixed video's settings. Part of the
manifest language (`model` holds the rules between sections and `Manifest`; the
outputs are `outputs`'); kept apart only to keep `model` short.

Like `model`, it never resolves a secret and knows no numeric code or limit of its
own: the tables and limits are `orchestrator.contract`'s.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, field_validator, model_validator

from orchestrator import contract
from orchestrator.manifest.rules import Rules
from orchestrator.manifest.scalars import (
    AudioProfile,
    ChannelType,
    Color,
    DecryptionMode,
    Fraction,
    IdleSeconds,
    LayoutType,
    RenderMode,
    Streams,
    SubscribeUid,
    Uid,
    UidGroup,
    VideoStreamType,
    Whole,
    parse_color,
)
from orchestrator.manifest.section import Section
from orchestrator.secrets import SecretField

__all__ = [
    "Decryption",
    "Layout",
    "Recording",
    "Region",
    "Subscription",
    "Transcoding",
    "too_many_uids",
    "uid_group_for",
]


# --- recording -----------------------------------------------------------------------


class Decryption(Section):
    """The channel's media encryption, which the recorder must match."""

    mode: DecryptionMode
    secret: SecretField | None = None

    @model_validator(mode="after")
    def _secret_matches_mode(self) -> Decryption:
        rules = Rules()
        if self.mode != "none" and self.secret is None:
            rules.add(("secret",), f"required with decryption mode {self.mode}")
        if self.mode == "none" and self.secret is not None:
            rules.add(("secret",), "not allowed with decryption mode none; set a mode or remove it")
        rules.raise_if_any()
        return self


UidList = Annotated[tuple[SubscribeUid, ...], Field(min_length=1, max_length=contract.MAX_UID_LIST)]


class Subscription(Section):
    """Uid lists for one direction (subscribe or unsubscribe): at most 32 per kind."""

    audio: UidList | None = None
    video: UidList | None = None

    @model_validator(mode="after")
    def _lists_are_clean(self) -> Subscription:
        rules = Rules()
        for kind in ("audio", "video"):
            uids = self.kind(kind)
            if uids is None:
                continue
            if contract.ALL_STREAMS in uids and len(uids) > 1:
                rules.add((kind,), f"'{contract.ALL_STREAMS}' means every uid: list it alone")
            seen: set[int | str] = set()
            for index, uid in enumerate(uids):
                if uid in seen:
                    rules.add((kind, index), f"uid {uid} is listed twice")
                seen.add(uid)
        rules.raise_if_any()
        return self

    def kind(self, kind: str) -> tuple[int | str, ...] | None:
        return self.audio if kind == "audio" else self.video


class Recording(Section):
    """recordingConfig: what the recorder subscribes to and how."""

    channel_type: ChannelType = "communication"
    streams: Streams = "audio+video"
    decryption: Decryption | None = None
    audio_profile: AudioProfile | None = None
    video_stream_type: VideoStreamType | None = None
    max_idle_time: IdleSeconds = contract.IDLE_TIME.default
    subscribe: Subscription | None = None
    unsubscribe: Subscription | None = None
    subscribe_uid_group: UidGroup | None = None

    @model_validator(mode="after")
    def _lists_fit_streams(self) -> Recording:
        rules = Rules()
        for kind in ("audio", "video"):
            sub = self.subscribe.kind(kind) if self.subscribe else None
            unsub = self.unsubscribe.kind(kind) if self.unsubscribe else None
            if sub is not None and unsub is not None:
                rules.add(
                    ("unsubscribe", kind),
                    f"{kind}: use either a subscribe or an unsubscribe list, not both",
                )
            if unsub is not None and contract.ALL_STREAMS in unsub:
                rules.add(
                    ("unsubscribe", kind), f"'{contract.ALL_STREAMS}' belongs in a subscribe list"
                )
            if (sub is not None or unsub is not None) and kind not in self.recorded_kinds:
                where = "subscribe" if sub is not None else "unsubscribe"
                rules.add(
                    (where, kind),
                    f"streams is {self.streams}: no {kind} list is allowed "
                    f"(use streams: audio+video to record {kind})",
                )
        count = self.subscribed_uid_count
        if count is not None and self.subscribe_uid_group is not None:
            expected = uid_group_for(count)
            if expected is None:
                rules.add(
                    ("subscribeUidGroup",),
                    f"{too_many_uids(count)}: no group covers them "
                    f"(the largest is {_LARGEST_GROUP})",
                )
            elif expected != self.subscribe_uid_group:
                rules.add(
                    ("subscribeUidGroup",),
                    f"the subscribe lists name {count} uids, so the group is "
                    f"{expected}, not {self.subscribe_uid_group}",
                )
        rules.raise_if_any()
        return self

    @property
    def recorded_kinds(self) -> tuple[str, ...]:
        return ("audio", "video") if self.streams == "audio+video" else (self.streams,)

    @property
    def subscribed_uid_count(self) -> int | None:
        """How many uids the lists subscribe to, when the lists make that certain.

        Certain means: at least one subscribe list, no `#allstream#` and no
        unsubscribe list. (A kind without a list is then not subscribed at all.)
        """
        if self.subscribe is None or self.unsubscribe is not None:
            return None
        uids: set[int | str] = set()
        for kind in self.recorded_kinds:
            uids.update(self.subscribe.kind(kind) or ())
        if not uids or contract.ALL_STREAMS in uids:
            return None
        return len(uids)


def uid_group_for(count: int) -> str | None:
    """The subscribeUidGroup whose range holds `count` uids; None above the largest."""
    for word, (low, high) in contract.UID_GROUP_RANGES.items():
        if low <= count <= high:
            return word
    return None


def too_many_uids(count: int) -> str:
    """Why no group fits: `count` is above what Cloud Recording subscribes to."""
    return f"the subscribe lists name {count} uids, more than {contract.MAX_SUBSCRIBED_UIDS}"


_LARGEST_GROUP = max(contract.UID_GROUP_RANGES, key=lambda word: contract.UID_GROUP_RANGES[word])


# --- transcoding and layout ------------------------------------------------------------


class Transcoding(Section):
    """transcodingConfig (mix only): all four are required once the section is written."""

    width: Annotated[Whole, Field(ge=1, le=contract.MAX_SIDE)]
    height: Annotated[Whole, Field(ge=1, le=contract.MAX_SIDE)]
    fps: Annotated[Whole, Field(ge=1)]
    bitrate: Annotated[Whole, Field(ge=1, le=contract.MAX_BITRATE)]

    @model_validator(mode="after")
    def _area(self) -> Transcoding:
        if self.width * self.height > contract.MAX_PIXELS:
            rules = Rules()
            rules.add(
                ("height",),
                f"{self.width}x{self.height} is more than 1920x1080 pixels; "
                f"width times height must be at most {contract.MAX_PIXELS}",
            )
            rules.raise_if_any()
        return self


class Region(Section):
    """One region of a custom layout; x, y, width, height are fractions of the canvas."""

    uid: Uid | None = None
    x: Fraction
    y: Fraction
    width: Fraction
    height: Fraction
    alpha: Fraction | None = None
    render_mode: RenderMode | None = None


class Layout(Section):
    """The mixed video layout (mix only); `updateLayout` can change all of it live."""

    type: LayoutType = "floating"
    background: Color | None = None
    max_resolution_uid: Uid | None = None
    regions: Annotated[tuple[Region, ...], Field(max_length=contract.MAX_LAYOUT_REGIONS)] | None = (
        None
    )

    @field_validator("background", mode="before")
    @classmethod
    def _background_written(cls, value: Any) -> Any:
        return parse_color(value)

    @model_validator(mode="after")
    def _fits_type(self) -> Layout:
        rules = Rules()
        if self.type == "custom" and not self.regions:
            rules.add(
                ("regions",), f"a custom layout needs 1 to {contract.MAX_LAYOUT_REGIONS} regions"
            )
        if self.type != "custom" and self.regions is not None:
            rules.add(("regions",), f"regions are only for type custom (type is {self.type})")
        if self.type != "vertical" and self.max_resolution_uid is not None:
            rules.add(("maxResolutionUid",), f"only for type vertical (type is {self.type})")
        rules.raise_if_any()
        return self
