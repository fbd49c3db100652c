"""The nesting bound computed from raw text, against libyaml's own parser.

Covers: the bound is never below the depth libyaml composes (its parse events,
measured on generated documents: random token soup, and random values dumped in
block and flow style, then mutated), for the static bound and for the token scan
alike; where the limit is first crossed (flow, block, compact `- - -`, explicit
keys, indentless sequences, a flow collection as a key, libyaml 0.1's `[? ]`
quirk); brackets inside quotes, comments, block scalars and plain scalars do not
count; each document of a file has its own bound; CR LF, CR and NEL line breaks;
any text at all returns (no exception).
"""

from __future__ import annotations

import io
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML
from ruamel.yaml.events import (
    MappingEndEvent,
    MappingStartEvent,
    SequenceEndEvent,
    SequenceStartEvent,
)

from orchestrator.manifest.nesting import nesting_overflow


def libyaml_depth(text: str) -> int:
    """The deepest nesting libyaml's parser reaches (up to its first error, if any)."""
    parser = YAML(typ="safe", pure=False).Parser(io.StringIO(text))
    depth = deepest = 0
    try:
        while parser.check_event():
            event = parser.get_event()
            if isinstance(event, MappingStartEvent | SequenceStartEvent):
                depth += 1
                deepest = max(deepest, depth)
            elif isinstance(event, MappingEndEvent | SequenceEndEvent):
                depth -= 1
    except Exception:  # noqa: S110 -- an error ends what libyaml composes; the depth stands
        pass
    return deepest


def assert_bounded(text: str) -> None:
    depth = libyaml_depth(text)
    if depth:
        assert nesting_overflow(text, depth - 1) is not None, (depth, text)


PIECES = [
    "[", "]", "{", "}", ", ", ",", "- ", "-", "? ", "?", ": ", ":", "a", "b c", "'", "''",
    '"', '\\"', "#", " #x", "\n", "\n  ", "\n    ", "\n- ", "\n  - ", "&x ", "*x", "!t ",
    "!!str ", "|", "|\n", ">-\n", "---\n", "...\n", "\t", " ", "  ", "x: ", "- - ", "[a]: ",
    "{a: b}", "\r\n", "\r", "%", "@", "k:\n- ", "\ufeff", "!a[b ", "[? ]", "? ]",
]  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(PIECES), max_size=40))
def test_never_below_libyaml_on_token_soup(pieces: list[str]) -> None:
    assert_bounded("".join(pieces))


scalars = st.sampled_from(["a", "b c", "it's", 'say "x"', "[x]", "{y}", "#z", "a: b", "- q", 1])
values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.sampled_from(["k", "a b", "[k]", "x:y", "-", "?"]), children)
    ),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(
    value=values,
    flow=st.sampled_from([True, False, None]),
    indent=st.sampled_from([(2, 2, 0), (4, 4, 2), (2, 4, 2)]),
    inserts=st.lists(st.tuples(st.floats(0, 1), st.sampled_from(PIECES)), max_size=4),
)
def test_never_below_libyaml_on_dumped_values(
    value: Any, flow: bool | None, indent: tuple[int, int, int], inserts: list[tuple[float, str]]
) -> None:
    yaml = YAML(typ="rt")
    yaml.default_flow_style = flow
    yaml.indent(mapping=indent[0], sequence=indent[1], offset=indent[2])
    stream = io.StringIO()
    yaml.dump(value, stream)
    text = stream.getvalue()
    for where, piece in inserts:
        at = int(where * len(text))
        text = text[:at] + piece + text[at:]
    assert_bounded(text)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_any_text_returns(text: str) -> None:
    nesting_overflow(text, 3)
    nesting_overflow(text, 64)


@pytest.mark.parametrize(
    ("text", "limit", "where"),
    [
        ("a: [[[x]]]\n", 3, (1, 6)),  # mapping 1, then 2, 3, 4
        ("a: [[[x]]]\n", 4, None),
        ("- - - - x\n", 3, (1, 7)),
        ("? ? ? ? x\n", 3, (1, 7)),
        ("a:\n  b:\n    c:\n      d: x\n", 3, (4, 7)),
        ("a:\n- b:\n  - x\n", 3, (3, 3)),  # the sequence at its key's column counts
        ("[[[a]]]: b\n", 3, (1, 1)),  # the mapping began with its key
        ("- [[a]: b]\n", 3, (1, 7)),  # so did `[a]: b` in a list (found at its `:`)
        ("[[? ], [[x]]]\n", 3, (1, 5)),  # libyaml 0.1 swallows the `]` after `? `
    ],
)
def test_where_the_limit_is_crossed(text: str, limit: int, where: tuple[int, int] | None) -> None:
    assert nesting_overflow(text, limit) == where
    assert libyaml_depth(text) > limit if where else libyaml_depth(text) <= limit


@pytest.mark.parametrize(
    "text",
    [
        "a: '" + "[" * 100 + "'\n",
        'a: "' + "{" * 100 + '\\"[["\n',
        "a: x # " + "[" * 100 + "\n",
        "a: |\n  " + "[" * 100 + "\n  " + "{" * 100 + "\nb: c\n",
        "a: x[" + "[" * 100 + "\n",  # a plain scalar: not a flow collection
        "a: it's [" + "[" * 100 + "\n",
        "\n---\n".join(f"k{i}: [[[[x]]]]" for i in range(100)),  # each document on its own
        "a:\r\n  b: [[x]]\r\n" * 60,
        "a:\r  b: [[x]]\r" * 60,
        "a:\x85  b: [[x]]\x85" * 60,
    ],
)
def test_what_does_not_nest_is_not_counted(text: str) -> None:
    assert libyaml_depth(text) <= 64
    assert nesting_overflow(text, 64) is None


def test_a_deep_document_after_shallow_ones_is_found_in_its_own_place() -> None:
    text = "a: 1\n---\nb: [2]\n---\nc: " + "[" * 70 + "]" * 70 + "\n"
    assert nesting_overflow(text, 64) == (5, 67)


def test_a_long_document_is_bounded_quickly() -> None:
    """The static bound settles ordinary files at C speed; the token scan is for the rest."""
    deep = "a: " + "[" * 50_000 + "]" * 50_000 + "\n"
    assert nesting_overflow(deep, 64) == (1, 67)
