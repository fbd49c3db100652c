"""Loading manifests from real files: positions, every error, never a traceback.

Covers: discovery (directories recursively, *.yaml/*.yml only, hidden skipped,
duplicates once, missing paths, a tree deeper than the recursion limit), 1-based
line/column of each error on its field (value, key, nearest parent for a missing
key, list items), several errors in one document and in several documents, unknown
keys with "did you mean", broken YAML, duplicate keys (both lines, never echoing
values, hiding no other error of any document, also in mappings ruamel builds), a
document that cannot be built hiding no other document, tabs, empty files and
documents (a file of empty documents only is an error, as an empty file),
non-mapping documents, binary garbage, non-UTF-8, huge files, nesting deeper than 64
levels (where the limit is crossed, flow and block, also through aliases), alias and
merge-key bombs (at the alias that crosses the limit), recursive aliases and anchors
defined twice, unsupported tags, literal secrets (warning; error under strict),
settings that can never apply with `always` and explicit windows that have all ended
(warnings; errors under strict), and that valid documents of a failed file are left
out of the result.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from manifest_docs import GOOD_TEXT

from orchestrator.config import ConfigError, load_config
from orchestrator.manifest.loader import (
    ManifestCache,
    discover,
    load_file,
    load_manifests,
)
from orchestrator.manifest.reading import MAX_FILE_BYTES, ReadFailure

GOOD = GOOD_TEXT.format(name="standup", channel="room-1")
STORAGE = """\
recordingFiles: {}
storage:
  vendor: aws-s3
  region: us-east-1
  bucket: b
