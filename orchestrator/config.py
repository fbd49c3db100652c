"""The daemon's configuration: one YAML file, overridable from the environment.

What the orchestrator needs that is not a recording: App ID profiles and their
credentials (as secret references), where the state store and the manifests
live, logging, metrics, the notification receiver and the reconcile loop's
timing. Each section's model, defaults and ranges are `orchestrator.config_sections`';
this module reads, merges and validates them into one `Config`, holds the rules
between sections, and resolves secrets. The file's keys are
camelCase like the manifests'; every key may be overridden by an environment
variable `ORCHESTRATOR_<SECTION>__<KEY>` in snake case (for example
`ORCHESTRATOR_STATE__URL`, `ORCHESTRATOR_LOGGING__LEVEL`,
`ORCHESTRATOR_APPS__MAIN__RATE_LIMIT`), read with pydantic-settings.

Relative paths (`state.dir`, a relative `sqlite:///` URL, `manifests.dir`) are
resolved against the directory of the config file, so a checkout runs the same
from any working directory.

Errors name the file, line and column (or the environment variable), and the
field as the file spells it, and say what would be valid in the manifests' words:
an unknown key with the closest valid one and all of them (`unknown_key`, shared
with the manifests), a wrong choice with the allowed values and a did-you-mean, a
number with its range; every problem is reported, one per line. They never quote
a value of the file or the environment (only keys and the model's own limits).
Secret values never appear in an error, a log line or a `repr`: credentials, an App
Certificate and the notification secret are references, resolved only when a client
or the receiver is built (`resolve_credentials`, `resolve_app_certificate`,
`resolve_notifications_secret`), and YAML
syntax errors are reworded so that they quote nothing of the file's values (a
duplicate key names the key and the line of the first one, never a value).

Reading is bounded whatever the file holds, by the reader the manifests use
(`orchestrator.manifest.reading`, one set of limits): only a regular file is read
(a FIFO or a device would block), at most `MAX_CONFIG_BYTES`, UTF-8; nesting at
most `MAX_DEPTH` levels; aliases may stand for at most `MAX_ALIAS_NODES` nodes in
all (a few hundred bytes of nested aliases would otherwise expand to billions),
and an anchor may be defined only once. Aliases stay allowed because sharing one
secret reference between profiles is a fair use of them.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Any, Self, cast, get_args, get_origin

import structlog
from pydantic import BaseModel, ConfigDict, PrivateAttr, ValidationError, model_validator
from pydantic_settings import BaseSettings, EnvSettingsSource
from pydantic_settings.sources.utils import parse_env_vars
from ruamel.yaml.comments import CommentedMap

from orchestrator.config_messages import annotation_at, explain
from orchestrator.config_sections import (
    DEFAULT_STATE_DIR,
    AppProfile,
    Backoff,
    LoggingSection,
    ManifestsSection,
    MetricsSection,
    NotificationsSection,
    ReconcileSection,
    ReplicaSection,
    RetrySection,
    ShutdownSection,
    StateSection,
)
from orchestrator.contract import is_app_credential
from orchestrator.errors import OrchestratorError
from orchestrator.manifest.diagnostics import SECRET_FORMS, locate
from orchestrator.manifest.reading import (
    MAX_ALIAS_NODES,
    MAX_DEPTH,
    MAX_FILE_BYTES,
    ReadError,
    YamlProblem,
    read_document,
)
from orchestrator.manifest.rules import Rules, dotted_path
from orchestrator.manifest.scalars import show_duration
from orchestrator.secrets import LiteralSecret, SecretError, SecretRef, resolve_secret

__all__ = [
    "DEFAULT_STATE_DIR",
    "ENV_PREFIX",
    "MAX_ALIAS_NODES",
    "MAX_CONFIG_BYTES",
    "MAX_DEPTH",
    "AppProfile",
    "Backoff",
    "Config",
    "ConfigError",
    "ConfigProblem",
    "NotificationsSection",
    "load_config",
    "resolve_app_certificate",
    "resolve_credentials",
    "resolve_notifications_secret",
]

ENV_PREFIX = "ORCHESTRATOR_"
CONFIG_PATH_VARIABLE = "ORCHESTRATOR_CONFIG"  # the file to read when no path is given

# Bounds on what reading the file may cost, whatever is in it: the manifests' own
# (`orchestrator.manifest.reading`, which reads both). A real config is a few
# kilobytes, a handful of levels deep, and needs aliases at most to share a secret
# reference between profiles; these limits are far above that and far below what
# would take noticeable time or memory.
MAX_CONFIG_BYTES = MAX_FILE_BYTES

_log = structlog.get_logger(__name__)


# ---------------------------------------------------------------------------
# errors


class ConfigProblem(BaseModel):
    """One problem: where (file:line:column, or the environment variable) and what."""

    model_config = ConfigDict(frozen=True)

    file: str
    line: int  # 1-based; 0 when the value came from the environment
    column: int
    field: str  # dotted path in the file's spelling, e.g. "reconcile.concurrency"
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.column}" if self.line else self.file
        return (
            f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"
        )


class ConfigError(OrchestratorError):
    """The configuration cannot be used. Names places and fields, never secret values."""

    def __init__(self, message: str, problems: list[ConfigProblem] | None = None) -> None:
        self.problems = problems or []
        super().__init__(message)

    @classmethod
    def from_problems(cls, problems: list[ConfigProblem]) -> ConfigError:
        return cls("\n".join(str(p) for p in problems), problems)


class Config(BaseModel):
    """The whole configuration. Frozen; build it with `load_config`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # Top-level keys are single words: with no aliases here, pydantic-settings only
    # ever reads prefixed variables (an alias would also match a bare `STATE`).
    apps: dict[str, AppProfile] = {}
    state: StateSection = StateSection()
    manifests: ManifestsSection = ManifestsSection()
    logging: LoggingSection = LoggingSection()
    metrics: MetricsSection = MetricsSection()
    notifications: NotificationsSection = NotificationsSection()
    reconcile: ReconcileSection = ReconcileSection()
    retry: RetrySection = RetrySection()
    shutdown: ShutdownSection = ShutdownSection()
    replica: ReplicaSection = ReplicaSection()

    _file: Path | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _rules_across_keys(self) -> Self:
        """The rules between keys, every one checked in one go: they do not depend on
        each other, and one reported at a time would show the next only once it is
        fixed. (A key that fails its own check stops them all: they need valid values.)"""
        self._rules().raise_if_any()
        return self

    def _rules(self) -> Rules:
        rules = Rules()
        self._notifications_signed(rules)
        self._lead_fits_token_lifetimes(rules)
        self._tokens_name_app_ids(rules)
        self._one_listener_per_port(rules)
        return rules

    def violations(self) -> list[str]:
        """The rules between keys this config breaks, as `key: why` (none for one that
        loaded; a reload puts one together from two: the running and the loaded)."""
        return [f"{dotted_path(loc)}: {message}" for loc, message in self._rules().items]

    def _notifications_signed(self, rules: Rules) -> None:
        """The receiver verifies every notification's signature with the secret:
        without one it could verify none."""
        if self.notifications.address is not None and self.notifications.secret is None:
            rules.add(
                ("notifications", "secret"),
                "required when address is set: the secret NCS signs notifications with, "
                f"{SECRET_FORMS}",
            )

    def _lead_fits_token_lifetimes(self, rules: Rules) -> None:
        """A successor must start before its predecessor's token expires, with its own
        token not due yet: the lead is less than half of every minted token's lifetime.

        The error is placed at `reconcile.rolloverLead` when it was given (the file or
        the environment), otherwise at the profile's `tokenLifetime`."""
        lead = self.reconcile.rollover_lead
        lead_given = "rollover_lead" in self.reconcile.model_fields_set
        for name, profile in self.apps.items():
            if profile.app_certificate is None or lead * 2 < profile.token_lifetime:
                continue
            loc = ("reconcile", "rolloverLead") if lead_given else ("apps", name, "tokenLifetime")
            rules.add(
                loc,
                f"reconcile.rolloverLead ({show_duration(lead)}) must be less than half of "
                f"apps.{name}.tokenLifetime ({show_duration(profile.token_lifetime)})",
            )

    def _tokens_name_app_ids(self, rules: Rules) -> None:
        """A token names its App ID as 32 hexadecimal digits: a profile that mints them
        needs an App ID of that form (every start would fail to mint one)."""
        for name, profile in self.apps.items():
            if profile.app_certificate is not None and not is_app_credential(profile.app_id):
                rules.add(
                    ("apps", name, "appId"),
                    "must be 32 hexadecimal digits, as an App ID is, when appCertificate is "
                    "set (its tokens name it)",
                )

    def _one_listener_per_port(self, rules: Rules) -> None:
        """The notification receiver and the metrics endpoint are two listeners: they
        cannot bind one port (the second bind fails only when the daemon starts)."""
        if self.notifications.shares_port_with(self.metrics):
            rules.add(
                ("notifications", "address"),
                "must not listen where metrics.address does: two listeners cannot share a "
                "port; choose another port",
            )

    @property
    def file(self) -> Path | None:
        """The file this configuration was read from (None: defaults and environment)."""
        return self._file

    def profile_for(self, app_name: str) -> AppProfile:
        """The App ID profile a manifest's `app:` names."""
        try:
            return self.apps[app_name]
        except KeyError:
            known = ", ".join(sorted(self.apps)) or "none configured"
            where = f" in {self._file}" if self._file else ""
            raise ConfigError(f"no App ID profile {app_name!r}{where} (known: {known})") from None

    def secret_refs(self) -> list[tuple[str, SecretRef]]:
        """Every secret reference of the config by its dotted key: each profile's, then
        the notification secret's."""
        refs = [
            (f"apps.{name}.{key}", ref)
            for name, profile in self.apps.items()
            for key, ref in profile.secret_refs()
        ]
        if self.notifications.secret is not None:
            refs.append(("notifications.secret", self.notifications.secret))
        return refs

    def literal_secrets(self) -> list[str]:
        """Fields holding a secret written in the file itself (allowed, but a warning)."""
        return [key for key, ref in self.secret_refs() if isinstance(ref, LiteralSecret)]


