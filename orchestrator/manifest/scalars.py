"""The scalar values of the manifest language, each a type with its parser and its own messages.

Uids, durations, fractions, colours, channel names, and the human words for
Agora's numeric codes (`mix`, `live`, `aws-s3`, ...) are read here, once, and
each failure says what would be valid. The duration grammar is also the daemon
config's (`orchestrator.config` reads its durations with `parse_duration`): one
grammar, documented once in docs/configuration.md ("Durations").

This module must never know a section: a rule between two fields belongs to the
model. It never resolves a secret and knows no numeric code of its own (the
tables are `orchestrator.contract`'s).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    BeforeValidator,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    PlainSerializer,
    PlainValidator,
    WithJsonSchema,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, PydanticCustomError

from orchestrator import contract
from orchestrator.contract import Mode
from orchestrator.manifest.rules import did_you_mean, fail, norm

MAX_UID = contract.UINT32_MAX
# The longest a session with a token can live (the contract's MAX_TOKEN_HOURS).
MAX_TOKEN_LIFETIME = timedelta(hours=contract.MAX_TOKEN_HOURS)


class UpdatePolicy(StrEnum):
    RESTART = "restart"
    DEFER = "defer"


@dataclass(frozen=True, slots=True)
class Scalar:
    """An `Annotated` marker: the type's parser and its JSON Schema, together."""

    parse: Callable[[Any], Any]
    schema: JsonSchemaValue

    def __hash__(self) -> int:  # `X | None` hashes its members; a dict is not hashable
        return hash(self.parse)

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        return PlainValidator(self.parse).__get_pydantic_core_schema__(source, handler)

    def __get_pydantic_json_schema__(
        self, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return WithJsonSchema(self.schema).__get_pydantic_json_schema__(core_schema, handler)


_AS_TEXT = PlainSerializer(str, return_type=str)

# --- words for codes ---------------------------------------------------------------------


def _choice_parser(table: Mapping[str, int], what: str) -> Callable[[Any], str]:
    """Accept a word (case-insensitive; `-`, `_` and spaces ignored) or its numeric code."""
    by_norm = {norm(word): word for word in table}
    by_code = {code: word for word, code in table.items()}
    words = ", ".join(table)
    code_list = ", ".join(str(c) for c in sorted(by_code))

    def parse(value: Any) -> str:
        if isinstance(value, int) and not isinstance(value, bool) and value in by_code:
            return by_code[value]
        if isinstance(value, str):
            word = by_norm.get(norm(value))
            if word is not None:
                return word
            if value.strip().isascii() and value.strip().isdigit():
                code = int(value.strip())
                if code in by_code:
                    return by_code[code]
        shown = f"'{value}'" if isinstance(value, str | int | float) else type(value).__name__
        hint = did_you_mean(value, list(table)) if isinstance(value, str) else ""
        raise fail(
            "choice",
            f"{shown} is not a valid {what}: use one of {words} (or the code {code_list}){hint}",
        )

    return parse


def choice(table: Mapping[str, int], what: str, description: str) -> Scalar:
    """A word of `table` or its code, read as the word; `what` names it in messages."""
    return Scalar(
        _choice_parser(table, what),
        {
            "anyOf": [
                {"type": "string", "enum": list(table)},
                {"type": "integer", "enum": sorted(set(table.values()))},
            ],
            "description": description,
        },
    )


ChannelType = Annotated[
    str, choice(contract.CHANNEL_TYPES, "channelType", "Channel profile (0 communication, 1 live).")
]
Streams = Annotated[
    str, choice(contract.STREAM_TYPES, "streams", "Streams to subscribe to (streamTypes).")
]
DecryptionMode = Annotated[
    str, choice(contract.DECRYPTION_MODES, "decryption mode", "The channel's encryption mode.")
]
AudioProfile = Annotated[
    str, choice(contract.AUDIO_PROFILES, "audioProfile", "Mixed audio quality (mix mode only).")
]
VideoStreamType = Annotated[
    str,
    choice(contract.VIDEO_STREAM_TYPES, "videoStreamType", "high (big) or low (small) stream."),
]
UidGroup = Annotated[
    str,
    choice(contract.UID_GROUPS, "subscribeUidGroup", "Expected peak number of subscribed uids."),
]
LayoutType = Annotated[
    str, choice(contract.LAYOUT_TYPES, "layout type", "Mixed video layout (mixedVideoLayout).")
]
RenderMode = Annotated[
    str,
    choice(contract.RENDER_MODES, "renderMode", "crop (fill the region) or fit (letterbox)."),
]
Vendor = Annotated[str, choice(contract.VENDORS, "storage vendor", "Cloud storage vendor.")]

_Word = TypeVar("_Word", bound=StrEnum)


def _word_parser(kind: type[_Word], what: str) -> Callable[[Any], _Word]:
    """One of an enumeration's values, case-insensitive; `what` names it in messages."""
    words = " or ".join(member.value for member in kind)

    def parse(value: Any) -> _Word:
        if isinstance(value, str):
            for member in kind:
                if value.strip().lower() == member.value:
                    return member
        raise fail("choice", f"{value!r} is not {what}: use {words}")

    return parse


parse_mode = _word_parser(Mode, "a recording mode")
ModeField = Annotated[
    Mode, Scalar(parse_mode, {"type": "string", "enum": [m.value for m in Mode]}), _AS_TEXT
]
PolicyField = Annotated[
    UpdatePolicy,
    Scalar(
        _word_parser(UpdatePolicy, "an update policy"),
        {"type": "string", "enum": [p.value for p in UpdatePolicy]},
    ),
    _AS_TEXT,
]

# --- numbers -------------------------------------------------------------------------------


def _not_a_truth(value: Any) -> Any:
    """YAML's `true` and `false` are not 1 and 0 (pydantic's lax int takes them)."""
    if isinstance(value, bool):
        raise PydanticCustomError("int_type", "Input should be a valid integer")
    return value


# A whole number of a file people write (`Annotated[Whole, Field(ge=...)]` for a range).
Whole = Annotated[int, BeforeValidator(_not_a_truth)]

# --- uids ----------------------------------------------------------------------------------


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


_UID_RULE = f"an integer from {contract.MIN_UID} to {MAX_UID} (2^32-1)"


def _uid_parser(word: str | None, shown: str) -> Callable[[Any], Any]:
    """A uid, or also `word` (compared without case or blanks; `shown` in messages)."""
    alternative = f", or {shown}" if word is not None else ""

    def parse(value: Any) -> Any:
        if word is not None and isinstance(value, str) and value.strip().lower() == word:
            return word
        number = _int_like(value)
        if number is None or not 1 <= number <= MAX_UID:
            raise fail("uid", f"{value!r} is not a uid: use {_UID_RULE}{alternative}")
        return number

    return parse


_UID_SCHEMA = {"type": "integer", "minimum": 1, "maximum": MAX_UID}
Uid = Annotated[int, Scalar(_uid_parser(None, ""), _UID_SCHEMA)]
UidOrAuto = Annotated[
    int | Literal["auto"],
    Scalar(_uid_parser("auto", "auto"), {"anyOf": [_UID_SCHEMA, {"const": "auto"}]}),
]


def _parse_rollover_uid(value: Any) -> int | None:
    """A uid, or None for `auto` (and for a key written without a value): the derived one."""
    if value is None:
        return None
    number = _ROLLOVER_UID(value)
    return None if number == "auto" else int(number)


_ROLLOVER_UID = _uid_parser("auto", "auto")
# `auto` is kept as None, the default, so that a manifest written before rolloverUid
# existed and one that writes `rolloverUid: auto` dump (and fingerprint) the same.
RolloverUid = Annotated[
    int | None,
    Scalar(
        _parse_rollover_uid,
        {
            "anyOf": [_UID_SCHEMA, {"const": "auto"}],
            "description": "The uid of a successor session during a rollover: another uid "
            "than `uid`, or auto (derived from the name).",
        },
    ),
]
SubscribeUid = Annotated[
    int | str,
    Scalar(
        _uid_parser(contract.ALL_STREAMS, f"'{contract.ALL_STREAMS}'"),
        {"anyOf": [_UID_SCHEMA, {"const": contract.ALL_STREAMS}]},
    ),
]

# --- durations -----------------------------------------------------------------------------

DURATION_RULE = (
    "whole numbers with units, largest first (d, h, m, s, ms), like 500ms, 90s, 30m, 1h30m "
    "or 2d; or a number of seconds"
)
_DURATION_RE = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m(?!s))?(?:(\d+)s)?(?:(\d+)ms)?")
_DURATION_PATTERN = r"^(\d+d)?(\d+h)?(\d+m)?(\d+s)?$"  # what a manifest writes (whole seconds)
_ZERO = timedelta(0)
_SECOND = timedelta(seconds=1)