"""
"""The start of a storage section (on lines 10 to 14 after GOOD): add its secrets."""


def write(tmp_path: Path, name: str, text: str | bytes) -> str:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return str(path)


def positions(path: str) -> list[tuple[int, int, str, str]]:
    _, diagnostics = load_file(path)
    return [(d.line, d.column, d.field, d.severity) for d in diagnostics]


def test_a_valid_file(tmp_path: Path) -> None:
    path = write(tmp_path, "a.yaml", "# comment\n" + GOOD)
    loaded, diagnostics = load_file(path)
    assert diagnostics == []
    assert [(m.manifest.name, m.line, m.column) for m in loaded] == [("standup", 2, 1)]
    assert loaded[0].position_of("schedule") == (7, 1)


def test_errors_point_at_their_fields(tmp_path: Path) -> None:
    text = GOOD.replace("uid: 527841", "uid: 0").replace("duration: 30m", "duration: soon")
    text += (
        "layout:\n"
        "  type: custom\n"
        "  regions:\n"
        "    - {x: 0, y: 0, width: 1, height: 1}\n"
        "    - x: 0\n"
        "      y: 2\n"
        "      width: 1\n"
        "      height: 1\n"
        "storage:\n"
        "  vendor: aws-s3\n"
        "  region: us-east-1\n"
        "  bucket: b\n"
        "  accessKey: {env: A}\n"
        "  secretKey: {env: B}\n"
        "  fileNamePrefx: [a]\n"
    )
    path = write(tmp_path, "a.yaml", text)
    _, diagnostics = load_file(path)
    found = [(d.line, d.column, d.field) for d in diagnostics]
    assert found == [
        (4, 6, "uid"),
        (9, 13, "schedule.duration"),
        (15, 10, "layout.regions[1].y"),
        (24, 3, "storage.fileNamePrefx"),
    ]
    unknown = diagnostics[-1]
    assert "did you mean 'fileNamePrefix'?" in unknown.message
    assert "valid keys here: vendor, region, bucket" in unknown.message
    assert all(d.file == path and d.severity == "error" for d in diagnostics)


@pytest.mark.parametrize(
    "tabbed",
    [
        ("  bucket: b", "  bucket: b\t# a comment"),
        ("  bucket: b", "  bucket: b\t"),
        ("region: us-east-1", "region:\tus-east-1"),
    ],
    ids=["before-a-comment", "after-a-value", "after-a-colon"],
)
def test_a_tab_that_yaml_allows_moves_no_error(tmp_path: Path, tabbed: tuple[str, str]) -> None:
    """Defect: a tab where libyaml takes it as a blank made the round-trip parse that
    places findings fail, and every error of the file was put at 1:1."""
    text = GOOD.replace("uid: 527841", "uid: 0") + STORAGE.replace(*tabbed)
    text += "  accessKey: {env: A}\n  secretKey: {env: B}\n  fileNamePrefx: [a]\n"
    path = write(tmp_path, "a.yaml", text)
    assert positions(path) == [(4, 6, "uid", "error"), (17, 3, "storage.fileNamePrefx", "error")]


def test_a_missing_key_points_at_its_parent(tmp_path: Path) -> None:
    text = GOOD + "transcoding:\n  width: 640\n  height: 360\n  fps: 15\n"
    path = write(tmp_path, "a.yaml", text)
    assert positions(path) == [(10, 1, "transcoding.bitrate", "error")]
    missing_name = write(tmp_path, "b.yaml", "\n\n" + GOOD.replace("name: standup\n", ""))
    assert positions(missing_name) == [(3, 1, "name", "error")]


def test_cross_field_rules_point_at_the_offending_key(tmp_path: Path) -> None:
    text = GOOD.replace("mode: mix", "mode: individual") + (
        "recording:\n  subscribeUidGroup: 0\nsnapshots: {interval: 5}\nrecordingFiles: {}\n"
    )
    path = write(tmp_path, "a.yaml", text)
    _, diagnostics = load_file(path)
    assert [(d.line, d.column, d.field) for d in diagnostics] == [(12, 1, "snapshots")]
    assert "either snapshots or recordingFiles" in diagnostics[0].message


def test_every_document_is_checked(tmp_path: Path) -> None:
    second = GOOD.replace("standup", "second").replace("mode: mix", "mode: mixed")
    third = GOOD.replace("standup", "third")
    path = write(
        tmp_path,
        "multi.yml",
        GOOD.replace("app: main", "app: ''") + "---\n" + second + "---\n" + third,
    )
    loaded, diagnostics = load_file(path)
    assert [(d.line, d.field) for d in diagnostics] == [(2, "app"), (15, "mode")]
    # load_file returns the valid document; load_manifests leaves the failed file out
    assert [m.manifest.name for m in loaded] == ["third"]
    assert loaded[0].document == 2 and loaded[0].line == 21
    result = load_manifests([path])
    assert result.manifests == []
    assert result.failed_files == frozenset({path})


@pytest.mark.parametrize(
    ("text", "line", "column", "fragment"),
    [
        ("name: [a\n", 2, 1, "invalid YAML"),
        ("name: a\n\tapp: b\n", 2, 1, "invalid YAML"),
        ("a: !!python/object:os.system x\n", 1, 4, "unsupported YAML tag"),
        ("key: 'unterminated\n", 2, 1, "invalid YAML"),
        ("- 1\n- 2\n", 1, 1, "not a list"),
        ("just text\n", 1, 1, "not a single value"),
        ("", 1, 1, "empty"),
        ("# only a comment\n", 1, 1, "empty"),
        ("a: !!int abc\n", 1, 4, "not a valid int: quote it if it is text"),
        ("a:\n  b: 2027-02-30T00:00:00Z\n", 2, 6, "not a valid timestamp: quote it if it is text"),
        ("a:\n  - 1\n  - 2027-02-03T00:00:00+25:00\n", 3, 5, "not a valid timestamp"),
        ("a: {b: !!float x}\n", 1, 8, "not a valid float: quote it if it is text"),
        ("a: !!bool maybe\n", 1, 4, "not a valid bool: quote it if it is text"),
        ("w: {start: 2026-03-02T09:00:00Z}\n", 1, 25, "quote values that contain ':'"),
    ],
)
def test_bad_yaml_is_a_positioned_error(
    tmp_path: Path, text: str, line: int, column: int, fragment: str
) -> None:
    path = write(tmp_path, "bad.yaml", text)
    loaded, diagnostics = load_file(path)
    assert loaded == []
    assert [(d.line, d.column) for d in diagnostics] == [(line, column)]
    assert fragment in diagnostics[0].message
    assert "Traceback" not in diagnostics[0].message


def test_duplicate_key_never_echoes_values(tmp_path: Path) -> None:
    text = GOOD + "token: {env: FIRST}\ntoken: hunter2-second\n"
    _, diagnostics = load_file(write(tmp_path, "a.yaml", text))
    # the duplicate, and (a warning) that a fixed token cannot serve a cron schedule
    assert [(d.line, d.column, d.field) for d in diagnostics] == [
        (10, 1, "token"),
        (11, 1, "token"),
    ]
    assert all("hunter2" not in d.message for d in diagnostics)


def test_a_duplicate_key_hides_no_other_error(tmp_path: Path) -> None:
    """Both lines of the duplicate, and every other error of every document."""
    first = GOOD.replace("uid: 527841", "uid: 0").replace(
        "  duration: 30m\n", "  duration: 30m\n  timezone: Mars/Olympus\n"
    )
    second = GOOD.replace("standup", "second").replace("mode: mix", "mode: both")
    path = write(tmp_path, "a.yaml", first + "---\n" + second + "layout: {type: spiral}\n")
    loaded, diagnostics = load_file(path)
    assert loaded == []
    assert [(d.line, d.column, d.field) for d in diagnostics] == [
        (4, 6, "uid"),
        (10, 3, "schedule.timezone"),
        (16, 7, "mode"),
        (21, 16, "layout.type"),
    ]
    # the config's sentence: the key and its first line; the position is the second
    assert diagnostics[1].message == 'duplicate key "timezone" (first at line 8)'
    # the first value is the one kept and checked
    assert "Mars" not in diagnostics[1].message
    assert not load_manifests([path]).ok


def test_a_label_key_that_breaks_its_pattern_is_placed_at_the_key(tmp_path: Path) -> None:
    """Defect: `labels.bad key!.[key]: invalid value ...: use label keys are letters...`
    (pydantic's marker in the field, and a sentence that did not read)."""
    text = GOOD + 'labels:\n  good: v\n  "bad key!": v\n'
    _, diagnostics = load_file(write(tmp_path, "a.yaml", text))
    assert [(d.line, d.column, d.field, d.message) for d in diagnostics] == [
        (
            12,
            3,
            "labels.bad key!",
            "invalid key (got 'bad key!'): use letters, digits, '.', '_', '/' or '-' (at most 63)",
        )
    ]


def test_a_duplicate_key_in_a_mapping_ruamel_builds(tmp_path: Path) -> None:
    """A merge key sends the mapping to ruamel's constructor, which raises on a
    duplicate; the loader finds it first, with both positions."""
    text = GOOD + "labels:\n  <<: {z: q}\n  a: x\n  b: y\n  a: c\n"
    _, diagnostics = load_file(write(tmp_path, "a.yaml", text))
    duplicate = next(d for d in diagnostics if "duplicate" in d.message)
    assert (duplicate.line, duplicate.column, duplicate.field) == (14, 3, "labels.a")
    assert duplicate.message == 'duplicate key "a" (first at line 12)'


@pytest.mark.parametrize(
    ("written", "line", "column", "field"),
    [
        ("~: x\n", 10, 1, ""),
        ("? [a, b]\n: x\n", 10, 3, ""),
        ("true: x\n", 10, 1, ""),
        ("labels:\n  1: x\n", 11, 3, "labels"),
        ("schedule2:\n  2026-01-01: x\n", 11, 3, "schedule2"),
    ],
)
def test_a_key_that_is_not_text_is_placed_and_hides_nothing(
    tmp_path: Path, written: str, line: int, column: int, field: str
) -> None:
    """Defect: `~: x` was `1:1: None: Keys should be strings`, `? [a, b]` named the
    key `('a', 'b')` and `true: x` the field `[1]`. It is at the key, in the field
    path of its mapping, without the key (it may be anything), and the document's
    other errors are still reported."""
    text = GOOD.replace("uid: 527841", "uid: 0") + written
    _, diagnostics = load_file(write(tmp_path, "a.yaml", text))
    found = [(d.line, d.column, d.field, d.message) for d in diagnostics]
    assert (line, column, field, "a key must be text: quote it") in found
    assert (4, 6, "uid") in [f[:3] for f in found]
    assert not any("should be strings" in d.message for d in diagnostics)


def test_a_document_that_cannot_be_built_hides_no_other_document(tmp_path: Path) -> None:
    text = "a: !!python/object:os.system x\n---\n" + GOOD.replace("uid: 527841", "uid: 0")
    _, diagnostics = load_file(write(tmp_path, "a.yaml", text))
    assert [(d.line, d.column, d.field) for d in diagnostics] == [(1, 4, ""), (6, 6, "uid")]
    assert "unsupported YAML tag" in diagnostics[0].message


def test_a_syntax_error_after_a_good_document_keeps_both_findings(tmp_path: Path) -> None:
    text = GOOD.replace("uid: 527841", "uid: -1") + "---\nname: [\n"
    _, diagnostics = load_file(write(tmp_path, "a.yaml", text))
    assert [(d.line, d.field) for d in diagnostics] == [(4, "uid"), (12, "")]


def test_binary_garbage_and_bad_encoding(tmp_path: Path) -> None:
    blob = bytes(range(256)) * 4
    _, diagnostics = load_file(write(tmp_path, "blob.yaml", blob))
    assert len(diagnostics) == 1 and diagnostics[0].severity == "error"
    latin = write(tmp_path, "latin.yaml", "name: caf\xe9\n".encode("latin-1"))
    _, diagnostics = load_file(latin)
    assert [(d.line, d.column) for d in diagnostics] == [(1, 10)]
    assert "UTF-8" in diagnostics[0].message
    nul = write(tmp_path, "nul.yaml", b"name: a\x00b\n")
    _, diagnostics = load_file(nul)
    assert [(d.line, d.column) for d in diagnostics] == [(1, 8)]


def test_a_byte_order_mark_is_fine(tmp_path: Path) -> None:
    loaded, diagnostics = load_file(write(tmp_path, "bom.yaml", b"\xef\xbb\xbf" + GOOD.encode()))
    assert diagnostics == [] and len(loaded) == 1


def test_huge_files_are_refused_without_reading_them_whole(tmp_path: Path) -> None:
    path = write(tmp_path, "huge.yaml", b"# " + b"x" * MAX_FILE_BYTES + b"\n")
    loaded, diagnostics = load_file(path)
    assert loaded == []
    assert len(diagnostics) == 1
    assert diagnostics[0].message == (
        "it is 1048579 bytes; the limit is 1048576 (1 MiB): split it into several files"
    )
    assert diagnostics[0].kind is ReadFailure.TOO_BIG


@pytest.mark.parametrize(
    ("text", "line", "column"),
    [
        # the mapping is level 1; the 64th '[' (column 3 + 63, 0-based) is level 65
        ("a: " + "[" * 3000 + "]" * 3000 + "\n", 1, 67),
        # labels is level 1 under the top mapping; each '{a: ' is four characters
        (GOOD + "labels: " + "{a: " * 100 + "1" + "}" * 100 + "\n", 10, 9 + 63 * 4),
        # sequences in block form, on one line or indented one column each
        ("- " * 3000 + "x\n", 1, 129),
        ("".join(" " * i + "-\n" for i in range(100)), 65, 65),
    ],
)
def test_deep_nesting_is_one_error_where_the_limit_is_crossed(
    tmp_path: Path, text: str, line: int, column: int
) -> None:
    _, diagnostics = load_file(write(tmp_path, "deep.yaml", text))
    assert [(d.line, d.column, d.severity) for d in diagnostics] == [(line, column, "error")]
    assert diagnostics[0].message == "nested more than 64 levels deep"


def test_alias_bombs_are_one_error(tmp_path: Path) -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 12)]
    text = GOOD + "labels:\n" + "\n".join("  " + line for line in lines) + "\n"
    _, diagnostics = load_file(write(tmp_path, "bomb.yaml", text))
    # a1's aliases add 10 x 11 nodes, a2's 10 x 111; the 8th *a2 of a3 (column 47)
    # takes the file past 10,000 (110 + 1,110 + 8 x 1,111)
    assert [(d.line, d.column, d.field) for d in diagnostics] == [(14, 47, "")]
    assert diagnostics[0].message == (
        "aliases expand to more than 10000 nodes (an alias bomb?): write the values out"
    )


