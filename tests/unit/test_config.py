"""The daemon configuration file.

Covers:
- the shipped example loads and documents every key the model has;
- defaults (with and without a file, systemd's STATE_DIRECTORY);
- relative paths resolve against the config file's directory, not the working one;
- ORCHESTRATOR_* environment overrides (nested with `__`), and that they win
  over the file (a secret reference whole, whatever its form); only prefixed
  variables are read; `environ=` replaces os.environ;
- errors name file, line, column and field (or the environment variable), and say
  what is wrong and what would be valid as manifest errors do: an unknown key with
  the closest valid key and all of them, a wrong choice with the allowed values and
  a did-you-mean, a number with its range; every problem on its own line; no value
  of the file or the environment in any message;
- addresses and URLs (durations: the table shared with manifests,
  tests/unit/manifest/test_manifest_scalars.py);
- secrets: literal ones are logged as warnings (by field, never value), credentials
  resolve lazily, and no error or repr carries a secret value;
- the model is frozen;
- hostile files end in one positioned line, in bounded time, without a traceback
  and without quoting a value: an alias bomb, recursive or dangling aliases, a reused
  anchor, deep nesting, bytes that are not UTF-8, a directory, a FIFO, a huge file,
  duplicate keys, a bad timestamp, a bad escape, a control character; the alias
  bound is the manifests' own, at the same place in the same words;
- baseUrl follows the client's rule (plain http:// only to loopback), checked at load.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError
from ruamel.yaml import YAML
from structlog.testing import capture_logs

from orchestrator.config import (
    MAX_ALIAS_NODES,
    Config,
    ConfigError,
    load_config,
    resolve_app_certificate,
    resolve_credentials,
)
from orchestrator.manifest.loader import load_file
from orchestrator.secrets import CredentialSecret, EnvSecret, SecretError, mask_secrets

EXAMPLE = Path(__file__).resolve().parents[2] / "packaging" / "config.example.yaml"

MINIMAL_APP = """\
apps:
  main:
    appId: 0123456789abcdef0123456789abcdef
    customerId: {env: AGORA_CUSTOMER_ID}
    customerSecret: {file: secret.txt}
