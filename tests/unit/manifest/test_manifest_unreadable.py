"""What cannot be read is never "removed": discovery and loading on real files.

Covers: a subdirectory that cannot be listed, a manifests directory at mode 000,
a missing given path and an unreadable file are each an error at that path
(line 1, column 1, saying why) and listed in `LoadResult.unreadable` and
`failed_files`, never an empty tree; a `ManifestCache` reports the change when a
directory becomes unreadable and loads it again when it is readable, answering as
`load_manifests`; symlinked directories are followed, a symlink loop is a warning
(an error under strict) and ends; a symlink leading nowhere is an error; a FIFO,
a socket or a device named `*.yaml` is a warning and is never opened (a FIFO read
would block forever), also when it replaces a manifest between two loads. A name
that is not UTF-8 is an error under a printable name, and is not read or entered.

Modes are enforced for the loading thread even when the tests run as root
(`unprivileged.as_unprivileged`).
"""

from __future__ import annotations

import os
import socket
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from manifest_docs import GOOD_TEXT
from unprivileged import as_unprivileged

from orchestrator.manifest.loader import (
    LoadResult,
    ManifestCache,
    discover,
    load_file,
    load_manifests,
)
from orchestrator.manifest.reading import MAX_FILE_BYTES, ReadFailure


def write(path: Path, name: str) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(GOOD_TEXT.format(name=name, channel=name), encoding="utf-8")
    return str(path)


@pytest.fixture
def locked() -> Iterator[list[Path]]:
    """Paths given mode 000 by a test; their modes are restored afterwards."""
    paths: list[Path] = []
    yield paths
    for path in paths:
        path.chmod(0o755)


def lock(locked: list[Path], path: Path) -> None:
    path.chmod(0)
    locked.append(path)


def load(paths: list[Path], **kwargs: object) -> LoadResult:
    return as_unprivileged(lambda: load_manifests(paths, **kwargs))  # type: ignore[arg-type]


def names(result: LoadResult) -> list[str]:
    return [m.manifest.name for m in result.manifests]


def test_an_unreadable_subdirectory_is_an_error_not_an_empty_one(
    tmp_path: Path, locked: list[Path]
) -> None:
    write(tmp_path / "a.yaml", "a")
    write(tmp_path / "team" / "b.yaml", "b")
    lock(locked, tmp_path / "team")
    result = load([tmp_path])
    team = str(tmp_path / "team")
    assert [(d.file, d.line, d.column, d.message, d.severity) for d in result.diagnostics] == [
        (team, 1, 1, "cannot read the directory: Permission denied", "error")
    ]
    assert result.unreadable == {team}
    assert result.failed_files == {team}
    assert names(result) == ["a"]  # b.yaml's manifest is unknown, not gone


def test_a_manifests_directory_at_mode_000_is_not_an_empty_tree(
    tmp_path: Path, locked: list[Path]
) -> None:
    root = tmp_path / "recordings.d"
    write(root / "a.yaml", "a")
    lock(locked, root)
    result = load([root])
    assert result.unreadable == {str(root)} and result.failed_files == {str(root)}
    assert [(d.line, d.column, d.message) for d in result.errors] == [
        (1, 1, "cannot read the directory: Permission denied")
    ]


def test_a_missing_given_path_is_unreadable(tmp_path: Path) -> None:
    missing = str(tmp_path / "recordings.d")
    result = load_manifests([missing])
    assert result.unreadable == {missing} and result.failed_files == {missing}
    assert result.errors[0].message == "cannot read this path: No such file or directory"


def test_an_unreadable_file_is_unreadable(tmp_path: Path, locked: list[Path]) -> None:
    path = Path(write(tmp_path / "a.yaml", "a"))
    write(tmp_path / "b.yaml", "b")
    lock(locked, path)
    result = load([tmp_path])
    assert result.unreadable == {str(path)} and result.failed_files == {str(path)}
    assert result.errors[0].message == "cannot read the file: Permission denied"
    assert names(result) == ["b"]
    assert as_unprivileged(lambda: load_file(str(path)))[1] == result.errors


