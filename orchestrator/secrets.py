"""Secret references and their resolution.

Manifests and the daemon config never hold secret values, only references:
`{env: NAME}`, `{file: PATH}` or `{credential: NAME}` (a file in systemd's
`$CREDENTIALS_DIRECTORY`). A plain string is a literal secret: accepted, but the
manifest loader warns about it (an error under `--strict`).

This module must never put a secret *value* into an exception message, a log
line or a `repr`: errors name the reference (variable name, path), and the
value's `repr` is masked.

`SECRET_KEYS` is the one list of the key names that carry secrets (in manifests,
the daemon config, request bodies, log events); `is_secret_key` is how every
layer matches a key against it. This module is a leaf: it imports nothing of ours.

It is also the one place that knows how a secret may come back in another form:
`secret_forms` (JSON-escaped, URL-encoded, HTML-escaped) and `basic_credential_forms`
(the base64 of `customerId:customerSecret` an Authorization header carries). Every
value resolved here is remembered with all its forms, and `mask_secrets` removes
them, longest first, from any text: the log processor (`orchestrator.logging`) and
the API error scrubber (`orchestrator.agora.errors.scrub`) both call it.
"""

from __future__ import annotations

import base64
import html
import json
import os
import re
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, Final, NamedTuple
from urllib.parse import quote, quote_plus

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    TypeAdapter,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from orchestrator.errors import OrchestratorError
from orchestrator.files import ReadError, read_regular

SECRET_KEYS: Final = frozenset(
    {
        "token",
        "secret",
        "secretKey",
        "accessKey",
        "customerId",
        "customerSecret",
        "certificate",
        "password",
        "authorization",
    }
)
"""The names of keys whose values are secrets, as written in YAML and in JSON bodies.

Code that must recognise a secret by its key (the manifest loader hiding an input,
the log processor masking a value, the API client scrubbing a request body, the
store refusing a secret-shaped column) uses this list, through `is_secret_key`."""


MAX_SECRET_BYTES: Final = 64 * 1024
"""A secret file (`{file: PATH}`, a systemd credential) larger than this is refused
unread: keys and certificates are tens of bytes."""


def _folded(name: str) -> str:
    return name.lower().replace("_", "").replace("-", "")


_FOLDED_KEYS = tuple(sorted({_folded(key) for key in SECRET_KEYS}))


def is_secret_key(name: str) -> bool:
    """Whether a key may carry a secret: it contains one of `SECRET_KEYS`, compared
    without case, `_` or `-` (`secretKey`, `customer_secret`, `X-Authorization`)."""
    folded = _folded(name)
    return any(key in folded for key in _FOLDED_KEYS)


class SecretError(OrchestratorError):
    """A secret reference could not be resolved. The message names the reference only."""


class _Ref(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class EnvSecret(_Ref):
    """The value of an environment variable of the daemon's process."""

    env: Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]

    def describe(self) -> str:
        return f"env:{self.env}"


class FileSecret(_Ref):
    """The content of a file (one trailing newline is stripped)."""

    file: Annotated[str, Field(min_length=1)]

    @field_validator("file")
    @classmethod
    def _a_path(cls, value: str) -> str:
        if "\0" in value:  # no file has one: said where it is written, not at every start
            raise PydanticCustomError("secret_path", "a file path cannot hold a NUL byte")
        return value

    def describe(self) -> str:
        return f"file:{self.file}"


class CredentialSecret(_Ref):
    """A systemd credential: the file NAME in `$CREDENTIALS_DIRECTORY` (`LoadCredential=`)."""

    credential: Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9_.@-]+$")]

    def describe(self) -> str:
        return f"credential:{self.credential}"


class LiteralSecret(_Ref):
    """A value written in the file itself. Allowed (with a warning) for local trials only."""

    value: str = Field(repr=False)

    @model_validator(mode="before")
    @classmethod
    def _from_scalar(cls, data: Any) -> Any:
        if data == "":
            # Nothing takes an empty one (Agora refuses it; a start with it is never
            # sent): said where it is written, not at every start.
            raise PydanticCustomError(
                "secret_empty", "a secret cannot be empty: write its value, or a reference"
            )
        return {"value": data} if isinstance(data, str) else data

    def describe(self) -> str:
        return "literal"

    def __str__(self) -> str:
        return "literal(***)"


SecretRef = EnvSecret | FileSecret | CredentialSecret | LiteralSecret
SECRET_REF_TYPES = (EnvSecret, FileSecret, CredentialSecret, LiteralSecret)


def describe_secret(ref: SecretRef) -> str:
    """A placeholder naming the reference: `<env:S3_KEY>`; a literal is never shown."""
    return f"<{ref.describe()}>"


