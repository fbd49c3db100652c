"""Which keys carry secrets: one list (`SECRET_KEYS`), one way to match it.

Covers: `is_secret_key` on the spellings each layer meets (YAML camelCase, log
keys in snake_case, headers with dashes, any case) and on keys that are not
secrets; the log processor masking the value of every such key on a real JSON
log line, whatever spelling the call site used.
"""

from __future__ import annotations

import json

import pytest
import structlog

from orchestrator.logging import configure_logging
from orchestrator.secrets import SECRET_KEYS, is_secret_key


@pytest.mark.parametrize(
    ("key", "secret"),
    [
        *((key, True) for key in sorted(SECRET_KEYS)),
        ("customer_secret", True),
        ("customer_id", True),
        ("secret_key", True),
        ("X-Authorization", True),
        ("TOKEN", True),
        ("db_password", True),
        ("app_id", False),
        ("channel", False),
        ("resource_id", False),
        ("bucket", False),
        ("regionId", False),
    ],
)
def test_is_secret_key(key: str, secret: bool) -> None:
    assert is_secret_key(key) is secret


def test_log_lines_mask_the_value_of_every_secret_key(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("info", json=True)
    try:
        structlog.get_logger().info(
            "test.event",
            customer_secret="cs-value",
            secretKey="sk-value",
            access_key="ak-value",
            authorization="Basic abc",
            channel="room-1",
        )
    finally:
        structlog.reset_defaults()
    line = json.loads(capsys.readouterr().err)
    masked = ("customer_secret", "secretKey", "access_key", "authorization")
    assert {key: line[key] for key in masked} == dict.fromkeys(masked, "***")
    assert line["channel"] == "room-1"
