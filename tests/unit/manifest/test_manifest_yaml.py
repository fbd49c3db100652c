"""The fast YAML path gives exactly what ruamel's own safe loader gives.

The loader builds plain maps, lists and strings itself and leaves every other
node to ruamel's SafeConstructor (see `fastyaml._construct`). Covers: scalars of
every core type and spelling, explicit tags, anchors and aliases (shared
objects), merge keys, duplicate keys (kept once, reported), several documents, and
random values dumped in block and flow style (hypothesis).
"""

from __future__ import annotations

import io
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML
from ruamel.yaml.constructor import DuplicateKeyError
from ruamel.yaml.error import YAMLError

from orchestrator.manifest.fastyaml import fast_documents


def reference(text: str) -> list[Any]:
    return list(YAML(typ="safe", pure=False).load_all(text))


def fast(text: str) -> list[Any]:
    return [doc.data for doc in fast_documents(text)]


def same(a: Any, b: Any) -> bool:
    """Equality that also holds for NaN and checks types (1 vs 1.0 vs True)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)  # in order too
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


CASES = [
    "a: 1\nb: -0x1F\nc: 0o17\nd: 1_000\ne: +12\n",
    "a: 1.5\nb: .inf\nc: -.INF\nd: .nan\ne: 1e3\nf: 6.8523015e+5\n",
    "a: true\nb: False\nc: TRUE\nd: yes\ne: on\n",
    "a: ~\nb: null\nc:\nd: Null\n",
    "a: 2026-03-02\nb: 2026-03-02T09:00:00+08:00\nc: 2026-03-02 09:00:00Z\nd: '2026-03-02'\n",
    'a: !!str 123\nb: !!int "5"\nc: !!float 1\nd: !!binary aGVsbG8=\ne: !!null ""\n',
    "a: !!set {x, y}\nb: !!omap [{x: 1}, {y: 2}]\n",
    "base: &b {x: 1, y: [1, 2]}\nuse: *b\nlist: &l [a, b]\nagain: *l\n",
    "base: &b {x: 1, y: 2}\nmerged:\n  <<: *b\n  y: 3\n",
    "'quoted': \"text\"\nplain: a:b\nmulti: |\n  line 1\n  line 2\nfold: >\n  a\n  b\n",
    "- 1\n- [2, 3]\n- {a: b}\n",
    "a: 1\n---\n- x\n---\nplain\n---\n",
    "name: x\nlabels: {team: a}\nschedule: always\nuid: auto\n",
]


@pytest.mark.parametrize("text", CASES)
def test_same_data_as_ruamel(text: str) -> None:
    expected, got = reference(text), fast(text)
    assert len(got) == len(expected)
    for a, b in zip(expected, got, strict=True):
        assert same(a, b), (a, b)


def test_keys_that_are_not_text_are_left_out_and_reported() -> None:
    """Every key of a manifest is a name: one that is not text is left out (the model
    would report it with the key as its field, and no position) and recorded where it
    stands, also in a mapping ruamel builds (a merge key)."""
    text = (
        "7: int key\n2.5: float key\ntrue: bool key\n[a, b]: complex key\n~: null key\n"
        "'8': quoted\n!!str 9: tagged\nm:\n  <<: {x: 1}\n  10: y\n"
    )
    (doc,) = fast_documents(text)
    assert doc.data == {"8": "quoted", "9": "tagged", "m": {"x": 1}}
    assert [(k.loc, k.at) for k in doc.not_text] == [
        ((), (1, 1)),
        ((), (2, 1)),
        ((), (3, 1)),
        ((), (4, 1)),
        ((), (5, 1)),
        (("m",), (10, 3)),
    ]


def test_aliases_share_one_object() -> None:
    (data,) = fast("a: &x [1, 2]\nb: *x\nc: &m {k: v}\nd: *m\n")
    assert data["a"] is data["b"]
    assert data["c"] is data["d"]


def test_duplicate_keys_keep_the_first_and_are_reported() -> None:
    """ruamel raises on a duplicate key (hiding every other finding of the file); the
    fast path keeps the first value and reports both positions."""
    text = "a: 1\nb:\n  c: 1\n  c: 2\n"
    with pytest.raises(DuplicateKeyError):
        reference(text)
    (doc,) = fast_documents(text)
    assert doc.data == {"a": 1, "b": {"c": 1}}
    assert [(d.loc, d.key, d.first, d.again) for d in doc.duplicates] == [
        (("b", "c"), "c", (3, 3), (4, 3))
    ]


values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=15)
    | st.dates(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=15,
)


@settings(max_examples=200, deadline=None)
@given(value=values, flow=st.booleans())
def test_random_values_round_trip_the_same(value: Any, flow: bool) -> None:
    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = flow
    stream = io.StringIO()
    yaml.dump(value, stream)
    text = stream.getvalue()
    try:
        expected = reference(text)
    except YAMLError as exc:  # libyaml is stricter than ruamel's dumper in flow style
        with pytest.raises(type(exc)):
            fast(text)
        return
    got = fast(text)
    assert len(expected) == len(got) == 1
    assert same(expected[0], got[0]), text