def test_the_cache_reports_a_directory_that_becomes_unreadable_and_reads_it_again(
    tmp_path: Path, locked: list[Path]
) -> None:
    write(tmp_path / "a.yaml", "a")
    inside = write(tmp_path / "team" / "b.yaml", "b")
    team = tmp_path / "team"
    cache = ManifestCache([tmp_path])
    assert names(as_unprivileged(cache.load)) == ["a", "b"]

    lock(locked, team)
    hidden = as_unprivileged(cache.load)
    assert hidden.unreadable == {str(team)}
    assert hidden.changed == {str(team), inside}  # the directory, and what it held
    assert hidden == load([tmp_path])

    team.chmod(0o755)
    back = as_unprivileged(cache.load)
    assert back.ok and names(back) == ["a", "b"] and back.unreadable == frozenset()
    assert back.changed == {str(team), inside}
    assert back == load([tmp_path])


def test_symlinked_directories_are_followed(tmp_path: Path) -> None:
    write(tmp_path / "elsewhere" / "m.yaml", "linked")
    root = tmp_path / "recordings.d"
    root.mkdir()
    (root / "team").symlink_to(tmp_path / "elsewhere")
    result = load_manifests([root])
    assert result.ok and names(result) == ["linked"]
    assert result.files == (str(root / "team" / "m.yaml"),)


@pytest.mark.parametrize("strict", [False, True])
def test_a_symlink_loop_is_a_warning_and_ends(tmp_path: Path, strict: bool) -> None:
    write(tmp_path / "a" / "m.yaml", "m")
    (tmp_path / "a" / "loop").symlink_to(tmp_path)
    (tmp_path / "a" / "self").symlink_to(tmp_path / "a")
    result = load_manifests([tmp_path], strict=strict)
    assert names(result) == ["m"]
    links = {str(tmp_path / "a" / "loop"), str(tmp_path / "a" / "self")}
    assert result.failed_files == (links if strict else frozenset())
    severity = "error" if strict else "warning"
    assert [(Path(d.file).name, d.severity) for d in result.diagnostics] == [
        ("loop", severity),
        ("self", severity),
    ]
    assert result.diagnostics[0].message.startswith("symlink loop: this is ")
    assert result.unreadable == frozenset()


def test_a_symlink_leading_nowhere_is_unreadable(tmp_path: Path) -> None:
    """It may have been a directory of manifests on a mount that is gone."""
    write(tmp_path / "a.yaml", "a")
    (tmp_path / "team").symlink_to(tmp_path / "mnt" / "team")
    result = load_manifests([tmp_path])
    team = str(tmp_path / "team")
    assert result.unreadable == {team} and result.failed_files == {team}
    assert result.errors[0].message == (
        "cannot read the symlink's target: No such file or directory"
    )


def _within(seconds: float, function: object) -> object:
    """`function()`, failing (not hanging) if it takes longer than `seconds`."""
    outcome: list[object] = []
    thread = threading.Thread(target=lambda: outcome.append(function()), daemon=True)  # type: ignore[operator]
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still running after {seconds} s (blocked on a read?)"
    return outcome[0]


