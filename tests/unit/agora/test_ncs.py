"""agora/ncs.py: Agora's notification signature and what each event means.

Covers: the V2 signature is the lowercase hex HMAC-SHA256 of the raw body (checked
against hashlib's HMAC computed here, and a fixed vector), case-insensitive, and any
change of body, secret or signature fails; a missing one fails. Parsing takes the
documented fields (a numeric uid becomes text) and refuses what is not a
notification with the field named. Meanings: 11 and 41 are exits, 1 only when fatal
(errorLevel 5), 12 a failover with its new uid, 4, 31 and 32 file lists, anything
else (or another product) nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest

from orchestrator.agora import ncs

SECRET = "a-secret"


def body(event: int, product: int = 3, **details: object) -> bytes:
    return json.dumps(
        {
            "noticeId": "4eb720f0-8da7-11e9-a43e-53f411c2761f",
            "productId": product,
            "eventType": event,
            "notifyMs": 1560408533119,
            "payload": {"cname": "room", "uid": 123, "sid": "S1", "details": details},
        }
    ).encode()


def test_signature_is_hex_hmac_sha256_of_the_raw_body() -> None:
    raw = body(11, exitStatus=0)
    expected = hmac.new(SECRET.encode(), raw, hashlib.sha256).hexdigest()
    assert ncs.sign(SECRET, raw) == expected
    # The well-known HMAC-SHA256 example vector.
    fox = b"The quick brown fox jumps over the lazy dog"
    assert ncs.sign("key", fox) == (
        "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
    )
    assert ncs.sign_sha1(SECRET, raw) == hmac.new(SECRET.encode(), raw, hashlib.sha1).hexdigest()
    assert ncs.verify(SECRET, raw, expected)
    assert ncs.verify(SECRET, raw, expected.upper())  # hex, whatever its case
    assert not ncs.verify(SECRET, raw + b" ", expected)
    assert not ncs.verify("other", raw, expected)
    assert not ncs.verify(SECRET, raw, expected[:-1] + ("0" if expected[-1] != "0" else "1"))
    assert not ncs.verify(SECRET, raw, None)
    assert not ncs.verify(SECRET, raw, "")


def test_parse_reads_the_documented_fields() -> None:
    notification = ncs.parse(body(12, newUid=456))
    assert notification.noticeId == "4eb720f0-8da7-11e9-a43e-53f411c2761f"
    assert (notification.productId, notification.eventType) == (3, 12)
    assert notification.payload.uid == "123"
    assert notification.payload.details == {"newUid": 456}
    assert ncs.parse(ncs.dumps(notification)) == notification


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        (b"not json", "not JSON"),
        (b"[]", "not a JSON object"),
        (b'{"productId": 3, "eventType": 11}', "noticeId"),
        (b'{"noticeId": "", "productId": 3, "eventType": 11}', "noticeId"),
        (b'{"noticeId": "n", "productId": "x", "eventType": 11}', "productId"),
        # Deeper than Python's JSON reader goes: a 500 of the receiver, uncounted.
        (b'{"noticeId": "n", "payload": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "deeply"),
    ],
)
def test_parse_refuses_what_is_not_a_notification(raw: bytes, says: str) -> None:
    with pytest.raises(ncs.NotificationError, match=says):
        ncs.parse(raw)


@pytest.mark.parametrize(
    ("raw", "effect"),
    [
        (body(11, exitStatus=0), ncs.Effect.EXIT),
        (body(41, leaveCode=4), ncs.Effect.EXIT),
        (body(1, errorLevel=5, module=0, errorCode=50), ncs.Effect.EXIT),
        (body(1, errorLevel=3), ncs.Effect.NONE),
        (body(12, newUid=456), ncs.Effect.FAILOVER),
        (body(4, fileList="a.m3u8"), ncs.Effect.FILES),
        (body(31, fileList=[{"fileName": "a.m3u8"}]), ncs.Effect.FILES),
        (body(32, fileList=[{"fileName": "a.m3u8"}]), ncs.Effect.FILES),
        (body(31), ncs.Effect.NONE),
        (body(40), ncs.Effect.NONE),
        (body(11, product=1), ncs.Effect.NONE),
    ],
)
def test_what_each_event_means(raw: bytes, effect: ncs.Effect) -> None:
    meaning = ncs.meaning(ncs.parse(raw))
    assert meaning.effect is effect
    if effect is ncs.Effect.FAILOVER:
        assert meaning.new_uid == "456"
    if effect is ncs.Effect.EXIT:
        assert meaning.reason.startswith("exited: ")


def test_event_names_for_metrics() -> None:
    assert ncs.event_name(11) == "session_exit"
    assert ncs.event_name(999) == "other"
