"""The manifest language: one pydantic model per section, frozen, unknown keys forbidden.

Every rule of the Cloud Recording reference lives here (ranges, charsets, list
sizes, required-in-mode, mutual exclusions), so that the loader, `validate`,
`plan` and the daemon all share one definition of "valid". YAML keys are
camelCase (the aliases); Python attributes are snake_case.

Rules that involve several fields are collected per model and raised as one
`manifest_rules` error whose context lists every violation with its own
location, so the loader can point at each offending key.

This module never resolves a secret, never reads the clock and knows no numeric
code of its own: it borrows the code tables from `translate`, the one module
that speaks the API's numbers.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import re
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from orchestrator.manifest import translate as codes
from orchestrator.secrets import LiteralSecret, SecretField, SecretRef

if TYPE_CHECKING:
    from orchestrator.schedule import Schedule

__all__ = [
    "MAX_UID",
    "AliyunVod",
    "Decryption",
    "Layout",
    "Manifest",
    "Mode",
    "Recording",
    "RecordingFiles",
    "Region",
    "ScheduleSpec",
    "SecretRef",
    "Snapshots",
    "Storage",
    "Subscription",
    "Transcoding",
    "UpdatePolicy",
    "VideoData",
    "WindowSpec",
    "derive_uid",
    "parse_duration",
]

MAX_UID = 2**32 - 1
Loc = tuple[str | int, ...]


class Mode(StrEnum):
    MIX = "mix"
    INDIVIDUAL = "individual"


class UpdatePolicy(StrEnum):
    RESTART = "restart"
    DEFER = "defer"


def derive_uid(name: str) -> int:
    """The uid `auto` stands for: stable, in 1 .. 2^32-1, never 0.

    `1 + (first 8 bytes of sha256("orchestrator-uid:" + name), big-endian) mod (2^32 - 1)`.
    """
    digest = hashlib.sha256(f"orchestrator-uid:{name}".encode()).digest()
    return 1 + int.from_bytes(digest[:8], "big") % MAX_UID


# --- scalar types with their own messages ----------------------------------------------


def _norm(word: str) -> str:
    return re.sub(r"[\s_-]", "", word.lower())


def _fail(kind: str, message: str) -> PydanticCustomError:
    return PydanticCustomError(kind, message)


def _did_you_mean(value: str, candidates: list[str]) -> str:
    close = difflib.get_close_matches(value, candidates, n=1, cutoff=0.6)
    if not close:
        by_norm = {_norm(c): c for c in candidates}
        close = [by_norm[c] for c in difflib.get_close_matches(_norm(value), list(by_norm), n=1)]
    return f"; did you mean '{close[0]}'?" if close else ""


def _choice_parser(table: Mapping[str, int], what: str) -> Callable[[Any], str]:
    """Accept a word (case-insensitive; `-`, `_` and spaces ignored) or its numeric code."""
    by_norm = {_norm(word): word for word in table}
    by_code = {code: word for word, code in table.items()}
    words = ", ".join(table)
    code_list = ", ".join(str(c) for c in sorted(by_code))

    def parse(value: Any) -> str:
        if isinstance(value, int) and not isinstance(value, bool) and value in by_code:
            return by_code[value]
        if isinstance(value, str):
            word = by_norm.get(_norm(value))
            if word is not None:
                return word
            if value.strip().isascii() and value.strip().isdigit():
                code = int(value.strip())
                if code in by_code:
                    return by_code[code]
        shown = f"'{value}'" if isinstance(value, str | int | float) else type(value).__name__
        hint = _did_you_mean(value, list(table)) if isinstance(value, str) else ""
        raise _fail(
            "choice",
            f"{shown} is not a valid {what}: use one of {words} (or the code {code_list}){hint}",
        )

    return parse


def _choice_schema(table: Mapping[str, int], description: str) -> dict[str, Any]:
    return {
        "anyOf": [
            {"type": "string", "enum": list(table)},
            {"type": "integer", "enum": sorted(set(table.values()))},
        ],
        "description": description,
    }


ChannelType = Annotated[
    str,
    PlainValidator(_choice_parser(codes.CHANNEL_TYPES, "channelType")),
    WithJsonSchema(
        _choice_schema(codes.CHANNEL_TYPES, "Channel profile (0 communication, 1 live).")
    ),
]
Streams = Annotated[
    str,
    PlainValidator(_choice_parser(codes.STREAM_TYPES, "streams")),
    WithJsonSchema(_choice_schema(codes.STREAM_TYPES, "Streams to subscribe to (streamTypes).")),
]
DecryptionMode = Annotated[
    str,
    PlainValidator(_choice_parser(codes.DECRYPTION_MODES, "decryption mode")),
    WithJsonSchema(_choice_schema(codes.DECRYPTION_MODES, "The channel's encryption mode.")),
]
AudioProfile = Annotated[
    str,
    PlainValidator(_choice_parser(codes.AUDIO_PROFILES, "audioProfile")),
    WithJsonSchema(_choice_schema(codes.AUDIO_PROFILES, "Mixed audio quality (mix mode only).")),
]
VideoStreamType = Annotated[
    str,
    PlainValidator(_choice_parser(codes.VIDEO_STREAM_TYPES, "videoStreamType")),
    WithJsonSchema(_choice_schema(codes.VIDEO_STREAM_TYPES, "high (big) or low (small) stream.")),
]
UidGroup = Annotated[
    str,
    PlainValidator(_choice_parser(codes.UID_GROUPS, "subscribeUidGroup")),
    WithJsonSchema(_choice_schema(codes.UID_GROUPS, "Expected peak number of subscribed uids.")),
]
LayoutType = Annotated[
    str,
    PlainValidator(_choice_parser(codes.LAYOUT_TYPES, "layout type")),
    WithJsonSchema(_choice_schema(codes.LAYOUT_TYPES, "Mixed video layout (mixedVideoLayout).")),
]
RenderMode = Annotated[
    str,
    PlainValidator(_choice_parser(codes.RENDER_MODES, "renderMode")),
    WithJsonSchema(
        _choice_schema(codes.RENDER_MODES, "crop (fill the region) or fit (letterbox).")
    ),
]
Vendor = Annotated[
    str,
    PlainValidator(_choice_parser(codes.VENDORS, "storage vendor")),
    WithJsonSchema(_choice_schema(codes.VENDORS, "Cloud storage vendor.")),
]


def _parse_mode(value: Any) -> Mode:
    if isinstance(value, str):
        for mode in Mode:
            if value.strip().lower() == mode.value:
                return mode
    raise _fail("choice", f"{value!r} is not a recording mode: use mix or individual")


def _parse_policy(value: Any) -> UpdatePolicy:
    if isinstance(value, str):
        for policy in UpdatePolicy:
            if value.strip().lower() == policy.value:
                return policy
    raise _fail("choice", f"{value!r} is not an update policy: use restart or defer")


ModeField = Annotated[
    Mode,
    PlainValidator(_parse_mode),
    PlainSerializer(str, return_type=str),
    WithJsonSchema({"type": "string", "enum": [m.value for m in Mode]}),
]
PolicyField = Annotated[
    UpdatePolicy,
    PlainValidator(_parse_policy),
    PlainSerializer(str, return_type=str),
    WithJsonSchema({"type": "string", "enum": [p.value for p in UpdatePolicy]}),
]


def _int_like(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"\s*[0-9]+\s*", value):
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


_UID_RULE = "an integer from 1 to 4294967295 (2^32-1)"


def _parse_uid(value: Any) -> int:
    number = _int_like(value)
    if number is None or not 1 <= number <= MAX_UID:
        raise _fail("uid", f"{value!r} is not a uid: use {_UID_RULE}")
    return number


def _parse_uid_or_auto(value: Any) -> int | Literal["auto"]:
    if isinstance(value, str) and value.strip().lower() == "auto":
        return "auto"
    number = _int_like(value)
    if number is None or not 1 <= number <= MAX_UID:
        raise _fail("uid", f"{value!r} is not a uid: use {_UID_RULE}, or auto")
    return number


def _parse_subscribe_uid(value: Any) -> int | str:
    if isinstance(value, str) and value.strip().lower() == codes.ALL_STREAMS:
        return codes.ALL_STREAMS
    number = _int_like(value)
    if number is None or not 1 <= number <= MAX_UID:
        raise _fail("uid", f"{value!r} is not a uid: use {_UID_RULE}, or '#allstream#'")
    return number


_UID_SCHEMA = {"type": "integer", "minimum": 1, "maximum": MAX_UID}
Uid = Annotated[int, PlainValidator(_parse_uid), WithJsonSchema(_UID_SCHEMA)]
UidOrAuto = Annotated[
    int | Literal["auto"],
    PlainValidator(_parse_uid_or_auto),
    WithJsonSchema({"anyOf": [_UID_SCHEMA, {"const": "auto"}]}),
]
SubscribeUid = Annotated[
    int | str,
    PlainValidator(_parse_subscribe_uid),
    WithJsonSchema({"anyOf": [_UID_SCHEMA, {"const": codes.ALL_STREAMS}]}),
]

_DURATION_RE = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")
_DURATION_RULE = "a duration like 90s, 30m, 1h30m or 2d, or a number of seconds"


def parse_duration(value: Any) -> timedelta:
    """`90s`, `30m`, `1h30m`, `2d`, or an integer number of seconds."""
    seconds = _int_like(value) if not isinstance(value, str) else None
    if seconds is not None:
        return timedelta(seconds=seconds)
    if isinstance(value, str):
        text = value.strip().replace(" ", "")
        match = _DURATION_RE.fullmatch(text)
        if text and match:
            days, hours, minutes, secs = (int(g or 0) for g in match.groups())
            return timedelta(days=days, hours=hours, minutes=minutes, seconds=secs)
        if text.isdigit():
            return timedelta(seconds=int(text))
    raise _fail("duration", f"{value!r} is not a duration: use {_DURATION_RULE}")


def _parse_positive_duration(value: Any) -> timedelta:
    duration = parse_duration(value)
    if duration <= timedelta(0):
        raise _fail("duration", f"{value!r} must be longer than zero: use {_DURATION_RULE}")
    return duration


_DURATION_SCHEMA = {
    "anyOf": [
        {"type": "string", "pattern": r"^(\d+d)?(\d+h)?(\d+m)?(\d+s)?$"},
        {"type": "integer", "minimum": 0},
    ]
}
Duration = Annotated[
    timedelta,
    PlainValidator(parse_duration),
    PlainSerializer(lambda d: _show_duration(d), return_type=str),
    WithJsonSchema(_DURATION_SCHEMA),
]
PositiveDuration = Annotated[
    timedelta,
    PlainValidator(_parse_positive_duration),
    PlainSerializer(lambda d: _show_duration(d), return_type=str),
    WithJsonSchema(_DURATION_SCHEMA),
]


def _seconds_parser(low: int, high: int, what: str) -> Callable[[Any], int]:
    def parse(value: Any) -> int:
        try:
            seconds = int(parse_duration(value).total_seconds())
        except PydanticCustomError:
            seconds = -1
        if not low <= seconds <= high:
            raise _fail(
                "range",
                f"{value!r} is not a valid {what}: use {low} to {high} seconds "
                "(a number, or a duration like 2m)",
            )
        return seconds

    return parse


def _seconds_schema(low: int, high: int) -> dict[str, Any]:
    return {
        "anyOf": [
            {"type": "integer", "minimum": low, "maximum": high},
            {"type": "string", "pattern": r"^(\d+d)?(\d+h)?(\d+m)?(\d+s)?$"},
        ]
    }


IdleSeconds = Annotated[
    int,
    PlainValidator(_seconds_parser(5, MAX_UID, "maxIdleTime")),
    WithJsonSchema(_seconds_schema(5, MAX_UID)),
]
SnapshotSeconds = Annotated[
    int,
    PlainValidator(_seconds_parser(5, 3600, "snapshot interval")),
    WithJsonSchema(_seconds_schema(5, 3600)),
]


def _parse_fraction(value: Any) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
        if 0.0 <= number <= 1.0 and round(number, 6) == number:
            return number
    raise _fail(
        "fraction",
        f"{value!r} is not a relative size: use a number from 0.0 to 1.0 with at most six decimals",
    )


Fraction = Annotated[
    float,
    PlainValidator(_parse_fraction),
    WithJsonSchema({"type": "number", "minimum": 0, "maximum": 1}),
]


def _parse_color(value: Any) -> str:
    if isinstance(value, str) and re.fullmatch(r"#[0-9A-Fa-f]{6}", value):
        return value.upper()
    if value is None:
        raise _fail(
            "color",
            'no colour given: write it in quotes, background: "#RRGGBB" '
            "(an unquoted # starts a YAML comment)",
        )
    raise _fail("color", f'{value!r} is not a colour: use "#RRGGBB" (six hex digits)')


Color = Annotated[
    str,
    PlainValidator(_parse_color),
    WithJsonSchema({"type": "string", "pattern": "^#[0-9A-Fa-f]{6}$"}),
]

# The reference's channel-name rule (error 1013): <= 64 bytes of 89 characters.
_CHANNEL_CHARS = set(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 !#$%&()+-:;<=.>?@[]^_{}|~,"
)
_CHANNEL_RULE = (
    "1 to 64 characters from a-z A-Z 0-9, space and ! # $ % & ( ) + - : ; < = . > ? @ [ ] ^ _ "
    "{ } | ~ ,"
)


def _parse_channel(value: Any) -> str:
    if not isinstance(value, str):
        raise _fail("channel", f"a channel name is text: {_CHANNEL_RULE}")
    bad = sorted({c for c in value if c not in _CHANNEL_CHARS})
    if bad:
        shown = " ".join(repr(c) for c in bad[:5])
        raise _fail(
            "channel", f"channel name has characters not allowed: {shown}; use {_CHANNEL_RULE}"
        )
    if not 1 <= len(value.encode()) <= 64:
        raise _fail("channel", f"channel name is {len(value)} characters long; use {_CHANNEL_RULE}")
    return value


Channel = Annotated[
    str,
    PlainValidator(_parse_channel),
    WithJsonSchema(
        {
            "type": "string",
            "maxLength": 64,
            "pattern": r"^[A-Za-z0-9 !#$%&()+\-:;<=.>?@\[\]^_{}|~,]+$",
        }
    ),
]

_NAME_RE = r"^[A-Za-z0-9]([A-Za-z0-9._-]{0,126}[A-Za-z0-9])?$"
Name = Annotated[str, Field(pattern=_NAME_RE)]
AppName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
LabelKey = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,62}$")]
PrefixPart = Annotated[str, Field(pattern=r"^[A-Za-z0-9]+$")]
Text = Annotated[str, Field(min_length=1, max_length=1024)]


def _text_or_number(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, str) and value:
        return value
    raise _fail("text", f"{value!r} is not valid here: use a non-empty text")


TextOrNumber = Annotated[
    str,
    PlainValidator(_text_or_number),
    WithJsonSchema({"anyOf": [{"type": "string", "minLength": 1}, {"type": "integer"}]}),
]


# --- rule collection -----------------------------------------------------------------


class _Rules:
    """Cross-field violations of one model, each with its location inside that model."""

    def __init__(self) -> None:
        self.items: list[tuple[Loc, str]] = []

    def add(self, loc: Loc, message: str) -> None:
        self.items.append((loc, message))

    def raise_if_any(self) -> None:
        if self.items:
            summary = "; ".join(
                f"{dotted_path(loc) or 'manifest'}: {message}" for loc, message in self.items
            )
            raise PydanticCustomError(
                "manifest_rules", summary, {"violations": [list(v) for v in self.items]}
            )


def dotted_path(loc: Loc) -> str:
    """A field path as users write it: `layout.regions[3].width`."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


