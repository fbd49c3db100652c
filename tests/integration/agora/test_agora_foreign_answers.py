"""Only Agora's own answer is Agora's: answers a proxy may give, against the emulator.

Covers: a proxy's `404 <html>nginx</html>` and an empty 404 on stop, query and
updateLayout are a `ForeignAnswerError`, never `NotFoundError`: retried to the end
of the client's attempts with the same resource ID and sid, each attempt logged with
the first bytes of the body and counted in the daemon's metrics with status 404 and
an empty code, and the recording is still live in the emulator afterwards; Agora's
own 404 (its JSON body with code 404) still is `NotFoundError`, at once; a 200 whose
body is not JSON is retried the same way; the emulator's `answer` fault with a raw
body and content type, set over its HTTP control API.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import agora_bodies as bodies
import pytest
from structlog.testing import capture_logs

from orchestrator.agora.client import AgoraClient
from orchestrator.agora.errors import ForeignAnswerError, NotFoundError
from orchestrator.daemon.metrics import Metrics
from tests.integration.conftest import FAST_RETRY

if TYPE_CHECKING:
    from conftest import EmulatorHandle

pytestmark = pytest.mark.integration

ATTEMPTS = FAST_RETRY.max_attempts
NGINX = "<html>\r\n<head><title>404 Not Found</title></head>\r\n<center>nginx</center>\r\n</html>"


async def _live(emulator: EmulatorHandle, client: AgoraClient) -> tuple[str, str]:
    """Start a recording of a channel with a user sending; its (resource ID, sid)."""
    emulator.emu.join(emulator.app_id, bodies.CNAME, "123")
    rid = await client.acquire(emulator.app_id, bodies.acquire())
    sid = await client.start(emulator.app_id, rid, "mix", bodies.start_recording())
    return rid, sid


async def _call(client: AgoraClient, endpoint: str, app: str, rid: str, sid: str) -> Any:
    if endpoint == "stop":
        return await client.stop(app, rid, sid, "mix", bodies.stop())
    if endpoint == "updateLayout":
        return await client.update_layout(app, rid, sid, "mix", bodies.update_layout())
    return await client.query(app, rid, sid, "mix")


@pytest.mark.parametrize("endpoint", ["stop", "query", "updateLayout"])
@pytest.mark.parametrize(
    ("body", "content_type", "shown"),
    [
        (NGINX, "text/html", "not Agora's answer (text/html, 82 bytes): <html> <head>"),
        ("", None, "not Agora's answer (no content type, empty body)"),
    ],
    ids=["nginx", "empty"],
)
async def test_a_proxy_404_is_a_failed_call_retried_never_an_end(
    emulator: EmulatorHandle, endpoint: str, body: str, content_type: str | None, shown: str
) -> None:
    metrics = Metrics()
    client = emulator.client(
        on_call=lambda call: metrics.observe_api_call(
            call.endpoint, call.status, call.code, call.latency
        )
    )
    app = emulator.app_id
    rid, sid = await _live(emulator, client)
    emulator.emu.fail_next(
        endpoint, "answer", ATTEMPTS, status=404, body=body, content_type=content_type
    )
    with capture_logs() as logs, pytest.raises(ForeignAnswerError) as caught:
        await _call(client, endpoint, app, rid, sid)
    error = caught.value
    assert not isinstance(error, NotFoundError)
    assert (error.status, error.code, error.ambiguous) == (404, None, True)
    assert error.reason.startswith(shown)

    # Retried to the client's last attempt, the same resource ID and sid every time.
    sent = emulator.emu.requests(endpoint)
    assert [r["status"] for r in sent] == [404] * ATTEMPTS
    assert len({r["path"] for r in sent}) == 1 and sid in sent[0]["path"]
    calls = [e for e in logs if e["event"] == "api.call" and e["endpoint"] == endpoint]
    assert [(e["attempt"], e["status"], e["code"], e["outcome"]) for e in calls] == [
        *((n, 404, None, "retry") for n in range(1, ATTEMPTS)),
        (ATTEMPTS, 404, None, "error"),
    ]
    assert {e["error"] for e in calls} == {"ForeignAnswerError"}
    assert all(e["reason"].startswith(shown) and len(e["reason"]) <= 200 for e in calls)
    # Counted like every call: status 404, code empty.
    labels = {"endpoint": endpoint, "status": "404", "code": ""}
    assert metrics.registry.get_sample_value("orchestrator_api_requests_total", labels) == ATTEMPTS

    # The recording was never touched: it still records, and answers its own query.
    (session,) = emulator.emu.sessions()
    assert session["live"] and session["sid"] == sid
    answer = await client.query(app, rid, sid, "mix")
    assert answer.sid == sid


@pytest.mark.parametrize("endpoint", ["stop", "query", "updateLayout"])
async def test_agoras_own_404_is_the_end_at_once(emulator: EmulatorHandle, endpoint: str) -> None:
    client = emulator.client()
    rid, sid = await _live(emulator, client)
    emulator.emu.fail_next(endpoint, "answer", status=404, code=404)
    with pytest.raises(NotFoundError) as caught:
        await _call(client, endpoint, emulator.app_id, rid, sid)
    assert caught.value.code == 404
    assert len(emulator.emu.requests(endpoint)) == 1  # not retried


async def test_a_200_that_is_not_json_is_retried_then_answered(emulator: EmulatorHandle) -> None:
    """A proxy's 200 page on stop: the stop is sent again, and Agora's answer counts."""
    client = emulator.client()
    rid, sid = await _live(emulator, client)
    emulator.emu.fail_next(
        "stop", "answer", status=200, body="<html>ok</html>", content_type="text/html"
    )
    with capture_logs() as logs:
        answer = await client.stop(emulator.app_id, rid, sid, "mix", bodies.stop())
    assert answer.sid == sid
    assert [r["status"] for r in emulator.emu.requests("stop")] == [200, 200]
    first = next(e for e in logs if e["event"] == "api.call" and e["endpoint"] == "stop")
    assert (first["outcome"], first["error"]) == ("retry", "ForeignAnswerError")
    assert first["reason"] == "not Agora's answer (text/html, 15 bytes): <html>ok</html>"
    assert not [s for s in emulator.emu.sessions() if s["live"]]


@pytest.mark.parametrize("status", [200, 500])
async def test_json_nested_past_the_parsers_depth_is_a_foreign_answer(
    emulator: EmulatorHandle, status: int
) -> None:
    """Defect: a body nested deeper than Python's JSON reader goes (a RecursionError)
    escaped the client as a crash of the call; it is an answer that is not Agora's."""
    client = emulator.client()
    rid, sid = await _live(emulator, client)
    deep = "[" * 100_000 + "]" * 100_000
    emulator.emu.fail_next(
        "stop", "answer", status=status, body=deep, content_type="application/json"
    )
    with capture_logs() as logs:
        answer = await client.stop(emulator.app_id, rid, sid, "mix", bodies.stop())
    assert answer.sid == sid  # retried: the second attempt is Agora's
    first = next(e for e in logs if e["event"] == "api.call" and e["endpoint"] == "stop")
    assert (first["outcome"], first["status"]) == ("retry", status)