"""


def write(tmp_path: Path, text: str, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_example_config_loads() -> None:
    config = load_config(EXAMPLE, environ={})
    profile = config.profile_for("main")
    assert profile.app_id == "0123456789abcdef0123456789abcdef"
    assert profile.customer_secret == CredentialSecret(credential="agora-customer-secret")
    assert profile.base_url == "https://api.agora.io"
    assert config.state.url == "sqlite:////var/lib/orchestrator/state.db"
    assert config.manifests.dir == EXAMPLE.parent / "recordings.d"
    assert config.file == EXAMPLE


def _model_keys(model: type[BaseModel], prefix: str = "") -> set[str]:
    keys = set()
    for name, field in model.model_fields.items():
        key = prefix + (field.alias or name)
        keys.add(key)
        annotation: Any = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            keys |= _model_keys(annotation, key + ".")
    return keys


def _yaml_keys(node: Any, prefix: str = "") -> set[str]:
    keys = set()
    if isinstance(node, dict):
        for key, value in node.items():
            keys.add(prefix + str(key))
            keys |= _yaml_keys(value, f"{prefix}{key}.")
    return keys


def test_example_documents_every_key() -> None:
    from orchestrator.config import AppProfile

    documented = _yaml_keys(YAML(typ="safe").load(EXAMPLE.read_text(encoding="utf-8")))
    expected = _model_keys(Config) | {"apps.main"} | _model_keys(AppProfile, "apps.main.")
    # the second profile (the examples use `app: backup`) documents the same keys
    expected |= {"apps.backup"} | _model_keys(AppProfile, "apps.backup.")
    # secret references are documented by their form, not as model keys
    documented = {k for k in documented if not k.endswith((".credential", ".env", ".file"))}
    assert documented == expected


def test_defaults_next_to_the_file(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, ""), environ={})
    assert config.apps == {}
    assert config.state.dir == Path("/var/lib/orchestrator")
    assert config.state.url == "sqlite:////var/lib/orchestrator/state.db"
    assert config.manifests.dir == tmp_path / "recordings.d"
    assert config.manifests.watch is True
    assert config.manifests.watch_interval == timedelta(seconds=1)
    assert (config.logging.level, config.logging.format) == ("info", "auto")
    assert config.metrics.address == "127.0.0.1:9464"
    assert config.reconcile.resync_interval == timedelta(seconds=60)
    assert config.reconcile.concurrency == 16
    assert config.reconcile.stop_on_shutdown is False
    assert config.reconcile.restart_backoff.initial == timedelta(seconds=10)
    assert config.reconcile.restart_backoff.max == timedelta(minutes=10)
    assert config.shutdown.drain_timeout == timedelta(seconds=30)
    assert (config.retry.attempts, config.retry.initial, config.retry.max) == (
        6,
        timedelta(milliseconds=100),
        timedelta(seconds=4),
    )


def test_systemd_state_directory_is_the_default(tmp_path: Path) -> None:
    environ = {"STATE_DIRECTORY": "/var/lib/orchestrator-a:/var/lib/other"}
    config = load_config(write(tmp_path, ""), environ=environ)
    assert config.state.dir == Path("/var/lib/orchestrator-a")
    assert config.state.url == "sqlite:////var/lib/orchestrator-a/state.db"


def test_no_file_uses_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    config = load_config(None, environ={"ORCHESTRATOR_STATE__DIR": "state"})
    assert config.file is None
    assert config.state.url == f"sqlite:///{tmp_path}/state/state.db"
    assert config.manifests.dir == tmp_path / "recordings.d"


def test_config_path_from_environment(tmp_path: Path) -> None:
    path = write(tmp_path, "logging: {level: debug}\n")
    config = load_config(None, environ={"ORCHESTRATOR_CONFIG": str(path)})
    assert config.file == path
    assert config.logging.level == "debug"


def test_relative_paths_resolve_against_the_config_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "etc").mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    path = write(
        tmp_path / "etc",
        "state: {dir: ../var/state}\nmanifests: {dir: recordings.d}\n",
    )
    config = load_config(Path("..") / "etc" / path.name, environ={})
    assert config.state.dir == tmp_path / "var" / "state"
    assert config.state.url == f"sqlite:///{tmp_path}/var/state/state.db"
    assert config.manifests.dir == tmp_path / "etc" / "recordings.d"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:///db/state.db", "sqlite:///{base}/db/state.db"),
        ("sqlite:////srv/state.db", "sqlite:////srv/state.db"),
        ("postgresql://orchestrator@db/orchestrator", "postgresql://orchestrator@db/orchestrator"),
        ("postgres://db/x", "postgres://db/x"),
    ],
)
def test_state_url(tmp_path: Path, url: str, expected: str) -> None:
    config = load_config(write(tmp_path, f"state: {{url: '{url}'}}\n"), environ={})
    assert config.state.url == expected.format(base=tmp_path)


# environment overrides


@pytest.mark.parametrize(
    ("variables", "read", "expected"),
    [
        (
            {"ORCHESTRATOR_STATE__URL": "postgresql://db/o"},
            lambda c: c.state.url,
            "postgresql://db/o",
        ),
        ({"ORCHESTRATOR_LOGGING__LEVEL": "DEBUG"}, lambda c: c.logging.level, "debug"),
        ({"orchestrator_logging__format": "json"}, lambda c: c.logging.format, "json"),
        ({"ORCHESTRATOR_METRICS__ADDRESS": "0.0.0.0:9100"}, lambda c: c.metrics.port, 9100),
        ({"ORCHESTRATOR_METRICS__ADDRESS": "null"}, lambda c: c.metrics.address, None),
        (
            {"ORCHESTRATOR_RECONCILE__RESYNC_INTERVAL": "5m"},
            lambda c: c.reconcile.resync_interval,
            timedelta(minutes=5),
        ),
        (
            {"ORCHESTRATOR_RECONCILE__RESTART_BACKOFF__MAX": "1h"},
            lambda c: (c.reconcile.restart_backoff.initial, c.reconcile.restart_backoff.max),
            (timedelta(seconds=10), timedelta(hours=1)),
        ),
        (
            {"ORCHESTRATOR_RECONCILE__STOP_ON_SHUTDOWN": "true"},
            lambda c: c.reconcile.stop_on_shutdown,
            True,
        ),
        (
            {"ORCHESTRATOR_APPS__MAIN__BASE_URL": "http://127.0.0.1:8080/"},
            lambda c: c.apps["main"].base_url,
            "http://127.0.0.1:8080",
        ),
        ({"ORCHESTRATOR_APPS__MAIN__RATE_LIMIT": "5"}, lambda c: c.apps["main"].rate_limit, 5),
        (
            {
                "ORCHESTRATOR_APPS__BACKUP__APP_ID": "feedface",
                "ORCHESTRATOR_APPS__BACKUP__CUSTOMER_ID": '{"env": "B_ID"}',
                "ORCHESTRATOR_APPS__BACKUP__CUSTOMER_SECRET": '{"env": "B_SECRET"}',
            },
            lambda c: (sorted(c.apps), c.apps["backup"].customer_secret),
            (["backup", "main"], EnvSecret(env="B_SECRET")),
        ),
        (  # a secret reference replaces the file's whole: one form, not two
            {"ORCHESTRATOR_APPS__MAIN__CUSTOMER_SECRET": '{"credential": "agora-secret"}'},
            lambda c: c.apps["main"].customer_secret,
            CredentialSecret(credential="agora-secret"),
        ),
    ],
)
def test_environment_overrides(
    tmp_path: Path, variables: dict[str, str], read: Any, expected: object
) -> None:
    text = MINIMAL_APP + "logging: {level: warning}\nreconcile: {resyncInterval: 30s}\n"
    config = load_config(write(tmp_path, text), environ=variables)
    assert read(config) == expected


def test_environment_wins_over_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "logging: {level: warning, format: console}\n")
    config = load_config(path, environ={"ORCHESTRATOR_LOGGING__LEVEL": "error"})
    assert (config.logging.level, config.logging.format) == ("error", "console")


def test_environ_argument_replaces_the_process_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ORCHESTRATOR_LOGGING__LEVEL", "debug")
    path = write(tmp_path, "")
    assert load_config(path, environ={}).logging.level == "info"
    assert load_config(path).logging.level == "debug"


def test_only_prefixed_variables_are_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("STATE", "LOGGING", "APPS", "METRICS", "NOTIFICATIONS", "LEVEL", "URL"):
        monkeypatch.setenv(name, "not-for-us")
    config = load_config(write(tmp_path, ""))
    assert config.logging.level == "info"
    assert config.apps == {}


# errors


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "reconcile:\n  resyncInterval: 500ms\n",
            "config.yaml:2:19: reconcile.resyncInterval: must be at least 1s",
        ),
        (
            "reconcile:\n  restartBackoff: {initial: 1h, max: 1m}\n",
            "config.yaml:2:3: reconcile.restartBackoff: max must not be shorter than initial",
        ),
        (
            "reconcile:\n  restartBackoff:\n    initial: 0s\n",
            "config.yaml:3:14: reconcile.restartBackoff.initial: must be longer than zero",
        ),
        (
            "metrics:\n  address: localhost\n",
            "config.yaml:2:12: metrics.address: must be HOST:PORT",
        ),
        ("state:\n  url: mysql://db/x\n", "config.yaml:2:8: state.url: must be sqlite:///PATH"),
        (
            MINIMAL_APP + "    baseUrl: api.agora.io\n",
            "config.yaml:6:14: apps.main.baseUrl: must be an http:// or https:// URL",
        ),
        ("logging:\n  level: info\n  level: debug\n", "config.yaml:3:3: "),
        ("logging: {level: [info\n", "config.yaml:2:1: "),
        ("- a\n- b\n", "config.yaml:1:1: must be a mapping of keys"),
        # A path no file can have: a traceback from init, status, plan and run before.
        ('state:\n  dir: "./st\\0ate"\n', "config.yaml:2:8: state.dir: a path cannot hold a NUL"),
        (
            'manifests:\n  dir: "./r\\ud800"\n',
            "config.yaml:2:8: manifests.dir: a path cannot hold a lone surrogate",
        ),
        (
            'state:\n  url: "sqlite:////tmp/x\\0y.db"\n',
            "config.yaml:2:8: state.url: a path cannot hold a NUL byte",
        ),
    ],
)
def test_positioned_errors(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as raised:
        load_config(path, environ={})
    assert expected in str(raised.value).replace(str(tmp_path) + "/", "")


# The keys each place allows, in the file's spelling and the model's order.
TOP_KEYS = (
    "apps, state, manifests, logging, metrics, notifications, reconcile, retry, shutdown, replica"
)
RECONCILE_KEYS = (
    "resyncInterval, concurrency, stopOnShutdown, restartBackoff, rolloverLead, queryShare, "
    "failoverGrace"
)
PROFILE_KEYS = (
    "appId, customerId, customerSecret, appCertificate, tokenLifetime, baseUrl, rateLimit"
)
SECRET_FORMS = "{env: NAME}, {file: PATH} or {credential: NAME}"
DURATIONS = (
    "whole numbers with units, largest first (d, h, m, s, ms), like 500ms, 90s, 30m, "
    "1h30m or 2d; or a number of seconds"
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # unknown keys: the closest valid key, then all of them, as manifests say it
        (
            "reconcle:\n  concurrency: 4\n",
            "config.yaml:1:1: reconcle: unknown key 'reconcle' (did you mean 'reconcile'?); "
            f"valid keys here: {TOP_KEYS}",
        ),
        (
            "stateDir: /x\n",
            "config.yaml:1:1: stateDir: unknown key 'stateDir' (did you mean 'state'?); "
            f"valid keys here: {TOP_KEYS}",
        ),
        (
            "reconcile:\n  concurency: 4\n",
            "config.yaml:2:3: reconcile.concurency: unknown key 'concurency' "
            f"(did you mean 'concurrency'?); valid keys here: {RECONCILE_KEYS}",
        ),
        (
            MINIMAL_APP + "    rateLimt: 5\n",
            "config.yaml:6:5: apps.main.rateLimt: unknown key 'rateLimt' "
            f"(did you mean 'rateLimit'?); valid keys here: {PROFILE_KEYS}",
        ),
        (
            "logging:\n  colour: true\n",
            "config.yaml:2:3: logging.colour: unknown key 'colour'; valid keys here: level, format",
        ),
        (
            "reconcile:\n  restartBackoff: {initial: 1s, maximum: 1m}\n",
            "config.yaml:2:33: reconcile.restartBackoff.maximum: unknown key 'maximum' "
            "(did you mean 'max'?); valid keys here: initial, max",
        ),
        # inside a secret reference the key itself may be the secret: neither shown
        (
            MINIMAL_APP.replace("{file: secret.txt}", "{hunter2}"),
            "config.yaml:5:22: apps.main.customerSecret: unknown key in a secret reference: "
            f"a secret is {SECRET_FORMS}",
        ),
        (
            MINIMAL_APP.replace("{file: secret.txt}", "{}"),
            "config.yaml:5:5: apps.main.customerSecret: a secret is a reference: "
            f"{SECRET_FORMS} (or, with a warning, a plain string)",
        ),
        (
            MINIMAL_APP.replace("{file: secret.txt}", "[hunter2]"),
            "config.yaml:5:5: apps.main.customerSecret: a secret is a reference: "
            f"{SECRET_FORMS} (or, with a warning, a plain string)",
        ),
        (
            MINIMAL_APP.replace("{env: AGORA_CUSTOMER_ID}", "{env: 1BAD}"),
            "config.yaml:4:23: apps.main.customerId.env: "
            "must be an environment variable name like AGORA_CUSTOMER_ID",
        ),
        (
            MINIMAL_APP.replace("{file: secret.txt}", "{credential: 'a b'}"),
            "config.yaml:5:34: apps.main.customerSecret.credential: "
            "must be a credential name: letters, digits, '_', '.', '@' or '-'",
        ),
        # choices: the allowed values, and the closest one when there is one
        (
            "logging: {level: warnig}\n",
            "config.yaml:1:18: logging.level: must be one of debug, info, warning, error; "
            "did you mean 'warning'?",
        ),
        (
            "logging: {level: loud}\n",
            "config.yaml:1:18: logging.level: must be one of debug, info, warning, error",
        ),
        (
            "logging:\n  format: JSNO\n",
            "config.yaml:2:11: logging.format: must be one of auto, json, console; "
            "did you mean 'json'?",
        ),
        (
            "logging:\n  format: 3\n",
            "config.yaml:2:11: logging.format: must be one of auto, json, console",
        ),
        # numbers: the field's own range, whatever was wrong with the value
        (
            "reconcile:\n  concurrency: 0\n",
            "config.yaml:2:16: reconcile.concurrency: must be a whole number from 1 to 1024",
        ),
        (
            "reconcile:\n  concurrency: 5000\n",
            "config.yaml:2:16: reconcile.concurrency: must be a whole number from 1 to 1024",
        ),
        (
            "reconcile:\n  concurrency: lots\n",
            "config.yaml:2:16: reconcile.concurrency: must be a whole number from 1 to 1024",
        ),
        (
            "reconcile:\n  concurrency: true\n",  # not 1
            "config.yaml:2:16: reconcile.concurrency: must be a whole number from 1 to 1024",
        ),
        (
            "retry:\n  attempts: 2.5\n",
            "config.yaml:2:13: retry.attempts: must be a whole number from 1 to 20",
        ),
        (
            MINIMAL_APP + "    rateLimit: 0\n",
            "config.yaml:6:16: apps.main.rateLimit: must be a whole number from 1 to 1000",
        ),
        # other types
        (
            "reconcile:\n  stopOnShutdown: maybe\n",
            "config.yaml:2:19: reconcile.stopOnShutdown: must be true or false",
        ),
        (
            "reconcile:\n  resyncInterval: soon\n",
            f"config.yaml:2:19: reconcile.resyncInterval: invalid duration: use {DURATIONS}",
        ),
        (
            "reconcile:\n  resyncInterval:\n",  # null: pointed at by its key
            f"config.yaml:2:3: reconcile.resyncInterval: invalid duration: use {DURATIONS}",
        ),
        (
            "state:\n  url: 5\n",
            "config.yaml:2:8: state.url: "
            "must be text; quote it if YAML reads it as a number or date",
        ),
        ("manifests:\n  dir: 5\n", "config.yaml:2:8: manifests.dir: must be a path (text)"),
        ("replica:\n  name: ''\n", "config.yaml:2:9: replica.name: must not be empty"),
        (
            "replica:\n  name: " + "x" * 201 + "\n",
            "config.yaml:2:9: replica.name: must be at most 200 characters long",
        ),
        (
            MINIMAL_APP.replace("0123456789abcdef0123456789abcdef", "'0123 4567'"),
            "config.yaml:3:12: apps.main.appId: must be an App ID without blanks",
        ),
        (
            "apps:\n  main:\n    customerId: {env: ID}\n    customerSecret: {env: S}\n",
            "config.yaml:2:3: apps.main.appId: "
            "'appId' is required: the App ID of the Agora project",
        ),
        # sections that are not mappings
        (
            "apps: [main]\n",
            "config.yaml:1:1: apps: "
            f"must be a mapping of names to mappings with keys {PROFILE_KEYS}",
        ),
        (
            "apps:\n  main: 5\n",
            f"config.yaml:2:9: apps.main: must be a mapping with keys {PROFILE_KEYS}",
        ),
        ("logging: loud\n", "config.yaml:1:10: logging: must be a mapping with keys level, format"),
        (
            "reconcile:\n  restartBackoff:\n",
            "config.yaml:2:3: reconcile.restartBackoff: must be a mapping with keys initial, max",
        ),
    ],
)
def test_error_messages(tmp_path: Path, text: str, expected: str) -> None:
    """Each mistake is one line: where, which field (as written), what is wrong and
    what would be valid; never pydantic's own wording, never a value of the file."""
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as raised:
        load_config(path, environ={})
    assert str(raised.value) == f"{path}:{expected.removeprefix('config.yaml:')}"


