"""The manifest language: one pydantic model per section, frozen, unknown keys forbidden.

Every rule of the Cloud Recording reference lives in this package (ranges,
charsets, list sizes, required-in-mode, mutual exclusions), so that the loader,
`validate`, `plan` and the daemon all share one definition of "valid". YAML keys
are camelCase (the aliases); Python attributes are snake_case. The scalar values
(uids, durations, words for codes, ...) are `scalars`' types; how a broken rule
becomes an error is `rules`'; the sections are `media`'s (recording, transcoding,
layout) and `outputs`' (files, snapshots, storage), on `section`'s common base. This
module holds the schedule's sections, the rules between sections, and `Manifest`
itself; every section is importable from here.

Rules that involve several fields are collected per model and raised as one
`manifest_rules` error whose context lists every violation with its own
location, so the loader can point at each offending key.

This module never resolves a secret, never reads the clock and knows no numeric
code of its own: the code tables are `orchestrator.contract`'s.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import (
    AwareDatetime,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from orchestrator import contract
from orchestrator.contract import Mode
from orchestrator.manifest.media import (
    Decryption,
    Layout,
    Recording,
    Region,
    Subscription,
    Transcoding,
    too_many_uids,
    uid_group_for,
)
from orchestrator.manifest.outputs import AliyunVod, RecordingFiles, Snapshots, Storage, VideoData
from orchestrator.manifest.rules import (
    Loc,
    Rules,
    did_you_mean,
    dotted_path,
    fail,
    section_rules,
)
from orchestrator.manifest.scalars import (
    MAX_TOKEN_LIFETIME,
    MAX_UID,
    Always,
    AppName,
    Channel,
    Duration,
    LabelKey,
    ModeField,
    Name,
    PolicyField,
    PositiveDuration,
    RolloverUid,
    UidOrAuto,
    UpdatePolicy,
    Whole,
    parse_duration,
    parse_mode,
    show_duration,
)
from orchestrator.manifest.section import Section
from orchestrator.secrets import LiteralSecret, SecretField, SecretRef, describe_secrets_in

if TYPE_CHECKING:
    from orchestrator.schedule import Schedule

__all__ = [
    "MAX_UID",
    "AliyunVod",
    "Decryption",
    "Layout",
    "Loc",
    "Manifest",
    "Mode",
    "Recording",
    "RecordingFiles",
    "Region",
    "ScheduleSpec",
    "SecretRef",
    "Section",
    "Snapshots",
    "Storage",
    "Subscription",
    "Transcoding",
    "UpdatePolicy",
    "VideoData",
    "WindowSpec",
    "canonical_digest",
    "derive_rollover_uid",
    "derive_uid",
    "dotted_path",
    "parse_duration",
    "section_violations",
]


_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=True)
"""One encoder for every digest: `json.dumps` with these options would make a new one
at each call (a tenth of a second over 10,000 manifests)."""


def canonical_digest(value: Any) -> str:
    """The sha256 hex digest of `value` as canonical JSON (sorted keys, no spaces,
    ASCII): equal for equal values, whatever the order they were written in."""
    return hashlib.sha256(_CANONICAL.encode(value).encode()).hexdigest()


def derive_uid(name: str) -> int:
    """The uid `auto` stands for: stable, in 1 .. 2^32-1, never 0.

    `1 + (first 8 bytes of sha256("orchestrator-uid:" + name), big-endian) mod (2^32 - 1)`.
    """
    return _derived("orchestrator-uid:", name)


def derive_rollover_uid(name: str, uid: int) -> int:
    """The uid `rolloverUid: auto` stands for: stable, in 1 .. 2^32-1, never `uid`.

    As `derive_uid` with another prefix, `"orchestrator-rollover-uid:"`; when that is
    the manifest's own `uid` (one name in about four billion), the next number
    (2^32-1 wraps to 1).
    """
    derived = _derived("orchestrator-rollover-uid:", name)
    return derived if derived != uid else derived % MAX_UID + 1


def _derived(prefix: str, name: str) -> int:
    digest = hashlib.sha256(f"{prefix}{name}".encode()).digest()
    return 1 + int.from_bytes(digest[:8], "big") % MAX_UID


# --- schedule ------------------------------------------------------------------------


_EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
_LATEST = datetime(9000, 1, 1, tzinfo=UTC)


class WindowSpec(Section):
    """One explicit window [start, end); both need an offset (Z or +08:00)."""

    start: AwareDatetime
    end: AwareDatetime

    @model_validator(mode="after")
    def _ordered(self) -> WindowSpec:
        rules = Rules()
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

    if name in ("localtime", "posixrules") or name.startswith(("posix/", "right/")):
        # Files of this host's zone database, not IANA names: `localtime` is whatever
        # zone the machine is set to, so the manifest would mean one thing per host.
        return (
            f"{name!r} is a file of this host's zone database, not an IANA time zone "
            "(like Europe/Berlin or UTC)"
        )
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        hint = did_you_mean(name, sorted(zoneinfo.available_timezones()))
        return f"{name!r} is not an IANA time zone (like Europe/Berlin or UTC){hint}"
    return None


class ScheduleSpec(Section):
    """When to record: exactly one of cron (+ timezone + duration), windows, always."""

    cron: str | None = None
    timezone: str | None = None
    duration: PositiveDuration | None = None
    windows: Annotated[tuple[WindowSpec, ...], Field(min_length=1)] | None = None
    always: Always | None = None

    @model_validator(mode="before")
    @classmethod
    def _always_shorthand(cls, data: Any) -> Any:
        if isinstance(data, str) and data.strip().lower() == "always":
            return {"always": True}
        return data

    @field_validator("cron", "timezone", mode="after")
    @classmethod
    def _readable(cls, value: str | None, info: ValidationInfo) -> str | None:
        """A cron expression the scheduler can read; a time zone this system knows."""
        if value is not None:
            from orchestrator.schedule import validate_cron

            kind = str(info.field_name)
            problem = validate_cron(value) if kind == "cron" else _zone_error(value)
            if problem is not None:
                raise fail(kind, problem)
        return value

    @model_validator(mode="after")
    def _one_form(self) -> ScheduleSpec:
        rules = Rules()
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
            return f"cron '{self.cron}' in {self.timezone}, {show_duration(self.duration)} each"
        if self.windows is not None:
            return f"{len(self.windows)} explicit window(s)"
        return "always"


# --- the manifest --------------------------------------------------------------------


def section_violations(data: Any) -> list[tuple[Loc, str]]:
    """The section rules (and the mode's file types) applied to a raw document whose
    fields failed validation.

    The model checks cross-section rules only once every field is valid; the
    loader adds these so that one run reports a wrong value *and* a wrong section.
    """
    if not isinstance(data, dict):
        return []
    try:
        mode: Mode | None = parse_mode(data.get("mode"))
    except PydanticCustomError:
        mode = None
    enabled_when_empty = ("snapshots", "recordingFiles")  # `snapshots:` alone means on
    rules = Rules()
    section_rules(
        rules,
        mode,
        lambda key: data.get(key) is not None or (key in enabled_when_empty and key in data),
    )
    files = data.get("recordingFiles")
    if isinstance(files, dict) and isinstance(files.get("fileTypes"), list):
        _file_type_rules(rules, mode, files["fileTypes"])
    return rules.items


def _file_type_rules(rules: Rules, mode: Mode | None, file_types: Iterable[object]) -> None:
    """The recording file types `mode` does not allow (mp4 is for mix mode only)."""
    if mode is not Mode.INDIVIDUAL:
        return
    written = list(file_types)
    mix_only = [
        kind
        for kind in contract.RECORDING_FILE_TYPES
        if kind in contract.MIX_ONLY_RECORDING_FILE_TYPES and kind in written
    ]
    if mix_only:
        rules.add(
            ("recordingFiles", "fileTypes"),
            f"{', '.join(mix_only)} is only allowed in mix mode (mode is individual): "
            f"write fileTypes: [{contract.HLS}]",
        )


_SECRET_PATHS = (
    "token",
    "recording.decryption.secret",
    "storage.accessKey",
    "storage.secretKey",
    "aliyunVod.accessKey",
    "aliyunVod.secretKey",
)


class Manifest(Section):
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
    resource_expired_hour: (
        Annotated[Whole, Field(ge=contract.RESOURCE_HOURS.low, le=contract.RESOURCE_HOURS.high)]
        | None
    ) = None
    # As written: a uid, or None for `auto` (the default). The number: `rollover_uid`.
    # Used only when a session rolls over: no digest a live session is compared by
    # holds it, so changing it restarts nothing (the spec digest holds a written
    # number, so that the version kept as last known good keeps it too).
    rollover_uid_setting: RolloverUid = Field(
        default=None, alias="rolloverUid", json_schema_extra={"default": "auto"}
    )

    @field_validator("recording_files", "snapshots", mode="before")
    @classmethod
    def _empty_section_enables(cls, value: Any) -> Any:
        # `snapshots:` with nothing after it reads as "on, with the defaults"
        return {} if value is None else value

    @model_validator(mode="after")
    def _reference_rules(self) -> Manifest:
        """Mode restrictions and mutual exclusions of the reference's start table, and
        the rollover uid's own rule (all reported at once)."""
        rules = Rules()
        section_rules(rules, self.mode, lambda key: getattr(self, _SNAKE[key]) is not None)
        rec = self.recording
        if self.mode is Mode.INDIVIDUAL:
            if rec.audio_profile is not None:
                rules.add(
                    ("recording", "audioProfile"), "only allowed in mix mode (mode is individual)"
                )
            if self.recording_files is not None:
                _file_type_rules(rules, self.mode, self.recording_files.file_types)
            if self.subscribe_uid_group is None:
                why = (
                    too_many_uids(rec.subscribed_uid_count)
                    if rec.subscribed_uid_count
                    else "it cannot be derived unless subscribe lists name every uid"
                )
                rules.add(
                    ("recording", "subscribeUidGroup"),
                    "required in individual mode: the expected peak number of subscribed "
                    f"uids, one of {_UID_GROUPS}; {why}",
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
        self._rollover_uid_rules(rules)
        self._own_uid_rules(rules)
        rules.raise_if_any()
        return self

    def _own_uid_rules(self, rules: Rules) -> None:
        """The recorder joins the channel as a user of its own, and its uid must be no
        other user's (the reference's `uid`: "不能与当前频道内的任何 UID 重复"): one it
        subscribes to, or shows in the layout, would be such a user."""
        named: list[tuple[Loc, object]] = []
        subscribe = self.recording.subscribe
        for kind in ("audio", "video"):
            listed = subscribe.kind(kind) if subscribe is not None else None
            named += [(("recording", "subscribe", kind, i), u) for i, u in enumerate(listed or ())]
        if self.layout is not None:
            named.append((("layout", "maxResolutionUid"), self.layout.max_resolution_uid))
            regions = self.layout.regions or ()
            named += [(("layout", "regions", i, "uid"), r.uid) for i, r in enumerate(regions)]
        own = {uid: key for key, uid, _derived in self.uids()} if named else {}
        for loc, uid in named:
            if isinstance(uid, int) and uid in own:
                rules.add(
                    loc,
                    f"{uid} is the recorder's own uid (`{own[uid]}`), never another user's: "
                    "name the user's uid, or give the recorder another",
                )

    def _rollover_uid_rules(self, rules: Rules) -> None:
        """A successor session records beside its predecessor: it needs a uid of its own."""
        written = self.rollover_uid_setting
        if written is not None and written == self.recording_uid:
            uid = f"auto, which derives {written}" if self.uid == "auto" else str(written)
            rules.add(
                ("rolloverUid",),
                f"{written} is also this manifest's uid ({uid}): the successor session of a "
                "rollover records beside its predecessor and needs a uid of its own; "
                "write another uid, or auto",
            )

    # derived facts, shared by translate, plan and show

    @property
    def recording_uid(self) -> int:
        """The uid the recorder joins with; `auto` resolved by `derive_uid(name)`."""
        return derive_uid(self.name) if self.uid == "auto" else self.uid

    @property
    def rollover_uid(self) -> int:
        """The uid a successor session joins with when a session rolls over (its token or
        resource ID expires before the window ends); never `recording_uid`. `auto`
        resolved by `derive_rollover_uid(name, recording_uid)`."""
        written = self.rollover_uid_setting
        return derive_rollover_uid(self.name, self.recording_uid) if written is None else written

    def uids(self) -> tuple[tuple[str, int, bool], ...]:
        """Each uid a session of this manifest may join with: (the key that names it,
        the uid, whether it is derived from the name by `auto`). Sessions alternate
        between the two at each rollover, so both count as in use while it records."""
        return (
            ("uid", self.recording_uid, self.uid == "auto"),
            ("rolloverUid", self.rollover_uid, self.rollover_uid_setting is None),
        )

    @property
    def subscribe_uid_group(self) -> str | None:
        """The explicit group, or in individual mode the one the lists make certain."""
        rec = self.recording
        if rec.subscribe_uid_group is not None:
            return rec.subscribe_uid_group
        if self.mode is Mode.INDIVIDUAL and rec.subscribed_uid_count is not None:
            return uid_group_for(rec.subscribed_uid_count)
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

    def document(self) -> dict[str, Any]:
        """The manifest as a JSON document, by its YAML keys, without unset values."""
        document: dict[str, Any] = self.model_dump(mode="json", by_alias=True, exclude_none=True)
        return document

    def spec_digest(self, document: dict[str, Any] | None = None) -> str:
        """What any change of this manifest changes (the planner's `spec` fingerprint):
        the `canonical_digest` of the manifest as written (`document`, made if not
        given, and not changed), each secret as its reference's description
        (`<env:S3_KEY>`, never a value), and the uid it records as. Computed once per
        loaded version (`LoadedManifest.spec_hash`)."""
        spec = self.document() if document is None else document
        described = describe_secrets_in(spec, self.secret_refs())
        return canonical_digest({"manifest": described, "uid": self.recording_uid})

    def ineffective_settings(self) -> list[tuple[Loc, str]]:
        """Settings that can never do what they say (warnings).

        Agora records at its standard frame rates only: another `fps` is 15.

        A fixed `token` is valid for 24 hours at most and Cloud Recording cannot renew
        it: it cannot serve a schedule that repeats or never ends (a cron, several
        windows, `always`) or one window longer than that; and a window longer than
        `resourceExpiredHour` rolls over to `rolloverUid` with that same token.

        `startingDeadline` is about joining a finite window late; an always-on recording
        has no window start (the planner ignores it there). `defer` waits for the next
        window, which `always` never has.
        """
        found: list[tuple[Loc, str]] = []
        fps = self.transcoding.fps if self.transcoding is not None else None
        if fps is not None and fps not in contract.FRAME_RATES:
            *most, last = (str(r) for r in contract.FRAME_RATES)
            found.append(
                (
                    ("transcoding", "fps"),
                    f"Agora records at {', '.join(most)} or {last} fps: {fps} is recorded at 15",
                )
            )
        if self.token is not None and self._outlives_a_token():
            found.append(
                (
                    ("token",),
                    "a fixed token expires (24 h at most) and cannot be renewed: give the app "
                    "profile an appCertificate so that each start gets a fresh token",
                )
            )
        elif self.token is not None and self._outlives_a_resource():
            found.append(
                (
                    ("token",),
                    f"a window outlives resourceExpiredHour: it rolls over to rolloverUid "
                    f"{self.rollover_uid} with this same token, which must then admit any "
                    "uid (a token for uid 0); or give the app profile an appCertificate",
                )
            )
        if self.schedule.always is None:
            return found
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

    def _outlives_a_token(self) -> bool:
        """Whether the schedule needs a session after 24 h of the first: it repeats,
        never ends, or is one window longer than a token can live."""
        windows = self.schedule.windows
        if windows is None:  # cron or always
            return True
        return len(windows) > 1 or windows[0].end - windows[0].start > MAX_TOKEN_LIFETIME

    def _outlives_a_resource(self) -> bool:
        """Whether a window is longer than `resourceExpiredHour` (when written): its
        session rolls over before the resource ID expires."""
        hours, windows = self.resource_expired_hour, self.schedule.windows
        if hours is None or windows is None:
            return False
        return any(w.end - w.start > timedelta(hours=hours) for w in windows)

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

# "1-2, 3-7, 8-12, 13-17 (codes 0-3)": the reference's table, in its order
_UID_GROUPS = (
    f"{', '.join(contract.UID_GROUPS)} "
    f"(codes {min(contract.UID_GROUPS.values())}-{max(contract.UID_GROUPS.values())})"
)


# YAML key -> attribute, computed once (validation of many manifests calls these)
_SNAKE = {
    key: _snake(key)
    for key in ("transcoding", "layout", "aliyunVod", "snapshots", "recordingFiles", "storage")
}
_SECRET_ATTRIBUTES = tuple(
    (path, tuple(_snake(part) for part in path.split("."))) for path in _SECRET_PATHS
)