def _resolve_config_secret(
    key: str, ref: SecretRef, environ: Mapping[str, str] | None, credentials_dir: str | None
) -> str:
    env = dict(os.environ if environ is None else environ)
    try:
        return resolve_secret(ref, environ=env, credentials_dir=credentials_dir)
    except SecretError as exc:
        raise SecretError(f"{key} ({ref.describe()}): {exc}") from None


def resolve_credentials(
    profile: AppProfile,
    *,
    environ: Mapping[str, str] | None = None,
    credentials_dir: str | None = None,
) -> tuple[str, str]:
    """(customer ID, customer secret) of a profile, read now. Raises SecretError naming
    the field and the reference, never a value."""
    return (
        _resolve_config_secret("customerId", profile.customer_id, environ, credentials_dir),
        _resolve_config_secret("customerSecret", profile.customer_secret, environ, credentials_dir),
    )


def resolve_app_certificate(
    profile: AppProfile,
    *,
    environ: Mapping[str, str] | None = None,
    credentials_dir: str | None = None,
) -> str | None:
    """The profile's App Certificate, read now; None when the profile has none. Raises
    SecretError naming the field and the reference, never a value; an empty value is
    refused (every token minted from it would be refused by Agora, one start at a time).

    Like the credentials, the value is remembered for masking (`mask_secrets`): no log
    line or error shows it, whoever echoes it."""
    ref = profile.app_certificate
    if ref is None:
        return None
    value = _resolve_config_secret("appCertificate", ref, environ, credentials_dir)
    if not value:
        raise SecretError(f"appCertificate ({ref.describe()}): is empty")
    if not is_app_credential(value):
        # Every start would fail to mint its token: refused here, once, by reference.
        raise SecretError(
            f"appCertificate ({ref.describe()}): is not 32 hexadecimal digits, as an App "
            "Certificate is"
        )
    return value