def test_every_problem_is_reported_in_file_order(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "reconcile:\n  concurrency: 0\n  resyncInterval: x\nlogging: {levle: info}\nbogus: 1\n",
    )
    with pytest.raises(ConfigError) as raised:
        load_config(path, environ={})
    problems = raised.value.problems
    assert [(p.line, p.column, p.field) for p in problems] == [
        (2, 16, "reconcile.concurrency"),
        (3, 19, "reconcile.resyncInterval"),
        (4, 11, "logging.levle"),
        (5, 1, "bogus"),
    ]
    assert all(p.file == str(path) for p in problems)
    assert str(raised.value).splitlines() == [
        f"{path}:2:16: reconcile.concurrency: must be a whole number from 1 to 1024",
        f"{path}:3:19: reconcile.resyncInterval: invalid duration: use {DURATIONS}",
        f"{path}:4:11: logging.levle: unknown key 'levle' (did you mean 'level'?); "
        "valid keys here: level, format",
        f"{path}:5:1: bogus: unknown key 'bogus'; valid keys here: {TOP_KEYS}",
    ]


def test_no_value_of_the_file_is_in_any_message(tmp_path: Path) -> None:
    """Any value may be a secret: every field below is wrong and carries the marker,
    and every one is reported without it."""
    text = (
        "apps:\n"
        "  main:\n"
        "    appId: 'hunter2 id'\n"
        "    customerId: {hunter2-key: x}\n"
        "    customerSecret: [hunter2-secret]\n"
        "    rateLimit: hunter2-rate\n"
        "logging: {level: hunter2-level, format: hunter2-format}\n"
        "reconcile: {concurrency: hunter2-c, resyncInterval: hunter2-d, stopOnShutdown: hunter2}\n"
        "state: {url: 'hunter2://db'}\n"
        "manifests: {watch: hunter2-w}\n"
        "metrics: {address: hunter2}\n"
        "replica: {claimInterval: hunter2-i}\n"
    )
    with pytest.raises(ConfigError) as raised:
        load_config(write(tmp_path, text), environ={})
    assert "hunter2" not in str(raised.value)
    assert [p.field for p in raised.value.problems] == [
        "apps.main.appId",
        "apps.main.customerId",
        "apps.main.customerSecret",
        "apps.main.rateLimit",
        "logging.level",
        "logging.format",
        "reconcile.concurrency",
        "reconcile.resyncInterval",
        "reconcile.stopOnShutdown",
        "state.url",
        "manifests.watch",
        "metrics.address",
        "replica.claimInterval",
    ]


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        (
            {"ORCHESTRATOR_RECONCILE__CONCURRENCY": "-1"},
            "environment variable ORCHESTRATOR_RECONCILE__CONCURRENCY: reconcile.concurrency:",
        ),
        (
            {"ORCHESTRATOR_APPS__EXTRA__APP_ID": "x"},
            "environment variable ORCHESTRATOR_APPS__EXTRA__*: apps.extra.customerId: "
            "'customerId' is required: a secret: {env: NAME}, {file: PATH} or {credential: NAME}",
        ),
        (
            {"ORCHESTRATOR_RECONCILE__RESTART_BACKOFF__INITIAL": "1d"},
            "environment variable ORCHESTRATOR_RECONCILE__RESTART_BACKOFF__*: "
            "reconcile.restartBackoff: max must not be shorter",
        ),
        ({"ORCHESTRATOR_APPS": "{not json"}, "environment variables ORCHESTRATOR_*"),
    ],
)
def test_errors_name_the_environment_variable(
    tmp_path: Path, variables: dict[str, str], expected: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        load_config(write(tmp_path, ""), environ=variables)
    assert expected in str(raised.value)


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        (
            {"ORCHESTRATOR_RECONCILE__CONCURRENCY": "-1"},
            "environment variable ORCHESTRATOR_RECONCILE__CONCURRENCY: reconcile.concurrency: "
            "must be a whole number from 1 to 1024",
        ),
        (
            {"ORCHESTRATOR_LOGGING__LEVEL": "warnig"},
            "environment variable ORCHESTRATOR_LOGGING__LEVEL: logging.level: "
            "must be one of debug, info, warning, error; did you mean 'warning'?",
        ),
        (
            {"ORCHESTRATOR_RECONCILE__CONCURENCY": "4"},
            "environment variable ORCHESTRATOR_RECONCILE__CONCURENCY: reconcile.concurency: "
            "unknown key 'concurency' (did you mean 'concurrency'?); "
            f"valid keys here: {RECONCILE_KEYS}",
        ),
    ],
)
def test_environment_errors_read_like_file_errors(
    tmp_path: Path, variables: dict[str, str], expected: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        load_config(write(tmp_path, ""), environ=variables)
    assert str(raised.value) == expected


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.yaml: cannot read the config file"):
        load_config(tmp_path / "nope.yaml", environ={})


# values


@pytest.mark.parametrize(
    ("address", "host", "port"),
    [
        ("127.0.0.1:9464", "127.0.0.1", 9464),
        ("[::1]:9100", "::1", 9100),
        ("metrics.local:80", "metrics.local", 80),
    ],
)
def test_metrics_address(tmp_path: Path, address: str, host: str, port: int) -> None:
    config = load_config(write(tmp_path, f"metrics: {{address: '{address}'}}\n"), environ={})
    assert (config.metrics.host, config.metrics.port) == (host, port)


def test_metrics_off(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "metrics: {address: null}\n"), environ={})
    assert config.metrics.address is None and config.metrics.port is None