def describe_secrets_in(
    document: dict[str, Any], refs: Iterable[tuple[str, SecretRef]]
) -> dict[str, Any]:
    """A copy of `document` (a model dumped by alias) with the secret at each dotted
    path of `refs` replaced by its `describe_secret`: what may be hashed or shown of
    it. Only the mappings on those paths are copied; `document` is left as it is."""
    copy = dict(document)
    for path, ref in refs:
        *parents, key = path.split(".")
        node = copy
        for part in parents:
            child = node.get(part)
            if not isinstance(child, dict):
                break
            node[part] = node = dict(child)
        else:
            if key in node:
                node[key] = describe_secret(ref)
    return copy


def _secret_tag(value: Any) -> str:
    if isinstance(value, _Ref):
        return type(value).__name__
    if isinstance(value, dict):
        for key, tag in (
            ("env", "EnvSecret"),
            ("file", "FileSecret"),
            ("credential", "CredentialSecret"),
        ):
            if key in value:
                return tag
        return "EnvSecret"  # an empty or unknown mapping: report against the most common form
    return "LiteralSecret"


SecretField = Annotated[
    Annotated[EnvSecret, Tag("EnvSecret")]
    | Annotated[FileSecret, Tag("FileSecret")]
    | Annotated[CredentialSecret, Tag("CredentialSecret")]
    | Annotated[LiteralSecret, Tag("LiteralSecret")],
    Discriminator(_secret_tag),
]
"""Annotation for a pydantic field holding a secret reference.

Accepts `{env: NAME}`, `{file: PATH}`, `{credential: NAME}` or a plain string (a
literal). Validation errors carry the variant's tag in their location
(e.g. `("token", "EnvSecret", "env")`); drop it when showing a field path.
"""

SECRET_TAGS: Final = frozenset(
    kind.__name__ for kind in (EnvSecret, FileSecret, CredentialSecret, LiteralSecret)
)
"""The variant tags `SecretField` puts into validation error locations."""

_SECRET_ADAPTER: TypeAdapter[SecretRef] = TypeAdapter(SecretField)


def parse_secret(value: Any) -> SecretRef:
    """Turn the YAML form (a mapping or a plain string) into a SecretRef.

    Raises pydantic.ValidationError.
    """
    return _SECRET_ADAPTER.validate_python(value)


# Every value resolved in this process, so that logging can remove them from any
# line whatever a call site passes (orchestrator.logging). Short values are not
# kept: masking every "1" or "ab" would garble logs without protecting anything.
_RESOLVED: set[str] = set()
_MIN_MASKED_LENGTH = 4


class _Masking(NamedTuple):
    """Every form of every remembered value, longest first (see `mask_secrets`), and
    one pattern finding any of them: a log line is searched once, in C, and only one
    that holds a secret is replaced form by form. The pattern is compiled when it is
    first needed after a change (a burst of new values costs one compilation, about
    0.1 ms per form)."""

    forms: tuple[str, ...] = ()
    any_form: re.Pattern[str] | None = None


# Replaced whole, never mutated: a reader on another thread sees one version or the other.
_MASKING = _Masking()
_REGISTERING = threading.Lock()
MASK: Final = "***"

_JSON_UNICODE_ESCAPE = re.compile(r"\\u([0-9a-f]{4})")
_PERCENT_ESCAPE = re.compile(r"%[0-9A-F]{2}")


def secret_forms(value: str) -> frozenset[str]:
    """`value` and the forms a server or a serializer may write it back in.

    As it is; JSON-escaped inside a string, as `json.dumps` writes it with and without
    `ensure_ascii` (and with upper-case `\\uXXXX` digits, and `/` escaped as `\\/`, as
    other serializers do); URL-encoded by `quote` (with and without `/` kept) and
    `quote_plus`, in upper- or lower-case hex; HTML-escaped (a proxy's error page).
    """
    forms = {value, html.escape(value)}
    for ascii_only in (True, False):
        escaped = json.dumps(value, ensure_ascii=ascii_only)[1:-1]
        upper = _JSON_UNICODE_ESCAPE.sub(lambda m: "\\u" + m.group(1).upper(), escaped)
        forms |= {escaped, upper, escaped.replace("/", "\\/"), upper.replace("/", "\\/")}
    for encoded in (quote(value, safe=""), quote(value), quote_plus(value)):
        forms |= {encoded, _PERCENT_ESCAPE.sub(lambda m: m.group(0).lower(), encoded)}
    return frozenset(form for form in forms if form)


def basic_credential_forms(customer_id: str, customer_secret: str) -> frozenset[str]:
    """The base64 of `customerId:customerSecret` (HTTP Basic), in every form a server
    may echo it: standard or URL-safe alphabet, padded or not, each in `secret_forms`.

    The customer ID alone is not a secret, but this pair is the whole credential:
    whoever reads it can call the API."""
    pair = f"{customer_id}:{customer_secret}".encode()
    encoded = {base64.b64encode(pair).decode(), base64.urlsafe_b64encode(pair).decode()}
    encoded |= {text.rstrip("=") for text in encoded}
    return frozenset(form for text in encoded for form in secret_forms(text))