class _Section(BaseModel):
    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        alias_generator=to_camel,
        # str(ValidationError) must not carry a mistyped secret into a log line
        hide_input_in_errors=True,
    )


# --- recording -----------------------------------------------------------------------


class Decryption(_Section):
    """The channel's media encryption, which the recorder must match."""

    mode: DecryptionMode
    secret: SecretField | None = None

    @model_validator(mode="after")
    def _secret_matches_mode(self) -> Decryption:
        rules = _Rules()
        if self.mode != "none" and self.secret is None:
            rules.add(("secret",), f"required with decryption mode {self.mode}")
        if self.mode == "none" and self.secret is not None:
            rules.add(("secret",), "not allowed with decryption mode none; set a mode or remove it")
        rules.raise_if_any()
        return self


class Subscription(_Section):
    """Uid lists for one direction (subscribe or unsubscribe): at most 32 per kind."""

    audio: Annotated[tuple[SubscribeUid, ...], Field(min_length=1, max_length=32)] | None = None
    video: Annotated[tuple[SubscribeUid, ...], Field(min_length=1, max_length=32)] | None = None

    @model_validator(mode="after")
    def _lists_are_clean(self) -> Subscription:
        rules = _Rules()
        for kind in ("audio", "video"):
            uids = self.kind(kind)
            if uids is None:
                continue
            if codes.ALL_STREAMS in uids and len(uids) > 1:
                rules.add((kind,), "'#allstream#' means every uid: list it alone")
            seen: set[int | str] = set()
            for index, uid in enumerate(uids):
                if uid in seen:
                    rules.add((kind, index), f"uid {uid} is listed twice")
                seen.add(uid)
        rules.raise_if_any()
        return self

    def kind(self, kind: str) -> tuple[int | str, ...] | None:
        return self.audio if kind == "audio" else self.video