def test_a_fifo_named_like_a_manifest_is_a_warning_and_never_opened(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", "a")
    os.mkfifo(tmp_path / "x.yaml")
    result = _within(10, lambda: load_manifests([tmp_path]))
    assert isinstance(result, LoadResult)
    assert result.ok and names(result) == ["a"]
    assert result.files == (str(tmp_path / "a.yaml"),)
    assert [
        (Path(d.file).name, d.line, d.column, d.message, d.severity) for d in result.diagnostics
    ] == [
        (
            "x.yaml",
            1,
            1,
            "it is a FIFO (named pipe), not a regular file: skipped, not read",
            "warning",
        )
    ]
    strict = _within(10, lambda: load_manifests([tmp_path], strict=True))
    assert isinstance(strict, LoadResult) and strict.failed_files == {str(tmp_path / "x.yaml")}
    named = _within(10, lambda: load_file(str(tmp_path / "x.yaml")))
    assert named == ([], result.diagnostics)


def test_a_socket_named_like_a_manifest_is_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(path))
        result = load_manifests([tmp_path])
    assert [(d.message, d.severity) for d in result.diagnostics] == [
        ("it is a socket, not a regular file: skipped, not read", "warning")
    ]
    assert result.unreadable == {str(path)} and result.ok


def test_what_was_not_read_is_decided_by_its_kind(tmp_path: Path, locked: list[Path]) -> None:
    """The loader decides from `Diagnostic.kind`, never from the words: under --strict
    a FIFO is an error whose words start like no other skip, and is still skipped (not
    among the files read); a file too big was read and failed; a file that cannot be
    opened, like the FIFO, is unreadable (what it holds is unknown)."""
    write(tmp_path / "a.yaml", "a")
    os.mkfifo(tmp_path / "x.yaml")
    (tmp_path / "big.yaml").write_bytes(b"#" * (MAX_FILE_BYTES + 1))
    closed = Path(write(tmp_path / "c.yaml", "c"))
    lock(locked, closed)
    result = _within(10, lambda: load([tmp_path], strict=True))
    assert isinstance(result, LoadResult)
    assert [(Path(d.file).name, d.kind, d.severity) for d in result.diagnostics] == [
        ("big.yaml", ReadFailure.TOO_BIG, "error"),
        ("c.yaml", ReadFailure.UNREADABLE, "error"),
        ("x.yaml", ReadFailure.NOT_REGULAR, "error"),
    ]
    assert not result.diagnostics[2].message.startswith("not a regular file")
    assert [Path(f).name for f in result.files] == ["a.yaml", "big.yaml", "c.yaml"]
    assert result.unreadable == {str(closed), str(tmp_path / "x.yaml")}
    assert names(result) == ["a"]


def test_a_manifest_replaced_by_a_fifo_between_loads(tmp_path: Path) -> None:
    """The cache looks at the file again (its key changed): a warning, never a read, and
    the answer of a fresh load; a hinted load (the watch's) does the same. Defect: the
    path was not among the unreadable ones, so its manifest was taken as removed and
    its recording stopped; what it holds now is unknown, as for a file that cannot be
    read."""
    path = write(tmp_path / "a.yaml", "a")
    write(tmp_path / "b.yaml", "b")
    cache = ManifestCache([tmp_path])
    cache.load()
    os.remove(path)
    os.mkfifo(path)
    for hint in (None, {path}):
        result = _within(10, lambda hint=hint: cache.load(hint=hint))  # type: ignore[misc]
        assert isinstance(result, LoadResult)
        assert names(result) == ["b"] and result.files == (str(tmp_path / "b.yaml"),)
        assert [d.severity for d in result.diagnostics] == ["warning"]
        assert result.unreadable == {path} and not result.failed_files
        assert result == load_manifests([tmp_path])
    assert stat.S_ISFIFO(os.stat(path).st_mode)


def test_discover_never_opens_files(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "x.yaml")
    files, problems = _within(10, lambda: discover([tmp_path]))  # type: ignore[misc]
    assert files == [str(tmp_path / "x.yaml")] and problems == []


