"""The daemon configuration's sections: one model per top-level key, with its rules.

What each key means, its default and why, and the range that is valid live here,
beside the key (`AppProfile`, `StateSection`, `NotificationsSection`, ...). Reading
the file, merging the environment, turning errors into positioned lines and the
rules between sections are `orchestrator.config`'s, which builds `Config` from
these and re-exports what callers import.

A section never resolves a secret (secrets are references here, read only when a
client or the receiver is built) and never reads the environment itself: the only
environment it sees is the one `load_config` passes in its validation context.
"""

from __future__ import annotations

import os
import re
import socket
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AfterValidator,
    ConfigDict,
    Field,
    PlainValidator,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from orchestrator.agora.client import base_url_problem
from orchestrator.manifest.scalars import MAX_TOKEN_LIFETIME, Whole, parse_duration
from orchestrator.manifest.section import Section
from orchestrator.secrets import SECRET_REF_TYPES, SecretField, SecretRef

__all__ = [
    "DEFAULT_STATE_DIR",
    "MIN_TOKEN_LIFETIME",
    "AppProfile",
    "Backoff",
    "Duration",
    "LoggingSection",
    "ManifestsSection",
    "MetricsSection",
    "NotificationsSection",
    "ReconcileSection",
    "ReplicaSection",
    "RestartBackoff",
    "RetrySection",
    "ShutdownSection",
    "StateSection",
]

DEFAULT_STATE_DIR = Path("/var/lib/orchestrator")


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


def _host_port(value: str) -> str:
    match = re.fullmatch(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})", value)
    if not match or int(match.group(2)) > 65535:
        raise ValueError("must be HOST:PORT, e.g. 127.0.0.1:9464 or [::1]:9464")
    return value


# Where a listener of the daemon binds: `HOST:PORT`, an IPv6 host in brackets.
Address = Annotated[str, AfterValidator(_host_port)]


def _share(value: Any) -> float:
    """A fraction in (0, 1]: a YAML number, or text that is one (the environment's).
    `true` is not a number here, though Python would read it as 1."""
    try:
        share = float("nan") if isinstance(value, bool) else float(value)
    except (TypeError, ValueError):
        share = float("nan")
    if not 0 < share <= 1:  # NaN is never in range
        raise ValueError("must be more than 0 and at most 1 (a number like 0.5)")
    return share


Share = Annotated[float, PlainValidator(_share)]


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
    try:
        name = os.fsencode(path)
    except UnicodeEncodeError:  # a lone surrogate from a YAML escape ("\ud800")
        raise PydanticCustomError("path_text", "a path cannot hold a lone surrogate") from None
    if b"\0" in name:
        raise PydanticCustomError("path_nul", "a path cannot hold a NUL byte")
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
    rate_limit: Annotated[Whole, Field(ge=1, le=1000)] = 10

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


class _Listener(_Section):
    """A section whose HTTP endpoint the daemon serves at `address` (None: off)."""

    address: Address | None = None

    @property
    def host(self) -> str | None:
        return None if self.address is None else self.address.rsplit(":", 1)[0].strip("[]")

    @property
    def port(self) -> int | None:
        return None if self.address is None else int(self.address.rsplit(":", 1)[1])

    def shares_port_with(self, other: _Listener) -> bool:
        """Whether both would bind one port: the same host, or either on every address
        (0.0.0.0, ::), where a second bind of the port fails. Port 0 is never shared:
        each bind of it gets a free port of its own."""
        if not self.port or self.port != other.port:
            return False
        return self.host == other.host or bool({self.host, other.host} & _WILDCARD_HOSTS)


_WILDCARD_HOSTS = frozenset({"0.0.0.0", "::"})  # noqa: S104 (compared with, never bound)


class MetricsSection(_Listener):
    # Prometheus /metrics and /healthz. Loopback by default: nothing is exposed
    # unless asked. null turns the endpoint off.
    address: Address | None = "127.0.0.1:9464"


# Bounds on a notification body. A notification is one small JSON object (a file
# list makes it longer); the signature covers the whole body, so the receiver reads
# up to this much from a caller it cannot yet trust.
MIN_NOTIFICATION_BODY = 1024
MAX_NOTIFICATION_BODY = 1024 * 1024