def resolve_notifications_secret(
    config: Config,
    *,
    environ: Mapping[str, str] | None = None,
    credentials_dir: str | None = None,
) -> str | None:
    """The secret Agora's notifications are signed with, read now; None when the config
    has none (the receiver is off: a config with an address and no secret does not
    load). Raises SecretError naming the field and the reference, never a value; an
    empty value is refused (every body signed with an empty key would verify).

    Remembered for masking (`mask_secrets`), as the credentials are."""
    ref = config.notifications.secret
    if ref is None:
        return None
    key = NOTIFICATIONS_SECRET
    value = _resolve_config_secret(key, ref, environ, credentials_dir)
    if not value:
        raise SecretError(f"{key} ({ref.describe()}): is empty")
    return value


def fingerprint(value: object) -> str:
    """A secret's value as a fingerprint (SHA-256): whether a value changed can be told,
    the value cannot be."""
    return hashlib.sha256(repr(value).encode()).hexdigest()


def credentials_key(profile: str) -> str:
    """The key a profile's credentials' fingerprint goes by."""
    return f"apps.{profile}.customerId/customerSecret"


def certificate_key(profile: str) -> str:
    """The key a profile's App Certificate's fingerprint goes by."""
    return f"apps.{profile}.appCertificate"


#: The key the notifications secret goes by (its fingerprint, its errors).
NOTIFICATIONS_SECRET = "notifications.secret"  # noqa: S105 (a key, not a secret)


