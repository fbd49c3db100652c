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
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Final

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, TypeAdapter, model_validator

from orchestrator.errors import OrchestratorError

SECRET_KEYS: Final = frozenset(
    {
        "token",
        "secret",
        "secretKey",
        "accessKey",
        "customerId",
        "customerSecret",
        "password",
        "authorization",
    }
)
"""The names of keys whose values are secrets, as written in YAML and in JSON bodies.

Code that must recognise a secret by its key (the manifest loader hiding an input,
the log processor masking a value, the API client scrubbing a request body, the
store refusing a secret-shaped column) uses this list, through `is_secret_key`."""


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


def resolved_values() -> frozenset[str]:
    """The secret values resolved so far in this process (for the log redaction step)."""
    return frozenset(_RESOLVED)


def _remember(value: str) -> str:
    if len(value) >= _MIN_MASKED_LENGTH:
        _RESOLVED.add(value)
    return value


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
    if isinstance(ref, LiteralSecret):
        return ref.value
    if isinstance(ref, EnvSecret):
        env = os.environ if environ is None else environ
        if ref.env not in env:
            raise SecretError(f"environment variable {ref.env} is not set")
        return env[ref.env]
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
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SecretError(f"{ref.describe()}: cannot read {path}: {exc.strerror}") from None
    return text[:-1] if text.endswith("\n") else text