def test_config_is_frozen(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL_APP), environ={})
    with pytest.raises(ValidationError):
        config.logging.level = "debug"  # type: ignore[misc]
    with pytest.raises(ValidationError):
        config.apps["main"].rate_limit = 1  # type: ignore[misc]


# profiles and secrets


def test_profile_for(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL_APP), environ={})
    assert config.profile_for("main").app_id == "0123456789abcdef0123456789abcdef"
    with pytest.raises(
        ConfigError, match=r"no App ID profile 'other' in .*config\.yaml \(known: main\)"
    ):
        config.profile_for("other")


def test_resolve_credentials_reads_references_when_asked(tmp_path: Path) -> None:
    (tmp_path / "secret.txt").write_text("s3cr3t-value\n", encoding="utf-8")
    text = MINIMAL_APP.replace("{file: secret.txt}", f"{{file: {tmp_path}/secret.txt}}")
    profile = load_config(write(tmp_path, text), environ={}).profile_for("main")
    # loading did not need the secrets; resolving does
    assert resolve_credentials(profile, environ={"AGORA_CUSTOMER_ID": "cid"}) == (
        "cid",
        "s3cr3t-value",
    )
    with pytest.raises(SecretError) as raised:
        resolve_credentials(profile, environ={})
    assert str(raised.value) == (
        "customerId (env:AGORA_CUSTOMER_ID): environment variable AGORA_CUSTOMER_ID is not set"
    )


def test_resolve_systemd_credentials(tmp_path: Path) -> None:
    (tmp_path / "agora-customer-id").write_text("the-id", encoding="utf-8")
    (tmp_path / "agora-customer-secret").write_text("the-secret", encoding="utf-8")
    profile = load_config(EXAMPLE, environ={}).profile_for("main")
    assert resolve_credentials(profile, environ={"CREDENTIALS_DIRECTORY": str(tmp_path)}) == (
        "the-id",
        "the-secret",
    )
    with pytest.raises(SecretError, match="customerId \\(credential:agora-customer-id\\)"):
        resolve_credentials(profile, environ={})


def test_literal_secret_is_a_warning_without_the_value(tmp_path: Path) -> None:
    text = MINIMAL_APP.replace("{file: secret.txt}", "hunter2-literal")
    with capture_logs() as logs:
        config = load_config(write(tmp_path, text), environ={})
    assert config.literal_secrets() == ["apps.main.customerSecret"]
    assert [(e["event"], e["log_level"], e["field"]) for e in logs] == [
        ("config.literal_secret", "warning", "apps.main.customerSecret")
    ]
    assert "hunter2-literal" not in repr(logs)
    assert "hunter2-literal" not in repr(config)
    assert "hunter2-literal" not in str(config)
    assert resolve_credentials(config.profile_for("main"), environ={"AGORA_CUSTOMER_ID": "c"}) == (
        "c",
        "hunter2-literal",
    )


def test_references_are_not_warned_about(tmp_path: Path) -> None:
    with capture_logs() as logs:
        config = load_config(write(tmp_path, MINIMAL_APP), environ={})
    assert config.literal_secrets() == []
    assert logs == []


def test_errors_never_carry_secret_values(tmp_path: Path) -> None:
    text = (
        "apps:\n  main:\n    appId: abc\n    customerId: hunter2-id\n"
        "    customerSecret: [hunter2-secret]\n    rateLimit: hunter2-rate\n"
    )
    with pytest.raises(ConfigError) as raised:
        load_config(write(tmp_path, text), environ={"ORCHESTRATOR_APPS__MAIN__CUSTOMER_ID": "{x"})
    assert "hunter2" not in str(raised.value)
    assert "apps.main.customerSecret" in str(raised.value)