def secret_fingerprints(config: Config) -> tuple[dict[str, str], dict[str, str]]:
    """Every secret of the config read now, as a `fingerprint`, by key as the file
    spells it; and, by key, why those that cannot be read cannot (naming the
    reference, never a value). A SIGHUP compares them with the fingerprints of what the
    daemon read at its start, which it holds until it restarts."""
    found: dict[str, str] = {}
    problems: dict[str, str] = {}

    def read(key: str, resolve: Callable[[], object]) -> None:
        try:
            value = resolve()
        except SecretError as exc:
            problems[key] = str(exc)
            return
        if value is not None:
            found[key] = fingerprint(value)

    for name, profile in config.apps.items():
        read(credentials_key(name), partial(resolve_credentials, profile))
        read(certificate_key(name), partial(resolve_app_certificate, profile))
    read(NOTIFICATIONS_SECRET, partial(resolve_notifications_secret, config))
    return found, problems


# ---------------------------------------------------------------------------
# loading


class _Environment(EnvSettingsSource):
    """pydantic-settings' environment source, over a given mapping, for Config's fields.

    Config is a plain model on purpose: a BaseSettings model reads os.environ
    whenever it is validated, so `environ=` and the validation context (which
    resolves relative paths) would be lost. The source only needs the fields.
    """

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ
        super().__init__(
            cast("type[BaseSettings]", Config),
            case_sensitive=False,
            env_prefix=ENV_PREFIX,
            env_nested_delimiter="__",
            env_parse_none_str="null",
        )

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return parse_env_vars(self._environ, False, False, "null")


def _camel_keys(model: type[BaseModel], data: Any) -> Any:
    """Environment values arrive under field names; the file uses aliases."""
    if not isinstance(data, dict):
        return data
    result: dict[str, Any] = {}
    for key, value in data.items():
        field = model.model_fields.get(key)
        if field is None:
            result[key] = value
            continue
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            value = _camel_keys(annotation, value)
        elif get_origin(annotation) is dict and isinstance(value, dict):
            item = get_args(annotation)[1]
            if isinstance(item, type) and issubclass(item, BaseModel):
                value = {name: _camel_keys(item, v) for name, v in value.items()}
        result[field.alias or key] = value
    return result


def _merge(
    base: dict[str, Any], override: dict[str, Any], loc: tuple[str, ...] = ()
) -> dict[str, Any]:
    """The file's values with the environment's over them, section by section. A value
    that is not a section is replaced whole: a secret reference from the environment
    (`{"file": PATH}`) replaces the file's (`{env: NAME}`), it does not add a form."""
    merged = dict(base)
    for key, value in override.items():
        if (
            isinstance(value, dict)
            and isinstance(merged.get(key), dict)
            and _is_section(annotation_at(Config, (*loc, key)))
        ):
            merged[key] = _merge(merged[key], value, (*loc, key))
        else:
            merged[key] = value
    return merged


def _is_section(annotation: Any) -> bool:
    """A model (`reconcile`, a profile) or a mapping of them (`apps`)."""
    return get_origin(annotation) is dict or (
        isinstance(annotation, type) and issubclass(annotation, BaseModel)
    )


