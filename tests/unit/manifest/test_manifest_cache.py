"""ManifestCache on real files: a reload parses only what changed and answers as a fresh load.

Covers: one edited file is the only one parsed (the others are the very same
objects), a touch is read but not parsed, a file written just now is read again at
the next load (timestamps too coarse to trust), a file broken by an edit fails
alone and comes back when fixed, deleted and renamed files, new subdirectories,
only directories that changed listed again, unreadable files that become
readable, cross-file findings appearing and going away with edits (counts kept
incrementally), the result equal to `load_manifests` (the example directory, and
random edit sequences on generated trees with clashing schedules and a moving
`now`), the clash-search memo equal to a fresh search (also for a clash found
ahead of the horizon), `discover` equal to an `os.walk` reference with symlinks
and hidden entries, the garbage collector left alone without hooks, and with the
daemon's policy left enabled, and frozen garbage collected after a bulk reload.
"""

from __future__ import annotations

import contextlib
import gc
import os
import tempfile
import time
import weakref
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.daemon.gcpolicy import GC_POLICY, GcPolicy
from orchestrator.manifest import discovery
from orchestrator.manifest.crosscheck import OverlapMemo, cross_check, first_overlap
from orchestrator.manifest.loader import (
    YAML_SUFFIXES,
    LoadedManifest,
    LoadResult,
    LoadStats,
    ManifestCache,
    discover,
    load_manifests,
)
from orchestrator.manifest.model import Manifest

EXAMPLES = Path(__file__).resolve().parents[3] / "recordings.d"
NOW = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)  # a Monday

SCHEDULES = [
    '  cron: "0 9 * * MON-FRI"\n  timezone: Europe/Berlin\n  duration: 1h\n',
    '  cron: "30 9 * * *"\n  timezone: UTC\n  duration: 45m\n',
    '  cron: "0 12 2 * *"\n  timezone: UTC\n  duration: 2h\n',
    "  windows:\n    - start: 2026-03-20T10:00:00Z\n      end: 2026-03-20T12:00:00Z\n",
    "  windows:\n    - start: 2026-05-01T00:00:00+02:00\n      end: 2026-05-03T00:00:00+02:00\n",
    "  always: true\n",
]


def doc(name: str, *, channel: str | None = None, uid: str = "527841", schedule: int = 0) -> str:
    return (
        f"name: {name}\napp: main\nchannel: {channel or name}\nuid: {uid}\nmode: mix\n"
        f"schedule:\n{SCHEDULES[schedule]}"
    )


def write(path: Path, text: str) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return str(path)


def names(result: LoadResult) -> list[str]:
    return [m.manifest.name for m in result.manifests]


@pytest.fixture(autouse=True)
def _thaw() -> Iterator[None]:
    """A cache freezes the objects of the process; the rest of the test run gets them back."""
    yield
    gc.unfreeze()