def test_literal_secret_warning_goes_to_stderr_before_logging_is_configured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("structlog.is_configured", lambda: False)
    text = MINIMAL_APP.replace("{file: secret.txt}", "hunter2-literal")
    load_config(write(tmp_path, text), environ={})
    out, err = capsys.readouterr()
    assert out == ""
    assert "apps.main.customerSecret is a literal secret" in err
    assert "hunter2" not in err


# hostile files: bounded time, one clear line, no traceback, no secret value


def _cli(
    path: Path, *, warnings: bool = False, environ: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`orchestrator plan --offline --config PATH` as a process, bounded in time, with
    no ORCHESTRATOR_ variable but those of `environ`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_")}
    env.update(environ or {})
    if warnings:
        env["PYTHONWARNINGS"] = "default"  # a library warning must not leak either
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", "plan", "--offline", "--config", str(path)],
        cwd=path.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _billion_laughs() -> str:
    lines = ["a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for previous, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{name}: &{name} [{', '.join([f'*{previous}'] * 9)}]")
    return "\n".join(lines) + "\n"


def test_alias_bomb_is_refused_in_bounded_time(tmp_path: Path) -> None:
    path = write(tmp_path, _billion_laughs(), "bomb.yaml")
    assert path.stat().st_size < 400
    result = _cli(path)  # before the limit: minutes of CPU, then gigabytes
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert re.fullmatch(
        rf"error: {re.escape(str(path))}:5:8: aliases expand to more than 10000 nodes .*",
        lines[0],
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (_billion_laughs(), "config.yaml:5:8: aliases expand to more than 10000 nodes"),
        ("a: &a [1, *a]\n", "config.yaml:1:11: an alias (*...) inside the node it names"),
        ("a: &a {b: [*a]}\n", "config.yaml:1:12: an alias (*...) inside the node it names"),
        ("a: 1\nb: *nowhere\n", "config.yaml:2:4: an alias (*...) names no anchor before it"),
        (
            "a: &x 1\nb: &x 2\n",
            "config.yaml:2:4: an anchor (&...) is defined twice (first at line 1)",
        ),
        ("a: " + "[" * 5000 + "]" * 5000 + "\n", "config.yaml:1:67: nested more than 64 levels"),
    ],
)
def test_anchors_and_aliases_are_bounded(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_config(write(tmp_path, text), environ={})
    assert str(raised.value).replace(str(tmp_path) + "/", "").startswith(expected)


@pytest.mark.parametrize("aliases", [MAX_ALIAS_NODES // 100, MAX_ALIAS_NODES // 100 + 1])
def test_the_config_is_bounded_as_the_manifests_are(tmp_path: Path, aliases: int) -> None:
    """One bounded reader (`orchestrator.manifest.reading`) and one alias bound for both:
    aliases adding MAX_ALIAS_NODES nodes pass in the config and in a manifest, one more
    alias is refused by both at that alias, in the same words."""
    anchor = "a: &a [" + ", ".join(["x"] * 99) + "]\n"  # 100 nodes
    path = write(tmp_path, anchor + "b: [" + ", ".join(["*a"] * aliases) + "]\n")
    with pytest.raises(ConfigError) as raised:
        load_config(path, environ={})
    _, diagnostics = load_file(str(path))
    if aliases * 100 <= MAX_ALIAS_NODES:  # read, then refused by each model
        assert "unknown key 'a'" in str(raised.value)
        assert not any("alias" in d.message for d in diagnostics)
        return
    expected = (
        2,
        5 + 4 * MAX_ALIAS_NODES // 100,
        f"aliases expand to more than {MAX_ALIAS_NODES} nodes (an alias bomb?): "
        "write the values out",
    )
    (problem,) = raised.value.problems
    assert (problem.line, problem.column, problem.message) == expected
    assert [(d.line, d.column, d.message) for d in diagnostics] == [expected]


def test_plain_aliases_still_work(tmp_path: Path) -> None:
    text = (
        "apps:\n"
        "  main:\n"
        "    appId: feedface\n"
        "    customerId: &id {env: AGORA_ID}\n"
        "    customerSecret: &secret {credential: agora-secret}\n"
        "  backup:\n"
        "    appId: beefcafe\n"
        "    customerId: *id\n"
        "    customerSecret: *secret\n"
    )
    config = load_config(write(tmp_path, text), environ={})
    assert config.apps["backup"].customer_id == EnvSecret(env="AGORA_ID")
    assert config.apps["backup"].customer_secret == CredentialSecret(credential="agora-secret")


def test_a_tab_that_yaml_allows_is_read_as_a_blank(tmp_path: Path) -> None:
    """Defect: ruamel's round-trip scanner refused a tab before a comment or after a
    colon, which YAML allows and the manifests' reader (libyaml) takes as a blank,
    so a config the manifests' rules accept was refused. A tab in a value stays."""
    text = (
        "logging:\t# after a key\n"
        "  level:\tdebug\t# after a colon and a value\n"
        "replica: {name: 'a\tb',\tclaimInterval: 7s}\n"
        "metrics:\n"
        "  address: 127.0.0.1:9464\t\n"
    )
    config = load_config(write(tmp_path, text), environ={})
    assert config.logging.level == "debug"
    assert config.replica.name == "a\tb"
    assert config.replica.claim_interval == timedelta(seconds=7)
    # An error after such a tab is still placed at its own line and column.
    with pytest.raises(ConfigError) as raised:
        load_config(write(tmp_path, text.replace("debug", "loud")), environ={})
    assert str(raised.value).startswith(f"{tmp_path}/config.yaml:2:10: logging.level: ")
    # A tab YAML refuses (indentation) is still an error, at its place.
    with pytest.raises(ConfigError) as raised:
        load_config(write(tmp_path, "logging:\n\tlevel: debug\n"), environ={})
    assert str(raised.value).startswith(f"{tmp_path}/config.yaml:2:1: ")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"logging:\n  level: d\xe9bug\n", "config.yaml:2:11: not a UTF-8 text file"),
        (
            b"\xff\xfel\x00o\x00g\x00",
            (
                "config.yaml:1:1: not a UTF-8 text file: it is UTF-16 "
                "(as some Windows editors save): save it as UTF-8"
            ),
        ),
        ("# caf\u00e9\n".encode() + b"x: \x80\n", "config.yaml:2:4: not a UTF-8 text file"),
        (b"# caf\xc3\xa9 \x80", "config.yaml:1:8: not a UTF-8 text file"),
        (
            "# caf\u00e9 \x80".encode(),
            "config.yaml:1:8: not a text file: character 128 is not allowed in YAML",
        ),
    ],
)
def test_not_utf8(tmp_path: Path, raw: bytes, expected: str) -> None:
    path = tmp_path / "config.yaml"
    path.write_bytes(raw)
    with pytest.raises(ConfigError) as raised:
        load_config(path, environ={})
    assert str(raised.value).replace(str(tmp_path) + "/", "") == expected


def test_a_directory_is_not_a_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as raised:
        load_config(tmp_path, environ={})
    assert str(raised.value) == (
        f"{tmp_path}: cannot read the config file: it is a directory, not a regular file"
    )


