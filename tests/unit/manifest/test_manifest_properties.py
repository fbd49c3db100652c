"""Property-based: whatever the input, loading gives manifests or positioned errors.

Covers random text, random bytes, structural mutations of the example
manifests (keys dropped, renamed, values replaced by arbitrary YAML values,
junk keys added at any depth) and character-level mutations of their text.
The invariant: `load_file` never raises; the file either yields manifests
with no error, or at least one error, and every diagnostic has a line inside
the file and a column >= 1. Valid results also translate without raising.
"""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator.manifest.loader import load_file
from orchestrator.reconcile.translate import translate

EXAMPLES = sorted((Path(__file__).parents[3] / "recordings.d").glob("*.yaml"))
SETTINGS = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def _example_docs() -> list[dict[str, Any]]:
    from ruamel.yaml import YAML

    yaml = YAML(typ="safe", pure=False)
    docs: list[dict[str, Any]] = []
    for path in EXAMPLES:
        docs.extend(d for d in yaml.load_all(path.read_text(encoding="utf-8")) if d)
    return docs


DOCS = _example_docs()
TEXTS = [p.read_text(encoding="utf-8") for p in EXAMPLES]

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**40), max_value=2**40)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | st.sampled_from(["auto", "mix", "#allstream#", "30m", "us-east-1", "", "#FF0000"])
)
values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


@pytest.fixture(scope="module")
def scratch() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as directory:
        yield Path(directory) / "m.yaml"


def check(path: Path, content: str | bytes) -> None:
    if isinstance(content, bytes):
        path.write_bytes(content)
        text = content.decode("utf-8", errors="replace")
    else:
        path.write_bytes(content.encode("utf-8", errors="surrogatepass"))
        text = content
    # YAML (and editors) also break lines at a lone \r; ruamel's reader at NEL, LS, PS too
    lines = len(re.split("\r\n|\r|\n|\x85|\u2028|\u2029", text))
    loaded, diagnostics = load_file(str(path))
    errors = [d for d in diagnostics if d.severity == "error"]
    assert loaded or errors or diagnostics, "neither manifests nor diagnostics"
    for d in diagnostics:
        assert 1 <= d.line <= lines + 1, d
        assert d.column >= 1, d
        assert d.message
    for item in loaded if not errors else []:
        translate(item.manifest).start.described()
        translate(item.manifest).update.to_wire()


def mutate(doc: Any, data: st.DataObject, depth: int = 0) -> Any:
    if isinstance(doc, dict) and doc:
        doc = dict(doc)
        key = data.draw(st.sampled_from(sorted(doc, key=str)))
        action = data.draw(st.sampled_from(["drop", "replace", "rename", "recurse", "add"]))
        if action == "drop":
            del doc[key]
        elif action == "replace":
            doc[key] = data.draw(values)
        elif action == "rename":
            doc[data.draw(st.text(min_size=1, max_size=12))] = doc.pop(key)
        elif action == "add":
            doc[data.draw(st.text(max_size=12))] = data.draw(values)
        elif depth < 6:
            doc[key] = mutate(doc[key], data, depth + 1)
        return doc
    if isinstance(doc, list) and doc:
        doc = list(doc)
        index = data.draw(st.integers(min_value=0, max_value=len(doc) - 1))
        doc[index] = (
            mutate(doc[index], data, depth + 1) if data.draw(st.booleans()) else data.draw(values)
        )
        return doc
    return data.draw(values)


@SETTINGS
@given(data=st.data())
def test_mutated_documents(scratch: Path, data: st.DataObject) -> None:
    doc = data.draw(st.sampled_from(DOCS))
    for _ in range(data.draw(st.integers(min_value=1, max_value=4))):
        doc = mutate(doc, data)
    text = json.dumps(doc, indent=2, default=str)  # JSON is YAML, one key per line
    check(scratch, text)


@SETTINGS
@given(data=st.data())
def test_mutated_text(scratch: Path, data: st.DataObject) -> None:
    text = data.draw(st.sampled_from(TEXTS))
    for _ in range(data.draw(st.integers(min_value=1, max_value=5))):
        at = data.draw(st.integers(min_value=0, max_value=len(text)))
        junk = data.draw(
            st.text(max_size=4) | st.sampled_from([":", "-", "\t", "'", "[", "{", "#"])
        )
        cut = data.draw(st.integers(min_value=0, max_value=3))
        text = text[:at] + junk + text[at + cut :]
    check(scratch, text)


@SETTINGS
@given(text=st.text(max_size=300))
def test_random_text(scratch: Path, text: str) -> None:
    check(scratch, text)


@SETTINGS
@given(blob=st.binary(max_size=300))
def test_random_bytes(scratch: Path, blob: bytes) -> None:
    check(scratch, blob)


# The examples raise no warning at all (`validate` warns about settings that
# can never take effect, such as `defer` with `always`).
ALLOWED_EXAMPLE_WARNINGS: set[tuple[str, str]] = set()


def test_the_examples_themselves_are_valid(scratch: Path) -> None:
    assert len(DOCS) >= 6
    for text in TEXTS:
        scratch.write_text(text, encoding="utf-8")
        loaded, diagnostics = load_file(str(scratch))
        assert loaded
        found = {(d.field, d.message) for d in diagnostics if d.severity == "warning"}
        assert [d for d in diagnostics if d.severity == "error"] == []
        assert found <= ALLOWED_EXAMPLE_WARNINGS