async def test_the_control_api_takes_a_raw_answer(emulator: EmulatorHandle) -> None:
    control = emulator.control()
    fault = {
        "endpoint": "query",
        "kind": "answer",
        "status": 404,
        "body": NGINX,
        "content_type": "text/html",
    }
    response = await control.post("/faults/next", json=fault)
    assert response.status_code == 200
    assert response.json()["next"] == [{**fault, "count": 1, "seconds": 0.0, "code": None}]
    refused = [
        {**fault, "code": 404},  # a raw body carries no code
        {**fault, "kind": "error"},  # a body belongs to an answer
        {**fault, "body": 404},
        {**fault, "status": 100},
        {**fault, "content_type": "text/html\r\nX-Injected: 1"},
    ]
    for bad in refused:
        answer = await control.post("/faults/next", json=bad)
        assert answer.status_code == 400, bad
    client = emulator.client()
    rid, sid = await _live(emulator, client)
    http = emulator.control()  # a plain client: look at the very bytes the proxy sent
    url = (
        f"{emulator.base_url}/v1/apps/{emulator.app_id}/cloud_recording/resourceid/{rid}"
        f"/sid/{sid}/mode/mix/query"
    )
    got = await http.get(url, auth=(emulator.customer_id, emulator.customer_secret))
    assert got.status_code == 404 and got.text == NGINX
    assert got.headers["content-type"] == "text/html"
