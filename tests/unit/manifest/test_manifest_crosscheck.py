"""Checks across manifests, on real files: names, derived uids, schedule clashes.

Covers: duplicate names reported at both positions (also within one file),
`auto` uids colliding with another manifest on the same app and channel
(whatever the schedules), the first clashing instant of two schedules on the
same (app, channel, uid) searched from `now` (cron vs cron, cron vs windows,
always vs anything, suspended manifests still count), no clash when schedules,
channel, app or uid differ or the clash lies beyond the horizon, and no clash
search without `now`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from orchestrator.manifest.crosscheck import cross_check, first_overlap
from orchestrator.manifest.loader import load_manifests
from orchestrator.schedule import always_schedule, windows_schedule

NOW = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)  # a Monday


def doc(name: str, schedule: str, *, uid: str = "527841", extra: str = "") -> str:
    return (
        f"name: {name}\napp: main\nchannel: room\nuid: {uid}\nmode: mix\n"
        f"schedule:\n{schedule}{extra}"
    )


DAILY_9 = '  cron: "0 9 * * *"\n  timezone: UTC\n  duration: 1h\n'
DAILY_930 = '  cron: "30 9 * * *"\n  timezone: UTC\n  duration: 1h\n'
DAILY_10 = '  cron: "0 10 * * *"\n  timezone: UTC\n  duration: 1h\n'
MONTHLY_2ND = '  cron: "0 12 2 4 *"\n  timezone: UTC\n  duration: 1h\n'
ALWAYS = "  always: true\n"


def windows(start: str, end: str) -> str:
    return f"  windows:\n    - start: {start}\n      end: {end}\n"


def write(tmp_path: Path, **files: str) -> Path:
    for name, text in files.items():
        (tmp_path / f"{name}.yaml").write_text(text, encoding="utf-8")
    return tmp_path


def errors(tmp_path: Path, now: datetime | None = NOW) -> list[tuple[str, int, str, str]]:
    result = load_manifests([tmp_path], now=now)
    return [(Path(d.file).name, d.line, d.field, d.message) for d in result.errors]


def test_duplicate_names_name_both_places(tmp_path: Path) -> None:
    write(
        tmp_path,
        a=doc("same", DAILY_9),
        b="# padding\n" + doc("same", DAILY_10, uid="2"),
    )
    found = errors(tmp_path)
    assert [(f, line, field) for f, line, field, _ in found] == [
        ("a.yaml", 1, "name"),
        ("b.yaml", 2, "name"),
    ]
    assert f"used again at {tmp_path / 'b.yaml'}:2" in found[0][3]
    result = load_manifests([tmp_path], now=NOW)
    assert result.manifests == []
    assert len(result.failed_files) == 2


def test_duplicate_names_within_one_file(tmp_path: Path) -> None:
    write(tmp_path, a=doc("same", DAILY_9) + "---\n" + doc("same", DAILY_10, uid="2"))
    assert [(line, field) for _, line, field, _ in errors(tmp_path)] == [(1, "name"), (11, "name")]


def test_clash_reports_the_first_instant_on_both(tmp_path: Path) -> None:
    write(tmp_path, a=doc("nine", DAILY_9), b=doc("nine-thirty", DAILY_930))
    found = errors(tmp_path)
    assert [(f, line, field) for f, line, field, _ in found] == [
        ("a.yaml", 6, "schedule"),
        ("b.yaml", 6, "schedule"),
    ]
    assert "first at 2026-03-02T09:30:00Z" in found[0][3]
    assert "'nine-thirty'" in found[0][3] and "'nine'" in found[1][3]
    assert "uid 527841" in found[0][3]


def test_clash_search_starts_at_now(tmp_path: Path) -> None:
    write(tmp_path, a=doc("nine", DAILY_9), b=doc("nine-thirty", DAILY_930))
    later = NOW + timedelta(hours=9, minutes=45)  # inside today's overlap
    assert "first at 2026-03-02T09:45:00Z" in errors(tmp_path, later)[0][3]


def test_touching_windows_do_not_clash(tmp_path: Path) -> None:
    write(tmp_path, a=doc("nine", DAILY_9), b=doc("ten", DAILY_10))
    assert errors(tmp_path) == []


def test_always_clashes_with_anything_and_suspended_counts(tmp_path: Path) -> None:
    write(
        tmp_path,
        a=doc("lobby", ALWAYS, extra="suspend: true\n"),
        b=doc("once", windows("2026-06-01T10:00:00+02:00", "2026-06-01T11:00:00+02:00")),
    )
    found = errors(tmp_path)
    assert len(found) == 2
    assert "first at 2026-06-01T08:00:00Z" in found[0][3]


def test_no_clash_on_another_channel_app_or_uid(tmp_path: Path) -> None:
    write(
        tmp_path,
        a=doc("a", ALWAYS),
        b=doc("b", ALWAYS, uid="2"),
        c=doc("c", ALWAYS).replace("channel: room", "channel: other"),
        d=doc("d", ALWAYS).replace("app: main", "app: backup"),
    )
    assert errors(tmp_path) == []


def test_no_clash_beyond_the_horizon_or_in_the_past(tmp_path: Path) -> None:
    write(
        tmp_path,
        a=doc("a", windows("2028-01-01T00:00:00Z", "2028-01-02T00:00:00Z")),
        b=doc("b", windows("2028-01-01T00:00:00Z", "2028-01-02T00:00:00Z")),
        c=doc("c", windows("2025-01-01T00:00:00Z", "2025-01-02T00:00:00Z"), uid="3"),
        d=doc("d", ALWAYS, uid="3").replace("channel: room", "channel: room"),
    )
    assert errors(tmp_path) == []


def test_yearly_clash_is_found_across_chunks(tmp_path: Path) -> None:
    write(tmp_path, a=doc("a", MONTHLY_2ND), b=doc("b", ALWAYS))
    assert "first at 2026-04-02T12:00:00Z" in errors(tmp_path)[0][3]


def test_without_now_there_is_no_clash_search(tmp_path: Path) -> None:
    write(tmp_path, a=doc("a", ALWAYS), b=doc("b", ALWAYS))
    assert errors(tmp_path, now=None) == []


def test_auto_uid_collision_is_reported_whatever_the_schedules(tmp_path: Path) -> None:
    from orchestrator.manifest.model import derive_uid

    derived = derive_uid("auto-one")
    write(
        tmp_path,
        a=doc("auto-one", DAILY_9, uid="auto"),
        b=doc("explicit", DAILY_10, uid=str(derived)),
    )
    found = errors(tmp_path, now=None)
    assert [(f, line, field) for f, line, field, _ in found] == [("a.yaml", 4, "uid")]
    assert f"uid auto derives {derived}, which 'explicit'" in found[0][3]
    assert "set an explicit uid" in found[0][3]


def test_first_overlap_directly() -> None:
    a = windows_schedule([(NOW + timedelta(hours=1), NOW + timedelta(hours=3))])
    b = windows_schedule([(NOW + timedelta(hours=2), NOW + timedelta(hours=5))])
    assert first_overlap(a, b, NOW) == NOW + timedelta(hours=2)
    assert first_overlap(a, b, NOW + timedelta(hours=4)) is None
    assert first_overlap(always_schedule(), b, NOW, timedelta(hours=1)) is None
    assert cross_check([], now=NOW) == []
