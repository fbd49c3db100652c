"""Equal parts of loaded manifests held once, and nothing they mean changed.

Covers: in a cache made to share them (the daemon's), equal sections, secret
references, sets of given fields and key positions of different files are one object
after a load (and after a reload, and for a file taken from a snapshot), and nothing
is shared by a cache that is not (a command's one load); values equal but written
otherwise (another offset of the same instant, the other zero, a default given or
left out) are not shared, and each manifest dumps to the very document (and spec
hash) it has when parsed alone; a copy of a shared section changes no other
manifest; a shared part no manifest holds any more is freed (the table holds it
weakly).
"""

from __future__ import annotations

import gc
import pickle
import weakref
from pathlib import Path

from orchestrator.manifest.cache import ManifestCache
from orchestrator.manifest.loaded import LoadedManifest
from orchestrator.manifest.parsing import parse_file
from orchestrator.manifest.snapshot import Saved
from tests.unit.manifest.test_manifest_cache import EXAMPLES, NOW, write

STORAGE = (
    "storage:\n  vendor: aws-s3\n  region: US_EAST_1\n  bucket: {bucket}\n"
    "  accessKey: {{env: S3_KEY}}\n  secretKey: {{env: S3_SECRET}}\n"
)


def text(name: str, *, bucket: str = "shared-bucket", extra: str = "") -> str:
    return (
        f"name: {name}\napp: main\nchannel: {name}\nuid: 1001\nmode: mix\n"
        f'schedule:\n  cron: "0 9 * * *"\n  timezone: UTC\n  duration: 1h\n'
        f"recording:\n  streams: audio\n{extra}{STORAGE.format(bucket=bucket)}"
    )


def by_name(manifests: list[LoadedManifest]) -> dict[str, LoadedManifest]:
    return {m.manifest.name: m for m in manifests}


def alone(m: LoadedManifest) -> LoadedManifest:
    """The same document parsed on its own, with nothing shared."""
    raw = Path(m.file).read_bytes()
    return parse_file(m.file, raw, strict=False)[0][m.document]