def test_a_name_that_is_not_utf8_is_an_error_under_a_printable_name(tmp_path: Path) -> None:
    """Defect: a file named with a Latin-1 byte validated, then its name (held by Python
    as a lone surrogate) could not be written to the store, logged or printed, and every
    pass of the daemon failed. It is an error shown as `\\xe9`, never read; a directory or
    a symlink so named is not entered; the other files load as usual, at every load."""
    write(tmp_path / "good.yaml", "good")
    write(tmp_path / "caf\udce9.yaml", "cafe")  # the byte 0xe9 (Latin-1's é), not UTF-8
    write(tmp_path / "team\udcff" / "b.yaml", "b")
    (tmp_path / "link\udce9.yaml").symlink_to(tmp_path / "good.yaml")
    (tmp_path / "notes\udce9.txt").write_text("not a manifest", encoding="utf-8")
    message = "its name is not valid UTF-8: rename it"
    expected = [
        (f"{tmp_path}/caf\\xe9.yaml", 1, 1, message, "error"),
        (f"{tmp_path}/team\\xff", 1, 1, message, "error"),
        (f"{tmp_path}/link\\xe9.yaml", 1, 1, message, "error"),
    ]
    cache = ManifestCache([tmp_path])
    for result in (cache.load(), cache.load(), load_manifests([tmp_path])):
        assert names(result) == ["good"]
        assert [
            (d.file, d.line, d.column, d.message, d.severity) for d in result.diagnostics
        ] == expected
        assert result.failed_files == {file for file, *_ in expected}
        assert result.files == (str(tmp_path / "good.yaml"),) and not result.unreadable
    given = load_manifests([tmp_path / "caf\udce9.yaml"])
    assert [(d.file, d.message) for d in given.diagnostics] == [expected[0][::3]]
    assert given.failed_files == {expected[0][0]} and not given.files


@pytest.mark.parametrize("ending", ["\r", "\r\n", "mixed"])
@pytest.mark.parametrize(
    ("bad", "message"),
    [(b"\xe9", "not a UTF-8 text file"), (b"\x01", "not a text file: character 1 is")],
)
def test_a_bad_character_is_placed_whatever_the_line_endings(
    tmp_path: Path, ending: str, bad: bytes, message: str
) -> None:
    """Defect: only LF was counted, so in a file of old-Mac line endings (a lone CR,
    which YAML and an editor break lines at) the first bad byte was "1:182"."""
    lines = GOOD_TEXT.format(name="cr", channel="cr").splitlines()
    assert len(lines) > 7 and len(lines[6]) > 3
    breaks = [("\r" if i % 2 else "\n") if ending == "mixed" else ending for i in range(len(lines))]
    raw = b"".join(line.encode() + end.encode() for line, end in zip(lines, breaks, strict=True))
    line_7 = sum(len(line) + len(end) for line, end in zip(lines[:6], breaks, strict=False))
    raw = raw[: line_7 + 2] + bad + raw[line_7 + 2 :]  # at 7:3
    (tmp_path / "cr.yaml").write_bytes(raw)
    (found,) = load([tmp_path]).errors
    assert (found.line, found.column) == (7, 3)
    assert found.message.startswith(message)


@pytest.mark.parametrize(
    ("raw", "at"),
    [
        # libyaml counts bytes: four 2-byte characters before it on its line put it 4 on.
        (b"name: x # \xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\nfoo: \x01\n", (2, 6)),
        # ... and breaks lines at NEL (and LS, PS), as the parser's own marks do.
        (b"name: x\xc2\x85foo: \x01\n", (2, 6)),
        ("name: x\u2028foo: \x01\n".encode(), (2, 6)),
    ],
    ids=["multibyte", "nel", "line-separator"],
)
def test_a_control_character_is_placed_as_the_parser_places_the_rest(
    tmp_path: Path, raw: bytes, at: tuple[int, int]
) -> None:
    """Defect: libyaml's offset of the character (in bytes) was taken for its index in
    the text: "3:1", past the end of the file."""
    (tmp_path / "a.yaml").write_bytes(raw)
    (found,) = load([tmp_path]).errors
    assert (found.line, found.column) == at
    assert found.message == "not a text file: character 1 is not allowed in YAML"
