"""The daemon configuration's keys for Agora's notifications and the polling budget.

Covers:
- `notifications` (the NCS receiver): defaults (off), `address` with the metrics
  address's HOST:PORT rule and `host`/`port`, `path` (starts with /, no blanks, no
  query string, at most 200 characters), `maxBody` (1024 .. 1048576), and `secret`, a
  secret reference required once an address is set;
- one port per listener: the receiver on the metrics endpoint's port (the same host,
  or either on every address) is an error at `notifications.address`;
- `reconcile.queryShare` (more than 0, at most 1) and `reconcile.failoverGrace`
  (60s .. 1h): defaults, bounds, every invalid case with its file, line and column;
- the unknown-key sentences list the new keys;
- ORCHESTRATOR_NOTIFICATIONS__* and ORCHESTRATOR_RECONCILE__* overrides, and errors
  that name the variable;
- the secret: a literal one is a warning by field, it resolves only when asked
  (`resolve_notifications_secret`: env, file, systemd credential), an unresolvable or
  empty one names the reference, and no error, log line or repr carries its value.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from orchestrator.config import (
    ConfigError,
    load_config,
    resolve_notifications_secret,
)
from orchestrator.secrets import EnvSecret, FileSecret, SecretError, mask_secrets

SECRET_FORMS = "{env: NAME}, {file: PATH} or {credential: NAME}"
NOTIFICATION_KEYS = "address, path, secret, maxBody"
DURATIONS = (
    "whole numbers with units, largest first (d, h, m, s, ms), like 500ms, 90s, 30m, "
    "1h30m or 2d; or a number of seconds"
)
SHARE = "must be more than 0 and at most 1 (a number like 0.5)"
SHARED_PORT = (
    "must not listen where metrics.address does: two listeners cannot share a port; "
    "choose another port"
)
REQUIRED_SECRET = (
    "required when address is set: the secret NCS signs notifications with, " + SECRET_FORMS
)
# A receiver that loads: an address off the metrics port, and a secret reference.
RECEIVER = "notifications:\n  address: 127.0.0.1:9465\n  secret: {env: NCS_SECRET}\n"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def load(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> Any:
    return load_config(write(tmp_path, text), environ=environ or {})


def error_of(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as raised:
        load(tmp_path, text, environ)
    return str(raised.value).replace(str(tmp_path) + "/", "")


# defaults and valid values


def test_defaults_leave_the_receiver_off(tmp_path: Path) -> None:
    config = load(tmp_path, "")
    n = config.notifications
    assert (n.address, n.host, n.port, n.secret) == (None, None, None, None)
    assert (n.path, n.max_body) == ("/agora/ncs", 65536)
    assert config.reconcile.query_share == 0.5
    assert config.reconcile.failover_grace == timedelta(seconds=90)
    assert resolve_notifications_secret(config, environ={}) is None


@pytest.mark.parametrize(
    ("address", "host", "port"),
    [
        ("127.0.0.1:9465", "127.0.0.1", 9465),
        ("[::1]:8443", "::1", 8443),
        ("ncs.internal:80", "ncs.internal", 80),
        ("127.0.0.2:9464", "127.0.0.2", 9464),  # the metrics port, on another host
    ],
)
def test_receiver_address(tmp_path: Path, address: str, host: str, port: int) -> None:
    text = f"notifications:\n  address: '{address}'\n  secret: {{env: NCS_SECRET}}\n"
    n = load(tmp_path, text).notifications
    assert (n.address, n.host, n.port) == (address, host, port)
    assert n.secret == EnvSecret(env="NCS_SECRET")


def test_the_metrics_port_is_free_when_metrics_are_off(tmp_path: Path) -> None:
    text = (
        "metrics: {address: null}\nnotifications: {address: '127.0.0.1:9464', secret: {env: S}}\n"
    )
    assert load(tmp_path, text).notifications.port == 9464


def test_port_0_on_both_listeners_is_no_clash(tmp_path: Path) -> None:
    """Port 0 binds a free port of its own each time (tests, several daemons on a host)."""
    text = (
        "metrics: {address: '127.0.0.1:0'}\n"
        "notifications: {address: '127.0.0.1:0', secret: {env: S}}\n"
    )
    config = load(tmp_path, text)
    assert (config.metrics.port, config.notifications.port) == (0, 0)


def test_a_secret_without_an_address_loads(tmp_path: Path) -> None:
    """The secret alone turns nothing on: the receiver needs an address."""
    config = load(tmp_path, "notifications: {secret: {env: NCS_SECRET}}\n")
    assert config.notifications.address is None
    assert config.notifications.secret == EnvSecret(env="NCS_SECRET")


@pytest.mark.parametrize(
    ("text", "read", "expected"),
    [
        ("notifications: {path: /}\n", lambda c: c.notifications.path, "/"),
        (
            "notifications: {path: /hooks/agora-ncs_1.json}\n",
            lambda c: c.notifications.path,
            "/hooks/agora-ncs_1.json",
        ),
        ("notifications: {path: /" + "p" * 199 + "}\n", lambda c: len(c.notifications.path), 200),
        ("notifications: {maxBody: 1024}\n", lambda c: c.notifications.max_body, 1024),
        ("notifications: {maxBody: 1048576}\n", lambda c: c.notifications.max_body, 1048576),
        ("reconcile: {queryShare: 1}\n", lambda c: c.reconcile.query_share, 1.0),
        ("reconcile: {queryShare: 0.01}\n", lambda c: c.reconcile.query_share, 0.01),
        ("reconcile: {queryShare: '0.25'}\n", lambda c: c.reconcile.query_share, 0.25),
        (
            "reconcile: {failoverGrace: 60s}\n",
            lambda c: c.reconcile.failover_grace,
            timedelta(seconds=60),
        ),
        (
            "reconcile: {failoverGrace: 1h}\n",
            lambda c: c.reconcile.failover_grace,
            timedelta(hours=1),
        ),
        (
            "reconcile: {failoverGrace: 120}\n",
            lambda c: c.reconcile.failover_grace,
            timedelta(minutes=2),
        ),
    ],
)
def test_values_at_and_inside_the_bounds(
    tmp_path: Path, text: str, read: Any, expected: object
) -> None:
    assert read(load(tmp_path, text)) == expected


# errors: one line each, where, which field, what would be valid


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # the secret is required with an address: at the section, or at a null secret
        (
            "notifications:\n  address: 127.0.0.1:9465\n",
            f"config.yaml:1:1: notifications.secret: {REQUIRED_SECRET}",
        ),
        (
            "logging: {level: info}\nnotifications:\n  address: 127.0.0.1:9465\n  secret:\n",
            f"config.yaml:4:3: notifications.secret: {REQUIRED_SECRET}",
        ),
        # one port per listener; a rule between fields points at the key
        (
            "notifications:\n  address: 127.0.0.1:9464\n  secret: {env: S}\n",
            f"config.yaml:2:3: notifications.address: {SHARED_PORT}",
        ),
        (
            "notifications:\n  address: 0.0.0.0:9464\n  secret: {env: S}\n",
            f"config.yaml:2:3: notifications.address: {SHARED_PORT}",
        ),
        (
            "metrics: {address: '[::]:9500'}\n"
            "notifications:\n  address: '[::1]:9500'\n  secret: {env: S}\n",
            f"config.yaml:3:3: notifications.address: {SHARED_PORT}",
        ),
        (
            "notifications:\n  address: localhost\n  secret: {env: S}\n",
            "config.yaml:2:12: notifications.address: "
            "must be HOST:PORT, e.g. 127.0.0.1:9464 or [::1]:9464",
        ),
        (
            "notifications:\n  address: 127.0.0.1:70000\n  secret: {env: S}\n",
            "config.yaml:2:12: notifications.address: "
            "must be HOST:PORT, e.g. 127.0.0.1:9464 or [::1]:9464",
        ),
        # path
        (
            "notifications:\n  path: agora/ncs\n",
            "config.yaml:2:9: notifications.path: must start with /, like /agora/ncs",
        ),
        (
            "notifications:\n  path: ''\n",
            "config.yaml:2:9: notifications.path: must start with /, like /agora/ncs",
        ),
        (
            "notifications:\n  path: /agora ncs\n",
            "config.yaml:2:9: notifications.path: must not contain blanks",
        ),
        (
            'notifications:\n  path: "/agora\\tncs"\n',
            "config.yaml:2:9: notifications.path: must not contain blanks",
        ),
        (
            "notifications:\n  path: /agora/ncs?token=x\n",
            "config.yaml:2:9: notifications.path: must be a path without a query string (no ?)",
        ),
        (
            "notifications:\n  path: /" + "p" * 200 + "\n",
            "config.yaml:2:9: notifications.path: must be at most 200 characters long",
        ),
        (
            "notifications:\n  path: 5\n",
            "config.yaml:2:9: notifications.path: "
            "must be text; quote it if YAML reads it as a number or date",
        ),
        # maxBody
        (
            "notifications:\n  maxBody: 1023\n",
            "config.yaml:2:12: notifications.maxBody: must be a whole number from 1024 to 1048576",
        ),
        (
            "notifications:\n  maxBody: 1048577\n",
            "config.yaml:2:12: notifications.maxBody: must be a whole number from 1024 to 1048576",
        ),
        (
            "notifications:\n  maxBody: 64k\n",
            "config.yaml:2:12: notifications.maxBody: must be a whole number from 1024 to 1048576",
        ),
        # the secret's form: the key written inside it may be the secret, never shown
        (
            "notifications:\n  secret: {hunter2}\n",
            "config.yaml:2:12: notifications.secret: unknown key in a secret reference: "
            f"a secret is {SECRET_FORMS}",
        ),
        (
            "notifications:\n  secret: [hunter2]\n",
            "config.yaml:2:3: notifications.secret: a secret is a reference: "
            f"{SECRET_FORMS} (or, with a warning, a plain string)",
        ),
        # unknown keys list the section's keys, and the section among the top ones
        (
            "notifications:\n  maxbody: 1024\n",
            "config.yaml:2:3: notifications.maxbody: unknown key 'maxbody' "
            f"(did you mean 'maxBody'?); valid keys here: {NOTIFICATION_KEYS}",
        ),
        (
            "notification:\n  path: /x\n",
            "config.yaml:1:1: notification: unknown key 'notification' (did you mean "
            "'notifications'?); valid keys here: apps, state, manifests, logging, metrics, "
            "notifications, reconcile, retry, shutdown, replica",
        ),
        (
            "notifications: on\n",
            f"config.yaml:1:16: notifications: must be a mapping with keys {NOTIFICATION_KEYS}",
        ),
        # reconcile.queryShare
        ("reconcile:\n  queryShare: 0\n", f"config.yaml:2:15: reconcile.queryShare: {SHARE}"),
        ("reconcile:\n  queryShare: -0.5\n", f"config.yaml:2:15: reconcile.queryShare: {SHARE}"),
        ("reconcile:\n  queryShare: 1.01\n", f"config.yaml:2:15: reconcile.queryShare: {SHARE}"),
        ("reconcile:\n  queryShare: .nan\n", f"config.yaml:2:15: reconcile.queryShare: {SHARE}"),
        ("reconcile:\n  queryShare: true\n", f"config.yaml:2:15: reconcile.queryShare: {SHARE}"),
        ("reconcile:\n  queryShare: half\n", f"config.yaml:2:15: reconcile.queryShare: {SHARE}"),
        ("reconcile:\n  queryShare:\n", f"config.yaml:2:3: reconcile.queryShare: {SHARE}"),
        # reconcile.failoverGrace
        (
            "reconcile:\n  failoverGrace: 59s\n",
            "config.yaml:2:18: reconcile.failoverGrace: "
            "must be at least 60s: Agora documents failovers of 30 s to 1 min",
        ),
        (
            "reconcile:\n  failoverGrace: 1h1s\n",
            "config.yaml:2:18: reconcile.failoverGrace: must be at most 1h",
        ),
        (
            "reconcile:\n  failoverGrace: soon\n",
            f"config.yaml:2:18: reconcile.failoverGrace: invalid duration: use {DURATIONS}",
        ),
        (
            "reconcile:\n  failovergrace: 2m\n",
            "config.yaml:2:3: reconcile.failovergrace: unknown key 'failovergrace' (did you "
            "mean 'failoverGrace'?); valid keys here: resyncInterval, concurrency, "
            "stopOnShutdown, restartBackoff, rolloverLead, queryShare, failoverGrace",
        ),
    ],
)
def test_error_messages(tmp_path: Path, text: str, expected: str) -> None:
    assert error_of(tmp_path, text) == expected


def test_every_problem_of_the_new_keys_is_reported(tmp_path: Path) -> None:
    text = (
        "notifications:\n  path: x\n  maxBody: 1\n"
        "reconcile:\n  queryShare: 2\n  failoverGrace: 1s\n"
    )
    with pytest.raises(ConfigError) as raised:
        load(tmp_path, text)
    assert [(p.line, p.column, p.field) for p in raised.value.problems] == [
        (2, 9, "notifications.path"),
        (3, 12, "notifications.maxBody"),
        (5, 15, "reconcile.queryShare"),
        (6, 18, "reconcile.failoverGrace"),
    ]


# the environment


@pytest.mark.parametrize(
    ("variables", "read", "expected"),
    [
        (
            {"ORCHESTRATOR_NOTIFICATIONS__ADDRESS": "[::1]:9700"},
            lambda c: (c.notifications.host, c.notifications.port),
            ("::1", 9700),
        ),
        ({"ORCHESTRATOR_NOTIFICATIONS__ADDRESS": "null"}, lambda c: c.notifications.port, None),
        (  # a reference replaces the file's whole, whatever its form
            {"ORCHESTRATOR_NOTIFICATIONS__SECRET": '{"file": "/run/ncs"}'},
            lambda c: c.notifications.secret,
            FileSecret(file="/run/ncs"),
        ),
        ({"ORCHESTRATOR_NOTIFICATIONS__PATH": "/ncs"}, lambda c: c.notifications.path, "/ncs"),
        (
            {"ORCHESTRATOR_NOTIFICATIONS__MAX_BODY": "2048"},
            lambda c: c.notifications.max_body,
            2048,
        ),
        ({"ORCHESTRATOR_RECONCILE__QUERY_SHARE": "0.2"}, lambda c: c.reconcile.query_share, 0.2),
        (
            {"ORCHESTRATOR_RECONCILE__FAILOVER_GRACE": "5m"},
            lambda c: c.reconcile.failover_grace,
            timedelta(minutes=5),
        ),
    ],
)
def test_environment_overrides(
    tmp_path: Path, variables: dict[str, str], read: Any, expected: object
) -> None:
    """The file sets a receiver; each variable wins over its key."""
    assert read(load(tmp_path, RECEIVER, variables)) == expected


def test_a_receiver_from_the_environment_alone(tmp_path: Path) -> None:
    variables = {
        "ORCHESTRATOR_NOTIFICATIONS__ADDRESS": "127.0.0.1:9700",
        "ORCHESTRATOR_NOTIFICATIONS__SECRET": '{"credential": "agora-ncs-secret"}',
    }
    config = load(tmp_path, "", variables)
    assert config.notifications.port == 9700
    assert config.literal_secrets() == []


@pytest.mark.parametrize(
    ("text", "variables", "expected"),
    [
        (
            "",
            {"ORCHESTRATOR_NOTIFICATIONS__ADDRESS": "127.0.0.1:9700"},
            f"environment variable ORCHESTRATOR_NOTIFICATIONS__*: notifications.secret: "
            f"{REQUIRED_SECRET}",
        ),
        (
            RECEIVER,
            {"ORCHESTRATOR_NOTIFICATIONS__ADDRESS": "127.0.0.1:9464"},
            "environment variable ORCHESTRATOR_NOTIFICATIONS__ADDRESS: notifications.address: "
            f"{SHARED_PORT}",
        ),
        (
            RECEIVER,
            {"ORCHESTRATOR_NOTIFICATIONS__PATH": "ncs"},
            "environment variable ORCHESTRATOR_NOTIFICATIONS__PATH: notifications.path: "
            "must start with /, like /agora/ncs",
        ),
        (
            RECEIVER,
            {"ORCHESTRATOR_NOTIFICATIONS__MAX_BODY": "100"},
            "environment variable ORCHESTRATOR_NOTIFICATIONS__MAX_BODY: notifications.maxBody: "
            "must be a whole number from 1024 to 1048576",
        ),
        (
            "",
            {"ORCHESTRATOR_NOTIFICATIONS__SECRETS": '{"env": "S"}'},
            "environment variable ORCHESTRATOR_NOTIFICATIONS__SECRETS: notifications.secrets: "
            "unknown key 'secrets' (did you mean 'secret'?); "
            f"valid keys here: {NOTIFICATION_KEYS}",
        ),
        (
            "",
            {"ORCHESTRATOR_RECONCILE__QUERY_SHARE": "2"},
            f"environment variable ORCHESTRATOR_RECONCILE__QUERY_SHARE: reconcile.queryShare: "
            f"{SHARE}",
        ),
        (
            "",
            {"ORCHESTRATOR_RECONCILE__FAILOVER_GRACE": "30s"},
            "environment variable ORCHESTRATOR_RECONCILE__FAILOVER_GRACE: "
            "reconcile.failoverGrace: must be at least 60s: Agora documents failovers of "
            "30 s to 1 min",
        ),
    ],
)
def test_environment_errors_name_the_variable(
    tmp_path: Path, text: str, variables: dict[str, str], expected: str
) -> None:
    assert error_of(tmp_path, text, variables) == expected


# the secret


@pytest.mark.parametrize(
    ("reference", "environ", "files"),
    [
        ("{env: NCS_SECRET}", {"NCS_SECRET": "ncs-0f1e2d3c"}, {}),
        ("{file: FILE}", {}, {"ncs.txt": "ncs-0f1e2d3c\n"}),
        ("{credential: agora-ncs}", {}, {"agora-ncs": "ncs-0f1e2d3c"}),
    ],
    ids=["env", "file", "credential"],
)
def test_the_secret_resolves_only_when_asked(
    tmp_path: Path, reference: str, environ: dict[str, str], files: dict[str, str]
) -> None:
    for name, content in files.items():
        (tmp_path / name).write_text(content, encoding="utf-8")
    reference = reference.replace("FILE", str(tmp_path / "ncs.txt"))
    text = f"notifications:\n  address: 127.0.0.1:9465\n  secret: {reference}\n"
    config = load(tmp_path, text)  # loading needs no secret
    environ = {**environ, "CREDENTIALS_DIRECTORY": str(tmp_path)}
    assert resolve_notifications_secret(config, environ=environ) == "ncs-0f1e2d3c"


@pytest.mark.parametrize(
    ("reference", "environ", "expected"),
    [
        (
            "{env: NCS_SECRET}",
            {},
            "notifications.secret (env:NCS_SECRET): environment variable NCS_SECRET is not set",
        ),
        (
            "{env: NCS_SECRET}",
            {"NCS_SECRET": ""},
            "notifications.secret (env:NCS_SECRET): is empty",
        ),
        (
            "{credential: agora-ncs}",
            {},
            "notifications.secret (credential:agora-ncs): credential agora-ncs: "
            "CREDENTIALS_DIRECTORY is not set (use LoadCredential= in the systemd unit)",
        ),
    ],
)
def test_an_unresolvable_secret_names_the_reference(
    tmp_path: Path, reference: str, environ: dict[str, str], expected: str
) -> None:
    config = load(tmp_path, f"notifications:\n  address: 127.0.0.1:9465\n  secret: {reference}\n")
    with pytest.raises(SecretError) as raised:
        resolve_notifications_secret(config, environ=environ)
    assert str(raised.value) == expected


def test_a_literal_secret_is_a_warning_and_never_shown(tmp_path: Path) -> None:
    text = "notifications:\n  address: 127.0.0.1:9465\n  secret: hunter2-ncs-literal\n"
    with capture_logs() as logs:
        config = load(tmp_path, text)
    assert config.literal_secrets() == ["notifications.secret"]
    assert [(e["event"], e["log_level"], e["field"]) for e in logs] == [
        ("config.literal_secret", "warning", "notifications.secret")
    ]
    for shown in (repr(logs), repr(config), str(config), repr(config.notifications)):
        assert "hunter2" not in shown
    assert resolve_notifications_secret(config, environ={}) == "hunter2-ncs-literal"
    # once read, it is masked wherever it would be written (log lines, echoed errors)
    assert mask_secrets("signed with hunter2-ncs-literal") == "signed with ***"


def test_literal_secrets_list_profiles_and_the_receiver(tmp_path: Path) -> None:
    text = (
        "apps:\n  main:\n    appId: feedface\n    customerId: {env: ID}\n"
        "    customerSecret: hunter2-customer\n"
        "notifications: {secret: hunter2-ncs}\n"
    )
    config = load(tmp_path, text)
    assert config.literal_secrets() == ["apps.main.customerSecret", "notifications.secret"]
    assert [key for key, _ in config.secret_refs()] == [
        "apps.main.customerId",
        "apps.main.customerSecret",
        "notifications.secret",
    ]


@pytest.mark.parametrize(
    ("text", "variables"),
    [
        # a wrong key beside a literal secret: the rules between fields quote nothing
        ("notifications:\n  address: 127.0.0.1:9464\n  secret: hunter2-ncs\n", {}),
        ("notifications:\n  secret: hunter2-ncs\n  path: nope\n  maxBody: hunter2-b\n", {}),
        ("notifications:\n  secret: {hunter2-ncs: x}\n", {}),
        ("notifications:\n  secret: [hunter2-ncs]\n  address: hunter2-a\n", {}),
        ("reconcile: {queryShare: hunter2-q, failoverGrace: hunter2-g}\n", {}),
        (
            "",
            {
                "ORCHESTRATOR_NOTIFICATIONS__ADDRESS": "127.0.0.1:9464",
                "ORCHESTRATOR_NOTIFICATIONS__SECRET": "hunter2-ncs",
            },
        ),
        ("", {"ORCHESTRATOR_NOTIFICATIONS__SECRET": '{"hunter2-ncs": "x"}'}),
    ],
)
def test_no_error_carries_the_secret(tmp_path: Path, text: str, variables: dict[str, str]) -> None:
    with capture_logs() as logs:
        message = error_of(tmp_path, text, variables)
    assert "notifications" in message or "reconcile" in message
    assert "hunter2" not in message
    assert "hunter2" not in repr(logs)
