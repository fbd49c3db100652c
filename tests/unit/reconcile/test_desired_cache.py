"""DesiredCache: a reload that changed a few files rebuilds only those, and answers as
a full rebuild does.

Covers: an edited, an added and a removed manifest file (the unchanged recordings are
the very same objects; the delta names what changed); a file that starts failing
falls back to the full rebuild and keeps the last known good version.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from orchestrator.manifest.loader import ManifestCache
from orchestrator.reconcile.reconciler import DesiredCache, desired_recordings
from orchestrator.state import KnownGood

NOW = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
APPS = {"main": "a" * 32}


def doc(name: str, channel: str) -> str:
    return f"name: {name}\napp: main\nchannel: {channel}\nuid: 7\nmode: mix\nschedule: always\n"


def by_name(recordings: object) -> dict[str, tuple[str, str, str]]:
    return {d.name: (d.spec_hash, d.source_file, d.channel) for d in recordings}  # type: ignore[attr-defined]


def test_a_few_changed_files_rebuild_only_themselves(tmp_path: Path) -> None:
    paths = {}
    for i in range(30):
        paths[i] = tmp_path / f"m{i}.yaml"
        paths[i].write_text(doc(f"m{i}", f"c{i}"), encoding="utf-8")
    cache, desired = ManifestCache([tmp_path]), DesiredCache()
    first, delta = desired.build(cache.load(now=NOW), APPS, {})
    assert delta.rebuilt is None and len(delta.added) == 30
    known = {k.name: k.known_good() for k in first.remember}
    objects = {d.name: d for d in first.recordings}

    paths[3].write_text(doc("m3", "elsewhere"), encoding="utf-8")
    paths[5].unlink()
    (tmp_path / "new.yaml").write_text(doc("new", "c-new"), encoding="utf-8")
    # What the watch reports; the new file makes the loader discover the tree again.
    loaded = cache.load(now=NOW, hint={str(paths[3]), str(paths[5]), str(tmp_path / "new.yaml")})
    second, delta = desired.build(loaded, APPS, known)
    assert delta.rebuilt is not None and {d.name for d in delta.rebuilt} == {"m3", "new"}
    assert delta.changed == ("m3",) and delta.added == ("new",) and delta.removed == ("m5",)
    assert second.forget == ("m5",) and {k.name for k in second.remember} == {"m3", "new"}
    full = desired_recordings(loaded.manifests, APPS, loaded.failed_files, known)
    assert by_name(second.recordings) == by_name(full.recordings)
    kept = {d.name: d for d in second.recordings}
    assert all(kept[n] is objects[n] for n in kept if n not in ("m3", "new"))


def test_a_file_that_starts_failing_rebuilds_everything_with_its_last_good_version(
    tmp_path: Path,
) -> None:
    path = tmp_path / "a.yaml"
    path.write_text(doc("alpha", "room"), encoding="utf-8")
    (tmp_path / "b.yaml").write_text(doc("beta", "room-b"), encoding="utf-8")
    cache, desired = ManifestCache([tmp_path]), DesiredCache()
    first, _ = desired.build(cache.load(now=NOW), APPS, {})
    known: dict[str, KnownGood] = {k.name: k.known_good() for k in first.remember}
    path.write_text("name: alpha\nmode: [mix\n", encoding="utf-8")
    second, delta = desired.build(cache.load(now=NOW, hint={str(path)}), APPS, known)
    assert delta.rebuilt is None  # the failing set changed: a full rebuild
    assert str(path) in second.invalid_files
    assert {d.name for d in second.recordings} == {"alpha", "beta"}  # alpha: last known good


def test_typed_requests_are_kept_from_a_recordings_first_action_on(tmp_path: Path) -> None:
    """Loading keeps only the fingerprints; the first use of `requests` builds the typed
    requests once (the same as translating the manifest), and they stay with it."""
    from orchestrator.reconcile.translate import translate

    (tmp_path / "a.yaml").write_text(doc("alpha", "room"), encoding="utf-8")
    desired, _ = DesiredCache().build(ManifestCache([tmp_path]).load(now=NOW), APPS, {})
    (d,) = desired.recordings
    assert "requests" not in vars(d)  # nothing but fingerprints held for an idle manifest
    requests = d.requests
    assert requests is d.requests  # built once, then kept
    assert requests.fingerprints == d.fingerprints == translate(d.manifest).fingerprints
    assert requests.start.described() == translate(d.manifest).start.described()
    assert requests.acquire.to_wire() == {"cname": "room", "uid": "7", "clientRequest": {}}