class Recording(_Section):
    """recordingConfig: what the recorder subscribes to and how."""

    channel_type: ChannelType = "communication"
    streams: Streams = "audio+video"
    decryption: Decryption | None = None
    audio_profile: AudioProfile | None = None
    video_stream_type: VideoStreamType | None = None
    max_idle_time: IdleSeconds = 30
    subscribe: Subscription | None = None
    unsubscribe: Subscription | None = None
    subscribe_uid_group: UidGroup | None = None

    @model_validator(mode="after")
    def _lists_fit_streams(self) -> Recording:
        rules = _Rules()
        for kind in ("audio", "video"):
            sub = self.subscribe.kind(kind) if self.subscribe else None
            unsub = self.unsubscribe.kind(kind) if self.unsubscribe else None
            if sub is not None and unsub is not None:
                rules.add(
                    ("unsubscribe", kind),
                    f"{kind}: use either a subscribe or an unsubscribe list, not both",
                )
            if unsub is not None and codes.ALL_STREAMS in unsub:
                rules.add(("unsubscribe", kind), "'#allstream#' belongs in a subscribe list")
            if (sub is not None or unsub is not None) and kind not in self.recorded_kinds:
                where = "subscribe" if sub is not None else "unsubscribe"
                rules.add(
                    (where, kind),
                    f"streams is {self.streams}: no {kind} list is allowed "
                    f"(use streams: audio+video to record {kind})",
                )
        count = self.subscribed_uid_count
        if count is not None and self.subscribe_uid_group is not None:
            expected = _uid_group_for(count)
            if expected != self.subscribe_uid_group:
                rules.add(
                    ("subscribeUidGroup",),
                    f"the subscribe lists name {count} uids, so the group is "
                    f"{expected or 'beyond 13-17'}, not {self.subscribe_uid_group}",
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
        if not uids or codes.ALL_STREAMS in uids:
            return None
        return len(uids)


def _uid_group_for(count: int) -> str | None:
    for word, (low, high) in zip(
        codes.UID_GROUPS, ((1, 2), (3, 7), (8, 12), (13, 17)), strict=True
    ):
        if low <= count <= high:
            return word
    return None


# --- transcoding and layout ------------------------------------------------------------


class Transcoding(_Section):
    """transcodingConfig (mix only): all four are required once the section is written."""

    width: Annotated[int, Field(ge=1, le=1920)]
    height: Annotated[int, Field(ge=1, le=1920)]
    fps: Annotated[int, Field(ge=1)]
    bitrate: Annotated[int, Field(ge=1)]

    @model_validator(mode="after")
    def _area(self) -> Transcoding:
        if self.width * self.height > 1920 * 1080:
            rules = _Rules()
            rules.add(
                ("height",),
                f"{self.width}x{self.height} is more than 1920x1080 pixels; "
                "width times height must be at most 2073600",
            )
            rules.raise_if_any()
        return self


class Region(_Section):
    """One region of a custom layout; x, y, width, height are fractions of the canvas."""

    uid: Uid | None = None
    x: Fraction
    y: Fraction
    width: Fraction
    height: Fraction
    alpha: Fraction | None = None
    render_mode: RenderMode | None = None


class Layout(_Section):
    """The mixed video layout (mix only); `updateLayout` can change all of it live."""

    type: LayoutType = "floating"
    background: Color | None = None
    max_resolution_uid: Uid | None = None
    regions: Annotated[tuple[Region, ...], Field(max_length=17)] | None = None

    @field_validator("background", mode="before")
    @classmethod
    def _background_written(cls, value: Any) -> Any:
        return _parse_color(value)

    @model_validator(mode="after")
    def _fits_type(self) -> Layout:
        rules = _Rules()
        if self.type == "custom" and not self.regions:
            rules.add(("regions",), "a custom layout needs 1 to 17 regions")
        if self.type != "custom" and self.regions is not None:
            rules.add(("regions",), f"regions are only for type custom (type is {self.type})")
        if self.type != "vertical" and self.max_resolution_uid is not None:
            rules.add(("maxResolutionUid",), f"only for type vertical (type is {self.type})")
        rules.raise_if_any()
        return self


# --- outputs -------------------------------------------------------------------------


class RecordingFiles(_Section):
    """recordingFileConfig; the reference supports only hls."""

    file_types: Annotated[tuple[Literal["hls"], ...], Field(min_length=1)] = ("hls",)


class Snapshots(_Section):
    """snapshotConfig (individual mode with video): a jpg every `interval` seconds."""

    interval: SnapshotSeconds | None = None
    file_types: Annotated[tuple[Literal["jpg"], ...], Field(min_length=1)] = ("jpg",)


def _parse_region_any(value: Any) -> str | int:
    if isinstance(value, str | int) and not isinstance(value, bool):
        return value
    raise _fail("region", f"{value!r} is not a region: use a region name or its number")


class Storage(_Section):
    """storageConfig: where recording files and snapshots are uploaded."""

    vendor: Vendor
    region: Annotated[
        str,
        PlainValidator(_parse_region_any),
        WithJsonSchema(
            {
                "anyOf": [{"type": "string"}, {"type": "integer", "minimum": 0}],
                "description": "A region name from the vendor's table, or its number.",
            }
        ),
    ]
    bucket: Annotated[str, Field(min_length=1, max_length=255)]
    access_key: SecretField
    secret_key: SecretField
    file_name_prefix: Annotated[tuple[PrefixPart, ...], Field(min_length=1)] | None = None

    @field_validator("region", mode="after")
    @classmethod
    def _region_of_vendor(cls, value: str | int, info: ValidationInfo) -> str:
        vendor = info.data.get("vendor")
        if vendor is None:  # the vendor itself is invalid and already reported
            return str(value)
        table = codes.REGIONS[vendor]
        if isinstance(value, int) or value.strip().isdigit():
            code = int(value)
            for name, number in table.items():
                if number == code:
                    return name
        else:
            found = _region_lookup(vendor).get(_norm(value))
            if found is not None:
                return found
        listing = ", ".join(f"{name} ({number})" for name, number in table.items())
        hint = _did_you_mean(value, list(table)) if isinstance(value, str) else ""
        raise _fail("region", f"{value!r} is not a region of {vendor}: use one of {listing}{hint}")

    @field_validator("file_name_prefix", mode="after")
    @classmethod
    def _prefix_length(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is not None:
            length = sum(len(part) + 1 for part in value)
            if length > 128:
                raise _fail(
                    "prefix",
                    f"the prefix is {length} characters with its slashes; at most 128 are allowed",
                )
        return value


@functools.cache
def _region_lookup(vendor: str) -> dict[str, str]:
    return {_norm(name): name for name in codes.REGIONS[vendor]}


class VideoData(_Section):
    """apiData.videoData of the Aliyun VOD service."""

    title: Text
    description: Text | None = None
    cover_url: Text | None = None
    cate_id: TextOrNumber | None = None
    tags: Text | None = None
    template_group_id: Text | None = None
    user_data: Text | None = None
    storage_location: Text | None = None
    workflow_id: Text | None = None


class AliyunVod(_Section):
    """The aliyun_vod_service extension (mix only, without storage or snapshots)."""

    access_key: SecretField
    secret_key: SecretField
    region_id: Annotated[str, Field(pattern=r"^[a-z0-9]+(-[a-z0-9]+)*$")]
    video_data: VideoData
    error_handle_policy: Literal["error_abort"] | None = None


# --- schedule ------------------------------------------------------------------------


_EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
_LATEST = datetime(9000, 1, 1, tzinfo=UTC)


class WindowSpec(_Section):
    """One explicit window [start, end); both need an offset (Z or +08:00)."""

    start: AwareDatetime
    end: AwareDatetime

    @model_validator(mode="after")
    def _ordered(self) -> WindowSpec:
        rules = _Rules()
        if self.end <= self.start:
            rules.add(("end",), f"must be after start ({self.start.isoformat()})")
        for key, value in (("start", self.start), ("end", self.end)):
            if not _EARLIEST <= value <= _LATEST:
                rules.add((key,), "must lie between 1970 and 9000")
        rules.raise_if_any()
        return self


@functools.cache
def _zone_error(name: str) -> str | None:
    import zoneinfo

    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        hint = _did_you_mean(name, sorted(zoneinfo.available_timezones()))
        return f"{name!r} is not an IANA time zone (like Europe/Berlin or UTC){hint}"
    return None


def _parse_always(value: Any) -> bool:
    if value is True:
        return True
    raise _fail("always", "write always: true, or schedule: always")


class ScheduleSpec(_Section):
    """When to record: exactly one of cron (+ timezone + duration), windows, always."""

    cron: str | None = None
    timezone: str | None = None
    duration: PositiveDuration | None = None
    windows: Annotated[tuple[WindowSpec, ...], Field(min_length=1)] | None = None
    always: (
        Annotated[bool, PlainValidator(_parse_always), WithJsonSchema({"const": True})] | None
    ) = None

    @model_validator(mode="before")
    @classmethod
    def _always_shorthand(cls, data: Any) -> Any:
        if isinstance(data, str) and data.strip().lower() == "always":
            return {"always": True}
        return data

    @field_validator("cron", mode="after")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is not None:
            from orchestrator.schedule import validate_cron

            problem = validate_cron(value)
            if problem is not None:
                raise _fail("cron", problem)
        return value

    @field_validator("timezone", mode="after")
    @classmethod
    def _timezone(cls, value: str | None) -> str | None:
        if value is not None:
            problem = _zone_error(value)
            if problem is not None:
                raise _fail("timezone", problem)
        return value

    @model_validator(mode="after")
    def _one_form(self) -> ScheduleSpec:
        rules = _Rules()
        forms = [
            name
            for name, present in (
                ("cron", self.cron is not None),
                ("windows", self.windows is not None),
                ("always", self.always is not None),
            )
            if present
        ]
        if not forms:
            rules.add(
                (),
                "say when to record: cron + timezone + duration, windows: [{start, end}], "
                "or always",
            )
        elif len(forms) > 1:
            rules.add(
                (forms[1],), f"use only one of cron, windows or always (found {', '.join(forms)})"
            )
        if self.cron is not None:
            if self.timezone is None:
                rules.add(("timezone",), "required with cron: an IANA zone like Europe/Berlin")
            if self.duration is None:
                rules.add(
                    ("duration",), "required with cron: how long each recording lasts, like 30m"
                )
        else:
            for key, value in (("timezone", self.timezone), ("duration", self.duration)):
                if value is not None:
                    rules.add((key,), "only used with cron")
        rules.raise_if_any()
        return self

    def describe(self) -> str:
        if self.cron is not None:
            return f"cron '{self.cron}' in {self.timezone}, {_show_duration(self.duration)} each"
        if self.windows is not None:
            return f"{len(self.windows)} explicit window(s)"
        return "always"


def _show_duration(value: timedelta | None) -> str:
    if value is None:
        return "-"
    total = int(value.total_seconds())
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    parts = [
        f"{n}{unit}" for n, unit in ((days, "d"), (hours, "h"), (minutes, "m"), (seconds, "s")) if n
    ]
    return "".join(parts) or "0s"


# --- the manifest --------------------------------------------------------------------


def _section_rules(rules: _Rules, mode: Mode | None, present: Callable[[str], bool]) -> None:
    """The rules that depend only on the mode and on which sections are written."""
    if mode is Mode.INDIVIDUAL:
        for key in ("transcoding", "layout", "aliyunVod"):
            if present(key):
                rules.add((key,), "only allowed in mix mode (mode is individual)")
    if present("snapshots"):
        if mode is Mode.MIX:
            rules.add(("snapshots",), "only allowed in individual mode (mode is mix)")
        if present("recordingFiles"):
            rules.add(("snapshots",), "use either snapshots or recordingFiles, not both")
    if present("aliyunVod"):
        if present("storage"):
            rules.add(("storage",), "not allowed with aliyunVod (VOD uploads the recording)")
        if present("snapshots"):
            rules.add(("aliyunVod",), "not allowed with snapshots")


def section_violations(data: Any) -> list[tuple[Loc, str]]:
    """The section rules applied to a raw document whose fields failed validation.

    The model checks cross-section rules only once every field is valid; the
    loader adds these so that one run reports a wrong value *and* a wrong section.
    """
    if not isinstance(data, dict):
        return []
    try:
        mode: Mode | None = _parse_mode(data.get("mode"))
    except PydanticCustomError:
        mode = None
    enabled_when_empty = ("snapshots", "recordingFiles")  # `snapshots:` alone means on
    rules = _Rules()
    _section_rules(
        rules,
        mode,
        lambda key: data.get(key) is not None or (key in enabled_when_empty and key in data),
    )
    return rules.items


_SECRET_PATHS = (
    "token",
    "recording.decryption.secret",
    "storage.accessKey",
    "storage.secretKey",
    "aliyunVod.accessKey",
    "aliyunVod.secretKey",
)


class Manifest(_Section):
    """One recording: who, where, when and how. The whole YAML document."""

    name: Name
    app: AppName
    channel: Channel
    uid: UidOrAuto
    mode: ModeField
    labels: dict[LabelKey, Annotated[str, Field(max_length=256)]] = Field(default_factory=dict)
    schedule: ScheduleSpec
    starting_deadline: Duration | None = None
    suspend: bool = False
    update_policy: PolicyField = UpdatePolicy.RESTART
    recording: Recording = Field(default_factory=Recording)
    transcoding: Transcoding | None = None
    layout: Layout | None = None
    recording_files: RecordingFiles | None = None
    snapshots: Snapshots | None = None
    storage: Storage | None = None
    aliyun_vod: AliyunVod | None = None
    token: SecretField | None = None
    resource_expired_hour: Annotated[int, Field(ge=1, le=720)] | None = None

    @field_validator("recording_files", "snapshots", mode="before")
    @classmethod
    def _empty_section_enables(cls, value: Any) -> Any:
        # `snapshots:` with nothing after it reads as "on, with the defaults"
        return {} if value is None else value

    @model_validator(mode="after")
    def _reference_rules(self) -> Manifest:
        """Mode restrictions and mutual exclusions of the reference's start table."""
        rules = _Rules()
        _section_rules(rules, self.mode, lambda key: getattr(self, _SNAKE[key]) is not None)
        rec = self.recording
        if self.mode is Mode.INDIVIDUAL:
            if rec.audio_profile is not None:
                rules.add(
                    ("recording", "audioProfile"), "only allowed in mix mode (mode is individual)"
                )
            if self.subscribe_uid_group is None:
                why = (
                    f"the subscribe lists name {rec.subscribed_uid_count} uids, more than 17"
                    if rec.subscribed_uid_count
                    else "it cannot be derived unless subscribe lists name every uid"
                )
                rules.add(
                    ("recording", "subscribeUidGroup"),
                    "required in individual mode: the expected peak number of subscribed "
                    f"uids, one of 1-2, 3-7, 8-12, 13-17 (codes 0-3); {why}",
                )
        if self.snapshots is not None:
            if rec.streams == "audio":
                rules.add(
                    ("recording", "streams"),
                    "snapshots need video: use streams: video or audio+video",
                )
            if (
                rec.subscribe is not None
                and rec.subscribe.audio is not None
                and rec.subscribe.video is None
            ):
                rules.add(
                    ("recording", "subscribe", "video"),
                    "with snapshots, a subscribe audio list needs a subscribe video list too",
                )
        rules.raise_if_any()
        return self

    # derived facts, shared by translate, plan and show

    @property
    def recording_uid(self) -> int:
        """The uid the recorder joins with; `auto` resolved by `derive_uid(name)`."""
        return derive_uid(self.name) if self.uid == "auto" else self.uid

    @property
    def subscribe_uid_group(self) -> str | None:
        """The explicit group, or in individual mode the one the lists make certain."""
        rec = self.recording
        if rec.subscribe_uid_group is not None:
            return rec.subscribe_uid_group
        if self.mode is Mode.INDIVIDUAL and rec.subscribed_uid_count is not None:
            return _uid_group_for(rec.subscribed_uid_count)
        return None

    def secret_refs(self) -> Iterator[tuple[str, SecretRef]]:
        """Every secret reference with its dotted YAML path."""
        for path, attributes in _SECRET_ATTRIBUTES:
            node: Any = self
            for attribute in attributes:
                node = getattr(node, attribute, None)
                if node is None:
                    break
            if node is not None:
                yield path, node

    def literal_secrets(self) -> list[str]:
        """Paths of secrets written as literal values (a warning; an error under --strict)."""
        return [path for path, ref in self.secret_refs() if isinstance(ref, LiteralSecret)]

    def ineffective_settings(self) -> list[tuple[Loc, str]]:
        """Settings that can never do what they say with this schedule (warnings).

        `startingDeadline` is about joining a finite window late; an always-on
        recording has no window start (the planner ignores it there). `defer` waits
        for the next window, which `always` never has.
        """
        if self.schedule.always is None:
            return []
        found: list[tuple[Loc, str]] = []
        if self.starting_deadline is not None:
            found.append(
                (
                    ("startingDeadline",),
                    "ignored for `always`: an always-on recording has no window start to be "
                    "late for",
                )
            )
        if self.update_policy is UpdatePolicy.DEFER:
            found.append(
                (
                    ("updatePolicy",),
                    "with `always` there is no next window: changes that need a restart are "
                    "never applied; use `updatePolicy: restart`",
                )
            )
        return found

    def last_window_end(self) -> datetime | None:
        """The end of the last explicit window (None for cron and always schedules)."""
        windows = self.schedule.windows
        return max(w.end for w in windows) if windows else None

    def build_schedule(self) -> Schedule:
        from orchestrator import schedule as sched

        spec = self.schedule
        if spec.cron is not None:
            # timezone and duration are required with cron (ScheduleSpec._one_form)
            return sched.cron_schedule(spec.cron, spec.timezone or "UTC", spec.duration or _ZERO)
        if spec.windows is not None:
            return sched.windows_schedule([(w.start, w.end) for w in spec.windows])
        return sched.always_schedule()


def _snake(camel: str) -> str:
    return re.sub(r"([A-Z])", lambda m: "_" + m.group(1).lower(), camel)


_ZERO = timedelta(0)


# YAML key -> attribute, computed once (validation of many manifests calls these)
_SNAKE = {
    key: _snake(key)
    for key in ("transcoding", "layout", "aliyunVod", "snapshots", "recordingFiles", "storage")
}
_SECRET_ATTRIBUTES = tuple(
    (path, tuple(_snake(part) for part in path.split("."))) for path in _SECRET_PATHS
)