@pytest.fixture
def settle(monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
    """A racy window of 50 ms (still longer than a clock tick) instead of 2 s: after
    `settle()`, what was written before it is trusted from the next load on."""
    monkeypatch.setattr(discovery, "RACY_NS", 50_000_000)
    return lambda: time.sleep(0.08)


def tree(tmp_path: Path, count: int = 5) -> list[str]:
    return [write(tmp_path / f"m{i}.yaml", doc(f"rec-{i}")) for i in range(count)]


def test_one_edited_file_is_the_only_one_parsed(tmp_path: Path, settle: Callable[[], None]) -> None:
    paths = tree(tmp_path)
    cache = ManifestCache([tmp_path])
    first = cache.load(now=NOW)
    assert cache.parsed_files == 5 and first.changed == frozenset(paths)
    assert cache.last is not None and cache.last.added == frozenset(paths)
    settle()
    cache.load(now=NOW)  # written just before the first load: read once more
    assert (cache.last.read, cache.last.parsed) == (5, 0)

    again = cache.load(now=NOW)
    assert (cache.last.read, cache.last.parsed, cache.last.listed) == (0, 0, 0)
    assert again == first and again.changed == frozenset()

    write(tmp_path / "m2.yaml", doc("rec-2", channel="elsewhere"))
    edited = cache.load(now=NOW)
    assert (cache.last.read, cache.last.parsed, cache.parsed_files) == (1, 1, 6)
    assert edited.changed == {paths[2]} and cache.last.modified == {paths[2]}
    assert [m.manifest.channel for m in edited.manifests][2] == "elsewhere"
    # the others were not parsed again: they are the objects of the first load
    assert all(
        new is old
        for new, old in zip(edited.manifests, first.manifests, strict=True)
        if new.file != paths[2]
    )
    assert edited == load_manifests([tmp_path], now=NOW)


def test_a_touch_is_read_but_not_parsed(tmp_path: Path, settle: Callable[[], None]) -> None:
    paths = tree(tmp_path, 3)
    cache = ManifestCache([tmp_path])
    cache.load()
    settle()
    cache.load()
    os.utime(paths[0], ns=(1_000_000_000, 1_000_000_000))
    result = cache.load()
    assert cache.last is not None
    assert (cache.last.read, cache.last.parsed, result.changed) == (1, 0, frozenset())


def test_a_file_written_just_now_is_read_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Within RACY_NS of its last change a same-size rewrite could keep the key: read again."""
    monkeypatch.setattr(discovery, "RACY_NS", 3600 * 1_000_000_000)  # however slow this machine
    path = write(tmp_path / "a.yaml", doc("racy"))
    cache = ManifestCache([tmp_path])
    cache.load()
    cache.load()
    assert cache.last is not None and (cache.last.read, cache.last.parsed) == (1, 0)
    # the same size, the same key fields a coarse clock could leave: still seen
    Path(path).write_text(doc("racy").replace("527841", "527842"), encoding="utf-8")
    result = cache.load()
    assert cache.last.parsed == 1 and result.manifests[0].manifest.uid == 527842


def test_a_broken_edit_fails_that_file_only_and_a_fix_brings_it_back(tmp_path: Path) -> None:
    paths = tree(tmp_path, 3)
    cache = ManifestCache([tmp_path])
    first = cache.load(now=NOW)
    write(tmp_path / "m1.yaml", doc("rec-1") + "  bogus: [unclosed\n")
    broken = cache.load(now=NOW)
    assert broken.failed_files == {paths[1]}
    assert names(broken) == ["rec-0", "rec-2"]
    assert broken.manifests[0] is first.manifests[0] and broken.manifests[1] is first.manifests[2]
    assert [d.file for d in broken.errors] == [paths[1]]
    assert cache.last is not None and cache.last.parsed == 1
    assert broken == load_manifests([tmp_path], now=NOW)

    write(tmp_path / "m1.yaml", doc("rec-1"))
    fixed = cache.load(now=NOW)
    assert fixed.ok and names(fixed) == ["rec-0", "rec-1", "rec-2"]


def test_deleted_renamed_and_new_directories(tmp_path: Path) -> None:
    paths = tree(tmp_path, 3)
    cache = ManifestCache([tmp_path])
    cache.load(now=NOW)

    os.remove(paths[0])
    gone = cache.load(now=NOW)
    assert names(gone) == ["rec-1", "rec-2"] and gone.changed == {paths[0]}
    assert cache.last is not None and cache.last.removed == {paths[0]}

    renamed = str(tmp_path / "z-renamed.yaml")
    os.rename(paths[1], renamed)
    moved = cache.load(now=NOW)
    assert moved.ok and names(moved) == ["rec-2", "rec-1"]
    assert moved.manifests[1].file == renamed
    assert moved.changed == {paths[1], renamed}
    assert (cache.last.added, cache.last.removed) == ({renamed}, {paths[1]})

    nested = write(tmp_path / "team" / "deep" / "n.yaml", doc("nested"))
    grown = cache.load(now=NOW)
    assert "nested" in names(grown) and grown.changed == {nested}
    assert grown == load_manifests([tmp_path], now=NOW)


def test_only_changed_directories_are_listed_again(
    tmp_path: Path, settle: Callable[[], None]
) -> None:
    for team in ("a", "b", "c"):
        write(tmp_path / team / "m.yaml", doc(f"rec-{team}"))
    cache = ManifestCache([tmp_path])
    cache.load()
    assert cache.last is not None and cache.last.listed == 4
    settle()
    cache.load()
    cache.load()
    assert cache.last.listed == 0
    added = write(tmp_path / "b" / "n.yaml", doc("rec-n"))
    result = cache.load()  # at once: a change within the same clock tick would not show
    assert cache.last.listed == 1 and result.changed == {added}
    os.remove(added)
    result = cache.load()
    assert result.changed == {added} and len(result.manifests) == 3


def test_a_file_that_cannot_be_read_is_tried_again(tmp_path: Path) -> None:
    link = tmp_path / "later.yaml"
    link.symlink_to(tmp_path / "target.txt")  # dangling: discovered, not readable
    cache = ManifestCache([tmp_path])
    missing = cache.load()
    assert missing.failed_files == {str(link)}
    assert "cannot read the file" in missing.errors[0].message
    write(tmp_path / "target.txt", doc("arrived"))
    arrived = cache.load()
    assert arrived.ok and names(arrived) == ["arrived"] and arrived.changed == {str(link)}


def test_cross_file_findings_follow_edits(tmp_path: Path) -> None:
    tree(tmp_path, 3)
    cache = ManifestCache([tmp_path])
    cache.load(now=NOW)
    twin = write(tmp_path / "twin.yaml", doc("rec-1", channel="other-room", uid="9"))
    clash = write(tmp_path / "clash.yaml", doc("clash", channel="rec-2", schedule=5))
    both = cache.load(now=NOW)
    assert both == load_manifests([tmp_path], now=NOW)
    assert {(Path(d.file).name, d.field) for d in both.errors} == {
        ("m1.yaml", "name"),
        ("twin.yaml", "name"),
        ("m2.yaml", "schedule"),
        ("clash.yaml", "schedule"),
    }
    assert names(both) == ["rec-0"]

    os.remove(twin)
    write(tmp_path / "clash.yaml", doc("clash", channel="rec-2", schedule=3, uid="7"))
    cleared = cache.load(now=NOW)
    assert cleared.ok and len(cleared.manifests) == 4
    assert cleared == load_manifests([tmp_path], now=NOW)
    assert clash in cleared.changed


def test_the_examples_load_as_load_manifests_loads_them() -> None:
    cache = ManifestCache([EXAMPLES])
    for at in (NOW, NOW + timedelta(days=3), NOW + timedelta(days=400)):
        assert cache.load(now=at) == load_manifests([EXAMPLES], now=at)
    assert cache.load() == load_manifests([EXAMPLES])


# --- random edit sequences against a fresh load ---------------------------------------

_edit = st.tuples(
    st.sampled_from(["write", "write", "write", "break", "delete", "rename", "touch"]),
    st.integers(0, 7),  # which file
    st.integers(0, 5),  # manifest name (shared names collide)
    st.integers(0, 2),  # channel (shared channels with one uid clash or not by schedule)
    st.integers(0, len(SCHEDULES) - 1),
    st.integers(0, 30),  # hours `now` moves on
)


def _apply(root: Path, edit: tuple[str, int, int, int, int, int], step: int) -> None:
    kind, index, name, channel, schedule, _ = edit
    path = root / ("sub" if index % 3 == 0 else "") / f"f{index}.yaml"
    if kind == "write":
        extra = "---\n" + doc(f"extra-{index}", channel=f"own-{index}") if index % 4 == 1 else ""
        write(path, doc(f"n{name}", channel=f"c{channel}", schedule=schedule) + extra)
    elif kind == "break":
        write(path, doc(f"n{name}", channel=f"c{channel}") + f"mode: [{step}\n")
    elif kind == "delete" and path.exists():
        path.unlink()
    elif kind == "rename" and path.exists():
        path.rename(root / f"renamed-{step}.yaml")
    elif kind == "touch" and path.exists():
        os.utime(path, ns=(step * 1_000_000_000, step * 1_000_000_000))


@settings(max_examples=30, deadline=None)
@given(edits=st.lists(_edit, min_size=1, max_size=12))
def test_random_edits_give_the_result_of_a_fresh_load(
    edits: list[tuple[str, int, int, int, int, int]],
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        cache = ManifestCache([root])
        now = NOW
        before: set[str] = set()
        for step, edit in enumerate(edits):
            _apply(root, edit, step)
            now += timedelta(hours=edit[5])
            result = cache.load(now=now)
            fresh = load_manifests([root], now=now)
            assert result == fresh
            assert result.changed >= set(result.files) ^ before
            before = set(result.files)
            assert cache.last is not None and cache.last.parsed <= 1


# --- the clash search memo ------------------------------------------------------------


def _manifest(schedule: str, name: str) -> LoadedManifest:
    from ruamel.yaml import YAML

    text = f"name: {name}\napp: main\nchannel: room\nuid: 1\nmode: mix\nschedule:\n{schedule}"
    return LoadedManifest(Manifest.model_validate(YAML(typ="safe").load(text)), name, 1, 1)


CLASH_SCHEDULES = [
    '  cron: "0 9 * * *"\n  timezone: UTC\n  duration: 1h\n',
    '  cron: "30 9 * * MON"\n  timezone: UTC\n  duration: 1h\n',
    '  cron: "0 12 2 * *"\n  timezone: UTC\n  duration: 2h\n',
    '  cron: "*/20 * * * *"\n  timezone: UTC\n  duration: 10m\n',
    '  cron: "10-59/20 * * * *"\n  timezone: UTC\n  duration: 10m\n',
    "  windows:\n    - start: 2026-03-20T10:00:00Z\n      end: 2026-03-20T12:00:00Z\n",
    "  windows:\n    - start: 2026-04-25T00:00:00Z\n      end: 2026-05-03T00:00:00Z\n",
    "  always: true\n",
]


@settings(max_examples=40, deadline=None)
@given(
    a=st.integers(0, len(CLASH_SCHEDULES) - 1),
    b=st.integers(0, len(CLASH_SCHEDULES) - 1),
    moves=st.lists(st.integers(-48, 24 * 20), min_size=1, max_size=8),
)
def test_the_memo_answers_as_a_fresh_search(a: int, b: int, moves: list[int]) -> None:
    """Searches kept between calls, `now` moving on (and sometimes back): the same findings."""
    pair = [_manifest(CLASH_SCHEDULES[a], "a"), _manifest(CLASH_SCHEDULES[b], "b")]
    memo = OverlapMemo()
    horizon = timedelta(days=45)  # two chunks of the search
    now = NOW
    for hours in moves:
        now += timedelta(hours=hours)
        kept = cross_check(pair, now=now, horizon=horizon, memo=memo)
        assert kept == cross_check(pair, now=now, horizon=horizon)
        fresh = first_overlap(
            pair[0].manifest.build_schedule(), pair[1].manifest.build_schedule(), now, horizon
        )
        assert bool(kept) == (fresh is not None)


def test_a_clash_found_ahead_is_reported_when_the_horizon_reaches_it() -> None:
    late = "  windows:\n    - start: 2026-04-21T00:00:00Z\n      end: 2026-04-22T00:00:00Z\n"
    pair = [_manifest(late, "late"), _manifest("  always: true\n", "lobby")]
    memo = OverlapMemo()
    horizon = timedelta(days=45)  # the clash is 49.7 days after NOW
    found = []
    for hours in (0, 1, 2, 24 * 6, 24 * 6 + 1):
        at = NOW + timedelta(hours=hours)
        kept = cross_check(pair, now=at, horizon=horizon, memo=memo)
        assert kept == cross_check(pair, now=at, horizon=horizon)
        found.append(len(kept))
    assert found == [0, 0, 0, 2, 2]


# --- discovery ------------------------------------------------------------------------


def _reference_discover(root: str) -> tuple[list[str], list[tuple[str, str]]]:
    """`discover`'s rules for one directory, written plainly on `os.walk`: symlinks
    followed; a directory above itself (a symlink loop) warned about and not entered;
    one reached a second time not walked again; a non-manifest symlink leading
    nowhere reported; each file once, at its first path."""
    files: list[str] = []
    problems: list[tuple[str, str]] = []
    seen: set[str] = set()
    walked: set[tuple[int, int]] = set()

    def ident(path: str) -> tuple[int, int]:
        st = os.stat(path)
        return st.st_dev, st.st_ino

    for directory, dirs, entries in os.walk(root, followlinks=True):
        here = ident(directory)
        parents = {ident(str(p)) for p in Path(directory).parents if str(p).startswith(root)}
        if here in parents:
            problems.append((directory, "warning"))
            dirs[:] = []
            continue
        if here in walked:
            dirs[:] = []
            continue
        walked.add(here)
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(entries):
            path = os.path.join(directory, name)
            if name.startswith("."):
                continue
            if name.endswith(YAML_SUFFIXES):
                if os.path.realpath(path) not in seen:
                    seen.add(os.path.realpath(path))
                    files.append(path)
            elif os.path.islink(path) and not os.path.exists(path):
                problems.append((path, "error"))
    return files, problems


def test_discover_matches_os_walk(tmp_path: Path) -> None:
    root = tmp_path / "root"
    for name in ("b.yaml", "a.yml", "z.txt", ".hidden.yaml", "sub/c.yaml", "sub/deeper/d.yaml"):
        write(root / name, doc("x"))
    write(root / ".git" / "e.yaml", doc("x"))
    write(tmp_path / "outside" / "o.yaml", doc("x"))
    (root / "linked-dir").symlink_to(tmp_path / "outside")  # followed
    (root / "sub" / "again").symlink_to(tmp_path / "outside")  # reached before: not walked again
    (root / "sub" / "deeper" / "up").symlink_to(root / "sub")  # a loop: a warning
    (root / "alias.yaml").symlink_to(root / "sub" / "c.yaml")  # read once, at its first path
    (root / "dangling.yaml").symlink_to(root / "nowhere")  # the loader reports it
    (root / "team").symlink_to(root / "unmounted")  # a directory that is not there: an error
    (root / "dir.yaml").mkdir()  # a directory named like a manifest
    write(root / "dir.yaml" / "f.yaml", doc("x"))
    files, problems = discover([str(root)])
    expected_files, expected_problems = _reference_discover(str(root))
    assert files == expected_files
    assert [(p.file, p.severity) for p in problems] == expected_problems
    assert [os.path.relpath(f, root) for f in files] == [
        "a.yml",
        "alias.yaml",
        "b.yaml",
        "dangling.yaml",
        "dir.yaml/f.yaml",
        "linked-dir/o.yaml",
        "sub/deeper/d.yaml",
    ]
    assert [(os.path.relpath(p.file, root), p.message) for p in problems] == [
        ("team", "cannot read the symlink's target: No such file or directory"),
        (
            "sub/deeper/up",
            f"symlink loop: this is {root / 'sub'}, which contains it; not entered again",
        ),
    ]
    both, _ = discover([str(root / "sub"), str(root), str(root) + "/"])
    assert [os.path.relpath(f, root) for f in both[:3]] == [
        "sub/c.yaml",
        "sub/again/o.yaml",  # first reached from sub: read at that path only
        "sub/deeper/d.yaml",
    ]
    assert len(both) == len(files)


# --- the garbage collector ------------------------------------------------------------


def test_without_hooks_the_collector_is_left_alone(tmp_path: Path) -> None:
    """`validate` and `plan` load once and exit: nothing is paused, collected or frozen."""
    tree(tmp_path, 2)
    gc.unfreeze()
    assert gc.isenabled()
    ManifestCache([tmp_path]).load()
    assert gc.isenabled() and gc.get_freeze_count() == 0
    gc.disable()
    try:
        load_manifests([tmp_path])
        assert not gc.isenabled() and gc.get_freeze_count() == 0
    finally:
        gc.enable()


def test_the_daemon_policy_leaves_the_collector_as_it_was(tmp_path: Path) -> None:
    """Before the daemon's start-up settles, a load freezes what it made without a
    collection (start-up ends with one full collection); after it, a load's settle
    collects and freezes. Either way the collector is enabled again."""
    tree(tmp_path, 2)
    policy = GcPolicy()
    gc.unfreeze()
    assert gc.isenabled()
    garbage = _Cyclic()
    watch = weakref.ref(garbage)
    ManifestCache([tmp_path], hooks=policy).load()  # freezes `garbage` with the rest
    assert gc.isenabled() and gc.get_freeze_count() > 0
    del garbage
    gc.collect()
    assert watch() is not None  # frozen, out of reach: start-up's settle collects it
    policy.settle(bulk=True)  # the daemon's start-up is done
    assert watch() is None
    gc.unfreeze()
    ManifestCache([tmp_path], hooks=policy).load()
    assert gc.isenabled() and gc.get_freeze_count() > 0
    gc.disable()
    try:
        ManifestCache([tmp_path], hooks=policy).load()
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_hooks_run_around_a_load_and_after_each_parse(tmp_path: Path) -> None:
    """The hooks are called around the load, after each parse and after the load
    (before its pause ends)."""
    tree(tmp_path, 3)
    calls: list[tuple[str, object]] = []

    class Recorder:
        @contextlib.contextmanager
        def loading(self) -> Iterator[None]:
            with GC_POLICY.loading():
                calls.append(("loading", gc.isenabled()))
                yield
            calls.append(("left", gc.isenabled()))

        def parsed(self, count: int) -> None:
            calls.append(("parsed", count))

        def loaded(self, stats: LoadStats) -> None:
            calls.append(("loaded", stats.parsed))

    ManifestCache([tmp_path], hooks=Recorder()).load()
    assert calls == [
        ("loading", False),
        ("parsed", 1),
        ("parsed", 2),
        ("parsed", 3),
        ("loaded", 3),
        ("left", True),
    ]


class _Cyclic:
    def __init__(self) -> None:
        self.me = self


def test_frozen_garbage_is_collected_after_a_bulk_reload(tmp_path: Path) -> None:
    paths = tree(tmp_path, 4)
    policy = GcPolicy()
    policy.settle(bulk=True)  # the daemon's start-up is done
    cache = ManifestCache([tmp_path], hooks=policy)
    alive = _Cyclic()
    watch = weakref.ref(alive)
    cache.load()  # freezes `alive` with everything else
    del alive
    gc.collect()
    assert watch() is not None  # frozen: out of the collector's reach (the hazard)
    for i, path in enumerate(paths):
        write(Path(path), doc(f"renamed-{i}"))
    cache.load()  # most files parsed again: unfreeze, collect everything, freeze
    assert watch() is None


def test_a_load_inside_an_outer_pause_settles_when_the_pause_ends(tmp_path: Path) -> None:
    """The daemon pauses the collector for a whole reload (load, then the desired
    recordings' build): the load's settle waits for the end, and freezes both."""
    tree(tmp_path, 3)
    policy = GcPolicy()
    policy.settle(bulk=True)  # the daemon's start-up is done
    gc.unfreeze()
    with policy.loading():
        ManifestCache([tmp_path], hooks=policy).load()
        assert not gc.isenabled() and gc.get_freeze_count() == 0  # not yet
        built = [[i] for i in range(100)]  # what the build makes after the load
    assert gc.isenabled() and gc.get_freeze_count() > len(built)


def test_start_up_is_frozen_as_it_is_and_its_garbage_goes_at_the_first_full_collection(
    tmp_path: Path,
) -> None:
    tree(tmp_path, 3)
    policy = GcPolicy()
    gc.unfreeze()
    garbage = _Cyclic()
    watch = weakref.ref(garbage)
    ManifestCache([tmp_path], hooks=policy).load()  # start-up's load
    del garbage
    policy.started()  # no full collection: it costs most of a restart
    gc.collect()
    assert watch() is not None and gc.get_freeze_count() > 0
    for path in tmp_path.iterdir():  # a bulk reload: the first full collection
        path.write_text(path.read_text(encoding="utf-8") + "suspend: true\n", encoding="utf-8")
    ManifestCache([tmp_path], hooks=policy).load()
    assert watch() is None


def test_a_full_collection_is_due_for_real_growth_only() -> None:
    """What a settle freezes and then dies by reference counting (each pass's overview)
    never makes the full collection due, however often; what stays frozen does."""
    gc.unfreeze()
    policy = GcPolicy()
    garbage = _Cyclic()
    watch = weakref.ref(garbage)
    policy.settle(bulk=True)  # the daemon's start-up: `garbage` frozen with the rest
    del garbage
    frozen = gc.get_freeze_count()
    for _ in range(6):  # an overview a pass, replaced by the next one's
        transient = [[i] for i in range(frozen // 2)]  # lists: tracked by the collector
        policy.settle(bulk=False)
        del transient
    assert watch() is not None  # still frozen: no full collection was made
    kept = []
    for _ in range(3):  # manifests added for good
        kept.append([[i] for i in range(frozen // 2)])
        policy.settle(bulk=False)
    assert watch() is None  # the growth made one due: frozen garbage collected


def test_a_hinted_reload_looks_only_at_the_reported_files(tmp_path: Path) -> None:
    """The daemon passes what the watch reported: only those files are looked at, and
    the answer is still that of a full load. A new file falls back to a full load."""
    paths = [write(tmp_path / f"m{i}.yaml", doc(f"m{i}")) for i in range(20)]
    cache = ManifestCache([tmp_path])
    cache.load(now=NOW)
    write(tmp_path / "m3.yaml", doc("m3", channel="elsewhere"))
    os.unlink(paths[7])
    hinted = cache.load(now=NOW, hint={paths[3], paths[7]})
    assert cache.last is not None and cache.last.read == 1 and cache.last.listed == 0
    assert hinted.changed == {paths[3], paths[7]}
    assert hinted == load_manifests([tmp_path], now=NOW)
    # An unreported change is not seen by a hinted load (the watch reports every write)...
    write(tmp_path / "m5.yaml", doc("m5", channel="quiet"))
    assert cache.load(now=NOW, hint={paths[3]}).changed == frozenset()
    # ... and a new file (its place in the order is unknown) means a full load.
    new = write(tmp_path / "m99.yaml", doc("m99"))
    full = cache.load(now=NOW, hint={new})
    assert full.changed == {new, paths[5]}
    assert full == load_manifests([tmp_path], now=NOW)


def test_ended_windows_follow_now_without_a_parse(tmp_path: Path) -> None:
    """Whether every window has ended depends on `now`: a reload tells, parsing nothing."""
    path = write(tmp_path / "w.yaml", doc("once", schedule=3))  # 2026-03-20, 10:00-12:00Z
    cache = ManifestCache([tmp_path])
    assert cache.load(now=NOW).diagnostics == []
    later = datetime(2026, 3, 20, 12, 0, tzinfo=UTC)
    result = cache.load(now=later)
    assert cache.last is not None and cache.last.parsed == 0
    assert [(d.file, d.field, d.severity) for d in result.diagnostics] == [
        (path, "schedule.windows", "warning")
    ]
    assert result == load_manifests([tmp_path], now=later)
