"""`rolloverUid`, the second uid of a manifest, and the warning about a fixed token.

Covers:
- the field: `auto` by default (left out, `auto` in any case, or a key without a
  value), an explicit uid (number or text), the range and the `0` of uids, never the
  manifest's own uid (also not the one `uid: auto` derives), each error at its place
  and reported with the model's other rules;
  `Manifest.rollover_uid` resolves it and `Manifest.uids()` lists both uids;
- the derivation: documented formula, stable, distinct from `derive_uid`, never the
  manifest's uid (the next number when the hash gives it);
- `auto` dumps like a manifest that never heard of the key;
- the JSON Schema knows the key, its default and its range;
- across manifests: a rolloverUid clashes with another manifest's uid or rolloverUid on
  the same app and channel at the same time (a pair that shares both uids reported
  once), and a derived one that equals another's is reported whatever the schedules;
  other channels and apps do not clash; two profiles of one App ID do; a cache answers
  like a fresh load where only rollover uids are shared;
- a fixed `token` with a schedule that outlives a token (cron, always, several
  windows, one window longer than 24 h) is a warning at the key, an error under
  `--strict`; with one short window, or without a token, there is none.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from manifest_docs import GOOD_TEXT, INDIVIDUAL, MIX, errors_of, with_

from orchestrator.manifest.loader import ManifestCache, load_file, load_manifests
from orchestrator.manifest.model import (
    MAX_UID,
    Manifest,
    derive_rollover_uid,
    derive_uid,
)
from orchestrator.manifest.schema import manifest_json_schema

NOW = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)  # a Monday
DAILY_9 = '  cron: "0 9 * * *"\n  timezone: UTC\n  duration: 1h\n'
DAILY_930 = '  cron: "30 9 * * *"\n  timezone: UTC\n  duration: 1h\n'
DAILY_10 = '  cron: "0 10 * * *"\n  timezone: UTC\n  duration: 1h\n'
TOKEN_WARNING = (
    "a fixed token expires (24 h at most) and cannot be renewed: give the app profile an "
    "appCertificate so that each start gets a fresh token"
)


def build(doc: dict[str, Any]) -> Manifest:
    return Manifest.model_validate(doc)


def hashed(prefix: bytes, name: str) -> int:
    """The documented derivation, written out."""
    digest = hashlib.sha256(prefix + name.encode("utf-8")).digest()
    return 1 + int.from_bytes(digest[:8], "big") % MAX_UID


# --- the field --------------------------------------------------------------------------


@pytest.mark.parametrize("written", [None, "auto", "AUTO", " Auto "])
def test_rollover_uid_is_derived_by_default(written: str | None) -> None:
    doc = with_(MIX, rolloverUid=written)
    m = build(doc)
    assert m.rollover_uid == hashed(b"orchestrator-rollover-uid:", "standup")
    assert m.rollover_uid != m.recording_uid == 527841
    assert m.uids() == (("uid", 527841, False), ("rolloverUid", m.rollover_uid, True))
    # `auto` leaves no trace in the dump: the same manifest as before the key existed
    assert "rolloverUid" not in m.model_dump(mode="json", by_alias=True, exclude_none=True)
    assert m == build(MIX)


def test_a_key_without_a_value_is_auto() -> None:
    m = Manifest.model_validate({**MIX, "rolloverUid": None})
    assert m.rollover_uid == derive_rollover_uid("standup", 527841)


@pytest.mark.parametrize(("written", "expected"), [(42, 42), ("42", 42), (MAX_UID, MAX_UID)])
def test_an_explicit_rollover_uid(written: object, expected: int) -> None:
    m = build(with_(MIX, rolloverUid=written))
    assert m.rollover_uid == expected
    assert m.uids()[1] == ("rolloverUid", expected, False)
    assert m.model_dump(mode="json", by_alias=True, exclude_none=True)["rolloverUid"] == expected


def test_with_uid_auto_both_are_derived_and_distinct() -> None:
    m = build(with_(MIX, uid="auto"))
    assert m.recording_uid == derive_uid("standup")
    assert m.rollover_uid == derive_rollover_uid("standup", m.recording_uid)
    assert m.uids() == (
        ("uid", m.recording_uid, True),
        ("rolloverUid", m.rollover_uid, True),
    )
    assert m.recording_uid != m.rollover_uid


@pytest.mark.parametrize("value", [0, -1, MAX_UID + 1, True, "abc", 1.5, [1]])
def test_rollover_uid_range(value: object) -> None:
    found = errors_of(with_(MIX, rolloverUid=value))
    assert [field for field, _ in found] == ["rolloverUid"]
    assert "is not a uid: use an integer from 1 to 4294967295 (2^32-1), or auto" in found[0][1]


def test_rollover_uid_must_not_be_the_uid() -> None:
    assert errors_of(with_(MIX, rolloverUid=527841)) == [
        (
            "rolloverUid",
            "527841 is also this manifest's uid (527841): the successor session of a rollover "
            "records beside its predecessor and needs a uid of its own; write another uid, "
            "or auto",
        )
    ]
    derived = derive_uid("standup")
    assert errors_of(with_(MIX, uid="auto", rolloverUid=derived)) == [
        (
            "rolloverUid",
            f"{derived} is also this manifest's uid (auto, which derives {derived}): the "
            "successor session of a rollover records beside its predecessor and needs a uid "
            "of its own; write another uid, or auto",
        )
    ]


def test_the_rule_is_reported_with_the_other_rules() -> None:
    doc = with_(INDIVIDUAL, rolloverUid=527841, layout={"type": "adaptive"})
    assert [field for field, _ in errors_of(doc)] == ["layout", "rolloverUid"]


def test_errors_are_placed_on_the_key(tmp_path: Path) -> None:
    path = tmp_path / "a.yaml"
    good = GOOD_TEXT.format(name="standup", channel="room-1")
    path.write_text(good + "rolloverUid: 527841\n", encoding="utf-8")
    loaded, diagnostics = load_file(str(path))
    assert loaded == []
    assert [(d.line, d.column, d.field, d.severity) for d in diagnostics] == [
        (10, 1, "rolloverUid", "error")
    ]
    path.write_text(good + "rolloverUid: 0\n", encoding="utf-8")
    _, diagnostics = load_file(str(path))
    assert [(d.line, d.column, d.field) for d in diagnostics] == [(10, 14, "rolloverUid")]
    assert diagnostics[0].message.startswith("0 is not a uid")


# --- the derivation ---------------------------------------------------------------------


def test_derived_rollover_uid_is_stable_documented_and_distinct() -> None:
    expected = hashed(b"orchestrator-rollover-uid:", "weekly-standup")
    assert derive_rollover_uid("weekly-standup", 527841) == expected
    names = [f"n{i}" for i in range(2000)]
    derived = [derive_rollover_uid(name, derive_uid(name)) for name in names]
    assert all(1 <= uid <= MAX_UID for uid in derived)
    assert all(r != derive_uid(name) for name, r in zip(names, derived, strict=True))
    assert len(set(derived)) == len(names)


def test_the_derivation_skips_the_manifests_own_uid() -> None:
    """When the hash gives the manifest's uid, the next number is taken (wrapping)."""
    hit = hashed(b"orchestrator-rollover-uid:", "standup")
    assert derive_rollover_uid("standup", hit) == hit % MAX_UID + 1 != hit
    m = build(with_(MIX, uid=hit))
    assert m.recording_uid == hit
    assert m.rollover_uid == hit % MAX_UID + 1