def parse_duration(value: Any) -> timedelta:
    """A duration of a manifest or of the daemon config: the one grammar of both.

    Whole numbers with units, largest first, each unit at most once: `500ms`, `90s`,
    `30m`, `1h30m`, `2d`, `1h 30m` (blanks are ignored); or a whole number of seconds
    (`45`, also as text). Never negative. A field that takes whole seconds refuses a
    remainder of milliseconds by its own check.
    """
    if isinstance(value, timedelta) and value >= _ZERO:
        return value
    seconds = _int_like(value)
    try:
        if seconds is not None and seconds >= 0:
            return timedelta(seconds=seconds)
        if isinstance(value, str):
            text = value.strip().replace(" ", "")
            match = _DURATION_RE.fullmatch(text)
            if text and match:
                days, hours, minutes, secs, millis = (int(g or 0) for g in match.groups())
                return timedelta(
                    days=days, hours=hours, minutes=minutes, seconds=secs, milliseconds=millis
                )
    except OverflowError:
        raise fail("duration", f"invalid duration {value!r}: longer than any schedule") from None
    raise fail("duration", f"invalid duration {value!r}: use {DURATION_RULE}")


def _whole_seconds(value: Any, *, positive: bool) -> timedelta:
    duration = parse_duration(value)
    if duration % _SECOND:
        raise fail(
            "duration",
            f"{value!r} is not a whole number of seconds: use a duration like 90s, 30m or 1h30m",
        )
    if positive and duration <= _ZERO:
        raise fail("duration", f"{value!r} must be longer than zero: use {DURATION_RULE}")
    return duration


