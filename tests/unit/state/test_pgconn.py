"""A PostgreSQL URL as the store reads it (no server: `PostgresTarget` alone).

Covers: a password holding '@', '/', '?' or '#' as they are is refused with a message
that holds no part of it (libpq splits such a URL elsewhere than we do, and its error
then quoted the rest of the password as a host); the same password percent-encoded is
taken, and its location shows the user, host and database without it.
"""

from __future__ import annotations

import pytest

from orchestrator.state.errors import StoreError
from orchestrator.state.pgconn import PostgresTarget


@pytest.mark.parametrize("password", ["s3cr@tXq", "s3cr/tXq", "s3cr#tXq", "s3cr?tXq"])
def test_a_password_with_a_delimiter_as_it_is_is_refused_unshown(password: str) -> None:
    url = f"postgresql://orchestrator:{password}@127.0.0.1:5432/orchestrator"
    with pytest.raises(StoreError) as refused:
        PostgresTarget(url)
    message = str(refused.value)
    assert message.startswith("invalid PostgreSQL URL (not shown: it may hold a password)")
    assert "%40" in message
    for part in ("s3cr", "tXq", "127.0.0.1"):
        assert part not in message


def test_a_percent_encoded_password_is_taken_and_never_shown() -> None:
    target = PostgresTarget("postgresql://orchestrator:my%40secret%2F%23@db.example/rec")
    assert target.location == "postgresql://orchestrator@db.example/rec"
    assert target.redact("failed for my@secret/# and my%40secret%2F%23") == (
        "failed for *** and ***"
    )