def test_the_schema_knows_rollover_uid() -> None:
    field = manifest_json_schema()["properties"]["rolloverUid"]
    assert field["default"] == "auto"
    assert field["anyOf"] == [
        {"type": "integer", "minimum": 1, "maximum": MAX_UID},
        {"const": "auto"},
    ]
    assert "rolloverUid" not in manifest_json_schema()["required"]


# --- across manifests -------------------------------------------------------------------


def doc(name: str, schedule: str, *, uid: object = 527841, rollover: object = None) -> str:
    text = f"name: {name}\napp: main\nchannel: room\nuid: {uid}\nmode: mix\nschedule:\n{schedule}"
    return text + (f"rolloverUid: {rollover}\n" if rollover is not None else "")


def write(tmp_path: Path, **files: str) -> Path:
    for name, text in files.items():
        (tmp_path / f"{name}.yaml").write_text(text, encoding="utf-8")
    return tmp_path


def errors(
    tmp_path: Path, now: datetime | None = NOW, app_ids: dict[str, str] | None = None
) -> list[tuple[str, int, str, str]]:
    result = load_manifests([tmp_path], now=now, app_ids=app_ids)
    cached = ManifestCache([tmp_path], app_ids=app_ids).load(now=now)
    assert cached == result  # a cache answers as a fresh load
    return [(Path(d.file).name, d.line, d.field, d.message) for d in result.errors]