def test_merge_key_bombs_are_one_error(tmp_path: Path) -> None:
    """Merge keys are flattened pair by pair: seven levels of ten took minutes."""
    lines = ["b0: &b0 {k0: x, k1: x, k2: x, k3: x, k4: x, k5: x, k6: x, k7: x, k8: x, k9: x}"]
    lines += [f"b{i}: &b{i} {{<<: [" + ", ".join([f"*b{i - 1}"] * 10) + "]}" for i in range(1, 8)]
    text = GOOD + "x:\n" + "\n".join("  " + line for line in lines) + "\n"
    _, diagnostics = load_file(write(tmp_path, "bomb.yaml", text))
    assert [(d.line, d.field) for d in diagnostics] == [(14, "")]
    assert "alias bomb" in diagnostics[0].message


def _config_problem(path: str) -> tuple[int, int, str]:
    with pytest.raises(ConfigError) as raised:
        load_config(path, environ={})
    (problem,) = raised.value.problems
    return problem.line, problem.column, problem.message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (  # each anchor one level deeper than the last: 64 levels reached through aliases
            "".join(f"a{i}: &a{i} [*a{i - 1}]\n" for i in range(1, 70)).replace("*a0", "x"),
            (63, 12, "nested more than 64 levels deep"),
        ),
        (
            "a: &a [1, *a]\n",
            (1, 11, "an alias (*...) inside the node it names: a recursive structure"),
        ),
        ("a: 1\nb: *nowhere\n", (2, 4, "an alias (*...) names no anchor before it")),
        (
            "a: &x 1\nb: &x 2\n",
            (2, 4, "an anchor (&...) is defined twice (first at line 1): use another name"),
        ),
    ],
    ids=["deep-through-aliases", "recursive", "no-anchor", "anchor-twice"],
)
def test_manifests_are_bounded_as_the_config_is(
    tmp_path: Path, text: str, expected: tuple[int, int, str]
) -> None:
    """One bounded reader (`reading`) for both: a manifest is refused where the daemon
    config is, in the same words, before anything is built."""
    path = write(tmp_path, "a.yaml", text)
    loaded, diagnostics = load_file(path)
    assert loaded == []
    assert [(d.line, d.column, d.message) for d in diagnostics] == [expected]
    assert _config_problem(path) == expected


