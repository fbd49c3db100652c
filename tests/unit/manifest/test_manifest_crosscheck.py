"""Checks across manifests, on real files: names, derived uids, schedule clashes.

Covers: duplicate names reported at both positions (also within one file),
`auto` uids colliding with another manifest on the same app and channel
(whatever the schedules), the first clashing instant of two schedules on the
same (app, channel, uid) searched from `now` (cron vs cron, cron vs windows,
always vs anything, suspended manifests still count), no clash when schedules,
channel, app or uid differ or the clash lies beyond the horizon, and no clash
search without `now`; with the profiles' App IDs, two profiles of one App ID share
targets (a clash, a colliding `auto` uid) and distinct App IDs do not. The group
sweep gives, pair by pair, the instants the chunked pairwise search it replaced gave
(hypothesis, cron with DST, explicit windows, always), with each schedule expanded
once per check.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from orchestrator.manifest.crosscheck import OverlapMemo, cross_check, first_overlap
from orchestrator.manifest.loader import LoadedManifest, ManifestCache, load_manifests
from orchestrator.manifest.model import Manifest, derive_uid
from orchestrator.schedule import Schedule, always_schedule, windows_schedule

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


# --- the app is the App ID when the profiles' App IDs are known ---------------------------


def test_two_profiles_of_one_app_id_clash(tmp_path: Path) -> None:
    """Agora knows App IDs, not profile names: `main` and `backup` naming one App ID record
    in one project, so their manifests on one channel and uid at one time clash, in
    `load_manifests`, in a cache and in `cross_check` alike."""
    write(
        tmp_path,
        a=doc("nine", DAILY_9),
        b=doc("nine-thirty", DAILY_930).replace("app: main", "app: backup"),
    )
    shared = {"main": "0123456789abcdef", "backup": "0123456789abcdef"}
    result = load_manifests([tmp_path], now=NOW, app_ids=shared)
    assert [(Path(d.file).name, d.line, d.field) for d in result.errors] == [
        ("a.yaml", 6, "schedule"),
        ("b.yaml", 6, "schedule"),
    ]
    assert result.manifests == [] and len(result.failed_files) == 2
    message = result.errors[0].message
    assert message.startswith("records app main (the App ID of backup too), channel 'room'")
    assert "first at 2026-03-02T09:30:00Z" in message
    assert "0123456789abcdef" not in message  # profiles by name; the App ID is not shown
    assert ManifestCache([tmp_path], app_ids=shared).load(now=NOW) == result


def test_two_profiles_of_distinct_app_ids_do_not_clash(tmp_path: Path) -> None:
    write(
        tmp_path,
        a=doc("nine", DAILY_9),
        b=doc("nine-thirty", DAILY_930).replace("app: main", "app: backup"),
    )
    distinct = {"main": "0123456789abcdef", "backup": "fedcba9876543210"}
    assert load_manifests([tmp_path], now=NOW, app_ids=distinct).errors == []
    assert errors(tmp_path) == []  # without App IDs (validate): the profile names differ


def test_an_auto_uid_collides_across_profiles_of_one_app_id(tmp_path: Path) -> None:
    auto = derive_uid("a")
    write(
        tmp_path,
        a=doc("a", DAILY_9, uid="auto"),
        b=doc("b", DAILY_10, uid=str(auto)).replace("app: main", "app: backup"),
    )
    shared = {"main": "0123456789abcdef", "backup": "0123456789abcdef"}
    found = load_manifests([tmp_path], now=None, app_ids=shared).errors
    assert [(Path(d.file).name, d.field) for d in found] == [("a.yaml", "uid")]
    assert "on app main (the App ID of backup too), channel 'room'" in found[0].message


def test_a_profile_named_like_an_app_id_is_not_that_app_id(tmp_path: Path) -> None:
    """A profile the mapping does not name keeps its name as its app, apart from App IDs."""
    write(
        tmp_path,
        a=doc("nine", ALWAYS).replace("app: main", "app: feedface"),
        b=doc("nine-thirty", ALWAYS),
    )
    assert load_manifests([tmp_path], now=NOW, app_ids={"main": "feedface"}).errors == []


def test_yearly_clash_is_found_across_chunks(tmp_path: Path) -> None:
    write(tmp_path, a=doc("a", MONTHLY_2ND), b=doc("b", ALWAYS))
    assert "first at 2026-04-02T12:00:00Z" in errors(tmp_path)[0][3]


def test_without_now_there_is_no_clash_search(tmp_path: Path) -> None:
    write(tmp_path, a=doc("a", ALWAYS), b=doc("b", ALWAYS))
    assert errors(tmp_path, now=None) == []


def test_auto_uid_collision_is_reported_whatever_the_schedules(tmp_path: Path) -> None:
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


# --- the group sweep against the pairwise search it replaced ---------------------------


def _chunked_first_overlap(
    a: Schedule, b: Schedule, start: datetime, horizon: timedelta
) -> datetime | None:
    """The search `first_overlap` did before: both schedules expanded again, in 31-day
    chunks, for every pair."""
    end, t, chunk = start + horizon, start, timedelta(days=31)
    while t < end:
        u = min(t + chunk, end)
        wa, wb = a.windows_between(t, u), b.windows_between(t, u)
        i = j = 0
        while i < len(wa) and j < len(wb):
            low = max(wa[i].start, wb[j].start, t)
            high = min(wa[i].end, wb[j].end)
            if low < high and low < u:
                return low
            if wa[i].end <= wb[j].end:
                i += 1
            else:
                j += 1
        t = u
    return None


SCHEDULES = [
    '  cron: "0 9 * * MON"\n  timezone: Europe/Berlin\n  duration: 45m\n',
    '  cron: "30 9 * * MON"\n  timezone: Europe/Berlin\n  duration: 45m\n',
    '  cron: "30 7 * * MON"\n  timezone: UTC\n  duration: 45m\n',  # meets Berlin in summer
    '  cron: "30 2 * * SUN"\n  timezone: Europe/Berlin\n  duration: 1h\n',  # DST nights
    '  cron: "0 0 29 2 *"\n  timezone: UTC\n  duration: 1d\n',
    '  cron: "0 7-9 * * *"\n  timezone: Europe/Berlin\n  duration: 30m\n',
    '  cron: "15 8 * * *"\n  timezone: UTC\n  duration: 30m\n',
    "  windows:\n    - start: 2026-03-30T07:00:00Z\n      end: 2026-03-30T07:30:00Z\n",
    "  windows:\n    - start: 2026-10-25T00:00:00Z\n      end: 2026-11-03T00:00:00Z\n",
    "  always: true\n",
]


def loaded(index: int, schedule: str) -> LoadedManifest:
    text = f"name: m{index}\napp: main\nchannel: room\nuid: 1\nmode: mix\nschedule:\n{schedule}"
    return LoadedManifest(
        Manifest.model_validate(YAML(typ="safe").load(text)), f"m{index}.yaml", 1, 1
    )


@settings(max_examples=40, deadline=None)
@given(
    picks=st.lists(st.integers(0, len(SCHEDULES) - 1), min_size=2, max_size=6),
    hours=st.integers(0, 24 * 300),
    horizon_days=st.sampled_from([1, 45, 366]),
)
def test_the_sweep_finds_what_the_pairwise_search_found(
    picks: list[int], hours: int, horizon_days: int
) -> None:
    group = [loaded(i, SCHEDULES[p]) for i, p in enumerate(picks)]
    now, horizon = NOW + timedelta(hours=hours), timedelta(days=horizon_days)
    expected = []
    for i, a in enumerate(group):
        for b in group[i + 1 :]:
            sa, sb = a.manifest.build_schedule(), b.manifest.build_schedule()
            clash = _chunked_first_overlap(sa, sb, now, horizon)
            assert first_overlap(sa, sb, now, horizon) == clash
            if clash is not None:
                when = clash.strftime("%Y-%m-%dT%H:%M:%SZ")
                expected += [(a.file, b.manifest.name, when), (b.file, a.manifest.name, when)]
    found = [
        (d.file, d.message.split("'")[3], d.message.split("first at ")[1].split(";")[0])
        for d in cross_check(group, now=now, horizon=horizon)
    ]
    assert found == expected


def test_each_schedule_is_expanded_once_per_check() -> None:
    """Forty weekly classes in one room: forty expansions, not two per pair (1,560)."""
    group = [
        loaded(
            i, f'  cron: "{i % 4 * 15} {8 + i // 4} * * MON"\n  timezone: UTC\n  duration: 10m\n'
        )
        for i in range(40)
    ]
    memo = OverlapMemo(ahead=timedelta(0))  # what a check without a memo uses
    assert cross_check(group, now=NOW, memo=memo) == []
    assert memo.expanded == 40
    assert cross_check(group, now=NOW, memo=memo) == []
    assert memo.expanded == 0  # the same check again: nothing expanded


def test_a_kept_memo_extends_windows_by_the_time_passed() -> None:
    """A month later the daemon's memo expands each schedule by a month, not a year."""
    group = [
        loaded(i, f'  cron: "0 {9 + 2 * i} * * MON"\n  timezone: Europe/Berlin\n  duration: 1h\n')
        for i in (0, 1)
    ]
    memo = OverlapMemo()
    assert cross_check(group, now=NOW, memo=memo) == []
    later = NOW + timedelta(days=40)  # past what was expanded ahead (31 days)
    assert cross_check(group, now=later, memo=memo) == cross_check(group, now=later)
    held = memo.held()
    assert held == [(later, later + timedelta(days=366 + 31))] * 2