def test_a_rollover_uid_clashes_with_another_manifests_uid(tmp_path: Path) -> None:
    write(tmp_path, a=doc("nine", DAILY_9, uid=1, rollover=2), b=doc("half", DAILY_930, uid=2))
    found = errors(tmp_path)
    assert [(f, line, field) for f, line, field, _ in found] == [
        ("a.yaml", 6, "schedule"),
        ("b.yaml", 6, "schedule"),
    ]
    a_file, b_file = tmp_path / "a.yaml", tmp_path / "b.yaml"
    assert found[0][3] == (
        "records app main, channel 'room', uid 2 (as its rolloverUid; 'half' as its uid) at "
        f"the same time as 'half' ({b_file}:6), first at 2026-03-02T09:30:00Z; change a "
        "schedule, the channel or the uids"
    )
    assert found[1][3] == (
        "records app main, channel 'room', uid 2 (as its uid; 'nine' as its rolloverUid) at "
        f"the same time as 'nine' ({a_file}:6), first at 2026-03-02T09:30:00Z; change a "
        "schedule, the channel or the uids"
    )


def test_two_rollover_uids_clash(tmp_path: Path) -> None:
    write(
        tmp_path,
        a=doc("nine", DAILY_9, uid=1, rollover=7),
        b=doc("half", DAILY_930, uid=2, rollover=7),
    )
    found = errors(tmp_path)
    assert [(f, field) for f, _, field, _ in found] == [
        ("a.yaml", "schedule"),
        ("b.yaml", "schedule"),
    ]
    assert "uid 7 (as its rolloverUid; 'half' as its rolloverUid)" in found[0][3]


def test_a_pair_sharing_both_uids_is_reported_once(tmp_path: Path) -> None:
    write(
        tmp_path,
        a=doc("nine", DAILY_9, uid=1, rollover=2),
        b=doc("half", DAILY_930, uid=2, rollover=1),
    )
    found = errors(tmp_path)
    assert [(f, field) for f, _, field, _ in found] == [
        ("a.yaml", "schedule"),
        ("b.yaml", "schedule"),
    ]


def test_shared_rollover_uids_at_other_times_or_places_do_not_clash(tmp_path: Path) -> None:
    write(
        tmp_path,
        a=doc("nine", DAILY_9, uid=1, rollover=7),
        b=doc("ten", DAILY_10, uid=2, rollover=7),  # touching windows: never together
        c=doc("other-room", DAILY_930, uid=3, rollover=7).replace("room", "hall"),
        d=doc("other-app", DAILY_930, uid=4, rollover=7).replace("app: main", "app: backup"),
    )
    assert errors(tmp_path) == []


def test_a_derived_rollover_uid_collides_whatever_the_schedules(tmp_path: Path) -> None:
    derived = derive_rollover_uid("auto-one", 1)
    write(tmp_path, a=doc("auto-one", DAILY_9, uid=1), b=doc("explicit", DAILY_10, uid=derived))
    found = errors(tmp_path, now=None)
    # not written: placed at the document's start
    assert [(f, line, field) for f, line, field, _ in found] == [("a.yaml", 1, "rolloverUid")]
    assert found[0][3] == (
        f"rolloverUid auto derives {derived}, which 'explicit' ({tmp_path / 'b.yaml'}:4) also "
        "uses on app main, channel 'room'; set an explicit rolloverUid"
    )


def test_a_derived_uid_collides_with_an_explicit_rollover_uid(tmp_path: Path) -> None:
    derived = derive_uid("auto-one")
    write(
        tmp_path,
        a=doc("auto-one", DAILY_9, uid="auto"),
        b=doc("explicit", DAILY_10, uid=5, rollover=derived),
    )
    found = errors(tmp_path, now=None)
    assert [(f, line, field) for f, line, field, _ in found] == [("a.yaml", 4, "uid")]
    assert found[0][3] == (
        f"uid auto derives {derived}, which 'explicit' ({tmp_path / 'b.yaml'}:10) also uses as "
        "its rolloverUid on app main, channel 'room'; set an explicit uid"
    )