def _longest_first(forms: Iterable[str]) -> tuple[str, ...]:
    # Longest first, so that a secret that contains another is masked whole, not left
    # with its tail showing; equal lengths in a fixed order, so the result is stable.
    return tuple(sorted(set(forms), key=lambda form: (-len(form), form)))


def _register(forms: Iterable[str]) -> None:
    global _MASKING
    with _REGISTERING:  # two writers must not lose each other's forms
        known = _MASKING.forms
        new = set(forms) - set(known)
        if new:
            _MASKING = _Masking(_longest_first((*known, *new)))


def _compiled(masking: _Masking) -> _Masking:
    global _MASKING
    compiled = masking._replace(any_form=re.compile("|".join(map(re.escape, masking.forms))))
    with _REGISTERING:
        if _MASKING is masking:  # unless a value was remembered meanwhile
            _MASKING = compiled
    return compiled


def resolved_values() -> frozenset[str]:
    """The secret values resolved so far in this process (their forms: `masked_forms`)."""
    return frozenset(_RESOLVED)


def masked_forms() -> tuple[str, ...]:
    """Every form of every secret remembered so far, longest first: what `mask_secrets`
    removes from any text."""
    return _MASKING.forms


def _remember(value: str) -> str:
    if len(value) >= _MIN_MASKED_LENGTH and value not in _RESOLVED:
        _register(secret_forms(value))
        _RESOLVED.add(value)  # after its forms: `mask_secrets` skips the values it holds
    return value


def remember_credentials(customer_id: str, customer_secret: str) -> None:
    """Remember an API credential pair: the secret, and the base64 of the pair that an
    Authorization header carries (`basic_credential_forms`), so that no log line or
    error reason shows either, whoever echoes it. The API client calls this for the
    credentials it is given."""
    _remember(customer_secret)
    _register(basic_credential_forms(customer_id, customer_secret))


def mask_secrets(text: str, extra: Iterable[str] = ()) -> str:
    """`text` with every form of every remembered secret, and of each value of `extra`
    (literal secrets a caller knows, such as those of the request it sent), replaced
    by `***`, longest first."""
    masking = _MASKING
    if masking.any_form is None and masking.forms:
        masking = _compiled(masking)
    forms = masking.forms
    added = {
        form
        for value in extra
        if len(value) >= _MIN_MASKED_LENGTH and value not in _RESOLVED
        for form in secret_forms(value)
    }
    if added:
        forms = _longest_first((*forms, *added))
    elif masking.any_form is None or masking.any_form.search(text) is None:
        return text  # the common case: nothing to mask
    for form in forms:
        if form in text:
            text = text.replace(form, MASK)
    return text


def resolve_secret(
    ref: SecretRef,
    *,
    environ: dict[str, str] | None = None,
    credentials_dir: str | None = None,
) -> str:
    """The secret's value. Raises SecretError naming the reference, never the value."""
    return _remember(_resolve(ref, environ=environ, credentials_dir=credentials_dir))


def _resolve(
    ref: SecretRef,
    *,
    environ: dict[str, str] | None,
    credentials_dir: str | None,
) -> str:
    if isinstance(ref, LiteralSecret):  # from the environment, it may not be UTF-8 either
        return _utf8(ref.value, "the literal secret")
    if isinstance(ref, EnvSecret):
        env = os.environ if environ is None else environ
        if ref.env not in env:
            raise SecretError(f"environment variable {ref.env} is not set")
        return _utf8(env[ref.env], f"environment variable {ref.env}")
    if isinstance(ref, FileSecret):
        path = Path(ref.file)
    else:
        env = os.environ if environ is None else environ
        directory = credentials_dir or env.get("CREDENTIALS_DIRECTORY")
        if not directory:
            raise SecretError(
                f"credential {ref.credential}: CREDENTIALS_DIRECTORY is not set "
                "(use LoadCredential= in the systemd unit)"
            )
        path = Path(directory) / ref.credential
    try:
        data = read_regular(path, MAX_SECRET_BYTES)
    except ReadError as exc:  # a FIFO would block the daemon, /dev/zero never end
        raise SecretError(f"{ref.describe()}: cannot read {path}: {exc.reason}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        # The codec's message quotes the offending byte: a byte of the secret.
        raise SecretError(f"{ref.describe()}: {path} is not UTF-8 text") from None
    return text[:-1] if text.endswith("\n") else text


def _utf8(value: str, what: str) -> str:
    """`value` if it is text that can be sent. Python decodes the environment with
    `surrogateescape`, so bytes that are not UTF-8 arrive as lone surrogates, and the
    first encoder to meet them (an HTTP header, a JSON body) would fail far from here
    with a message showing where in the secret they are."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise SecretError(f"{what} is not UTF-8 text") from None
    return value