def show_duration(value: timedelta | None) -> str:
    """A duration as `parse_duration` reads it: `1h30m`, `500ms`, `0s` (`-` for none)."""
    if value is None:
        return "-"
    total_ms = value // timedelta(milliseconds=1)
    total, millis = divmod(total_ms, 1000)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    parts = [
        f"{n}{unit}"
        for n, unit in ((days, "d"), (hours, "h"), (minutes, "m"), (seconds, "s"), (millis, "ms"))
        if n
    ]
    return "".join(parts) or "0s"


_DURATION_SCHEMA = {
    "anyOf": [{"type": "string", "pattern": _DURATION_PATTERN}, {"type": "integer", "minimum": 0}]
}
_SHOWN = PlainSerializer(show_duration, return_type=str)
Duration = Annotated[
    timedelta, Scalar(lambda v: _whole_seconds(v, positive=False), _DURATION_SCHEMA), _SHOWN
]
PositiveDuration = Annotated[
    timedelta, Scalar(lambda v: _whole_seconds(v, positive=True), _DURATION_SCHEMA), _SHOWN
]


def _seconds(low: int, high: int, what: str) -> Scalar:
    """Whole seconds in [low, high], written as a number or as a duration."""

    def parse(value: Any) -> int:
        try:
            duration = parse_duration(value)
        except PydanticCustomError:
            duration = None
        if duration is None or duration % _SECOND or not low <= duration // _SECOND <= high:
            raise fail(
                "range",
                f"{value!r} is not a valid {what}: use {low} to {high} seconds "
                "(a number, or a duration like 2m)",
            )
        return duration // _SECOND

    schema = {
        "anyOf": [
            {"type": "integer", "minimum": low, "maximum": high},
            {"type": "string", "pattern": _DURATION_PATTERN},
        ]
    }
    return Scalar(parse, schema)


