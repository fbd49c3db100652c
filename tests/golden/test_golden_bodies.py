"""Golden tests: manifests equivalent to the reference's example requests produce
exactly the reference's bodies (dict equality, so key order and whitespace do not
matter, but every field name, type and value does).

Covers acquire, the three start examples (recording, snapshot, aliyun VOD),
update, updateLayout and stop. The JSON files are copied verbatim from
cloud-recording-restful-api.zh.txt; the YAML files are the manifests.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from orchestrator.manifest.loader import load_file
from orchestrator.manifest.model import Manifest
from orchestrator.reconcile.translate import Requests, stop_request, translate
from orchestrator.secrets import resolve_secret

HERE = Path(__file__).parent


def _layout(requests: Requests) -> dict[str, Any]:
    """The updateLayout body (mix mode only)."""
    assert requests.update_layout is not None
    return requests.update_layout.to_wire()


def _manifest(name: str) -> Manifest:
    loaded, diagnostics = load_file(str(HERE / name))
    assert [d for d in diagnostics if d.severity == "error"] == []
    assert len(loaded) == 1
    return loaded[0].manifest


def _start(m: Manifest) -> dict[str, Any]:
    return translate(m).start.resolved(lambda ref: resolve_secret(ref, environ={})).to_wire()


CASES: list[tuple[str, Callable[[Manifest], dict[str, Any]], str]] = [
    ("recording.yaml", lambda m: translate(m).acquire.to_wire(), "acquire.json"),
    ("recording.yaml", _start, "start_recording.json"),
    ("snapshot.yaml", _start, "start_snapshot.json"),
    ("aliyun_vod.yaml", _start, "start_aliyun_vod.json"),
    ("update.yaml", lambda m: translate(m).update.to_wire(), "update.json"),
    ("update_layout.yaml", lambda m: _layout(translate(m)), "update_layout.json"),
    ("recording.yaml", lambda m: stop_request(m.channel, m.recording_uid).to_wire(), "stop.json"),
]


@pytest.mark.parametrize(("manifest", "build", "golden"), CASES, ids=[c[2] for c in CASES])
def test_body_equals_reference(
    manifest: str, build: Callable[[Manifest], dict[str, Any]], golden: str
) -> None:
    expected = json.loads((HERE / golden).read_text(encoding="utf-8"))
    assert build(_manifest(manifest)) == expected


def test_bodies_are_json_with_the_same_types() -> None:
    """UIDs are strings and floats stay floats after a JSON round trip."""
    body = _layout(translate(_manifest("update_layout.yaml")))
    again = json.loads(json.dumps(body))
    region = again["clientRequest"]["layoutConfig"][0]
    assert region["uid"] == "1"
    assert isinstance(region["x_axis"], float)
    assert isinstance(region["render_mode"], int)


def test_stop_body_from_a_stored_session() -> None:
    expected = json.loads((HERE / "stop.json").read_text(encoding="utf-8"))
    assert stop_request("httpClient463224", 527841).to_wire() == expected