@pytest.mark.parametrize(
    ("secrets", "expected"),
    [
        (
            "  accessKey: *SUPERSECRET3\n  secretKey: {env: S3_SECRET}\n",
            (15, 14, "an alias (*...) names no anchor before it"),
        ),
        (
            "  accessKey: &SUPERSECRET7 x\n  secretKey: &SUPERSECRET7 y\n",
            (16, 14, "an anchor (&...) is defined twice (first at line 15): use another name"),
        ),
        (
            "  accessKey: &SUPERSECRET9 [*SUPERSECRET9]\n  secretKey: {env: S3_SECRET}\n",
            (15, 29, "an alias (*...) inside the node it names: a recursive structure"),
        ),
    ],
    ids=["alias", "anchor-twice", "recursive"],
)
def test_an_anchor_or_alias_is_never_quoted(
    tmp_path: Path, secrets: str, expected: tuple[int, int, str]
) -> None:
    """Defect: an unquoted secret that starts with '*' or '&' is read as an alias or an
    anchor, and the message quoted its name, in a manifest and in the daemon config."""
    path = write(tmp_path, "a.yaml", GOOD + STORAGE + secrets)
    _, diagnostics = load_file(path)
    assert [(d.line, d.column, d.message) for d in diagnostics] == [expected]
    assert _config_problem(path) == expected