def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path: Path) -> None:
    fifo = tmp_path / "config.yaml"
    os.mkfifo(fifo)
    code = "import sys; from orchestrator.config import load_config; load_config(sys.argv[1])"
    result = subprocess.run(
        [sys.executable, "-c", code, str(fifo)],
        capture_output=True,
        text=True,
        timeout=30,  # before: blocked in open() for ever
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == (
        f"orchestrator.config.ConfigError: {fifo}: cannot read the config file: "
        "it is a FIFO (named pipe), not a regular file"
    )


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file(tmp_path: Path) -> None:
    path = write(tmp_path, "")
    path.chmod(0)
    with pytest.raises(ConfigError, match=r"config\.yaml: cannot read the config file: Permission"):
        load_config(path, environ={})


def test_a_huge_file_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    with path.open("wb") as handle:
        handle.truncate(2 << 20)  # sparse: 2 MiB of NUL bytes
    with pytest.raises(ConfigError) as raised:
        load_config(path, environ={})
    assert str(raised.value) == (
        f"{path}: cannot read the config file: it is 2097152 bytes; the limit is 1048576 (1 MiB)"
    )


@pytest.mark.parametrize("url", ["http://10.0.0.5", "http://api.agora.io:80/", "http://[::2]:1"])
def test_plain_http_off_loopback_is_refused_at_load(tmp_path: Path, url: str) -> None:
    path = write(tmp_path, MINIMAL_APP + f"    baseUrl: {url}\n")
    with pytest.raises(ConfigError) as raised:
        load_config(path, environ={})
    assert str(raised.value).replace(str(tmp_path) + "/", "") == (
        "config.yaml:6:14: apps.main.baseUrl: plain http:// is only allowed to a loopback "
        "address (the local emulator): use https://"
    )


def test_plain_http_off_loopback_from_the_environment(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as raised:
        load_config(
            write(tmp_path, MINIMAL_APP),
            environ={"ORCHESTRATOR_APPS__MAIN__BASE_URL": "http://10.0.0.5:8080"},
        )
    assert str(raised.value).startswith(
        "environment variable ORCHESTRATOR_APPS__MAIN__BASE_URL: apps.main.baseUrl: plain http://"
    )


@pytest.mark.parametrize(
    "url",
    [
        "https://api.agora.io",
        "https://api.agora.io/",
        "https://proxy.example/agora",
        "http://127.0.0.1:8080",
        "http://127.8.9.10",
        "http://localhost:1",
        "http://[::1]:9",
        "http://10.0.0.5",
        "http://api.agora.io",
        "ftp://127.0.0.1",
        "api.agora.io",
        "https://api.agora.io?x=1",
        "https://user:hunter2@api.agora.io",
        "https://api agora.io",
        "https://",
    ],
)
def test_config_and_client_agree_on_base_urls(tmp_path: Path, url: str) -> None:
    from orchestrator.agora.client import AgoraClient

    try:
        client = AgoraClient(customer_id="c", customer_secret="s", base_url=url)
    except ValueError as exc:
        client_problem: str | None = str(exc)
    else:
        client_problem = None
        assert client.base_url == url.rstrip("/")
    path = write(tmp_path, MINIMAL_APP + f"    baseUrl: '{url}'\n")
    try:
        config = load_config(path, environ={})
    except ConfigError as exc:
        assert client_problem is not None, str(exc)
        assert "hunter2" not in str(exc) and "hunter2" not in client_problem
    else:
        assert client_problem is None
        assert config.apps["main"].base_url == url.rstrip("/")


SECRET_APP = """\
apps:
  main:
    appId: 0123456789abcdef0123456789abcdef
    customerId: {env: AGORA_CUSTOMER_ID}
"""


@pytest.mark.parametrize(
    ("tail", "expected"),
    [
        (
            "    customerSecret: hunter2-first\n    customerSecret: hunter2-second\n",
            ':6:5: duplicate key "customerSecret" (first at line 5)',
        ),
        (
            "    customerSecret: {env: hunter2A, env: hunter2B}\n",
            ':5:37: duplicate key "env" (first at line 5)',
        ),
        (
            "    customerSecret: 2024-13-45\n",
            ":5:21: not a valid timestamp: quote it if it is text",
        ),
        ('    customerSecret: "hunter2\\q"\n', ":5:30: found unknown escape character (not shown)"),
        ('    customerSecret: "hunter2\x01x"\n', ":5:29: not a text file: character 1 is"),
        (
            "    customerSecret: &s hunter2-x\n    rateLimit: &s 5\n",
            ":6:16: an anchor (&...) is defined",
        ),
        ("    customerSecret: 'hunter2-x\n", ":6:1: found unexpected end of stream"),
    ],
)
def test_no_config_error_quotes_a_secret(tmp_path: Path, tail: str, expected: str) -> None:
    path = write(tmp_path, SECRET_APP + tail)
    result = _cli(path, warnings=True)
    assert result.returncode == 1
    assert "hunter2" not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: {path}{expected}"), lines[0]


@pytest.mark.parametrize(
    ("variables", "where"),
    [
        (
            {"ORCHESTRATOR_APPS__MAIN__CUSTOMER_SECRET": '{"Sup3rS3cretKey": "x"}'},
            "environment variable ORCHESTRATOR_APPS__MAIN__CUSTOMER_SECRET",
        ),
        (
            {"ORCHESTRATOR_APPS__MAIN__CUSTOMER_SECRET": '{"env": "A", "Sup3rS3cretKey": "x"}'},
            "environment variable ORCHESTRATOR_APPS__MAIN__CUSTOMER_SECRET",
        ),
        # Nested into the reference, the variable's own name carries the key.
        (
            {"ORCHESTRATOR_APPS__MAIN__CUSTOMER_SECRET__SUP3R_S3CRET_KEY": "x"},
            "environment variable ORCHESTRATOR_APPS__MAIN__CUSTOMER_SECRET",
        ),
        ({}, "{path}:5:22"),
    ],
    ids=["json", "json-with-a-form", "nested", "file"],
)
def test_a_key_in_a_secret_reference_is_never_shown_from_the_environment_either(
    tmp_path: Path, variables: dict[str, str], where: str
) -> None:
    """Defect: from the environment, the unknown key became part of the variable named
    in the error (`..._CUSTOMER_SECRET__SUP3R_S3CRET_KEY`), where the file's error
    names none."""
    text = (
        MINIMAL_APP
        if variables
        else MINIMAL_APP.replace("{file: secret.txt}", "{Sup3rS3cretKey: x}")
    )
    path = write(tmp_path, text)
    result = _cli(path, environ=variables)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "s3cret" not in (result.stderr + result.stdout).lower()
    assert result.stderr.splitlines() == [
        f"error: {where.format(path=path)}: apps.main.customerSecret: unknown key in a "
        f"secret reference: a secret is {SECRET_FORMS}"
    ]


def test_duplicate_keys_never_show_values(tmp_path: Path) -> None:
    path = write(tmp_path, "logging:\n  level: info\n\n  level: debug\n")
    with pytest.raises(ConfigError) as raised:
        load_config(path, environ={})
    assert str(raised.value) == f'{path}:4:3: duplicate key "level" (first at line 2)'


def test_retry_timing_reaches_every_client(tmp_path: Path) -> None:
    """`retry` sets the API client's policy; the defaults are the client's own."""
    from orchestrator.agora.client import RetryPolicy
    from orchestrator.runtime import retry_policy

    assert retry_policy(load_config(write(tmp_path, ""), environ={})) == RetryPolicy()
    text = "retry: {attempts: 3, initial: 5ms, max: 250ms}\n"
    policy = retry_policy(load_config(write(tmp_path, text), environ={}))
    assert (policy.max_attempts, policy.base_delay, policy.max_delay) == (3, 0.005, 0.25)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("retry: {attempts: 0}\n", "retry.attempts"),
        ("retry: {initial: 2s, max: 1s}\n", "max must not be shorter than initial"),
        ("retry: {initial: 0s}\n", "retry.initial"),
    ],
)
def test_bad_retry_timing_is_a_positioned_error(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text), environ={})
    assert message in str(caught.value)
    assert "config.yaml:1:" in str(caught.value)