def test_a_derived_rollover_uid_collides_across_profiles_of_one_app_id(tmp_path: Path) -> None:
    derived = derive_rollover_uid("auto-one", 1)
    write(
        tmp_path,
        a=doc("auto-one", DAILY_9, uid=1),
        b=doc("explicit", DAILY_10, uid=derived).replace("app: main", "app: backup"),
    )
    assert errors(tmp_path, now=None) == []  # two profiles, App IDs unknown: two apps
    shared = {"main": "0123456789abcdef", "backup": "0123456789abcdef"}
    found = errors(tmp_path, now=None, app_ids=shared)
    assert [(f, field) for f, _, field, _ in found] == [("a.yaml", "rolloverUid")]
    assert "on app main (the App ID of backup too), channel 'room'" in found[0][3]


def test_a_cache_reload_sees_a_new_rollover_clash(tmp_path: Path) -> None:
    write(tmp_path, a=doc("nine", DAILY_9, uid=1, rollover=7), b=doc("half", DAILY_930, uid=2))
    cache = ManifestCache([tmp_path])
    assert cache.load(now=NOW).errors == []
    (tmp_path / "b.yaml").write_text(doc("half", DAILY_930, uid=2, rollover=7), encoding="utf-8")
    reloaded = cache.load(now=NOW)
    assert reloaded == load_manifests([tmp_path], now=NOW)
    assert [d.field for d in reloaded.errors] == ["schedule", "schedule"]


# --- a fixed token ----------------------------------------------------------------------

ONE_HOUR = {"windows": [{"start": "2026-06-01T10:00:00Z", "end": "2026-06-01T11:00:00Z"}]}
NINETY_MINUTES = {"windows": [{"start": "2026-06-01T10:00:00Z", "end": "2026-06-01T11:30:00Z"}]}
TWO_WINDOWS = {
    "windows": [
        {"start": "2026-06-01T10:00:00Z", "end": "2026-06-01T11:00:00Z"},
        {"start": "2026-06-02T10:00:00Z", "end": "2026-06-02T11:00:00Z"},
    ]
}
A_DAY = {"windows": [{"start": "2026-06-01T10:00:00Z", "end": "2026-06-02T10:00:00Z"}]}
LONGER = {"windows": [{"start": "2026-06-01T10:00:00Z", "end": "2026-06-02T10:00:01Z"}]}


@pytest.mark.parametrize(
    ("schedule", "warned"),
    [
        (MIX["schedule"], True),
        ("always", True),
        (TWO_WINDOWS, True),
        (LONGER, True),
        (ONE_HOUR, False),
        (A_DAY, False),
    ],
    ids=["cron", "always", "two-windows", "one-window-over-24h", "one-hour", "24h"],
)
def test_a_fixed_token_that_cannot_last_is_a_warning(schedule: object, warned: bool) -> None:
    def token_findings(doc: dict[str, Any]) -> list[tuple[object, str]]:
        return [(loc, text) for loc, text in build(doc).ineffective_settings() if loc == ("token",)]

    with_token = with_(MIX, schedule=schedule, token={"env": "TOKEN"})
    assert token_findings(with_token) == ([(("token",), TOKEN_WARNING)] if warned else [])
    assert token_findings(with_(MIX, schedule=schedule)) == []


@pytest.mark.parametrize(("hours", "warned"), [(1, True), (2, False), (None, False)])
def test_a_fixed_token_in_a_window_that_outlives_its_resource_is_a_warning(
    hours: int | None, warned: bool
) -> None:
    doc = with_(MIX, schedule=NINETY_MINUTES, token={"env": "TOKEN"})
    if hours is not None:
        doc["resourceExpiredHour"] = hours
    manifest = build(doc)
    found = [text for loc, text in manifest.ineffective_settings() if loc == ("token",)]
    assert found == (
        [
            "a window outlives resourceExpiredHour: it rolls over to rolloverUid "
            f"{manifest.rollover_uid} with this same token, which must then admit any uid "
            "(a token for uid 0); or give the app profile an appCertificate"
        ]
        if warned
        else []
    )


def test_the_token_warning_is_placed_and_strict(tmp_path: Path) -> None:
    path = tmp_path / "a.yaml"
    text = GOOD_TEXT.format(name="standup", channel="room-1") + "token: {env: TOKEN}\n"
    path.write_text(text, encoding="utf-8")
    loaded, diagnostics = load_file(str(path))
    assert len(loaded) == 1
    assert [(d.line, d.column, d.field, d.message, d.severity) for d in diagnostics] == [
        (10, 1, "token", TOKEN_WARNING, "warning")
    ]
    assert load_manifests([path]).ok
    strict = load_manifests([path], strict=True)
    assert not strict.ok
    assert [(d.field, d.severity) for d in strict.diagnostics] == [("token", "error")]