@pytest.mark.parametrize("tag", ["int", "bool"])
def test_a_value_its_tag_cannot_build_is_placed_and_never_quoted(tmp_path: Path, tag: str) -> None:
    """Defect: `!!int` on a secret, or a date that does not exist, was "invalid YAML: a
    value could not be read (ValueError)" at 1:1; the config reader said where, and
    that quoting it makes it text (but let `!!bool`'s KeyError, which quotes the value,
    escape)."""
    secrets = f"  accessKey: !!{tag} SUPERSECRET6\n  secretKey: {{env: S3_SECRET}}\n"
    path = write(tmp_path, "a.yaml", GOOD + STORAGE + secrets)
    _, diagnostics = load_file(path)
    expected = (15, 14, f"not a valid {tag}: quote it if it is text")
    assert [(d.line, d.column, d.message) for d in diagnostics] == [expected]
    assert _config_problem(path) == expected


def test_an_unsupported_tag_is_never_quoted(tmp_path: Path) -> None:
    """Defect: `accessKey: !SUPERSECRET5 x` said "unsupported YAML tag '!SUPERSECRET5'"."""
    path = write(
        tmp_path, "a.yaml", GOOD + STORAGE + "  accessKey: !SUPERSECRET5 x\n  secretKey: !<S6> y\n"
    )
    _, diagnostics = load_file(path)
    assert [(d.line, d.column, d.message) for d in diagnostics] == [
        (15, 14, "an unsupported YAML tag (!...): plain values only")
    ]


def test_a_few_aliases_are_fine(tmp_path: Path) -> None:
    text = GOOD.replace("name: standup", "name: &n standup") + "labels: {a: *n, b: *n}\n"
    loaded, diagnostics = load_file(write(tmp_path, "a.yaml", text))
    assert diagnostics == [] and loaded[0].manifest.labels == {"a": "standup", "b": "standup"}


def test_empty_document_between_manifests_is_a_warning(tmp_path: Path) -> None:
    assert len(GOOD.splitlines()) == 9
    path = write(tmp_path, "a.yaml", GOOD + "---\n# nothing here\n")
    loaded, diagnostics = load_file(path)
    assert len(loaded) == 1
    # At its `---` (line 10): it was line 12, past the comment and the end of the file.
    assert [(d.severity, d.line, d.column) for d in diagnostics] == [("warning", 10, 1)]