# the App Certificate, token lifetimes and the rollover lead


def _profile(name: str, tail: str = "") -> str:
    """A profile with references for its credentials, and `tail` (8-space-indented keys)."""
    app_id = name.encode().hex().ljust(32, "0")[:32]  # 32 hexadecimal digits, as Agora's
    return (
        f"  {name}:\n    appId: {app_id}\n"
        "    customerId: {env: AGORA_CUSTOMER_ID}\n    customerSecret: {env: AGORA_SECRET}\n"
        f"{tail}"
    )


def test_app_certificate_and_token_lifetime_default_to_none_and_24h(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL_APP), environ={})
    profile = config.profile_for("main")
    assert profile.app_certificate is None
    assert profile.token_lifetime == timedelta(hours=24)
    assert config.reconcile.rollover_lead == timedelta(minutes=10)
    assert resolve_app_certificate(profile, environ={}) is None


def test_example_config_has_a_certificate_per_profile() -> None:
    config = load_config(EXAMPLE, environ={})
    assert config.profile_for("main").app_certificate == CredentialSecret(
        credential="agora-app-certificate"
    )
    assert config.profile_for("backup").token_lifetime == timedelta(hours=24)
    assert config.reconcile.rollover_lead == timedelta(minutes=10)


@pytest.mark.parametrize(
    ("reference", "environ", "files"),
    [
        ("{env: AGORA_CERT}", {"AGORA_CERT": "5cfd2fd1755d40ecb72977518be15d3c"}, {}),
        ("{file: FILE}", {}, {"cert.txt": "5cfd2fd1755d40ecb72977518be15d3c\n"}),
        ("{credential: agora-cert}", {}, {"agora-cert": "5cfd2fd1755d40ecb72977518be15d3c"}),
    ],
    ids=["env", "file", "credential"],
)
def test_app_certificate_resolves_only_when_asked(
    tmp_path: Path, reference: str, environ: dict[str, str], files: dict[str, str]
) -> None:
    for name, content in files.items():
        (tmp_path / name).write_text(content, encoding="utf-8")
    reference = reference.replace("FILE", str(tmp_path / "cert.txt"))
    text = "apps:\n" + _profile("main", f"    appCertificate: {reference}\n")
    profile = load_config(write(tmp_path, text), environ={}).profile_for("main")
    environ = {**environ, "CREDENTIALS_DIRECTORY": str(tmp_path)}
    assert resolve_app_certificate(profile, environ=environ) == "5cfd2fd1755d40ecb72977518be15d3c"
    # the credentials are resolved without it, and it without them
    credentials = {"AGORA_CUSTOMER_ID": "cid", "AGORA_SECRET": "csecret"}
    assert resolve_credentials(profile, environ=credentials) == ("cid", "csecret")
    assert [key for key, _ in profile.secret_refs()] == [
        "customerId",
        "customerSecret",
        "appCertificate",
    ]


@pytest.mark.parametrize(
    ("reference", "environ", "expected"),
    [
        (
            "{env: AGORA_CERT}",
            {},
            "appCertificate (env:AGORA_CERT): environment variable AGORA_CERT is not set",
        ),
        ("{env: AGORA_CERT}", {"AGORA_CERT": ""}, "appCertificate (env:AGORA_CERT): is empty"),
        (
            "{env: AGORA_CERT}",
            {"AGORA_CERT": "5cfd2fd1755d40ecb72977518be15d3c\n"},  # a second newline
            "appCertificate (env:AGORA_CERT): is not 32 hexadecimal digits, as an App "
            "Certificate is",
        ),
        (
            "{credential: agora-cert}",
            {},
            "appCertificate (credential:agora-cert): credential agora-cert: "
            "CREDENTIALS_DIRECTORY is not set (use LoadCredential= in the systemd unit)",
        ),
    ],
)
def test_an_unresolvable_certificate_names_the_reference(
    tmp_path: Path, reference: str, environ: dict[str, str], expected: str
) -> None:
    text = "apps:\n" + _profile("main", f"    appCertificate: {reference}\n")
    profile = load_config(write(tmp_path, text), environ={}).profile_for("main")
    with pytest.raises(SecretError) as raised:
        resolve_app_certificate(profile, environ=environ)
    assert str(raised.value) == expected


def test_a_profile_that_mints_tokens_needs_an_app_id_of_32_hexadecimal_digits(
    tmp_path: Path,
) -> None:
    """Defect: every start of such a profile failed to mint its token (a crash each
    pass); the config says so once, at the key."""
    text = "apps:\n" + _profile("main", "    appCertificate: {env: AGORA_CERT}\n")
    text = text.replace("6d61696e", "not-hex!")
    with pytest.raises(ConfigError) as raised:
        load_config(write(tmp_path, text), environ={})
    assert str(raised.value).replace(str(tmp_path) + "/", "") == (
        "config.yaml:3:5: apps.main.appId: must be 32 hexadecimal digits, as an App ID is, "
        "when appCertificate is set (its tokens name it)"
    )
    # Without a certificate no token names it: the App ID is Agora's to judge.
    load_config(write(tmp_path, text.replace("    appCertificate: {env: AGORA_CERT}\n", "")))


def test_a_literal_certificate_is_a_warning_and_never_shown(tmp_path: Path) -> None:
    text = "apps:\n" + _profile("main", "    appCertificate: 41cdef012345678941cdef0123456789\n")
    with capture_logs() as logs:
        config = load_config(write(tmp_path, text), environ={})
    assert config.literal_secrets() == ["apps.main.appCertificate"]
    assert [(e["event"], e["field"]) for e in logs] == [
        ("config.literal_secret", "apps.main.appCertificate")
    ]
    for shown in (repr(logs), repr(config), str(config), repr(config.profile_for("main"))):
        assert "41cdef0123" not in shown
    profile = config.profile_for("main")
    assert resolve_app_certificate(profile, environ={}) == "41cdef012345678941cdef0123456789"
    # once read, it is masked wherever it would be written (log lines, echoed errors)
    assert mask_secrets("signed with 41cdef012345678941cdef0123456789") == "signed with ***"


def test_a_certificate_from_the_environment(tmp_path: Path) -> None:
    variables = {"ORCHESTRATOR_APPS__MAIN__APP_CERTIFICATE": '{"credential": "agora-cert"}'}
    config = load_config(write(tmp_path, MINIMAL_APP), environ=variables)
    assert config.profile_for("main").app_certificate == CredentialSecret(credential="agora-cert")