class NotificationsSection(_Listener):
    """The receiver of Agora's notifications (NCS): exits, failovers and file lists
    within seconds, where polling takes up to `reconcile.resyncInterval`. Polling stays
    as the safety net, so the receiver is optional."""

    # Where the receiver listens; NCS posts from the internet, so this is usually a
    # loopback address behind a reverse proxy that terminates TLS. Off by default
    # (null): nothing listens unless asked.
    address: Address | None = None
    # The URL path NCS posts to (the proxy's path, as configured in Agora's console).
    path: Annotated[str, Field(max_length=200)] = "/agora/ncs"
    # The secret NCS signs each body with (HMAC-SHA256): a body whose signature does
    # not verify is refused before it is parsed. Required with an address (`Config`
    # checks it with the other rules between keys).
    secret: SecretField | None = None
    # Bytes of a body the receiver reads at most; a longer one is refused unread.
    max_body: Annotated[Whole, Field(ge=MIN_NOTIFICATION_BODY, le=MAX_NOTIFICATION_BODY)] = 65536

    @field_validator("path")
    @classmethod
    def _plain_path(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("must start with /, like /agora/ncs")
        if re.search(r"\s", value):
            raise ValueError("must not contain blanks")
        if "?" in value:
            raise ValueError("must be a path without a query string (no ?)")
        return value


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


# A failover answers 404 for up to a minute (Agora's documentation); an hour of 404s
# without a notification is an exit by any measure, and a restart must not wait longer.
MIN_FAILOVER_GRACE = timedelta(seconds=60)
MAX_FAILOVER_GRACE = timedelta(hours=1)


class ReconcileSection(_Section):
    # A pass also runs at every window boundary and on reload; the periodic one
    # notices what changed behind our back (idle exits, sessions stopped elsewhere)
    # and costs one `query` per live session: once a minute stays far under the
    # 10 requests/s per App ID even with hundreds of live sessions.
    resync_interval: Duration = timedelta(seconds=60)
    # Manifests acted on at once. The per-App-ID rate limit, not this, bounds the
    # request rate; 16 keeps a slow answer from holding up the others.
    concurrency: Annotated[Whole, Field(ge=1, le=1024)] = 16
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
    # Polling (`query`) is the safety net beside the notifications: it may take at most
    # this share of each App ID's rate limit, and mutating calls (acquire, start,
    # update, stop) go first. 0.5 leaves half of Agora's 10 requests/s for starts and
    # stops even with hundreds of live sessions.
    query_share: Share = 0.5
    # A `query` answering 404 may be Agora's own failover (30 s to 1 min by its
    # documentation; the recording goes on under a new uid), not an exit. For this long
    # after a failover notification a 404 changes nothing, and a session ended by a 404
    # alone, with no exit notification, is still queried for this long and taken back
    # if it answers. 90 s waits out the longest failover with half a minute to spare.
    failover_grace: Duration = timedelta(seconds=90)
    # There is deliberately no retry interval for permanent errors (code 2, 401,
    # invalid appid, ...): the manifest is held as failed until its spec changes
    # (or `apply --retry-failed`), so a bad request is never repeated.

    @field_validator("resync_interval", "rollover_lead")
    @classmethod
    def _at_least_a_second(cls, value: timedelta) -> timedelta:
        if value < timedelta(seconds=1):
            raise ValueError("must be at least 1s")
        return value

    @field_validator("failover_grace")
    @classmethod
    def _longer_than_a_failover(cls, value: timedelta) -> timedelta:
        if value < MIN_FAILOVER_GRACE:
            raise ValueError("must be at least 60s: Agora documents failovers of 30 s to 1 min")
        if value > MAX_FAILOVER_GRACE:
            raise ValueError("must be at most 1h")
        return value


class RetrySection(Backoff):
    """How the API client retries one call after a transient failure (5xx, 429, a
    timeout, code 65): up to `attempts` tries, waiting a random time up to `initial`,
    doubling up to `max`, between them. Soon by default: a window's start or stop is
    late by whatever its retries sleep, and the per-App-ID rate limiter, not the
    backoff, keeps the load within what Agora allows."""

    attempts: Annotated[Whole, Field(ge=1, le=20)] = 6
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
