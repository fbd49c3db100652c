"""The JSON Schema that `orchestrator schema` prints, checked with a real validator.

Covers: it is a valid 2020-12 schema; every example manifest (and the golden
manifests, which use literal secrets and numeric codes) conforms to it, so
editors using it never flag a valid manifest; it rejects unknown keys, a wrong
word, and a secret of the wrong shape; every model key is in it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from ruamel.yaml import YAML

from orchestrator.manifest.schema import manifest_json_schema

ROOT = Path(__file__).parents[3]
FILES = sorted((ROOT / "recordings.d").glob("*.yaml")) + sorted(
    (ROOT / "tests/golden").glob("*.yaml")
)


def documents() -> list[Any]:
    yaml = YAML(typ="safe", pure=False)
    docs: list[Any] = []
    for path in FILES:
        docs.extend(d for d in yaml.load_all(path.read_text(encoding="utf-8")) if d)
    return docs


def as_json(value: Any) -> Any:
    """What an editor sees: YAML timestamps are strings to JSON Schema."""
    if isinstance(value, dict):
        return {k: as_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [as_json(v) for v in value]
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


@pytest.fixture(scope="module")
def validator() -> Draft202012Validator:
    schema = manifest_json_schema()
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


@pytest.mark.parametrize("doc", documents(), ids=lambda d: str(d.get("name")))
def test_valid_manifests_conform(validator: Draft202012Validator, doc: Any) -> None:
    errors = [e.message for e in validator.iter_errors(as_json(doc))]
    assert errors == []


@pytest.mark.parametrize(
    "change",
    [
        {"colour": "red"},
        {"mode": "both"},
        {"token": {"vault": "x"}},
        {"recording": {"streams": "smell"}},
        {"schedule": "sometimes"},
        {"uid": 0},
    ],
)
def test_invalid_manifests_are_flagged(
    validator: Draft202012Validator, change: dict[str, Any]
) -> None:
    doc = {**as_json(documents()[0]), **change}
    assert list(validator.iter_errors(doc))


def test_every_top_level_key_is_described() -> None:
    from orchestrator.manifest.model import Manifest

    schema = manifest_json_schema()
    keys = {info.alias for info in Manifest.model_fields.values()}
    assert keys == set(schema["properties"])