@pytest.mark.parametrize(
    ("tail", "expected"),
    [
        (
            "    appCertificate: {hunter2}\n",
            "config.yaml:6:22: apps.main.appCertificate: unknown key in a secret reference: "
            f"a secret is {SECRET_FORMS}",
        ),
        (
            "    appCertificate: [hunter2]\n",
            "config.yaml:6:5: apps.main.appCertificate: a secret is a reference: "
            f"{SECRET_FORMS} (or, with a warning, a plain string)",
        ),
        (
            "    appCertificate: hunter2-cert\n    tokenLifetime: 30s\n",
            "config.yaml:7:20: apps.main.tokenLifetime: must be between 1m and 24h",
        ),
        (
            "    appCertificate: hunter2-cert\n    tokenLifetime: 24h1s\n",
            "config.yaml:7:20: apps.main.tokenLifetime: must be between 1m and 24h",
        ),
        (
            "    appCertificate: hunter2-cert\n    tokenLifetime: soon\n",
            f"config.yaml:7:20: apps.main.tokenLifetime: invalid duration: use {DURATIONS}",
        ),
    ],
)
def test_certificate_and_lifetime_errors(tmp_path: Path, tail: str, expected: str) -> None:
    path = write(tmp_path, "apps:\n" + _profile("main", tail))
    with pytest.raises(ConfigError) as raised:
        load_config(path, environ={})
    shown = str(raised.value).replace(str(tmp_path) + "/", "")
    assert shown == expected
    assert "hunter2" not in shown


def test_token_lifetimes_at_the_bounds(tmp_path: Path) -> None:
    text = "apps:\n" + _profile("short", "    tokenLifetime: 1m\n")
    text += _profile("long", "    appCertificate: {env: C}\n    tokenLifetime: 24h\n")
    config = load_config(write(tmp_path, text), environ={})
    assert config.apps["short"].token_lifetime == timedelta(minutes=1)
    assert config.apps["long"].token_lifetime == timedelta(hours=24)


# Three profiles: two with a certificate whose lifetimes a 10-minute lead does not fit,
# one without a certificate (its tokenLifetime is never used: no rule).
PROFILES = (
    "apps:\n"
    + _profile("main", "    appCertificate: {env: MAIN_CERT}\n    tokenLifetime: 15m\n")
    + _profile("backup", "    appCertificate: hunter2-cert\n    tokenLifetime: 20m\n")
    + _profile("plain", "    tokenLifetime: 1m\n")
    + _profile("long", "    appCertificate: {env: LONG_CERT}\n")
)


def test_the_lead_must_be_less_than_half_of_each_certificate_lifetime(tmp_path: Path) -> None:
    path = write(tmp_path, PROFILES + "reconcile:\n  concurrency: 4\n  rolloverLead: 10m\n")
    with pytest.raises(ConfigError) as raised:
        load_config(path, environ={})
    assert str(raised.value).replace(str(tmp_path) + "/", "") == (
        "config.yaml:26:3: reconcile.rolloverLead: reconcile.rolloverLead (10m) must be less "
        "than half of apps.main.tokenLifetime (15m)\n"
        "config.yaml:26:3: reconcile.rolloverLead: reconcile.rolloverLead (10m) must be less "
        "than half of apps.backup.tokenLifetime (20m)"
    )
    assert [(p.line, p.column, p.field) for p in raised.value.problems] == [
        (26, 3, "reconcile.rolloverLead")
    ] * 2
    assert "hunter2" not in str(raised.value)


def test_every_rule_across_keys_is_reported_in_one_run(tmp_path: Path) -> None:
    """Defect: a receiver without its secret hid the rolloverLead rule, which hid the
    clash with the metrics port: three runs to find three independent problems."""
    text = (
        "apps:\n"
        + _profile("main", "    appCertificate: {env: MAIN_CERT}\n    tokenLifetime: 15m\n")
        + "reconcile:\n  rolloverLead: 10m\n"
        + "notifications:\n  address: 127.0.0.1:9464\n"
    )
    path = write(tmp_path, text)
    result = _cli(path)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"error: {path}:9:3: reconcile.rolloverLead: reconcile.rolloverLead (10m) must be "
        "less than half of apps.main.tokenLifetime (15m)",
        f"error: {path}:10:1: notifications.secret: required when address is set: the "
        f"secret NCS signs notifications with, {SECRET_FORMS}",
        f"error: {path}:11:3: notifications.address: must not listen where metrics.address "
        "does: two listeners cannot share a port; choose another port",
    ]


def test_a_lead_under_half_of_every_lifetime_loads(tmp_path: Path) -> None:
    path = write(tmp_path, PROFILES + "reconcile:\n  rolloverLead: 7m29s\n")
    config = load_config(path, environ={})
    assert config.reconcile.rollover_lead == timedelta(minutes=7, seconds=29)


def test_the_default_lead_is_placed_at_the_lifetime(tmp_path: Path) -> None:
    """Without rolloverLead in the file, the default is checked too, and the error is
    placed at the tokenLifetime that does not fit it."""
    with pytest.raises(ConfigError) as raised:
        load_config(write(tmp_path, PROFILES), environ={})
    assert str(raised.value).replace(str(tmp_path) + "/", "") == (
        "config.yaml:7:5: apps.main.tokenLifetime: reconcile.rolloverLead (10m) must be less "
        "than half of apps.main.tokenLifetime (15m)\n"
        "config.yaml:13:5: apps.backup.tokenLifetime: reconcile.rolloverLead (10m) must be "
        "less than half of apps.backup.tokenLifetime (20m)"
    )


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        (
            {"ORCHESTRATOR_RECONCILE__ROLLOVER_LEAD": "8m"},
            "environment variable ORCHESTRATOR_RECONCILE__ROLLOVER_LEAD: reconcile.rolloverLead: "
            "reconcile.rolloverLead (8m) must be less than half of apps.main.tokenLifetime (15m)",
        ),
        (
            {"ORCHESTRATOR_APPS__MAIN__TOKEN_LIFETIME": "20m"},
            "environment variable ORCHESTRATOR_APPS__MAIN__TOKEN_LIFETIME: "
            "apps.main.tokenLifetime: reconcile.rolloverLead (10m) must be less than half of "
            "apps.main.tokenLifetime (20m)",
        ),
        (
            {"ORCHESTRATOR_RECONCILE__ROLLOVER_LEAD": "500ms"},
            "environment variable ORCHESTRATOR_RECONCILE__ROLLOVER_LEAD: reconcile.rolloverLead: "
            "must be at least 1s",
        ),
    ],
)
def test_lead_and_lifetime_from_the_environment(
    tmp_path: Path, variables: dict[str, str], expected: str
) -> None:
    text = "apps:\n" + _profile("main", "    appCertificate: {env: C}\n    tokenLifetime: 15m\n")
    if "ORCHESTRATOR_APPS__MAIN__TOKEN_LIFETIME" in variables:
        text = text.replace("15m", "1h")
    with pytest.raises(ConfigError) as raised:
        load_config(write(tmp_path, text), environ=variables)
    assert str(raised.value) == expected


def test_no_certificate_no_rule(tmp_path: Path) -> None:
    """Tokens are minted only from a certificate: without one, a lifetime is never used."""
    text = (
        "apps:\n" + _profile("main", "    tokenLifetime: 1m\n") + "reconcile: {rolloverLead: 2h}\n"
    )
    config = load_config(write(tmp_path, text), environ={})
    assert config.reconcile.rollover_lead == timedelta(hours=2)
