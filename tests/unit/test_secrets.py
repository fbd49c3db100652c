"""Which keys carry secrets: one list (`SECRET_KEYS`), one way to match it.

Covers: `is_secret_key` on the spellings each layer meets (YAML camelCase, log
keys in snake_case, headers with dashes, any case) and on keys that are not
secrets; the log processor masking the value of every such key on a real JSON
log line, whatever spelling the call site used. The forms a server may echo a
secret in (`secret_forms`: JSON-escaped with and without `ensure_ascii`, URL-encoded
by `quote` and `quote_plus`; `basic_credential_forms`: the base64 of the credential
pair, standard or URL-safe, padded or not), remembered once a value is resolved and
masked by `mask_secrets`, longest first, the customer ID alone left as it is.
A secret that is not UTF-8 text, from any source, is a `SecretError` naming the
reference and none of its bytes.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import pytest
import structlog
from pydantic import TypeAdapter, ValidationError

from orchestrator.logging import configure_logging
from orchestrator.secrets import (
    MAX_SECRET_BYTES,
    SECRET_KEYS,
    CredentialSecret,
    EnvSecret,
    FileSecret,
    LiteralSecret,
    SecretError,
    SecretRef,
    basic_credential_forms,
    is_secret_key,
    mask_secrets,
    masked_forms,
    remember_credentials,
    resolve_secret,
    secret_forms,
)


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


AWKWARD = 'a/b"c\\d é+f g'  # every character a serializer or a URL escapes


def test_secret_forms_are_how_serializers_and_urls_write_a_value() -> None:
    forms = secret_forms(AWKWARD)
    for expected in (
        AWKWARD,
        json.dumps(AWKWARD)[1:-1],
        json.dumps(AWKWARD, ensure_ascii=False)[1:-1],
        json.dumps(AWKWARD)[1:-1].replace("/", "\\/"),
        quote(AWKWARD),
        quote(AWKWARD, safe=""),
        quote_plus(AWKWARD),
    ):
        assert expected in forms, expected
    assert secret_forms("plain-value-1") == {"plain-value-1"}


def test_basic_credential_forms_are_the_pair_not_the_id() -> None:
    pair = b"cust-id:cust?secret>>x"  # its base64 has a `+` and padding
    forms = basic_credential_forms("cust-id", "cust?secret>>x")
    standard, urlsafe = base64.b64encode(pair).decode(), base64.urlsafe_b64encode(pair).decode()
    assert standard != urlsafe and standard.endswith("=")
    assert {standard, standard.rstrip("="), urlsafe, urlsafe.rstrip("=")} <= forms
    assert quote(standard, safe="") in forms
    assert "cust-id" not in forms and "cust?secret>>x" not in forms


def test_a_resolved_value_is_masked_in_every_form(monkeypatch: pytest.MonkeyPatch) -> None:
    value = 'resolved/"Välue+1'
    monkeypatch.setenv("SECRETS_TEST_FORMS", value)
    assert resolve_secret(EnvSecret(env="SECRETS_TEST_FORMS")) == value
    assert secret_forms(value) <= set(masked_forms())
    for form in sorted(secret_forms(value)):
        assert mask_secrets(f"<{form}>") == "<***>", form


def test_the_credential_pair_is_masked_and_the_customer_id_is_not() -> None:
    remember_credentials("pair-Kq7-id", "pair-Kq7-secret")  # names no other test uses
    token = base64.b64encode(b"pair-Kq7-id:pair-Kq7-secret").decode()
    assert mask_secrets(f"Authorization: Basic {token}") == "Authorization: Basic ***"
    assert mask_secrets(token.rstrip("=")) == "***"
    assert mask_secrets("customer pair-Kq7-id") == "customer pair-Kq7-id"
    assert mask_secrets("secret pair-Kq7-secret") == "secret ***"


def test_a_secret_containing_another_is_masked_whole_in_every_form() -> None:
    short, long = "inner/one", "inner/one/outer"
    for encode in (lambda v: v, lambda v: quote(v, safe=""), lambda v: json.dumps(v)[1:-1]):
        assert mask_secrets(f"x {encode(long)} y {encode(short)}", [short, long]) == "x *** y ***"


def test_extra_values_are_masked_in_every_form_without_being_remembered() -> None:
    extra = "request/only+secret"
    assert mask_secrets(quote_plus(extra), [extra]) == "***"
    assert extra not in masked_forms()
    assert mask_secrets("abc", ["abc"]) == "abc"  # too short to be worth masking


NOT_UTF8 = b"\xff\xfeSECRET"


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        (FileSecret(file="bin.txt"), "file:bin.txt: bin.txt is not UTF-8 text"),
        (
            CredentialSecret(credential="bin.txt"),
            "credential:bin.txt: {dir}/bin.txt is not UTF-8 text",
        ),
        (EnvSecret(env="BINARY"), "environment variable BINARY is not UTF-8 text"),
        (LiteralSecret(value=os.fsdecode(NOT_UTF8)), "the literal secret is not UTF-8 text"),
    ],
    ids=["file", "credential", "env", "literal"],
)
def test_a_secret_that_is_not_utf8_names_its_reference_and_no_byte(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ref: SecretRef, message: str
) -> None:
    """Defect: a file holding `\\xff\\xfe...` raised UnicodeDecodeError, whose message
    quotes the byte; from the environment the bytes arrive as surrogates that the first
    encoder refuses, as far away as an HTTP header."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bin.txt").write_bytes(NOT_UTF8)
    environ = {"BINARY": os.fsdecode(NOT_UTF8)}
    with pytest.raises(SecretError) as raised:
        resolve_secret(ref, environ=environ, credentials_dir=str(tmp_path))
    assert str(raised.value) == message.format(dir=tmp_path)
    assert raised.value.__cause__ is None and raised.value.__suppress_context__


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: os.mkfifo(p), "it is a FIFO (named pipe), not a regular file"),
        (lambda p: p.symlink_to("/dev/zero"), "it is a character device, not a regular file"),
        (lambda p: p.mkdir(), "it is a directory, not a regular file"),
        (
            lambda p: p.write_bytes(b"k" * (MAX_SECRET_BYTES + 1)),
            f"it is {MAX_SECRET_BYTES + 1} bytes; the limit is {MAX_SECRET_BYTES} (64 KiB)",
        ),
    ],
    ids=["fifo", "dev-zero", "directory", "too-big"],
)
def test_a_secret_file_that_is_no_small_regular_file_is_refused_unread(
    tmp_path: Path, make: Any, message: str
) -> None:
    """Defect: a FIFO as `{file: PATH}` blocked the daemon's event loop until someone
    wrote to it (no pass, no /healthz), and `/dev/zero` was read without end. Each is
    refused at once, like a manifest file, and the credential form alike."""
    path = tmp_path / "key"
    make(path)
    for ref in (FileSecret(file=str(path)), CredentialSecret(credential="key")):
        with pytest.raises(SecretError) as raised:
            resolve_secret(ref, credentials_dir=str(tmp_path))
        assert str(raised.value) == f"{ref.describe()}: cannot read {path}: {message}"


def test_a_secret_file_path_with_a_nul_is_refused_where_it_is_written() -> None:
    """Defect: `validate` passed it and every start crashed (ValueError: embedded null
    byte) in a traceback, pass after pass."""
    with pytest.raises(ValidationError) as raised:
        TypeAdapter(SecretRef).validate_python({"file": "/run/a\0b"})
    assert "a file path cannot hold a NUL byte" in str(raised.value)
