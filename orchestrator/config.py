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
Secret values never appear in an error, a log line or a `repr`: credentials are
references, resolved only when a client is built (`resolve_credentials`), and YAML
syntax errors are reworded so that they quote nothing of the file's values (a
duplicate key names the key and the line of the first one, never a value).

Reading is bounded whatever the file holds: only a regular file is read (a FIFO
or a device would block), at most `MAX_CONFIG_BYTES`, UTF-8; nesting at most
`MAX_DEPTH` levels; aliases may stand for at most `MAX_ALIAS_NODES` nodes in all
(a few hundred bytes of nested aliases would otherwise expand to billions), and
an anchor may be defined only once. Aliases stay allowed because sharing one
secret reference between profiles is a fair use of them.
"""

from __future__ import annotations

import os
import re
import socket
import stat
import sys
from collections.abc import Mapping
from dataclasses import dataclass
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
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings, EnvSettingsSource
from pydantic_settings.sources.utils import parse_env_vars
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap
from ruamel.yaml.constructor import RoundTripConstructor
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.events import (
    AliasEvent,
    CollectionEndEvent,
    CollectionStartEvent,
    DocumentStartEvent,
    ScalarEvent,
)
from ruamel.yaml.reader import ReaderError

from orchestrator.agora.client import base_url_problem
from orchestrator.errors import OrchestratorError
from orchestrator.manifest.diagnostics import SECRET_FORMS, locate, unknown_key
from orchestrator.manifest.model import Section
from orchestrator.manifest.rules import Loc, did_you_mean
from orchestrator.manifest.scalars import DURATION_RULE, parse_duration
from orchestrator.secrets import (
    SECRET_TAGS,
    LiteralSecret,
    SecretError,
    SecretField,
    SecretRef,
    is_secret_key,
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
    "resolve_credentials",
]

ENV_PREFIX = "ORCHESTRATOR_"
CONFIG_PATH_VARIABLE = "ORCHESTRATOR_CONFIG"  # the file to read when no path is given
DEFAULT_STATE_DIR = Path("/var/lib/orchestrator")

# Bounds on what reading the file may cost, whatever is in it. A real config is a
# few kilobytes, a handful of levels deep, and needs aliases at most to share a
# secret reference between profiles; these limits are far above that and far
# below what would take noticeable time or memory.
MAX_CONFIG_BYTES = 1 << 20  # 1 MiB
MAX_DEPTH = 64  # nesting levels; ruamel builds documents recursively
# Nodes that aliases may add to the document, counted with every alias expanded.
# Without a bound, 300 bytes of nested aliases ("billion laughs") expand to 10^9.
MAX_ALIAS_NODES = 10_000

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
    path = path.expanduser()
    return path if path.is_absolute() else (_base_dir(info) / path).resolve()


# ---------------------------------------------------------------------------
# sections


class AppProfile(_Section):
    """One Agora project: manifests name it with `app:`."""

    app_id: Annotated[str, Field(min_length=1, max_length=128, pattern=r"^\S+$")]
    customer_id: SecretField
    customer_secret: SecretField
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

    def secret_refs(self) -> list[tuple[str, SecretRef]]:
        """The profile's secret references by key (the keys `SECRET_KEYS` names), in order."""
        return [(key, getattr(self, name)) for name, key in _PROFILE_SECRETS]


# (attribute, key) of the profile's secrets: customerId and customerSecret
_PROFILE_SECRETS = tuple(
    (name, key)
    for name, info in AppProfile.model_fields.items()
    if is_secret_key(key := info.alias or name)
)


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
    # There is deliberately no retry interval for permanent errors (code 2, 401,
    # invalid appid, ...): the manifest is held as failed until its spec changes
    # (or `apply --retry-failed`), so a bad request is never repeated.

    @field_validator("resync_interval")
    @classmethod
    def _positive_interval(cls, value: timedelta) -> timedelta:
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


