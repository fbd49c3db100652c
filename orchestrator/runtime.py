"""The composition root: the one place that wires the store, the API clients and the executor.

`plan`, `apply`, `run` (the daemon) and the tests all build what they need here,
so the wiring cannot drift between them:

- one state store, opened as the single writer (an exclusive lock held for the
  life of the `Runtime`) or as a reader that never creates, migrates or locks;
- one rate limiter per App ID, alive as long as the `Runtime` (in the daemon:
  the process), shared by every app profile that names that App ID, so the limit
  holds across everything the process sends;
- one `httpx.AsyncClient` (one connection pool, one TLS context loaded once)
  shared by every `AgoraClient`; each client authenticates its own requests;
- one token minter per app profile with an App Certificate (read once, here);
- one `Executor` over those clients and minters.

This module must never plan or decide anything: it only builds and closes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx

from orchestrator.agora.client import (
    DEFAULT_TIMEOUT,
    AgoraClient,
    ApiCall,
    RateLimiter,
    RetryPolicy,
)
from orchestrator.agora.minter import TokenMinter
from orchestrator.agora.pacing import DEFAULT_WINDOW, launched_at, query_cycle_seconds
from orchestrator.config import (
    Config,
    certificate_key,
    credentials_key,
    fingerprint,
    resolve_app_certificate,
    resolve_credentials,
)
from orchestrator.reconcile.execute import Executor
from orchestrator.reconcile.plan import PlanPolicy
from orchestrator.secrets import SecretError, resolve_secret
from orchestrator.state import (
    Ownership,
    SessionRecord,
    Store,
    StoreError,
    opened_store,
    ownership_for,
)
from orchestrator.state.lock import lock_path_for
from orchestrator.state.store import sqlite_path_from_url

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Hooks:
    """Observers the daemon attaches (metrics); every field optional."""

    on_call: Callable[[ApiCall], None] | None = None
    on_wait: Callable[[str, float], None] | None = None
    # A completed rollover: the two sessions' overlap in seconds (None: unknown).
    on_rollover: Callable[[float | None], None] | None = None
    # Retry timing of every client, instead of the config's `retry` (tests inject a
    # sleep that does not wait); None: the config's.
    retry: RetryPolicy | None = None


@dataclass
class Runtime:
    config: Config
    store: Store
    clients: Mapping[str, AgoraClient]
    limiters: Mapping[str, RateLimiter]
    executor: Executor
    policy: PlanPolicy
    # App profiles whose credentials did not resolve (their manifests cannot act).
    problems: tuple[str, ...] = ()
    # The fingerprints of the secrets it read (`config.fingerprint`), held until a
    # restart; the daemon adds the notifications secret's.
    secrets: dict[str, str] = field(default_factory=dict)
    # Why the config file did not load at the last SIGHUP (the running config is kept,
    # a restart would fail); None once one loads.
    config_error: str | None = None
    clock: Clock = field(default=utc_now)
    # PostgreSQL replicas: which App IDs this process may act on (None: SQLite, whose
    # single writer acts on all of them).
    ownership: Ownership | None = None

    @property
    def app_ids(self) -> frozenset[str]:
        """Every App ID of the config."""
        return frozenset(p.app_id for p in self.config.apps.values())


def never_created(url: str) -> bool:
    """No store and no trace of one at `url`: neither the database nor its lock file
    (which outlives the database) exists. The daemon's first start creates a store
    only then; a store that existed and is gone is an error, never silently new."""
    try:
        path = sqlite_path_from_url(url)
    except StoreError:
        return False
    return not path.exists() and not lock_path_for(path).exists()


def plan_policy(config: Config) -> PlanPolicy:
    backoff = config.reconcile.restart_backoff
    return PlanPolicy(
        restart_backoff_initial=backoff.initial,
        restart_backoff_max=backoff.max,
        rollover_lead=config.reconcile.rollover_lead,
    )


def retry_policy(config: Config) -> RetryPolicy:
    """The API client's retries of one call (config `retry`)."""
    retry = config.retry
    return RetryPolicy(
        max_attempts=retry.attempts,
        base_delay=retry.initial.total_seconds(),
        max_delay=retry.max.total_seconds(),
        total=retry.total.total_seconds(),
    )


def app_rates(config: Config) -> dict[str, int]:
    """Each App ID's rate limit; profiles sharing an App ID share it (the lowest wins)."""
    rates: dict[str, int] = {}
    for profile in config.apps.values():
        rates[profile.app_id] = min(
            rates.get(profile.app_id, profile.rate_limit), profile.rate_limit
        )
    return rates


@dataclass(frozen=True)
class QueryBudgetLine:
    """One App ID's resync: how long one round of queries over its live sessions takes
    at `share` of its `rate` (`status`; the daemon's metric is the same figure)."""

    app_id: str
    live: int
    rate: int
    share: float
    cycle_s: float
    resync_s: float

    @property
    def too_long(self) -> bool:
        return self.cycle_s > self.resync_s

    def as_dict(self) -> dict[str, object]:
        return {
            "app_id": self.app_id,
            "live": self.live,
            "rate": self.rate,
            "share": self.share,
            "cycle_seconds": round(self.cycle_s, 3),
            "resync_seconds": self.resync_s,
            "too_long": self.too_long,
        }


