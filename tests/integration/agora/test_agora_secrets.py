"""Secrets never reach a log line or an exception text.

A recording is started with distinctive secret values (customer secret, storage
keys, token, decryption secret, VOD keys); every structlog event of the whole
exchange, including failures whose answers echo the request, and the str/repr of
every raised exception must be free of them and of the Authorization header.
"""

from __future__ import annotations

import base64
import json
from typing import TYPE_CHECKING, Any

import agora_bodies as bodies
import pytest
from structlog.testing import capture_logs

from orchestrator.agora.errors import AgoraError, error_from_response

if TYPE_CHECKING:
    from conftest import EmulatorHandle

pytestmark = pytest.mark.integration

SECRETS = {
    "storage_access": "AKIAZZSTORAGEACCESS777",
    "storage_secret": "zzStorageSecretKey/888+",
    "token": "007eJxTokenValue999",
    "decryption": "zzDecryptionPassphrase555",
    "vod_access": "LTAIzzVodAccess444",
    "vod_secret": "zzVodSecretKey333",
}


def _assert_clean(texts: list[str], customer_secret: str, auth: str) -> None:
    for text in texts:
        for value in [*SECRETS.values(), customer_secret, auth]:
            assert value not in text, f"secret leaked into: {text[:120]}"


async def test_no_secret_in_logs_or_exceptions(emulator: EmulatorHandle) -> None:
    app = emulator.app_id
    auth = base64.b64encode(f"{emulator.customer_id}:{emulator.customer_secret}".encode()).decode()
    record = bodies.start_recording()
    rc = record["clientRequest"]
    rc["token"] = SECRETS["token"]
    rc["recordingConfig"].update(decryptionMode=1, secret=SECRETS["decryption"])
    rc["storageConfig"].update(
        accessKey=SECRETS["storage_access"], secretKey=SECRETS["storage_secret"]
    )
    vod = bodies.start_vod(uid="2")
    param = vod["clientRequest"]["extensionServiceConfig"]["extensionServices"][0]["serviceParam"]
    param.update(accessKey=SECRETS["vod_access"], secretKey=SECRETS["vod_secret"])

    errors: list[BaseException] = []
    with capture_logs() as logs:
        client = emulator.client()
        rid = await client.acquire(app, bodies.acquire())
        emulator.emu.fail_next("start", "lost")
        try:
            await client.start(app, rid, "mix", record)  # lost, then 7: ambiguous
        except AgoraError as exc:
            errors.append(exc)
        rid2 = await client.acquire(app, bodies.acquire(uid="2"))
        await client.start(app, rid2, "mix", vod)
        # A body the emulator refuses, carrying the secrets (sent unvalidated).
        bad = bodies.start_recording(uid="3")
        bad["clientRequest"]["storageConfig"].update(
            accessKey=SECRETS["storage_access"], secretKey=SECRETS["storage_secret"], region=99
        )
        rid3 = await client.acquire(app, bodies.acquire(uid="3"))
        try:
            await emulator.client(validate=False).start(app, rid3, "mix", bad)
        except AgoraError as exc:
            errors.append(exc)
        # The same body refused by the client itself.
        try:
            await client.start(app, rid3, "mix", bad)
        except AgoraError as exc:
            errors.append(exc)
        # Wrong credentials.
        try:
            await emulator.client(customer_secret="zzWrongCustomerSecret").acquire(
                app, bodies.acquire()
            )
        except AgoraError as exc:
            errors.append(exc)

    assert len(errors) == 4
    assert any(e["event"] == "api.call" for e in logs)
    texts = [json.dumps(entry, default=str) for entry in logs]
    for exc in errors:
        texts += [str(exc), repr(exc)]
        cause = exc.__cause__
        while cause is not None:
            texts += [str(cause), repr(cause)]
            cause = cause.__cause__
    _assert_clean(texts, emulator.customer_secret, auth)
    _assert_clean(texts, "zzWrongCustomerSecret", auth)


def test_echoed_secrets_are_scrubbed_from_reasons() -> None:
    echoed: dict[str, Any] = {
        "code": 2,
        "reason": f'bad storageConfig {{"secretKey": "{SECRETS["storage_secret"]}", '
        f'"accessKey":"{SECRETS["storage_access"]}"}} token={SECRETS["token"]}',
    }
    exc = error_from_response("start", 400, json.dumps(echoed).encode(), secrets=[SECRETS["token"]])
    _assert_clean([str(exc), repr(exc), exc.reason], "unused-customer-secret", "Basic x")
    assert exc.code == 2