def _paths(data: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """The paths of the values the environment sets, each one that `_merge` replaces
    whole: the keys of a section are followed, those inside a value never. A secret
    reference is one value, and a key in it may be a secret pasted where its form
    belongs: named in a variable (`..._CUSTOMER_SECRET__SUP3R_S3CRET_KEY`), it would
    be shown in every error about it."""
    if isinstance(data, dict) and data and _is_section(annotation_at(Config, prefix)):
        return [p for k, v in data.items() for p in _paths(v, (*prefix, str(k)))]
    return [prefix]


def _plain(node: Any) -> Any:
    if isinstance(node, dict):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    return node


def _in_file(root: Any, loc: tuple[str | int, ...]) -> bool:
    node = root
    for part in loc:
        if not isinstance(node, CommentedMap) or part not in node:
            return False
        node = node[part]
    return True


def _variable_for(
    loc: tuple[str | int, ...], env_paths: list[tuple[str, ...]], root: Any
) -> str | None:
    """The environment variable(s) an error at `loc` came from, if it did not come
    from the file: the value itself, or a section only the environment provides."""
    for n in range(len(loc), 0, -1):
        prefix = loc[:n]
        if prefix in env_paths:
            return _env_variable(prefix)
        if not _in_file(root, prefix) and any(p[:n] == prefix for p in env_paths):
            return _env_variable(prefix) + "__*"
    return None


def _env_variable(path: tuple[str | int, ...]) -> str:
    return ENV_PREFIX + "__".join(re.sub(r"(?<!^)(?=[A-Z])", "_", str(p)).upper() for p in path)


def _positioned(name: str, line: int, column: int, message: str) -> ConfigError:
    return ConfigError.from_problems(
        [ConfigProblem(file=name, line=line, column=column, field="", message=message)]
    )


def load_config(path: str | Path | None, *, environ: Mapping[str, str] | None = None) -> Config:
    """Read, merge with the environment, validate. Raises ConfigError.

    `path` None reads `$ORCHESTRATOR_CONFIG` when set, otherwise no file (defaults
    and the environment only; relative paths then resolve against the working
    directory).
    """
    env = os.environ if environ is None else environ
    if path is None and env.get(CONFIG_PATH_VARIABLE):
        path = env[CONFIG_PATH_VARIABLE]
    file = Path(path) if path is not None else None
    name = str(file) if file is not None else "<environment>"
    root: Any = CommentedMap()
    if file is not None:
        try:
            root = read_document(file)
        except ReadError as exc:
            raise ConfigError(f"{name}: cannot read the config file: {exc.reason}") from None
        except YamlProblem as exc:
            raise _positioned(name, exc.line, exc.column, exc.message) from None
        if root is None:
            root = CommentedMap()
        if not isinstance(root, CommentedMap):
            raise _positioned(name, 1, 1, "must be a mapping of keys")
    # The directory the file is named in (a symlinked config keeps its links).
    base_dir = Path(os.path.abspath(file)).parent if file is not None else Path.cwd()

    try:
        from_env = _camel_keys(Config, _Environment(env)())
    except Exception as exc:  # pydantic-settings: a complex value that is not JSON
        raise ConfigError(f"environment variables {ENV_PREFIX}*: {exc}") from None
    env_paths = [p for p in _paths(from_env) if p]
    data = _merge(_plain(root), from_env)
    for section in ("state", "manifests"):  # their defaults depend on base_dir and environ
        if data.get(section) is None:
            data[section] = {}

    try:
        config = Config.model_validate(data, context={"base_dir": base_dir, "environ": env})
    except ValidationError as exc:
        problems = []
        for e in explain(exc, Config):
            variable = _variable_for(e.loc, env_paths, root)
            if variable is not None:
                problems.append(
                    ConfigProblem(
                        file=f"environment variable {variable}",
                        line=0,
                        column=0,
                        field=e.field,
                        message=e.message,
                    )
                )
                continue
            line, column = locate(root, e.loc, at_key=e.at_key)
            problems.append(
                ConfigProblem(file=name, line=line, column=column, field=e.field, message=e.message)
            )
        problems.sort(key=lambda p: (p.line == 0, p.file, p.line, p.column))
        raise ConfigError.from_problems(problems) from None
    config._file = file
    hint = "use {env: NAME}, {file: PATH} or {credential: NAME}"
    for field in config.literal_secrets():
        if structlog.is_configured():
            _log.warning("config.literal_secret", file=name, field=field, hint=hint)
        else:
            # Logging is configured from this very config, later: structlog's default
            # would print to stdout, where `plan --format json` writes its answer.
            sys.stderr.write(f"warning: {name}: {field} is a literal secret; {hint}\n")
    return config