def test_equal_parts_of_two_files_are_one_object(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", text("a"))
    write(tmp_path / "b.yaml", text("b"))
    got = by_name(ManifestCache([tmp_path], share_parts=True).load(now=NOW).manifests)
    a, b = got["a"].manifest, got["b"].manifest
    assert a.storage is not None and b.storage is not None
    assert a.storage is b.storage
    assert a.storage.access_key is b.storage.access_key
    assert a.recording is b.recording
    assert a.schedule is b.schedule
    assert a is not b and a.model_fields_set is b.model_fields_set
    assert got["a"].key_positions is got["b"].key_positions
    assert got["a"].key_positions == alone(got["a"]).key_positions


def test_a_cache_that_does_not_keep_its_manifests_shares_nothing(tmp_path: Path) -> None:
    """A command that loads once (`validate`, `plan`) leaves them as parsed."""
    write(tmp_path / "a.yaml", text("a"))
    write(tmp_path / "b.yaml", text("b"))
    got = by_name(ManifestCache([tmp_path]).load(now=NOW).manifests)
    a, b = got["a"].manifest, got["b"].manifest
    assert a.storage == b.storage and a.storage is not b.storage
    assert a.model_fields_set is not b.model_fields_set


def test_what_differs_or_is_written_otherwise_is_not_shared(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", text("a"))
    write(tmp_path / "b.yaml", text("b", bucket="other"))
    # the default maxIdleTime, given: equal values, another set of given fields
    write(
        tmp_path / "c.yaml",
        text("c").replace("  streams: audio\n", "  streams: audio\n  maxIdleTime: 30\n"),
    )
    window = "  windows:\n    - start: {start}\n      end: 2026-05-03T00:00:00Z\n"
    for name, start in (("d", "2026-05-01T00:00:00Z"), ("e", "2026-05-01T02:00:00+02:00")):
        body = text(name).replace(
            '  cron: "0 9 * * *"\n  timezone: UTC\n  duration: 1h\n', window.format(start=start)
        )
        write(tmp_path / f"{name}.yaml", body)
    region = (
        "layout:\n  type: custom\n  regions:\n    - {{x: {x}, y: 0, width: 0.5, height: 0.5}}\n"
    )
    write(tmp_path / "f.yaml", text("f", extra=region.format(x="0.0")))
    write(tmp_path / "g.yaml", text("g", extra=region.format(x="-0.0")))
    loaded = ManifestCache([tmp_path], share_parts=True).load(now=NOW)
    assert not [d for d in loaded.diagnostics if d.severity == "error"], loaded.diagnostics
    got = by_name(loaded.manifests)
    a, b, c = got["a"].manifest, got["b"].manifest, got["c"].manifest
    assert a.storage is not b.storage and a.storage.access_key is b.storage.access_key  # type: ignore[union-attr]
    assert a.recording == c.recording and a.recording is not c.recording
    d, e = got["d"].manifest.schedule.windows, got["e"].manifest.schedule.windows
    assert d is not None and e is not None and d == e and d[0] is not e[0]
    f, g = got["f"].manifest.layout, got["g"].manifest.layout
    assert f is not None and g is not None and f.regions is not g.regions
    for m in got.values():  # each dumps to what it is alone: the same document, hash
        assert m.manifest.document() == alone(m).manifest.document()
        assert m.spec_hash == alone(m).spec_hash
        assert m.manifest.model_fields_set == alone(m).manifest.model_fields_set


def test_a_copy_of_a_shared_section_changes_no_other(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", text("a"))
    write(tmp_path / "b.yaml", text("b"))
    got = by_name(ManifestCache([tmp_path], share_parts=True).load(now=NOW).manifests)
    storage = got["a"].manifest.storage
    assert storage is not None and storage is got["b"].manifest.storage
    copy = storage.model_copy(update={"bucket": "elsewhere"})
    assert copy.bucket == "elsewhere" and "bucket" in copy.model_fields_set
    assert storage.bucket == "shared-bucket"
    assert got["b"].manifest.storage == alone(got["b"]).manifest.storage


def test_a_reload_and_a_snapshot_share_with_what_is_held(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", text("a"))
    path_b = write(tmp_path / "b.yaml", text("b"))
    cache = ManifestCache([tmp_path], share_parts=True)
    first = by_name(cache.load(now=NOW).manifests)
    write(tmp_path / "b.yaml", text("b").replace("uid: 1001", "uid: 1002"))
    again = by_name(cache.load(now=NOW, hint=[path_b]).manifests)
    assert again["a"] is first["a"] and again["b"] is not first["b"]
    assert again["b"].manifest.storage is first["a"].manifest.storage
    # a restart: the snapshot's pickled copies are shared as they are taken
    saved: dict[str, Saved] = pickle.loads(pickle.dumps(cache.saved()))  # noqa: S301 (its own)
    restarted = ManifestCache([tmp_path], saved=saved, share_parts=True)
    taken = by_name(restarted.load(now=NOW).manifests)
    assert restarted.last.restored == 2
    assert taken["a"].manifest.storage is taken["b"].manifest.storage
    assert taken["a"].manifest.storage is first["a"].manifest.storage  # still alive


def test_a_part_no_manifest_holds_is_freed(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", text("a", bucket="freed-bucket"))
    write(tmp_path / "b.yaml", text("b", bucket="freed-bucket"))
    cache = ManifestCache([tmp_path], share_parts=True)
    got = by_name(cache.load(now=NOW).manifests)
    storage = got["a"].manifest.storage
    assert storage is not None and storage is got["b"].manifest.storage
    held = weakref.ref(storage)
    del cache, got, storage
    gc.collect()
    assert held() is None


def test_the_examples_dump_as_parsed_alone() -> None:
    for m in ManifestCache([EXAMPLES], share_parts=True).load(now=NOW).manifests:
        fresh = alone(m)
        assert m.manifest == fresh.manifest
        assert m.manifest.document() == fresh.manifest.document()
        assert m.spec_hash == fresh.spec_hash
