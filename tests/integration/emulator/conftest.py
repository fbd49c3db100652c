"""Fixtures for the emulator's own behaviour over real HTTP: its API called raw (to
see exact statuses and bodies) and an NCS receiver it notifies.

`api` calls the six endpoints with httpx (Basic auth, the exact content type) and
returns the raw answers; `receiver` is a `tests/integration/emulator/ncs_receiver.py`
endpoint that the emulator notifies (set through `PUT /_emulator/notify`), with
resends after 50 ms instead of 1, 2 and 4 s so retry tests stay short.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.integration.conftest import EmulatorHandle
from tests.integration.emulator.ncs_receiver import Receiver, ncs_receiver

NCS_SECRET = "ncs-secret-for-tests"  # the receiver checks signatures with it
CNAME = "ncs-room"
UID = "527841"
PUBLISHER = "1001"
FAST_RETRY = [0.05, 0.05, 0.05]
JSON = {"Content-Type": "application/json;charset=utf-8"}


@dataclass
class Started:
    """A recording the emulator started: what its sid routes need."""

    resource_id: str
    sid: str
    mode: str


@dataclass
class Api:
    """The six endpoints of one App ID, called raw."""

    http: httpx.AsyncClient
    app_id: str

    def _sid_path(self, rec: Started, action: str) -> str:
        return (
            f"/v1/apps/{self.app_id}/cloud_recording/resourceid/{rec.resource_id}"
            f"/sid/{rec.sid}/mode/{rec.mode}/{action}"
        )

    async def start(
        self, *, mode: str = "mix", uid: str = UID, client_request: dict[str, Any] | None = None
    ) -> Started:
        base = f"/v1/apps/{self.app_id}/cloud_recording"
        acquired = await self.http.post(
            base + "/acquire", json={"cname": CNAME, "uid": uid, "clientRequest": {}}, headers=JSON
        )
        resource_id = acquired.json()["resourceId"]
        request = client_request if client_request is not None else {"recordingConfig": {}}
        started = await self.http.post(
            f"{base}/resourceid/{resource_id}/mode/{mode}/start",
            json={"cname": CNAME, "uid": uid, "clientRequest": request},
            headers=JSON,
        )
        assert started.status_code == 200, started.text
        return Started(resource_id, started.json()["sid"], mode)

    async def query(self, rec: Started) -> httpx.Response:
        return await self.http.get(self._sid_path(rec, "query"))

    async def stop(self, rec: Started, uid: str = UID) -> httpx.Response:
        body = {"cname": CNAME, "uid": uid, "clientRequest": {}}
        return await self.http.post(self._sid_path(rec, "stop"), json=body, headers=JSON)

    async def update(self, rec: Started, uid: str = UID) -> httpx.Response:
        body = {
            "cname": CNAME,
            "uid": uid,
            "clientRequest": {"streamSubscribe": {"audioUidList": {"subscribeAudioUids": ["1"]}}},
        }
        return await self.http.post(self._sid_path(rec, "update"), json=body, headers=JSON)

    async def update_layout(self, rec: Started, uid: str = UID) -> httpx.Response:
        body = {"cname": CNAME, "uid": uid, "clientRequest": {"mixedVideoLayout": 1}}
        return await self.http.post(self._sid_path(rec, "updateLayout"), json=body, headers=JSON)


@pytest.fixture
async def api(emulator: EmulatorHandle) -> AsyncIterator[Api]:
    auth = (emulator.customer_id, emulator.customer_secret)
    async with httpx.AsyncClient(base_url=emulator.base_url, auth=auth, timeout=5.0) as http:
        yield Api(http, emulator.app_id)


@pytest.fixture
async def receiver(emulator: EmulatorHandle) -> AsyncIterator[Receiver]:
    """An NCS endpoint the emulator notifies (resends after 50 ms)."""
    async with ncs_receiver(NCS_SECRET) as got:
        async with emulator.control() as control:
            on = await control.put("/notify", json={"url": got.url, "secret": NCS_SECRET})
            assert on.status_code == 200, on.text
            fast = await control.put("/notify/delivery", json={"retry": FAST_RETRY})
            assert fast.status_code == 200, fast.text
        yield got
