"""The daemon's configuration: one YAML file, overridable from the environment.

What the orchestrator needs that is not a recording: App ID profiles and their
credentials (as secret references), where the state store and the manifests
live, logging, metrics and the reconcile loop's timing. The file's keys are
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
Secret values never appear in an error, a log line or a `repr`: credentials (and an
App Certificate) are references, resolved only when a client is built
(`resolve_credentials`, `resolve_app_certificate`), and YAML
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

import os
import re
import socket
import sys
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal, Self, cast, get_args, get_origin

import structlog
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, EnvSettingsSource
from pydantic_settings.sources.utils import parse_env_vars
from ruamel.yaml.comments import CommentedMap

from orchestrator.agora.client import base_url_problem
from orchestrator.config_messages import explain
from orchestrator.errors import OrchestratorError
from orchestrator.manifest.diagnostics import locate
from orchestrator.manifest.reading import (
    MAX_ALIAS_NODES,
    MAX_DEPTH,
    MAX_FILE_BYTES,
    ReadError,
    YamlProblem,
    read_document,
)
from orchestrator.manifest.rules import Rules
from orchestrator.manifest.scalars import MAX_TOKEN_LIFETIME, parse_duration, show_duration
from orchestrator.manifest.section import Section
from orchestrator.secrets import (
    SECRET_REF_TYPES,
    LiteralSecret,
    SecretError,
    SecretField,
    SecretRef,
    resolve_secret,
)

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
    "load_config",
    "resolve_app_certificate",
    "resolve_credentials",
]

ENV_PREFIX = "ORCHESTRATOR_"
CONFIG_PATH_VARIABLE = "ORCHESTRATOR_CONFIG"  # the file to read when no path is given
DEFAULT_STATE_DIR = Path("/var/lib/orchestrator")

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


# ---------------------------------------------------------------------------
# value types

# The manifests' duration grammar (docs/configuration.md, "Durations"): `500ms`, `30s`,
# `1h30m`, `1d`, or a number of seconds. The config keeps the milliseconds the
# manifests refuse.
Duration = Annotated[timedelta, PlainValidator(parse_duration)]


def _positive(value: timedelta) -> timedelta:
    if value <= timedelta(0):
        raise ValueError("must be longer than zero")
    return value


class _Section(Section):
    model_config = ConfigDict(
        populate_by_name=True,
        validate_default=True,  # defaults go through the validators: paths get resolved
    )


def _base_dir(info: ValidationInfo) -> Path:
    context = info.context or {}
    base = context.get("base_dir")
    return Path(base) if base is not None else Path.cwd()


def _resolve(path: Path, info: ValidationInfo) -> Path:
    """An absolute path, made lexically (`..` folded): symlinks are not resolved here,
    so a path through a symlink (`./current -> releases/v1`, a deploy tool's switch)
    keeps following the link, as it is looked at again at every reload."""
    path = path.expanduser()
    return path if path.is_absolute() else Path(os.path.abspath(_base_dir(info) / path))


# ---------------------------------------------------------------------------
# sections


# A token is valid for at most 24 hours (`MAX_TOKEN_LIFETIME`, the manifests' too);
# shorter lifetimes exist so that a rollover can be tested and shown in minutes.
MIN_TOKEN_LIFETIME = timedelta(minutes=1)


class AppProfile(_Section):
    """One Agora project: manifests name it with `app:`."""

    app_id: Annotated[str, Field(min_length=1, max_length=128, pattern=r"^\S+$")]
    customer_id: SecretField
    customer_secret: SecretField
    # The project's App Certificate: with it, every start carries a token minted for
    # that start. Without it the project has none, and a start carries the manifest's
    # fixed `token` (or none).
    app_certificate: SecretField | None = None
    # How long a minted token is valid. Cloud Recording cannot renew a token and
    # removes the recorder when it expires: a recording that lasts longer rolls
    # over to a successor session `reconcile.rolloverLead` before that.
    token_lifetime: Duration = MAX_TOKEN_LIFETIME
    # Regional domains, a proxy or the local emulator.
    base_url: str = "https://api.agora.io"
    # Agora allows 10 requests per second per App ID; the client stays under it.
    rate_limit: Annotated[int, Field(ge=1, le=1000)] = 10

    @field_validator("base_url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        # The client's own rule, so that a config that loads also builds a client.
        problem = base_url_problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value.rstrip("/")

    @field_validator("token_lifetime")
    @classmethod
    def _token_lifetime(cls, value: timedelta) -> timedelta:
        if not MIN_TOKEN_LIFETIME <= value <= MAX_TOKEN_LIFETIME:
            raise ValueError("must be between 1m and 24h")
        return value

    def secret_refs(self) -> list[tuple[str, SecretRef]]:
        """The profile's secret references by key, in order: customerId, customerSecret,
        and appCertificate when there is one."""
        return [
            (info.alias or name, value)
            for name, info in type(self).model_fields.items()
            if isinstance(value := getattr(self, name), SECRET_REF_TYPES)
        ]


class StateSection(_Section):
    """Where sessions are remembered."""

    # Default: systemd's $STATE_DIRECTORY (StateDirectory=) when set, else /var/lib/orchestrator.
    dir: Path = DEFAULT_STATE_DIR
    # Default: an SQLite file `state.db` in `dir`. `postgresql://...` for several replicas.
    url: str = ""

    @model_validator(mode="before")
    @classmethod
    def _default_dir(cls, data: Any, info: ValidationInfo) -> Any:
        if isinstance(data, dict) and data.get("dir") is None:
            environ = (info.context or {}).get("environ") or {}
            systemd_dir = environ.get("STATE_DIRECTORY", "").split(":")[0]
            data = {**data, "dir": systemd_dir or str(DEFAULT_STATE_DIR)}
        return data

    @field_validator("dir")
    @classmethod
    def _absolute(cls, value: Path, info: ValidationInfo) -> Path:
        return _resolve(value, info)

    @field_validator("url", mode="before")
    @classmethod
    def _null_is_default(cls, value: Any) -> Any:
        return "" if value is None else value

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str, info: ValidationInfo) -> str:
        if not value:
            state_dir = info.data.get("dir")
            return f"sqlite:///{state_dir / 'state.db'}" if state_dir is not None else value
        if value.startswith("sqlite:///"):
            if value == "sqlite:///" or value.endswith("/"):
                raise ValueError("the SQLite URL names no file (sqlite:///PATH/state.db)")
            return f"sqlite:///{_resolve(Path(value[len('sqlite:///') :]), info)}"
        if not value.startswith(("postgresql://", "postgres://")):
            raise ValueError("must be sqlite:///PATH or postgresql://USER@HOST/DB")
        return value


class ManifestsSection(_Section):
    """Where the desired recordings are declared."""

    dir: Path = Path("recordings.d")
    # Reload when a file changes (SIGHUP always reloads), through inotify.
    watch: bool = True
    # Debounce: changes are gathered for up to this long, then reloaded as one (a
    # `git checkout` rewriting many files is one reload). 1 s keeps an edit's effect
    # within 2 s of the write, including the reload and the pass.
    watch_interval: Duration = timedelta(seconds=1)

    @field_validator("dir")
    @classmethod
    def _absolute(cls, value: Path, info: ValidationInfo) -> Path:
        return _resolve(value, info)

    @field_validator("watch_interval")
    @classmethod
    def _positive_interval(cls, value: timedelta) -> timedelta:
        return _positive(value)


class LoggingSection(_Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    # auto: JSON lines when stderr is not a terminal (journald, files), console otherwise.
    format: Literal["auto", "json", "console"] = "auto"

    @field_validator("level", "format", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value


class MetricsSection(_Section):
    # Prometheus /metrics and /healthz. Loopback by default: nothing is exposed
    # unless asked. null turns the endpoint off.
    address: str | None = "127.0.0.1:9464"

    @field_validator("address")
    @classmethod
    def _host_port(cls, value: str | None) -> str | None:
        if value is None:
            return None
        match = re.fullmatch(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})", value)
        if not match or int(match.group(2)) > 65535:
            raise ValueError("must be HOST:PORT, e.g. 127.0.0.1:9464 or [::1]:9464")
        return value

    @property
    def host(self) -> str | None:
        return None if self.address is None else self.address.rsplit(":", 1)[0].strip("[]")

    @property
    def port(self) -> int | None:
        return None if self.address is None else int(self.address.rsplit(":", 1)[1])


class Backoff(_Section):
    """Exponential backoff: initial, doubling up to max (with jitter in the reconciler)."""

    initial: Duration
    max: Duration

    @field_validator("initial", "max")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        return _positive(value)

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.max < self.initial:
            raise ValueError("max must not be shorter than initial")
        return self


class RestartBackoff(Backoff):
    initial: Duration = timedelta(seconds=10)
    max: Duration = timedelta(minutes=10)


class ReconcileSection(_Section):
    # A pass also runs at every window boundary and on reload; the periodic one
    # notices what changed behind our back (idle exits, sessions stopped elsewhere)
    # and costs one `query` per live session: once a minute stays far under the
    # 10 requests/s per App ID even with hundreds of live sessions.
    resync_interval: Duration = timedelta(seconds=60)
    # Manifests acted on at once. The per-App-ID rate limit, not this, bounds the
    # request rate; 16 keeps a slow answer from holding up the others.
    concurrency: Annotated[int, Field(ge=1, le=1024)] = 16
    # On SIGTERM leave recordings running (the next start adopts them): a restart
    # or upgrade must not cut recordings. true stops every live session first.
    stop_on_shutdown: bool = False
    # After a recording ended abnormally (idle exit, stopped elsewhere): start again
    # soon, but a recording that keeps dying must not hammer the API.
    restart_backoff: RestartBackoff = RestartBackoff()
    # A session whose token or resource ID expires before its window ends is rolled
    # over: its successor starts this long before the expiry, on the manifest's second
    # uid, and the predecessor stops once the successor records. 10 minutes leave room
    # for a few retried starts and a confirming query; less than half of every token
    # lifetime, so that a successor's own token is not already due.
    rollover_lead: Duration = timedelta(minutes=10)
    # There is deliberately no retry interval for permanent errors (code 2, 401,
    # invalid appid, ...): the manifest is held as failed until its spec changes
    # (or `apply --retry-failed`), so a bad request is never repeated.

    @field_validator("resync_interval", "rollover_lead")
    @classmethod
    def _at_least_a_second(cls, value: timedelta) -> timedelta:
        if value < timedelta(seconds=1):
            raise ValueError("must be at least 1s")
        return value


class RetrySection(Backoff):
    """How the API client retries one call after a transient failure (5xx, 429, a
    timeout, code 65): up to `attempts` tries, waiting a random time up to `initial`,
    doubling up to `max`, between them. Soon by default: a window's start or stop is
    late by whatever its retries sleep, and the per-App-ID rate limiter, not the
    backoff, keeps the load within what Agora allows."""

    attempts: Annotated[int, Field(ge=1, le=20)] = 6
    initial: Duration = timedelta(milliseconds=100)
    max: Duration = timedelta(seconds=4)
    # One call, its attempts and the waits between them, ends within this (a wait for
    # a rate-limit slot comes on top): a server that drips its answers cannot hold a
    # call for attempts x the 30 s per-attempt deadline.
    total: Duration = timedelta(seconds=60)

    @field_validator("total")
    @classmethod
    def _total_positive(cls, value: timedelta) -> timedelta:
        return _positive(value)


class ShutdownSection(_Section):
    # SIGTERM waits this long for API calls in flight, so their outcome is stored;
    # below systemd's TimeoutStopSec (90 s by default).
    drain_timeout: Duration = timedelta(seconds=30)

    @field_validator("drain_timeout")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        return _positive(value)


def _default_replica_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class ReplicaSection(_Section):
    """Several replicas on one PostgreSQL store (ignored with SQLite)."""

    # How this replica is shown in `status` and in the store's owner records.
    # Default: host name and pid.
    name: Annotated[str, Field(min_length=1, max_length=200)] = Field(
        default_factory=_default_replica_name
    )
    # How often a replica claims App IDs that nobody owns, balances its share and
    # checks that its locks still stand: a takeover after a replica died takes at
    # most this long (plus one query per live session of the App ID).
    claim_interval: Duration = timedelta(seconds=5)

    @field_validator("claim_interval")
    @classmethod
    def _sensible_interval(cls, value: timedelta) -> timedelta:
        if not timedelta(seconds=1) <= value <= timedelta(seconds=60):
            raise ValueError("must be between 1s and 60s")
        return value


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
    reconcile: ReconcileSection = ReconcileSection()
    retry: RetrySection = RetrySection()
    shutdown: ShutdownSection = ShutdownSection()
    replica: ReplicaSection = ReplicaSection()

    _file: Path | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _lead_fits_token_lifetimes(self) -> Self:
        """A successor must start before its predecessor's token expires, with its own
        token not due yet: the lead is less than half of every minted token's lifetime.

        The error is placed at `reconcile.rolloverLead` when it was given (the file or
        the environment), otherwise at the profile's `tokenLifetime`."""
        rules = Rules()
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
        rules.raise_if_any()
        return self

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

    def literal_secrets(self) -> list[str]:
        """Fields holding a secret written in the file itself (allowed, but a warning)."""
        return [
            f"apps.{name}.{key}"
            for name, profile in self.apps.items()
            for key, ref in profile.secret_refs()
            if isinstance(ref, LiteralSecret)
        ]


def _resolve_profile_secret(
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
        _resolve_profile_secret("customerId", profile.customer_id, environ, credentials_dir),
        _resolve_profile_secret(
            "customerSecret", profile.customer_secret, environ, credentials_dir
        ),
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
    value = _resolve_profile_secret("appCertificate", ref, environ, credentials_dir)
    if not value:
        raise SecretError(f"appCertificate ({ref.describe()}): is empty")
    return value


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


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _paths(data: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    if isinstance(data, dict) and data:
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
