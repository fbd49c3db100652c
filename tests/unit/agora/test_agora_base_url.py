"""`base_url_problem`: the one rule for the API's base URL, used by the client and the config.

Covers: https:// to any host; plain http:// only to loopback (127.0.0.0/8, ::1,
localhost); no query, fragment, user info or missing host; the client refuses
exactly what the rule refuses, with the rule's words.
"""

from __future__ import annotations

import pytest

from orchestrator.agora.client import AgoraClient, base_url_problem

PLAIN_HTTP = "plain http:// is only allowed to a loopback address"
NOT_A_URL = "must be an http:// or https:// URL without query"


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("https://api.agora.io", None),
        ("https://api.agora.io/", None),
        ("https://10.0.0.5:8443/agora", None),
        ("http://127.0.0.1:8080", None),
        ("http://127.200.0.1", None),
        ("http://localhost:1", None),
        ("http://[::1]:9", None),
        ("http://10.0.0.5", PLAIN_HTTP),
        ("http://api.agora.io:80/", PLAIN_HTTP),
        ("http://[::2]:1", PLAIN_HTTP),
        ("http://localhost.example", PLAIN_HTTP),
        ("api.agora.io", NOT_A_URL),
        ("ftp://127.0.0.1", NOT_A_URL),
        ("https://api.agora.io?x=1", NOT_A_URL),
        ("https://api.agora.io/#top", NOT_A_URL),
        ("https://api agora.io", NOT_A_URL),
        ("https://", NOT_A_URL),
        ("https://:443", "must name a host"),
        ("https://user:pw@api.agora.io", "must not hold a user or password"),
    ],
)
def test_base_url_problem(url: str, problem: str | None) -> None:
    found = base_url_problem(url)
    if problem is None:
        assert found is None
        assert AgoraClient(customer_id="c", customer_secret="s", base_url=url).base_url == (
            url.rstrip("/")
        )
    else:
        assert found is not None and found.startswith(problem)
        assert "pw" not in found
        with pytest.raises(ValueError) as raised:
            AgoraClient(customer_id="c", customer_secret="s", base_url=url)
        assert str(raised.value) == f"base_url {found}"