def query_budget(config: Config, live: Sequence[SessionRecord]) -> list[QueryBudgetLine]:
    """Each App ID's query cycle with these live sessions, in App ID order."""
    share = config.reconcile.query_share
    resync = config.reconcile.resync_interval.total_seconds()
    counts = Counter(s.app_id for s in live)
    return [
        QueryBudgetLine(
            app_id,
            counts[app_id],
            rate,
            share,
            query_cycle_seconds(counts[app_id], rate, share),
            resync,
        )
        for app_id, rate in sorted(app_rates(config).items())
    ]


def build_limiters(config: Config, hooks: Hooks | None = None) -> dict[str, RateLimiter]:
    """One limiter per App ID; profiles sharing an App ID share it (the lowest rate wins).
    None sends before one window after the process was launched: a predecessor (a
    restart, the previous command) may have used the App ID's last second."""
    rates = app_rates(config)
    on_wait = hooks.on_wait if hooks else None
    share = config.reconcile.query_share
    quiet = launched_at() + DEFAULT_WINDOW
    return {
        app_id: RateLimiter(rate, query_share=share, on_wait=on_wait, quiet_until=quiet)
        for app_id, rate in rates.items()
    }


@dataclass(frozen=True)
class Clients:
    """What `api_clients` builds: API clients and token minters by profile name, rate
    limiters by App ID, and the profiles left out (one line each)."""

    clients: dict[str, AgoraClient]
    limiters: Mapping[str, RateLimiter]
    minters: dict[str, TokenMinter]
    problems: list[str]
    # The fingerprints of the secrets read (`config.fingerprint`), by key.
    secrets: dict[str, str]


@asynccontextmanager
async def api_clients(
    config: Config,
    *,
    hooks: Hooks | None = None,
    limiters: Mapping[str, RateLimiter] | None = None,
    http: httpx.AsyncClient | None = None,
) -> AsyncIterator[Clients]:
    """The clients (and token minters) of the profiles whose credentials (and App
    Certificate) resolve; the shared HTTP client is closed on exit unless given."""
    limiters = limiters if limiters is not None else build_limiters(config, hooks)
    own_http = http is None
    shared = http if http is not None else httpx.AsyncClient(timeout=DEFAULT_TIMEOUT)
    clients: dict[str, AgoraClient] = {}
    minters: dict[str, TokenMinter] = {}
    problems: list[str] = []
    secrets: dict[str, str] = {}
    retry = hooks.retry if hooks is not None and hooks.retry is not None else retry_policy(config)
    try:
        for name, profile in sorted(config.apps.items()):
            try:
                customer_id, customer_secret = resolve_credentials(profile)
                certificate = resolve_app_certificate(profile)
            except SecretError as exc:
                # A profile without its certificate would send starts Agora refuses.
                problems.append(f"app profile {name}: {exc}")
                continue
            secrets[credentials_key(name)] = fingerprint((customer_id, customer_secret))
            if certificate is not None:
                secrets[certificate_key(name)] = fingerprint(certificate)
            if certificate is not None and profile.app_certificate is not None:
                minters[name] = TokenMinter(
                    app=name,
                    app_id=profile.app_id,
                    certificate=certificate,
                    lifetime=profile.token_lifetime,
                    reference=profile.app_certificate.describe(),
                )
            clients[name] = AgoraClient(
                customer_id=customer_id,
                customer_secret=customer_secret,
                base_url=profile.base_url,
                limiter=limiters[profile.app_id],
                http=shared,
                on_call=hooks.on_call if hooks else None,
                retry=retry,
            )
        yield Clients(clients, limiters, minters, problems, secrets)
    finally:
        for client in clients.values():
            await client.aclose()
        if own_http:
            await shared.aclose()


@asynccontextmanager
async def open_runtime(
    config: Config,
    *,
    state_url: str | None = None,
    holder: str = "orchestrator",
    hooks: Hooks | None = None,
    clock: Clock = utc_now,
    create: bool = False,
) -> AsyncIterator[Runtime]:
    """The writer's runtime: the store locked for this process, clients, executor.

    `create`: make the store when there is none (`init`, the daemon's first start);
    otherwise a missing store is an error, never silently a new empty one.
    Raises `StoreBusyError` (before any client exists or any request is sent) when
    another process holds the store, `StoreError` when it cannot be opened.
    """
    url = state_url or config.state.url
    async with (
        opened_store(url, writer=True, holder=holder, create=create) as store,
        api_clients(config, hooks=hooks) as built,
    ):
        executor = Executor(
            store,
            built.clients,
            resolve_secret=resolve_secret,
            now=clock,
            concurrency=config.reconcile.concurrency,
            minters=built.minters,
            on_rollover=None if hooks is None else hooks.on_rollover,
            failover_grace=config.reconcile.failover_grace,
        )
        ownership = ownership_for(store, config.replica.name)
        try:
            yield Runtime(
                config=config,
                store=store,
                clients=built.clients,
                limiters=built.limiters,
                executor=executor,
                policy=plan_policy(config),
                problems=tuple(built.problems),
                secrets=dict(built.secrets),
                clock=clock,
                ownership=ownership,
            )
        finally:
            if ownership is not None:
                await ownership.aclose()