@pytest.mark.parametrize(
    "text",
    [
        "{good}---\n---\n{other}",  # the next document's `---` is where its node is
        "{good}--- # stray\n# nothing\n---\n{other}",
        "{good}---",  # its node on the marker's own line, at the end of the file
        "{good}--- \n",
    ],
)
def test_a_stray_marker_is_pointed_at_wherever_it_stands(tmp_path: Path, text: str) -> None:
    path = write(tmp_path, "a.yaml", text.format(good=GOOD, other=GOOD.replace("standup", "b")))
    diagnostics = load_file(path)[1]
    assert [(d.severity, d.line, d.column) for d in diagnostics] == [("warning", 10, 1)]
    assert load_file(path, strict=True)[1][0].severity == "error"


@pytest.mark.parametrize(
    ("text", "what"),
    [
        ("", "it is empty"),
        ("# only a comment\n", "it is empty"),
        ("---\n", "only empty documents"),
        ("null\n", "only empty documents"),
        ("---\n---\n~\n", "only empty documents"),
        ("---\n" + "".join(f"# {line}\n" for line in GOOD.splitlines()), "only empty documents"),
    ],
)
def test_a_file_without_a_manifest_is_an_error_whatever_its_empty_documents(
    tmp_path: Path, text: str, what: str
) -> None:
    """Defect: a file of empty documents only (a lone '---', `null`, a manifest commented
    out) was a warning and loaded as no manifest: its recording was taken as removed
    and stopped, where an empty file is an error that keeps the last known version."""
    path = write(tmp_path, "a.yaml", text)
    result = load_manifests([tmp_path])
    assert [(d.line, d.column, d.message, d.severity) for d in result.diagnostics] == [
        (1, 1, f"no manifest in this file ({what})", "error")
    ]
    assert result.failed_files == {path}


UNKNOWN_KEYS_AND_MORE = (
    GOOD.replace('schedule:\n  cron: "0 9 * * 1-5"\n  timezone: UTC\n  duration: 30m\n', "")
    + "schedule: always\n"  # line 6
    + "startingDeadline: 5m\n"
    + "token: literal-token\n"
    + "recording2: 1\n"
    + STORAGE.replace("  bucket: b\n", "  bucket: b\n  accessKey: AKIA-x\n  secretKey: s3cr3t\n")
    + "  fileNamePrefx: [a]\n"
)


@pytest.mark.parametrize("strict", [False, True])
def test_an_unknown_key_hides_no_other_finding(tmp_path: Path, strict: bool) -> None:
    """Defect: the model's unknown-key errors were all a document showed; the literal
    secrets and the ineffective settings, which need a manifest, were found only once
    the keys were removed. The manifest is still not loaded."""
    path = write(tmp_path, "a.yaml", UNKNOWN_KEYS_AND_MORE)
    loaded, diagnostics = load_file(path, strict=strict)
    other = "error" if strict else "warning"
    assert loaded == []
    assert [(d.line, d.column, d.field, d.severity) for d in diagnostics] == [
        (7, 1, "startingDeadline", other),
        (8, 1, "token", other),  # a fixed token
        (8, 8, "token", other),  # a literal secret
        (9, 1, "recording2", "error"),
        (15, 14, "storage.accessKey", other),
        (16, 14, "storage.secretKey", other),
        (17, 3, "storage.fileNamePrefx", "error"),
    ]


def test_an_unknown_key_beside_another_error_shows_what_it_did(tmp_path: Path) -> None:
    """Only when unknown keys are all that is wrong do the other checks run: a document
    that is wrong otherwise has no manifest to check."""
    text = UNKNOWN_KEYS_AND_MORE.replace("uid: 527841", "uid: 0")
    _, diagnostics = load_file(write(tmp_path, "a.yaml", text), strict=True)
    assert [d.field for d in diagnostics] == ["uid", "recording2", "storage.fileNamePrefx"]


def test_literal_secrets_warn_and_fail_under_strict(tmp_path: Path) -> None:
    text = GOOD + 'token: "007eJxTYmBg"\n'
    path = write(tmp_path, "a.yaml", text)
    loaded, diagnostics = load_file(path)
    assert len(loaded) == 1
    # the literal, and (at the key) that a fixed token cannot serve a cron schedule
    assert [(d.line, d.column, d.field, d.severity) for d in diagnostics] == [
        (10, 1, "token", "warning"),
        (10, 8, "token", "warning"),
    ]
    assert diagnostics[0].message.startswith("a fixed token expires")
    assert all("007eJx" not in d.message for d in diagnostics)
    assert load_manifests([path]).ok
    strict = load_manifests([path], strict=True)
    assert not strict.ok
    assert strict.errors[0].field == "token"


