"""The manifest snapshot on real files: what one load saved, the next process takes back.

Covers: a cache seeded with a snapshot answers exactly as a fresh load of the same
files (the example directory, and a tree with a broken file and warnings), parses
nothing unchanged and keeps the spec hashes and schedules computed before; a file whose bytes
changed (even with its size and time stamps kept) is parsed in full; a file with a
literal secret is never written; a snapshot of another key, a damaged or truncated
one, one others may write and one that is not a regular file are not used.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from orchestrator.manifest.loader import LoadResult, ManifestCache, load_manifests
from orchestrator.manifest.snapshot import Snapshot, SnapshotError, program_key
from tests.unit.manifest.test_manifest_cache import EXAMPLES, NOW, doc, write

KEY = b"config-1"


def saved_then_restored(paths: list[Path], tmp_path: Path) -> tuple[ManifestCache, LoadResult]:
    """Load `paths`, compute every spec hash (as the daemon does), write the snapshot,
    read it back in a fresh cache and load again."""
    first = ManifestCache(paths)
    for m in first.load(now=NOW).manifests:
        assert m.spec_hash and m.schedule
    Snapshot(tmp_path / "snap", KEY).write(first.saved())
    again = ManifestCache(paths, saved=Snapshot(tmp_path / "snap", KEY).read())
    return again, again.load(now=NOW)


def test_a_restored_load_answers_as_a_fresh_one(tmp_path: Path) -> None:
    cache, restored = saved_then_restored([EXAMPLES], tmp_path)
    assert cache.last is not None and cache.last.parsed == 0
    assert cache.last.restored == len(restored.files) > 0
    fresh = load_manifests([EXAMPLES], now=NOW)
    assert restored == fresh
    assert restored.diagnostics == fresh.diagnostics
    # the spec hashes and schedules came with them: not computed again
    assert all({"spec_hash", "schedule"} <= vars(m).keys() for m in restored.manifests)
    assert [m.spec_hash for m in restored.manifests] == [m.spec_hash for m in fresh.manifests]


def test_broken_files_and_warnings_come_back_placed(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    write(tree / "ok.yaml", doc("ok"))
    write(tree / "broken.yaml", doc("broken") + "mode: [unclosed\n")
    write(tree / "typo.yaml", doc("typo").replace("mode: mix", "mode: mixx"))
    cache, restored = saved_then_restored([tree], tmp_path)
    assert cache.last is not None and (cache.last.parsed, cache.last.restored) == (0, 3)
    fresh = load_manifests([tree], now=NOW)
    assert restored == fresh and restored.errors and restored.failed_files == fresh.failed_files


def test_changed_bytes_are_parsed_whatever_the_stat_says(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    path = Path(write(tree / "a.yaml", doc("alpha", channel="room-1")))
    write(tree / "b.yaml", doc("beta"))
    first = ManifestCache([tree])
    first.load(now=NOW)
    Snapshot(tmp_path / "snap", KEY).write(first.saved())
    st = path.stat()
    path.write_text(doc("alpha", channel="room-2"), encoding="utf-8")  # same size
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    again = ManifestCache([tree], saved=Snapshot(tmp_path / "snap", KEY).read())
    result = again.load(now=NOW)
    assert again.last is not None and (again.last.parsed, again.last.restored) == (1, 1)
    assert {m.manifest.channel for m in result.manifests} == {"room-2", "beta"}


def test_a_literal_secret_is_never_written(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    secret = "literal-unit-secret-value"
    storage = (
        "storage:\n  vendor: aws-s3\n  region: us-east-1\n  bucket: b\n"
        f"  accessKey: {secret}\n  secretKey: {{env: S3_SECRET}}\n"
    )
    write(tree / "literal.yaml", doc("literal") + storage)
    write(tree / "plain.yaml", doc("plain"))
    cache = ManifestCache([tree])
    assert len(cache.load(now=NOW).manifests) == 2
    saved = cache.saved()
    assert list(saved) == [str(tree / "plain.yaml")]
    Snapshot(tmp_path / "snap", KEY).write(saved)
    assert secret.encode() not in (tmp_path / "snap").read_bytes()


def test_another_key_is_not_used(tmp_path: Path) -> None:
    cache = ManifestCache([EXAMPLES])
    cache.load(now=NOW)
    Snapshot(tmp_path / "snap", KEY).write(cache.saved())
    assert Snapshot(tmp_path / "snap", b"config-2").read() == {}
    assert Snapshot(tmp_path / "absent", KEY).read() == {}
    assert len(program_key()) == 32 and program_key() == program_key()


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_a_damaged_snapshot_is_refused(tmp_path: Path, damage: str) -> None:
    cache = ManifestCache([EXAMPLES])
    cache.load(now=NOW)
    path = tmp_path / "snap"
    Snapshot(path, KEY).write(cache.saved())
    data = bytearray(path.read_bytes())
    if damage == "flip":
        data[len(data) // 2] ^= 0x01
    else:
        del data[len(data) // 2 :]
    path.write_bytes(bytes(data))
    with pytest.raises(SnapshotError, match="damaged"):
        Snapshot(path, KEY).read()


def test_a_snapshot_others_may_write_or_not_a_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "snap"
    Snapshot(path, KEY).write({})
    assert Snapshot(path, KEY).read() == {}
    path.chmod(0o664)
    with pytest.raises(SnapshotError, match="others may write it"):
        Snapshot(path, KEY).read()
    (tmp_path / "dir").mkdir()
    with pytest.raises(SnapshotError):
        Snapshot(tmp_path / "dir", KEY).read()


def test_a_write_that_fails_says_where(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x", encoding="utf-8")
    with pytest.raises(SnapshotError, match=str(blocker)):
        Snapshot(blocker / "snap", KEY).write({})
