"""What the fast YAML path shares between files changes nothing a file reads as.

Every file's loader reads ruamel's resolver rules prepared once, a plain scalar's tag
is kept by its text, and a plain number, boolean, null or timestamp is built once per
text (`fastyaml._resolved`). Covers: plain scalars in every spelling that YAML 1.1 and 1.2
read differently (octal, sexagesimal, yes/no/on/off, underscores, signs, exponents,
infinities, timestamps) read exactly as ruamel's own safe loader reads them (YAML
1.2), whatever was read before (hypothesis); one text plain, quoted and explicitly
tagged keeps each form's meaning, in any order; a scalar that cannot be built fails
its document every time (a failure is not kept); texts that share a prefix or a value
keep values of their own.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ruamel.yaml.composer import ComposerError
from ruamel.yaml.error import MarkedYAMLError
from ruamel.yaml.parser import ParserError
from ruamel.yaml.scanner import ScannerError

from orchestrator.manifest.fastyaml import fast_documents
from tests.unit.manifest.test_manifest_yaml import reference, same

SPELLINGS = [
    # integers: 1.2 reads 0o17 and 017 as octal and decimal; 1.1 would read 017 as 15
    *["0", "-0", "+12", "017", "0o17", "0755", "08", "0o8", "0x1F", "-0x1f", "0b101"],
    *["1_000", "1_", "_1", "0x_", "1:30", "190:20:30", "12abc", "0b2"],
    # floats: 1.1's sexagesimal and exponent-without-dot rules differ from 1.2's
    *["1.5", "1.", ".5", "-.5", "1e3", "1E3", "1.0e+3", "+1.5e-3", "6.8523015e+5", "1_0.5"],
    *[".inf", "-.Inf", "+.INF", ".nan", ".NaN", "1:30.5", "1e"],
    # booleans and null: 1.1 also reads yes/no/on/off/y/n
    *["true", "True", "TRUE", "false", "tRue", "yes", "No", "on", "OFF", "y", "n"],
    *["~", "null", "Null", "NULL", "nUll", ""],
    # timestamps, and texts that only look like them
    *["2026-03-02", "2026-3-2", "2026-03-02T09:00:00+08:00", "2026-03-02 09:00:00Z"],
    *["2026-03-02t09:00:00.123456789-05:30", "2001-12-14 21:59:43.10 -5", "2026-02-30"],
    *["2026-13-45T25:61:61Z", "20260302"],
    # text, and the other implicit tags (merge key, value key)
    *["x", "hello world", "0.1.2", "a:b", "=", "<<"],
]

spelling = st.sampled_from(SPELLINGS) | st.from_regex(
    r"[-+]?(0[box])?[0-9_.:eEaAfF]{1,8}", fullmatch=True
).filter(lambda text: not text.endswith(":"))


def check(text: str) -> None:
    """`text` reads as ruamel's safe loader reads it: the same documents, or, where
    ruamel fails, a failed document (a value) or a syntax error (the stream)."""
    try:
        expected = reference(text)
    except (ScannerError, ParserError, ComposerError):  # the fast path's stream ends too
        with pytest.raises(MarkedYAMLError):
            list(fast_documents(text))
        return
    except Exception:  # a value ruamel cannot build: that document fails, not the file
        assert any(doc.failure is not None for doc in fast_documents(text))
        return
    got = list(fast_documents(text))
    assert [doc.failure for doc in got] == [None] * len(expected)
    assert len(got) == len(expected)
    for a, b in zip(expected, got, strict=True):
        assert same(a, b.data), (text, a, b.data)


@settings(max_examples=400, deadline=None)
@given(files=st.lists(st.lists(spelling, min_size=1, max_size=6), min_size=1, max_size=4))
def test_plain_scalars_read_as_ruamel_reads_them(files: list[list[str]]) -> None:
    for values in files:  # each file after the others: nothing read before changes it
        text = "".join(f"k{i}: {value}\nl{i}: [{value}]\n" for i, value in enumerate(values))
        check(text)


def test_every_text_has_its_own_value() -> None:
    """Values kept by their text: texts that share a prefix or a value stay apart."""
    for file in range(3):
        numbers = range(file * 150, (file + 1) * 150)
        text = "".join(
            f"i{n}: {n}\nf{n}: {n}.5\nx{n}: 0x{n}\n"
            f"d{n}: 2026-01-{1 + n % 28:02d}T{n % 24:02d}:00:00Z\n"
            for n in numbers
        )
        (doc,) = fast_documents(text)
        assert doc.failure is None
        for n in numbers:
            assert same(doc.data[f"i{n}"], n)
            assert same(doc.data[f"f{n}"], n + 0.5)
            assert same(doc.data[f"x{n}"], int(str(n), 16))
            day = datetime(2026, 1, 1 + n % 28, n % 24, tzinfo=timezone(timedelta(0), "Z"))
            assert same(doc.data[f"d{n}"], day)


@pytest.mark.parametrize(
    "order",
    [
        ["plain", "quoted", "str", "float", "int"],
        ["float", "str", "quoted", "int", "plain"],
    ],
)
def test_each_form_of_one_text_keeps_its_meaning(order: list[str]) -> None:
    forms = {
        "plain": ("12", 12),
        "quoted": ('"12"', "12"),
        "str": ("!!str 12", "12"),
        "float": ("!!float 12", 12.0),
        "int": ("!!int 0o14", 12),
    }
    for name in order:
        written, value = forms[name]
        (doc,) = fast_documents(f"a: {written}\n")
        assert same(doc.data, {"a": value}), name


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        ("0b_", "not a valid int: quote it if it is text"),
        ("!!int x", "not a valid int: quote it if it is text"),
        ("!!bool maybe", "not a valid bool: quote it if it is text"),
        ("!!timestamp nope", "invalid YAML: failed to construct timestamp from (not shown)"),
    ],
)
def test_a_value_that_cannot_be_built_fails_every_time(written: str, expected: str) -> None:
    """At the value, never quoting it: a bare error of ruamel's (`!!bool maybe` raises a
    KeyError) was "a value could not be read" at 1:1."""
    for _ in range(2):
        first, second = fast_documents(f"a: {written}\n---\nb: 1\n")
        assert first.failure is not None
        assert (first.failure.line, first.failure.column, first.failure.message) == (
            1,
            4,
            expected,
        )
        assert (second.data, second.failure) == ({"b": 1}, None)


def test_a_load_forgets_the_scalars_it_kept(tmp_path: Path) -> None:
    """Texts and values kept during a load are dropped when it ends: kept for good, they
    would pin the memory of the load's objects after a full reload frees them."""
    from orchestrator.manifest.cache import ManifestCache
    from orchestrator.manifest.fastyaml import _resolved

    (tmp_path / "a.yaml").write_text(
        "name: a\napp: main\nchannel: c\nuid: 4242\nmode: mix\nschedule: always\n",
        encoding="utf-8",
    )
    list(fast_documents("uid: 777\nname: kept-until-a-load-ends\n"))
    resolved = _resolved()
    assert "kept-until-a-load-ends" in resolved.texts
    assert ManifestCache([tmp_path]).load().manifests
    assert not resolved.texts
    assert not any(built for _, built in resolved.values.values())
