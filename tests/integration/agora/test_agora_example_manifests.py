"""The example manifests in recordings.d/, translated to bodies, run their whole life
against the emulator: acquire, start, update, updateLayout (mix), query, stop.

This is where the manifest translation and the client/emulator rules meet: a body
the translation produces must be one the reference (and so the emulator) accepts.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from orchestrator.manifest.loader import load_manifests
from orchestrator.manifest.model import Manifest
from orchestrator.reconcile.translate import stop_request, translate

if TYPE_CHECKING:
    from conftest import EmulatorHandle

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).resolve().parents[3] / "recordings.d"


def _manifests() -> list[Manifest]:
    result = load_manifests([EXAMPLES])
    return [loaded.manifest for loaded in result.manifests]


@pytest.mark.parametrize("m", _manifests(), ids=lambda m: m.name)
async def test_example_manifest_lifecycle(emulator: EmulatorHandle, m: Manifest) -> None:
    client = emulator.client()
    app = emulator.app_id
    requests = translate(m)  # typed requests, sent as the executor sends them
    mode = requests.mode
    rid = await client.acquire(app, requests.acquire)
    sid = await client.start(app, rid, mode, requests.start.resolved(lambda ref: "resolved-secret"))
    emulator.emu.join(app, m.channel, "4242")
    await client.update(app, rid, sid, mode, requests.update)
    if requests.update_layout is not None:
        await client.update_layout(app, rid, sid, mode, requests.update_layout)
    query = await client.query(app, rid, sid, mode)
    assert query.sid == sid
    stopped = await client.stop(app, rid, sid, mode, stop_request(m.channel, m.recording_uid))
    assert stopped.serverResponse.uploadingStatus == "uploaded"