def test_discovery(tmp_path: Path) -> None:
    write(tmp_path, "b.yaml", GOOD)
    write(tmp_path, "a/c.yml", GOOD)
    write(tmp_path, "a/notes.txt", "x")
    write(tmp_path, ".hidden/d.yaml", GOOD)
    write(tmp_path, "a/.e.yaml", GOOD)
    explicit = write(tmp_path, "x.conf", GOOD)
    files, problems = discover([tmp_path, tmp_path / "b.yaml", explicit, tmp_path / "nope"])
    names = [Path(f).relative_to(tmp_path).as_posix() for f in files]
    assert names == ["b.yaml", "a/c.yml", "x.conf"]
    assert [(p.file, p.message) for p in problems] == [
        (str(tmp_path / "nope"), "cannot read this path: No such file or directory")
    ]


def test_every_file_is_checked_even_when_others_fail(tmp_path: Path) -> None:
    write(tmp_path, "1.yaml", "name: [\n")
    write(tmp_path, "2.yaml", GOOD.replace("standup", "two"))
    write(tmp_path, "3.yaml", GOOD.replace("standup", "three").replace("uid: 527841", "uid: x"))
    result = load_manifests([tmp_path])
    assert len(result.files) == 3
    assert [Path(f).name for f in sorted(result.failed_files)] == ["1.yaml", "3.yaml"]
    assert [m.manifest.name for m in result.manifests] == ["two"]
    assert len(result.errors) == 2


def test_the_fast_path_is_libyaml() -> None:
    from orchestrator.manifest.fastyaml import fast_loader

    assert [c.__name__ for c in fast_loader().__mro__[1:3]] == ["CParser", "SafeConstructor"]


def test_positions_are_only_computed_for_files_with_findings(tmp_path: Path) -> None:
    """The round-trip parse that places findings (`LoadStats.positioned`) is paid only by
    files with a finding the fast path cannot place: not by valid files, nor by a
    warning on a top-level key."""
    cache = ManifestCache([tmp_path])
    write(tmp_path, "good.yaml", GOOD)
    assert cache.load().diagnostics == []
    assert cache.last is not None and (cache.last.parsed, cache.last.positioned) == (1, 0)

    always = GOOD.replace("standup", "late").replace("room-1", "room-2").split("schedule:")[0]
    write(tmp_path, "late.yaml", always + "schedule: always\nstartingDeadline: 5m\n")
    (warning,) = cache.load().warnings
    assert (warning.field, warning.line) == ("startingDeadline", 7)
    assert (cache.last.parsed, cache.last.positioned) == (1, 0)

    write(tmp_path, "bad.yaml", GOOD.replace("standup", "bad").replace("uid: 527841", "uid: 0"))
    (error,) = cache.load().errors
    assert (error.field, error.line, error.column) == ("uid", 4, 6)
    assert (cache.last.parsed, cache.last.positioned) == (1, 1)


def test_validation_error_text_hides_inputs() -> None:
    from pydantic import ValidationError

    from orchestrator.manifest.model import Manifest

    doc = {"name": "a", "app": "b", "channel": "c", "uid": 1, "mode": "mix", "schedule": "always"}
    with pytest.raises(ValidationError) as caught:
        Manifest.model_validate({**doc, "token": 987654321, "tokn": "s3cr3t-value"})
    assert "987654321" not in str(caught.value)
    assert "s3cr3t-value" not in str(caught.value)


def test_wrong_values_and_wrong_sections_are_reported_together(tmp_path: Path) -> None:
    text = GOOD.replace("uid: 527841", "uid: 0") + (
        "snapshots:\n"
        "aliyunVod:\n"
        "  accessKey: {env: A}\n"
        "  secretKey: {env: B}\n"
        "  regionId: cn-shanghai\n"
        "  videoData: {title: t}\n"
        "storage: {vendor: qiniu, region: 0, bucket: b, accessKey: {env: A}, secretKey: {env: B}}\n"
    )
    _, diagnostics = load_file(write(tmp_path, "a.yaml", text))
    assert [(d.line, d.field) for d in diagnostics] == [
        (4, "uid"),
        (10, "snapshots"),
        (11, "aliyunVod"),
        (16, "storage"),
    ]
    assert "only allowed in individual mode" in diagnostics[1].message
    assert "not allowed with snapshots" in diagnostics[2].message


ALWAYS = GOOD.replace(
    'schedule:\n  cron: "0 9 * * 1-5"\n  timezone: UTC\n  duration: 30m\n', "schedule: always\n"
)


