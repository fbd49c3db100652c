"""Prometheus metrics and the local HTTP endpoint serving /metrics, /healthz and /readyz.

The daemon runs unattended; operators learn how it is doing from these series and
probes. Metric and label names are part of the interface (docs/operations.md lists them):
change them only together with that table and the dashboards. The endpoint's HTTP,
and the bounds that keep a flood of connections to it from taking the descriptors
the API calls need, are orchestrator.daemon.listener's.

This module must never put a secret in a label: the label names are fixed here
and their values are phases, triggers, endpoints, actions, outcomes, HTTP and
Agora codes, App IDs (not secrets) and the version. It must never use the
process-global default registry (each `Metrics` has its own, so tests and several
instances never clash), and recording a metric must never raise because of a
label value it has not seen before.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import json
import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from orchestrator import __version__
from orchestrator.contract import ENDPOINTS
from orchestrator.daemon.listener import Bounds, Listener, Page, Route
from orchestrator.daemon.receiver import BAD_BODY, BAD_SIGNATURE, TOO_LARGE, UNKNOWN_EVENT
from orchestrator.errors import OrchestratorError

log = structlog.get_logger("orchestrator.daemon")

Clock = Callable[[], float]


@dataclass(frozen=True)
class ReadinessReport:
    """What /readyz answers: ready or not, one line why, and facts for people and
    probes (what is not recording and why, files failing to load), all secret-free."""

    ready: bool
    detail: str
    facts: Mapping[str, object] = field(default_factory=dict)


Readiness = Callable[[], ReadinessReport]

PHASES: Final = ("acquiring", "starting", "running", "updating", "stopping", "unmanageable")
TRIGGERS: Final = ("start", "boundary", "resync", "reload", "backoff", "takeover", "notice")
HELD_REASONS: Final = (
    "failed",
    "unmanageable",
    "backoff",
    "missed",
    "deferred",
    "kept",
    "rollover",
)
# Why a wanted recording is not recording (orchestrator.reconcile.overview.Reason).
NOT_RECORDING_REASONS: Final = ("starting", "failing", "backoff", "held", "unmanageable")
OUTCOMES: Final = ("ok", "failed")
# What an action does (orchestrator.reconcile.model.ActionKind).
ACTIONS: Final = ("start", "stop", "update", "updateLayout", "restart", "resume", "rollover")
# Why the metrics listener closed a connection itself (orchestrator.daemon.listener).
LISTENER_DROPS: Final = ("limit", "timeout")

# One Agora call: 5 ms (emulator on loopback) .. 30 s (past the default 15 s read timeout).
API_LATENCY_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# Waiting for a token of the per-App-ID limiter: usually none, seconds when saturated.
RATE_WAIT_BUCKETS: Final = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# A rollover's overlap (both sessions recording): the successor's start and confirmation
# (seconds) plus whatever delayed the predecessor's stop; at most rolloverLead.
OVERLAP_BUCKETS: Final = (1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)
# Boundary lateness: the target is at most 1 s (p99); milliseconds are normal.
LATENESS_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# A whole pass: one query per session plus the actions; minutes when the API is slow.
PASS_BUCKETS: Final = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


def _outcome(ok: bool) -> str:
    return "ok" if ok else "failed"


def _seconds(value: float) -> float:
    # A clock step must not make a histogram's sum go backwards.
    return value if value > 0 else 0.0


def _set_counts(gauge: Gauge, label: str, seen: set[str], counts: Mapping[str, int]) -> None:
    """Set `gauge` by `label` from `counts`; values seen before (`seen`, which gains the
    new ones) and missing from `counts` become 0."""
    seen.update(counts)
    for value in seen:
        gauge.labels(**{label: value}).set(counts.get(value, 0))


@dataclass(frozen=True)
class _Success:
    wall: float  # Unix time, for the timestamp gauge
    monotonic: float  # for the age, immune to wall-clock steps


class _LastSuccessCollector(Collector):
    """Computes the last-success gauges at scrape time; both are NaN before any success."""

    def __init__(self, read: Callable[[], tuple[float, float]]) -> None:
        self._read = read  # -> (timestamp, age)

    def describe(self) -> Iterable[Metric]:
        return self._families(math.nan, math.nan)

    def collect(self) -> Iterable[Metric]:
        return self._families(*self._read())

    @staticmethod
    def _families(timestamp: float, age: float) -> list[Metric]:
        return [
            GaugeMetricFamily(
                "orchestrator_last_successful_pass_timestamp_seconds",
                "Unix time at which the last successful reconcile pass finished (NaN before one).",
                value=timestamp,
            ),
            GaugeMetricFamily(
                "orchestrator_seconds_since_last_successful_pass",
                "Seconds since the last successful reconcile pass finished (NaN before one).",
                value=age,
            ),
        ]


class Metrics:
    """All of the daemon's series, in a registry of their own.

    `wall_clock` stamps the last success (Unix time); `monotonic` measures its
    age at scrape time.
    """

    def __init__(
        self,
        *,
        version: str = __version__,
        wall_clock: Clock = time.time,
        monotonic: Clock = time.monotonic,
    ) -> None:
        self.registry = CollectorRegistry()
        self._wall_clock = wall_clock
        self._monotonic = monotonic
        self._last_success: _Success | None = None
        # Every family is registered in this registry, in the order /metrics lists them.
        gauge = functools.partial(Gauge, registry=self.registry)
        counter = functools.partial(Counter, registry=self.registry)
        histogram = functools.partial(Histogram, registry=self.registry)

        self._sessions = gauge(
            "orchestrator_sessions", "Sessions in the store, by phase.", ["phase"]
        )
        self._untracked = gauge(
            "orchestrator_untracked_sessions",
            "Recordings found running that no manifest accounts for.",
        )
        self._api_requests = counter(
            "orchestrator_api_requests_total",
            "Cloud Recording API calls; status and code are empty when there was none.",
            ["endpoint", "status", "code"],
        )
        self._api_latency = histogram(
            "orchestrator_api_latency_seconds",
            "Latency of one Cloud Recording API call.",
            ["endpoint"],
            buckets=API_LATENCY_BUCKETS,
        )
        self._rate_wait = histogram(
            "orchestrator_rate_limit_wait_seconds",
            "Time spent waiting for the per-App-ID rate limiter.",
            ["app_id"],
            buckets=RATE_WAIT_BUCKETS,
        )
        self._pass_duration = histogram(
            "orchestrator_reconcile_pass_duration_seconds",
            "Duration of one reconcile pass, by what triggered it.",
            ["trigger"],
            buckets=PASS_BUCKETS,
        )
        self._passes = counter(
            "orchestrator_reconcile_passes_total",
            "Reconcile passes, by trigger and outcome.",
            ["trigger", "outcome"],
        )
        self._actions = counter(
            "orchestrator_reconcile_actions_total",
            "Actions executed by reconcile passes, by action and outcome.",
            ["action", "outcome"],
        )
        self._next_boundary = gauge(
            "orchestrator_next_boundary_timestamp_seconds",
            "Unix time the daemon wakes next by itself: a window boundary, a backoff's "
            "end or a rollover (NaN when none).",
        )
        self._manifests_failing = gauge(
            "orchestrator_manifests_failing",
            "Manifest files (or paths) that currently fail to load, as /readyz counts them.",
        )
        self._manifests_held = gauge(
            "orchestrator_manifests_held",
            "Manifests not being acted on as declared, by reason.",
            ["reason"],
        )
        self._wanted = gauge(
            "orchestrator_recordings_wanted",
            "Recordings whose schedule wants them recording now (not suspended), by App ID.",
            ["app_id"],
        )
        self._live = gauge(
            "orchestrator_recordings_live",
            "Recordings a live session records now (running or updating), by App ID.",
            ["app_id"],
        )
        self._not_recording = gauge(
            "orchestrator_recordings_not_recording",
            "Wanted recordings that are not recording, by App ID and reason (starting, "
            "failing, backoff, held, unmanageable).",
            ["app_id", "reason"],
        )
        self._manifests_loaded = gauge(
            "orchestrator_manifests_loaded", "Manifests currently loaded."
        )
        self._reloads = counter(
            "orchestrator_reloads_total",
            "Reloads of the manifests, and SIGHUPs whose config file did not load (failed), "
            "by outcome.",
            ["outcome"],
        )
        self._owned_apps = gauge(
            "orchestrator_owned_app_ids",
            "App IDs this replica owns (PostgreSQL replicas; with SQLite, every App ID).",
        )
        self._ownership_losses = counter(
            "orchestrator_ownership_losses_total",
            "App IDs this replica lost without releasing them (its lock connection failed, "
            "or another replica holds them now).",
        )
        self._listener_connections = gauge(
            "orchestrator_listener_connections",
            "Connections open to this metrics and health address (at scrape time).",
        )
        self._listener_drops = counter(
            "orchestrator_listener_connections_dropped_total",
            "Connections to this address closed by its bounds: limit (a newer one needed "
            "the room), timeout (no whole request within the time allowed).",
            ["reason"],
        )
        self._rollovers = counter(
            "orchestrator_rollovers",
            "Rollovers completed: a successor recorded and its predecessor was stopped.",
        )
        self._rollover_overlap = histogram(
            "orchestrator_rollover_overlap_seconds",
            "How long a rollover's two sessions both recorded (successor's start to the "
            "predecessor's end).",
            buckets=OVERLAP_BUCKETS,
        )
        self._notifications = counter(
            "orchestrator_notifications",
            "Agora notifications (NCS) received, by event type and outcome: kept, "
            "duplicate (a resend), unknown_session, bad_signature, bad_body, too_large, "
            "store_failed.",
            ["event", "outcome"],
        )
        self._notices_acted = counter(
            "orchestrator_notifications_acted",
            "Kept notifications acted on by this replica's passes.",
        )
        self._store_up = gauge(
            "orchestrator_store_up",
            "1 while the state store can be read and takes writes, 0 otherwise.",
        )
        self._store_up.set(1)
        self._ready = gauge(
            "orchestrator_ready", "1 while the daemon is ready (/readyz answers 200), 0 otherwise."
        )
        self._unowned = gauge(
            "orchestrator_app_ids_unowned",
            "App IDs of the config that no replica owns, as this replica last saw them "
            "(always 0 with SQLite, whose one daemon owns them all).",
        )
        self._boundary_lateness = histogram(
            "orchestrator_boundary_lateness_seconds",
            "How late the daemon woke for a window boundary or a backoff's end.",
            buckets=LATENESS_BUCKETS,
        )
        self._query_cycle = gauge(
            "orchestrator_query_cycle_seconds",
            "How long one round of resync queries over an App ID's live sessions takes "
            "at reconcile.queryShare of its rate limit (above the resync interval: exits "
            "are noticed later than it says).",
            ["app_id"],
        )
        build_info = gauge(
            "orchestrator_build_info", "Always 1; the version is the label.", ["version"]
        )
        build_info.labels(version=version).set(1)
        self.registry.register(_LastSuccessCollector(self._read_last_success))

        # Known label values start at zero, so the series exist before the first event.
        self._seen_phases: set[str] = set(PHASES)
        self._seen_reasons: set[str] = set(HELD_REASONS)
        self._seen_apps: set[str] = set()
        self.set_sessions({})
        self.set_manifests(0, {})
        self._next_boundary.set(math.nan)
        for trigger in TRIGGERS:
            self._pass_duration.labels(trigger=trigger)
            for outcome in OUTCOMES:
                self._passes.labels(trigger=trigger, outcome=outcome)
        for outcome in OUTCOMES:
            self._reloads.labels(outcome=outcome)
            for action in ACTIONS:
                self._actions.labels(action=action, outcome=outcome)
        # A counter's series that first appears at 1 shows no increase: the alerts that
        # fire on the first 429 or refused notification need theirs there at 0 before.
        for endpoint in ENDPOINTS:
            self._api_requests.labels(endpoint=endpoint, status="429", code="")
        for refused in (BAD_SIGNATURE, BAD_BODY, TOO_LARGE):
            self._notifications.labels(event=UNKNOWN_EVENT, outcome=refused)
        for reason in LISTENER_DROPS:
            self._listener_drops.labels(reason=reason)

    # -------------------------------------------------------------- store state
    def set_sessions(self, counts: Mapping[str, int]) -> None:
        """Sessions by phase; known (or earlier seen) phases missing from `counts` become 0."""
        _set_counts(self._sessions, "phase", self._seen_phases, counts)

    def set_untracked(self, count: int) -> None:
        self._untracked.set(count)

    def set_owned_app_ids(self, count: int) -> None:
        self._owned_apps.set(count)

    def observe_ownership_lost(self, count: int) -> None:
        self._ownership_losses.inc(count)

    # -------------------------------------------------------------- API client
    def observe_api_call(
        self, endpoint: str, status: int | None, code: int | None, latency: float
    ) -> None:
        """One API call: HTTP status and Agora code, each None when there was none."""
        self._api_requests.labels(
            endpoint=endpoint,
            status="" if status is None else str(status),
            code="" if code is None else str(code),
        ).inc()
        self._api_latency.labels(endpoint=endpoint).observe(_seconds(latency))

    def observe_rate_wait(self, app_id: str, seconds: float) -> None:
        self._rate_wait.labels(app_id=app_id).observe(_seconds(seconds))

    # -------------------------------------------------------------- reconciler
    def observe_pass(self, trigger: str, seconds: float, ok: bool) -> None:
        """One finished pass; a successful one records now as the last success."""
        self._pass_duration.labels(trigger=trigger).observe(_seconds(seconds))
        self._passes.labels(trigger=trigger, outcome=_outcome(ok)).inc()
        if ok:
            self._last_success = _Success(wall=self._wall_clock(), monotonic=self._monotonic())

    @property
    def last_successful_pass(self) -> float | None:
        """Unix time at which the last successful pass finished; None before one."""
        return None if self._last_success is None else self._last_success.wall

    def _read_last_success(self) -> tuple[float, float]:
        success = self._last_success
        if success is None:
            return math.nan, math.nan
        return success.wall, max(0.0, self._monotonic() - success.monotonic)

    def observe_action(self, action: str, ok: bool) -> None:
        self._actions.labels(action=action, outcome=_outcome(ok)).inc()

    def observe_rollover(self, overlap: float | None) -> None:
        """A completed rollover and its overlap in seconds (None: not known)."""
        self._rollovers.inc()
        if overlap is not None:
            self._rollover_overlap.observe(_seconds(overlap))

    def set_next_boundary(self, at: datetime | None) -> None:
        """The next window boundary (timezone-aware), or None when there is none."""
        if at is None:
            self._next_boundary.set(math.nan)
            return
        if at.tzinfo is None:
            raise ValueError("the next boundary must be a timezone-aware datetime")
        self._next_boundary.set(at.timestamp())

    # -------------------------------------------------------------- manifests
    def set_manifests(self, failing: int, held: Mapping[str, int]) -> None:
        """Failing files/manifests, and held manifests by reason (missing reasons become 0)."""
        self._manifests_failing.set(failing)
        _set_counts(self._manifests_held, "reason", self._seen_reasons, held)

    def set_recordings(self, by_app: Mapping[str, tuple[int, int, Mapping[str, int]]]) -> None:
        """Per App ID: (wanted, live, not recording by reason); App IDs and reasons seen
        before and missing now become 0."""
        self._seen_apps.update(by_app)
        for app_id in self._seen_apps:
            wanted, live, reasons = by_app.get(app_id, (0, 0, {}))
            self._wanted.labels(app_id=app_id).set(wanted)
            self._live.labels(app_id=app_id).set(live)
            for reason in {*NOT_RECORDING_REASONS, *reasons}:
                self._not_recording.labels(app_id=app_id, reason=reason).set(reasons.get(reason, 0))

    def set_manifests_loaded(self, count: int) -> None:
        self._manifests_loaded.set(count)

    def observe_reload(self, ok: bool) -> None:
        self._reloads.labels(outcome=_outcome(ok)).inc()

    # -------------------------------------------------------------- notifications
    def observe_notification(self, event: str, outcome: str) -> None:
        self._notifications.labels(event=event, outcome=outcome).inc()

    def observe_notices_acted(self, count: int) -> None:
        self._notices_acted.inc(count)

    def set_query_cycle(self, app_id: str, seconds: float) -> None:
        self._query_cycle.labels(app_id=app_id).set(seconds)

    # -------------------------------------------------------------- health
    def set_store_up(self, up: bool) -> None:
        self._store_up.set(1 if up else 0)

    def watch_readiness(self, ready: Callable[[], bool]) -> None:
        """`orchestrator_ready` is `ready()` at every scrape."""
        self._ready.set_function(lambda: 1.0 if ready() else 0.0)

    def set_unowned_app_ids(self, count: int) -> None:
        self._unowned.set(count)

    def observe_boundary_lateness(self, seconds: float) -> None:
        self._boundary_lateness.observe(_seconds(seconds))

    # -------------------------------------------------------------- the listener
    def set_listener_connections(self, count: int) -> None:
        self._listener_connections.set(count)

    def observe_listener_drop(self, reason: str) -> None:
        """A connection the metrics listener closed itself: `limit` or `timeout`."""
        self._listener_drops.labels(reason=reason).inc()

    def exposition(self) -> bytes:
        """The registry in the Prometheus text format (`CONTENT_TYPE_LATEST`)."""
        return generate_latest(self.registry)


class HealthServerBindError(OrchestratorError, OSError):
    """The metrics/health address could not be bound; the message names the address."""


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class HealthServer:
    """Serves /metrics, /healthz and /readyz on a local address (orchestrator.daemon.
    listener: GET and HEAD only, connections and their idle time bounded by the
    process's descriptor limit, so a flood of connections here takes no descriptor
    the API calls need).

    /healthz answers 503 when the heartbeat task (one wake-up every
    `heartbeat_interval` seconds, measuring how late it wakes) has not beaten
    for `stale_after` seconds or has died. /readyz calls `readiness`, which must
    be cheap and non-blocking: it runs on the event loop. `bounds` replaces the
    listener's (default: `bounds_for` the descriptor limit at `start`).
    """

    def __init__(
        self,
        metrics: Metrics,
        readiness: Readiness,
        *,
        heartbeat_interval: float = 1.0,
        stale_after: float = 10.0,
        clock: Clock = time.monotonic,
        bounds: Bounds | None = None,
        pages: Mapping[str, Route] | None = None,
    ) -> None:
        """`pages`: more GET routes on the same address (the status page)."""
        if heartbeat_interval <= 0 or stale_after <= 0:
            raise ValueError("heartbeat_interval and stale_after must be positive")
        self._metrics = metrics
        self._readiness = readiness
        self._interval = heartbeat_interval
        self._stale_after = stale_after
        self._clock = clock
        self._bounds = bounds
        self._pages = dict(pages or {})
        self._listener: Listener | None = None
        self._heartbeat: asyncio.Task[None] | None = None
        self._port: int | None = None
        self._last_beat = 0.0
        self._loop_lag = 0.0

    @property
    def port(self) -> int:
        """The bound port (useful after `start(host, 0)`)."""
        if self._port is None:
            raise RuntimeError("the health server is not started")
        return self._port

    async def start(self, host: str, port: int) -> None:
        """Bind and serve; raises HealthServerBindError when the address cannot be bound."""
        if self._listener is not None:
            raise RuntimeError("the health server is already started")
        routes = {
            **self._pages,
            "/metrics": self._metrics_page,
            "/healthz": self._healthz_page,
            "/readyz": self._readyz_page,
        }
        # The bounds follow the descriptor limit at start (the daemon has raised it by then).
        listener = Listener(
            routes, bounds=self._bounds, on_drop=self._metrics.observe_listener_drop
        )
        try:
            self._port = await listener.start(host, port)
        except OSError as exc:
            address = _hostport(host, port)
            reason = exc.strerror or str(exc)
            if exc.errno == errno.EADDRINUSE:
                reason = "address already in use"
            raise HealthServerBindError(
                exc.errno, f"cannot serve metrics and health checks on {address}: {reason}"
            ) from exc
        self._listener = listener
        self._last_beat = self._clock()
        self._heartbeat = asyncio.create_task(self._beat(), name="health-heartbeat")

    async def stop(self) -> None:
        """Stop serving; safe to call twice or before `start`."""
        heartbeat, self._heartbeat = self._heartbeat, None
        if heartbeat is not None:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
        listener, self._listener = self._listener, None
        if listener is not None:
            await listener.stop()
        self._port = None

    async def _beat(self) -> None:
        while True:
            before = self._clock()
            await asyncio.sleep(self._interval)
            self._last_beat = self._clock()
            self._loop_lag = max(0.0, self._last_beat - before - self._interval)

    def _metrics_page(self) -> Page:
        if self._listener is not None:
            self._metrics.set_listener_connections(self._listener.connections)
        return Page(200, CONTENT_TYPE_LATEST, self._metrics.exposition())

    def _healthz_page(self) -> Page:
        age = max(0.0, self._clock() - self._last_beat)
        body: dict[str, object] = {
            "status": "ok",
            "loop_lag_seconds": round(self._loop_lag, 6),
            "heartbeat_age_seconds": round(age, 6),
        }
        if self._heartbeat is None or self._heartbeat.done():
            body["status"] = "heartbeat stopped"
            return _json_page(body, 503)
        if age > self._stale_after:
            body["status"] = "heartbeat stale"
            return _json_page(body, 503)
        return _json_page(body, 200)

    def _readyz_page(self) -> Page:
        try:
            report = self._readiness()
        except Exception as exc:
            # The message (or a traceback's locals) could quote anything: the type is enough.
            log.warning("health.readiness_failed", error=type(exc).__name__)
            report = ReadinessReport(False, f"readiness check failed: {type(exc).__name__}")
        body = {**report.facts, "ready": report.ready, "detail": report.detail}
        return _json_page(body, 200 if report.ready else 503)


def _json_page(body: Mapping[str, object], status: int) -> Page:
    return Page(status, "application/json; charset=utf-8", json.dumps(body).encode())