IdleSeconds = Annotated[
    int, _seconds(contract.IDLE_TIME.low, contract.IDLE_TIME.high, "maxIdleTime")
]
SnapshotSeconds = Annotated[
    int,
    _seconds(contract.CAPTURE_INTERVAL.low, contract.CAPTURE_INTERVAL.high, "snapshot interval"),
]

# --- layout values -------------------------------------------------------------------------


def _parse_fraction(value: Any) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
        if 0.0 <= number <= 1.0 and round(number, 6) == number:
            return number
    raise fail(
        "fraction",
        f"{value!r} is not a relative size: use a number from 0.0 to 1.0 with at most six decimals",
    )


Fraction = Annotated[float, Scalar(_parse_fraction, {"type": "number", "minimum": 0, "maximum": 1})]


def parse_color(value: Any) -> str:
    """`#RRGGBB`, upper-cased; a bare `#` (a YAML comment) is explained."""
    if isinstance(value, str) and re.fullmatch(r"#[0-9A-Fa-f]{6}", value):
        return value.upper()
    if value is None:
        raise fail(
            "color",
            'no colour given: write it in quotes, background: "#RRGGBB" '
            "(an unquoted # starts a YAML comment)",
        )
    raise fail("color", f'{value!r} is not a colour: use "#RRGGBB" (six hex digits)')


Color = Annotated[
    str, Scalar(parse_color, {"type": "string", "pattern": contract.BACKGROUND_PATTERN})
]

# --- names and text ------------------------------------------------------------------------

# The reference's channel-name rule (error 1013): <= 64 bytes of 89 characters.
_CHANNEL_RULE = (
    "1 to 64 characters from a-z A-Z 0-9, space and ! # $ % & ( ) + - : ; < = . > ? @ [ ] ^ _ "
    "{ } | ~ ,"
)


def _parse_channel(value: Any) -> str:
    if not isinstance(value, str):
        raise fail("channel", f"a channel name is text: {_CHANNEL_RULE}")
    bad = sorted({c for c in value if c not in contract.CHANNEL_CHARSET})
    if bad:
        shown = " ".join(repr(c) for c in bad[:5])
        raise fail(
            "channel", f"channel name has characters not allowed: {shown}; use {_CHANNEL_RULE}"
        )
    if not 1 <= len(value.encode()) <= contract.MAX_CHANNEL_BYTES:
        raise fail("channel", f"channel name is {len(value)} characters long; use {_CHANNEL_RULE}")
    return value


Channel = Annotated[
    str,
    Scalar(
        _parse_channel,
        {
            "type": "string",
            "maxLength": contract.MAX_CHANNEL_BYTES,
            "pattern": contract.CHANNEL_PATTERN,
        },
    ),
]

_NAME_RE = r"^[A-Za-z0-9]([A-Za-z0-9._-]{0,126}[A-Za-z0-9])?$"
Name = Annotated[str, Field(pattern=_NAME_RE)]
AppName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
LabelKey = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,62}$")]
PrefixPart = Annotated[str, Field(pattern=f"^{contract.PREFIX_PART.pattern}$")]
Text = Annotated[str, Field(min_length=1, max_length=1024)]


def _text_or_number(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, str) and value:
        return value
    raise fail("text", f"{value!r} is not valid here: use a non-empty text")


TextOrNumber = Annotated[
    str,
    Scalar(_text_or_number, {"anyOf": [{"type": "string", "minLength": 1}, {"type": "integer"}]}),
]


def _parse_always(value: Any) -> bool:
    if value is True:
        return True
    raise fail("always", "write always: true, or schedule: always")


Always = Annotated[bool, Scalar(_parse_always, {"const": True})]


def _parse_region(value: Any) -> str | int:
    if isinstance(value, str | int) and not isinstance(value, bool):
        return value
    raise fail("region", f"{value!r} is not a region: use a region name or its number")


RegionName = Annotated[
    str,
    Scalar(
        _parse_region,
        {
            "anyOf": [{"type": "string"}, {"type": "integer", "minimum": 0}],
            "description": "A region name from the vendor's table, or its number.",
        },
    ),
]