def test_settings_that_can_never_apply_with_always_are_warnings(tmp_path: Path) -> None:
    text = ALWAYS + "startingDeadline: 10m\nupdatePolicy: defer\n"
    path = write(tmp_path, "a.yaml", text)
    loaded, diagnostics = load_file(path)
    assert len(loaded) == 1
    assert [(d.line, d.column, d.field, d.severity, d.message) for d in diagnostics] == [
        (
            7,
            1,
            "startingDeadline",
            "warning",
            "ignored for `always`: an always-on recording has no window start to be late for",
        ),
        (
            8,
            1,
            "updatePolicy",
            "warning",
            "with `always` there is no next window: changes that need a restart are never "
            "applied; use `updatePolicy: restart`",
        ),
    ]
    assert load_manifests([path]).ok
    assert not load_manifests([path], strict=True).ok
    # with a window to start, both mean what they say
    fine = GOOD + "startingDeadline: 10m\nupdatePolicy: defer\n"
    assert load_file(write(tmp_path, "b.yaml", fine))[1] == []


WINDOWS = GOOD.replace(
    'schedule:\n  cron: "0 9 * * 1-5"\n  timezone: UTC\n  duration: 30m\n',
    "schedule:\n"
    "  windows:\n"
    "    - {start: '2026-03-02T09:00:00Z', end: '2026-03-02T10:00:00Z'}\n"
    "    - {start: '2026-03-09T09:00:00+01:00', end: '2026-03-09T10:00:00+01:00'}\n",
)


def test_windows_that_have_all_ended_are_a_warning(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    path = write(tmp_path, "a.yaml", WINDOWS)
    before = datetime(2026, 3, 9, 8, 59, tzinfo=UTC)  # inside nothing, one window to come
    ended = datetime(2026, 3, 9, 9, 0, tzinfo=UTC)  # the last window's end (10:00+01:00)
    assert load_manifests([path], now=before).diagnostics == []
    assert load_manifests([path]).diagnostics == []  # without `now` nothing has ended
    result = load_manifests([path], now=ended)
    assert result.ok and len(result.manifests) == 1
    assert [(d.line, d.column, d.field, d.severity, d.message) for d in result.diagnostics] == [
        (
            7,
            3,
            "schedule.windows",
            "warning",
            "every window has ended: this manifest never records again "
            "(the last ended at 2026-03-09T09:00:00Z)",
        )
    ]
    strict = load_manifests([path], now=ended, strict=True)
    assert strict.failed_files == {path} and strict.manifests == []


def test_discovery_of_a_very_deep_tree(tmp_path: Path) -> None:
    """Deeper than the recursion limit: the walk keeps its own stack."""
    import sys

    deepest = tmp_path.joinpath(*["d"] * 300)
    deepest.mkdir(parents=True)
    path = write(deepest, "a.yaml", GOOD)
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(200)
    try:
        found = discover([tmp_path])
    finally:
        sys.setrecursionlimit(limit)
    assert found == ([path], [])


@pytest.mark.parametrize(
    ("raw", "at", "expected"),
    [
        (b"name: a\nschedule:\n\tcron: x\n", (3, 1), "; it is a tab: YAML indents with spaces"),
        (b"name: a\n" + b"k" * 1100 + b": 1\n", (2, 1101), "; a key is at most 1024 characters"),
        (b"schedule: {start: 2026-03-02T09:00:00Z}\n", (1, 32), "; inside {...} or [...], quote"),
        ("name: a\n".encode("utf-16-le"), (1, 2), ": it is UTF-16 (as some Windows editors"),
        ("name: a\n".encode("utf-16-be"), (1, 1), ": it is UTF-16 (as some Windows editors"),
        ("name: a\n".encode("utf-16"), (1, 1), ": it is UTF-16 (as some Windows editors"),
    ],
    ids=["tab", "long-key", "flow-time", "utf-16-le", "utf-16-be", "utf-16-bom"],
)
def test_what_a_syntax_error_most_likely_means_is_said(
    tmp_path: Path, raw: bytes, at: tuple[int, int], expected: str
) -> None:
    """Defects: a tab was "found character that cannot start any token" (libyaml does
    not name it); a key over YAML's 1,024 characters got the hint about times inside
    {...}; UTF-16 was "character 0 is not allowed" or bare "not a UTF-8 text file"."""
    path = tmp_path / "a.yaml"
    path.write_bytes(raw)
    (found,) = load_file(str(path))[1]
    assert (found.line, found.column) == at
    assert expected in found.message, found.message
    assert "quote values" not in found.message or "{start" in raw.decode("latin-1")
