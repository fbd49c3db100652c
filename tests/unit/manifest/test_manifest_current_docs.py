"""What Agora's current documentation adds to the reference, read from real files.

Covers: `recordingFiles.fileTypes: [hls, mp4]` valid in mix mode (in any order);
mp4 without hls and mp4 in individual mode refused with file, line, column, field
and what to write instead, the individual-mode error also reported when another
field of the document is wrong; the vendors without regions (a region is refused,
none is needed) and a vendor with regions still needing one (at its `storage` key).
The rules themselves are tabled in test_manifest_model; see docs/contracts.md.
"""

from __future__ import annotations

from pathlib import Path

from manifest_docs import GOOD_TEXT

from orchestrator.manifest.loader import load_file

GOOD = GOOD_TEXT.format(name="standup", channel="room-1")
INDIVIDUAL = GOOD.replace("mode: mix", "mode: individual") + "recording: {subscribeUidGroup: 0}\n"
STORAGE = (
    "storage:\n  vendor: {vendor}\n{region}  bucket: b\n"
    "  accessKey: {{env: A}}\n  secretKey: {{env: B}}\n"
)


def load(tmp_path: Path, text: str) -> list[tuple[str, int, int, str, str]]:
    path = tmp_path / "a.yaml"
    path.write_text(text, encoding="utf-8")
    loaded, diagnostics = load_file(str(path))
    assert all(d.file == str(path) and d.severity == "error" for d in diagnostics)
    if not diagnostics:
        assert len(loaded) == 1
    return [(d.file, d.line, d.column, d.field, d.message) for d in diagnostics]


def test_mix_mode_takes_mp4_beside_hls(tmp_path: Path) -> None:
    text = (
        GOOD
        + "recordingFiles:\n  fileTypes: [mp4, hls]\n"
        + STORAGE.format(vendor="huawei-obs", region="  region: cn-east-3\n")
    )
    assert load(tmp_path, text) == []
    loaded, _ = load_file(str(tmp_path / "a.yaml"))
    manifest = loaded[0].manifest
    assert manifest.recording_files is not None
    assert manifest.recording_files.file_types == ("hls", "mp4")
    assert manifest.storage is not None and manifest.storage.region == "CN_East_3"


def test_mp4_alone_is_a_positioned_error(tmp_path: Path) -> None:
    found = load(tmp_path, GOOD + "recordingFiles:\n  fileTypes: [mp4]\n")
    path = str(tmp_path / "a.yaml")
    assert found == [
        (
            path,
            11,
            3,
            "recordingFiles.fileTypes",
            "mp4 needs hls beside it (Agora refuses it alone): write fileTypes: [hls, mp4]",
        )
    ]


def test_mp4_in_individual_mode_is_a_positioned_error(tmp_path: Path) -> None:
    text = INDIVIDUAL + "recordingFiles:\n  fileTypes: [hls, mp4]\n"
    found = load(tmp_path, text)
    assert [(line, column, field) for _, line, column, field, _ in found] == [
        (12, 3, "recordingFiles.fileTypes")
    ]
    assert found[0][4] == (
        "mp4 is only allowed in mix mode (mode is individual): write fileTypes: [hls]"
    )


def test_mp4_in_individual_mode_is_reported_beside_another_error(tmp_path: Path) -> None:
    text = (
        INDIVIDUAL.replace("uid: 527841", "uid: 0") + "recordingFiles:\n  fileTypes: [hls, mp4]\n"
    )
    found = load(tmp_path, text)
    assert [(line, field) for _, line, _, field, _ in found] == [
        (4, "uid"),
        (12, "recordingFiles.fileTypes"),
    ]


def test_a_vendor_without_regions_refuses_one(tmp_path: Path) -> None:
    text = GOOD + STORAGE.format(vendor="azure-blob", region="  region: 0\n")
    found = load(tmp_path, text)
    assert [(line, column, field) for _, line, column, field, _ in found] == [
        (12, 11, "storage.region")
    ]
    assert "azure-blob has no regions (Agora ignores region for it): remove region" in found[0][4]
    assert load(tmp_path, GOOD + STORAGE.format(vendor="google-gcs", region="")) == []


def test_a_vendor_with_regions_needs_one_at_its_storage_key(tmp_path: Path) -> None:
    found = load(tmp_path, GOOD + STORAGE.format(vendor="baidu-bos", region=""))
    assert [(line, column, field) for _, line, column, field, _ in found] == [
        (10, 1, "storage.region")
    ]
    assert found[0][4].startswith("required for baidu-bos: use one of Baoding (1), Suzhou (2)")