def resolve_credentials(
    profile: AppProfile,
    *,
    environ: Mapping[str, str] | None = None,
    credentials_dir: str | None = None,
) -> tuple[str, str]:
    """(customer ID, customer secret) of a profile, read now. Raises SecretError naming
    the field and the reference, never a value."""
    env = dict(os.environ if environ is None else environ)
    values: dict[str, str] = {}
    for key, ref in profile.secret_refs():
        try:
            values[key] = resolve_secret(ref, environ=env, credentials_dir=credentials_dir)
        except SecretError as exc:
            raise SecretError(f"{key} ({ref.describe()}): {exc}") from None
    return values["customerId"], values["customerSecret"]


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


def _read(file: Path, name: str) -> bytes:
    """The bytes of the config file. Only a regular file is read: a directory, a FIFO
    or a device is refused without waiting for a writer (the open does not block)."""
    try:
        fd = os.open(file, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise ConfigError(f"{name}: cannot read the config file: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            kind = _file_kind(info.st_mode)
            raise ConfigError(
                f"{name}: cannot read the config file: it is {kind}, not a regular file"
            )
        chunks: list[bytes] = []
        size = 0
        while size <= MAX_CONFIG_BYTES:
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
            size += len(chunk)
        size = max(size, os.fstat(fd).st_size)
        raise ConfigError(
            f"{name}: cannot read the config file: it is {size} bytes; "
            f"the limit is {MAX_CONFIG_BYTES} (1 MiB)"
        )
    except OSError as exc:
        raise ConfigError(f"{name}: cannot read the config file: {exc.strerror}") from None
    finally:
        os.close(fd)


def _file_kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "something else"


def _decode(raw: bytes, name: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        # The position of the first bad byte; the bytes before it are valid UTF-8.
        line_start = raw.rfind(b"\n", 0, exc.start) + 1
        line = raw.count(b"\n", 0, exc.start) + 1
        column = len(raw[line_start : exc.start].decode("utf-8")) + 1
        raise _positioned(name, line, column, "not a UTF-8 text file") from None


def _positioned(name: str, line: int, column: int, message: str) -> ConfigError:
    return ConfigError.from_problems(
        [ConfigProblem(file=name, line=line, column=column, field="", message=message)]
    )


class _YamlProblem(Exception):
    """A problem at a place in the text, found by our checks (0-based, as ruamel's marks)."""

    def __init__(self, mark: Any, message: str) -> None:
        super().__init__(message)
        self.line = mark.line
        self.column = mark.column
        self.message = message


def _load_yaml(text: str, name: str) -> Any:
    """The document, or a ConfigError at file:line:column that quotes nothing of the
    file's values (any of them may be a secret): ruamel's messages are rewritten."""
    try:
        _check_structure(text)
        yaml = YAML(typ="rt")
        yaml.Constructor = _Constructor
        return yaml.load(text)
    except _YamlProblem as exc:
        raise _positioned(name, exc.line + 1, exc.column + 1, exc.message) from None
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = _without_values(exc.problem or exc.context or "invalid YAML")
        raise _positioned(name, line, column, problem) from None
    except ReaderError as exc:
        # Its message would name the character; the position is enough to find it.
        position = min(exc.position, len(text))
        line = text.count("\n", 0, position) + 1
        column = position - (text.rfind("\n", 0, position) + 1) + 1
        message = "a non-printable character: YAML does not allow it in a file"
        raise _positioned(name, line, column, message) from None
    except YAMLError as exc:
        raise ConfigError(f"{name}: invalid YAML ({type(exc).__name__})") from None


@dataclass(slots=True)
class _Open:
    """A collection being parsed: its anchor, and its nodes so far (itself included)."""

    anchor: str | None
    size: int = 1


def _check_structure(text: str) -> None:
    """Refuse, from the parser's events and before anything is built, what would make
    building the document slow or unbounded: nesting deeper than MAX_DEPTH, aliases
    that together stand for more than MAX_ALIAS_NODES nodes, an alias inside the node
    it names (a recursive structure), an alias to no anchor, and an anchor defined
    twice (legal YAML, but ruamel's warning about it quotes both lines). Linear in
    the number of events: an alias counts as the size of its node, computed once."""
    sizes: dict[str, int] = {}  # anchor -> nodes of its node, aliases expanded
    defined: dict[str, int] = {}  # anchor -> the line it is defined on (0-based)
    stack: list[_Open] = []  # the collections entered and not yet left
    added = 0
    for event in YAML(typ="rt").parse(text):
        if isinstance(event, DocumentStartEvent):
            sizes.clear()
            defined.clear()
            continue
        if isinstance(event, AliasEvent):
            anchor = event.anchor
            if anchor not in defined:
                raise _YamlProblem(event.start_mark, f"alias *{anchor} names no anchor before it")
            if anchor not in sizes:
                raise _YamlProblem(
                    event.start_mark,
                    f"alias *{anchor} inside the node it names: a recursive structure",
                )
            size = sizes[anchor]
            added += size
            if added > MAX_ALIAS_NODES:
                raise _YamlProblem(
                    event.start_mark,
                    f"aliases expand to more than {MAX_ALIAS_NODES} nodes "
                    "(an alias bomb?): write the values out",
                )
        elif isinstance(event, ScalarEvent | CollectionStartEvent):
            anchor = event.anchor
            if anchor is not None:
                if anchor in defined:
                    raise _YamlProblem(
                        event.start_mark,
                        f"anchor &{anchor} is defined twice "
                        f"(first at line {defined[anchor] + 1}): use another name",
                    )
                defined[anchor] = event.start_mark.line
            if isinstance(event, CollectionStartEvent):
                stack.append(_Open(anchor))
                if len(stack) > MAX_DEPTH:
                    raise _YamlProblem(
                        event.start_mark, f"nested more than {MAX_DEPTH} levels deep"
                    )
                continue
            size = 1
            if anchor is not None:
                sizes[anchor] = size
        elif isinstance(event, CollectionEndEvent):
            done = stack.pop()
            size = done.size
            if done.anchor is not None:
                sizes[done.anchor] = size
        else:
            continue
        if stack:
            stack[-1].size += size


class _Constructor(RoundTripConstructor):
    """ruamel's round-trip constructor, with errors that quote no value: its duplicate
    key error shows both values, and a value the resolver takes for a date or a number
    but that is not one escapes as a bare ValueError."""

    def check_mapping_key(
        self, node: Any, key_node: Any, mapping: Any, key: Any, value: Any
    ) -> bool:
        if key not in mapping:
            return True
        label = f' "{key}"' if isinstance(key, str | int | float | bool) else ""
        positions = getattr(getattr(mapping, "lc", None), "data", None) or {}
        first = positions.get(key)
        where = f" (first at line {first[0] + 1})" if first else ""
        raise _YamlProblem(key_node.start_mark, f"duplicate key{label}{where}")

    def construct_object(self, node: Any, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except (YAMLError, _YamlProblem):
            raise
        except (ValueError, OverflowError, TypeError):
            kind = str(node.tag).rsplit(":", 1)[-1]
            raise _YamlProblem(
                node.start_mark,
                f"not a valid {kind}: quote it if it is text",
            ) from None


# A quoted fragment of a ruamel message may be text of the file (`but found 'x'`,
# `from "2024-13-45"`); it stays only when it is syntax: punctuation, an escape such
# as '\t', a token such as '<block end>'.
_QUOTED = re.compile(r"'((?:[^'\\]|\\.)*)'|\"((?:[^\"\\]|\\.)*)\"")
_SYNTAX = re.compile(r"[^\w\s]{1,3}|\\[a-z]|\\x[0-9a-f]{2}| |<[a-z ]+>")


def _without_values(problem: str) -> str:
    def keep_syntax(match: re.Match[str]) -> str:
        content = match.group(1) if match.group(1) is not None else match.group(2)
        return match.group(0) if _SYNTAX.fullmatch(content) else "(not shown)"

    return " ".join(_QUOTED.sub(keep_syntax, problem).split())


# ---------------------------------------------------------------------------
# messages: pydantic's errors as sentences that say what is wrong and what is valid,
# in the manifests' words; they never quote a value of the file or the environment
# (any of them may be a secret), only keys and the model's own limits.


def _errors(exc: ValidationError) -> list[ErrorDetails]:
    """The errors worth a line: `{valut: NAME}` is one mistake (an unknown form of
    secret), not also "env is missing"."""
    errors = exc.errors(include_url=False)
    unknown_in_secret = {
        tuple(e["loc"][:-1])
        for e in errors
        if e["type"] == "extra_forbidden" and len(e["loc"]) > 1 and e["loc"][-2] in SECRET_TAGS
    }
    return [
        e
        for e in errors
        if not (e["type"] == "missing" and tuple(e["loc"][:-1]) in unknown_in_secret)
    ]


def _in_secret(raw_loc: Loc) -> bool:
    return any(part in SECRET_TAGS for part in raw_loc)


def _shown_path(error: ErrorDetails, loc: Loc, raw_loc: Loc) -> Loc:
    """The field path to show. For a secret reference of no known form, the secret's
    own key: a key written inside it may be the secret itself (`customerSecret: {s3cr3t}`)."""
    if _in_secret(raw_loc) and error["type"] in ("extra_forbidden", "missing"):
        tag = next(i for i, part in enumerate(raw_loc) if part in SECRET_TAGS)
        return raw_loc[:tag]
    return loc


def _field(model: type[BaseModel], key: str | int) -> FieldInfo | None:
    """The field a key of the file names (its camelCase alias, or the name)."""
    return next(
        (info for name, info in model.model_fields.items() if (info.alias or name) == key), None
    )


def _node_at(loc: Loc) -> Any:
    """The annotation at `loc` (file spelling, secret tags removed): Config for `()`,
    AppProfile for ("apps", "main"), None when `loc` leaves the model."""
    node: Any = Config
    for part in loc:
        if isinstance(node, type) and issubclass(node, BaseModel):
            info = _field(node, part)
            if info is None:
                return None
            node = info.annotation
        elif get_origin(node) is dict:  # `apps`: any name, then a profile
            node = get_args(node)[1]
        else:
            return None
    return node


def _keys(node: Any) -> list[str]:
    if isinstance(node, type) and issubclass(node, BaseModel):
        return [info.alias or name for name, info in node.model_fields.items()]
    return []


def _field_at(loc: Loc) -> FieldInfo | None:
    owner = _node_at(loc[:-1]) if loc else None
    if isinstance(owner, type) and issubclass(owner, BaseModel):
        return _field(owner, loc[-1])
    return None


_BOUND_WORDS = {"ge": "at least", "gt": "more than", "le": "at most", "lt": "less than"}


def _bounds(info: FieldInfo | None) -> str:
    """A number field's range in words: ` from 1 to 1024`, ` of at least 1`, or nothing."""
    metadata = info.metadata if info is not None else []
    limits = {name: getattr(m, name) for m in metadata for name in _BOUND_WORDS if hasattr(m, name)}
    if limits.keys() == {"ge", "le"}:
        return f" from {limits['ge']} to {limits['le']}"
    words = [f"{_BOUND_WORDS[name]} {limit}" for name, limit in limits.items()]
    return f" of {' and '.join(words)}" if words else ""


_REQUIRED_HINTS = {
    "appId": "the App ID of the Agora project",
    "customerId": f"a secret: {SECRET_FORMS}",
    "customerSecret": f"a secret: {SECRET_FORMS}",
}

_PATTERN_HINTS = {
    "appId": "an App ID without blanks",
    "env": "an environment variable name like AGORA_CUSTOMER_ID",
    "credential": "a credential name: letters, digits, '_', '.', '@' or '-'",
}


def _explain(error: ErrorDetails, loc: Loc, raw_loc: Loc) -> str:
    """One error as "what is wrong; what would be valid". `error["input"]` is read only
    to pick a did-you-mean among the valid values, never shown."""
    kind = error["type"]
    ctx = error.get("ctx") or {}
    last = str(loc[-1]) if loc else ""
    if _in_secret(raw_loc) and kind == "extra_forbidden":
        return f"unknown key in a secret reference: a secret is {SECRET_FORMS}"
    if _in_secret(raw_loc) and kind in ("missing", "model_type"):
        return f"a secret is a reference: {SECRET_FORMS} (or, with a warning, a plain string)"
    info = _field_at(loc)
    annotation = info.annotation if info is not None else None
    match kind:
        case "extra_forbidden":
            return unknown_key(last, _keys(_node_at(loc[:-1])))
        case "missing":
            hint = _REQUIRED_HINTS.get(last)
            return f"'{last}' is required: {hint}" if hint else f"'{last}' is required"
        case "literal_error":
            allowed = [str(value) for value in get_args(annotation)]
            value = error.get("input")
            hint = did_you_mean(value, allowed) if isinstance(value, str) else ""
            return f"must be one of {', '.join(allowed)}{hint}"
        case "model_type" | "model_attributes_type" | "dict_type":
            if get_origin(annotation) is dict:
                profile = ", ".join(_keys(get_args(annotation)[1]))
                return f"must be a mapping of names to mappings with keys {profile}"
            return f"must be a mapping with keys {', '.join(_keys(_node_at(loc)))}"
        case (
            "int_parsing"
            | "int_type"
            | "int_from_float"
            | "greater_than_equal"
            | "less_than_equal"
            | "greater_than"
            | "less_than"
        ):  # the same sentence for a bad number and one out of range: the valid ones
            return f"must be a whole number{_bounds(info)}"
        case "bool_parsing" | "bool_type":
            return "must be true or false"
        case "string_type":
            return "must be text; quote it if YAML reads it as a number or date"
        case "string_too_short" if ctx.get("min_length") == 1:
            return "must not be empty"
        case "string_too_short":
            return f"must be at least {ctx.get('min_length')} characters long"
        case "string_too_long":
            return f"must be at most {ctx.get('max_length')} characters long"
        case "string_pattern_mismatch" if last in _PATTERN_HINTS:
            return f"must be {_PATTERN_HINTS[last]}"
        case "path_type":
            return "must be a path (text)"
        case "duration":  # parse_duration's own message quotes the value
            return f"invalid duration: use {DURATION_RULE}"
        case "value_error":  # our validators' messages already say what is valid
            return str(error["msg"]).removeprefix("Value error, ")
        case _:
            return str(error["msg"]).replace("Input should be", "must be")


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
        root = _load_yaml(_decode(_read(file, name), name), name)
        if root is None:
            root = CommentedMap()
        if not isinstance(root, CommentedMap):
            raise ConfigError.from_problems(
                [
                    ConfigProblem(
                        file=name, line=1, column=1, field="", message="must be a mapping of keys"
                    )
                ]
            )
    base_dir = file.resolve().parent if file is not None else Path.cwd()

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
        for error in _errors(exc):
            raw_loc: Loc = tuple(error["loc"])
            loc = tuple(part for part in raw_loc if part not in SECRET_TAGS)
            message = _explain(error, loc, raw_loc)
            field = ".".join(str(part) for part in _shown_path(error, loc, raw_loc))
            variable = _variable_for(loc, env_paths, root)
            if variable is not None:
                problems.append(
                    ConfigProblem(
                        file=f"environment variable {variable}",
                        line=0,
                        column=0,
                        field=field,
                        message=message,
                    )
                )
                continue
            # A key without a value (null) is pointed at by its key: the null has no place.
            at_key = error["type"] == "extra_forbidden" or error.get("input", "") is None
            line, column = locate(root, loc, at_key=at_key)
            problems.append(
                ConfigProblem(file=name, line=line, column=column, field=field, message=message)
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
