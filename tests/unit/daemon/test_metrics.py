"""Metrics and the health server, scraped over real HTTP on loopback.

Covers: every metric name and label after the observe_*/set_* calls, parsed back
with prometheus_client's own parser; known label values exist at zero from the
start; phases and held reasons missing from a later update drop to 0; the
last-success gauges (NaN before one, then computed from the injected clocks at
scrape time); instances never share a registry; /metrics content type; /healthz
200 with the loop lag, 503 when the heartbeat is stale; /readyz following the
readiness callable (and 503 when it raises); a clear error when the port is taken.
"""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta, timezone

import httpx
import pytest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

from orchestrator import __version__
from orchestrator.daemon.metrics import (
    ACTIONS,
    HELD_REASONS,
    HealthServer,
    HealthServerBindError,
    Metrics,
    ReadinessReport,
)
from orchestrator.reconcile.model import ActionKind, NoteKind

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]

ALLOWED_LABELS = {
    "phase",
    "endpoint",
    "status",
    "code",
    "app_id",
    "trigger",
    "outcome",
    "action",
    "reason",
    "event",
    "version",
    "le",  # histogram buckets
}


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _samples(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _scrape(metrics: Metrics) -> Samples:
    return _samples(metrics.exposition().decode())


def _value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def test_initial_series() -> None:
    samples = _scrape(Metrics(version="1.2.3"))
    for phase in ("acquiring", "starting", "running", "updating", "stopping", "unmanageable"):
        assert _value(samples, "orchestrator_sessions", phase=phase) == 0
    for reason in ("failed", "unmanageable", "backoff", "missed", "deferred", "kept"):
        assert _value(samples, "orchestrator_manifests_held", reason=reason) == 0
    for trigger in ("start", "boundary", "resync", "reload", "backoff", "takeover"):
        for outcome in ("ok", "failed"):
            name = "orchestrator_reconcile_passes_total"
            assert _value(samples, name, trigger=trigger, outcome=outcome) == 0
    assert _value(samples, "orchestrator_reloads_total", outcome="ok") == 0
    # The alerts that fire on a first increase need the series at 0 before it.
    for endpoint in ("acquire", "start", "update", "updateLayout", "query", "stop"):
        name = "orchestrator_api_requests_total"
        assert _value(samples, name, endpoint=endpoint, status="429", code="") == 0
    for action in ACTIONS:
        name = "orchestrator_reconcile_actions_total"
        assert _value(samples, name, action=action, outcome="failed") == 0
    for outcome in ("bad_signature", "bad_body", "too_large"):
        name = "orchestrator_notifications_total"
        assert _value(samples, name, event="unknown", outcome=outcome) == 0
    assert _value(samples, "orchestrator_build_info", version="1.2.3") == 1
    assert _value(samples, "orchestrator_untracked_sessions") == 0
    assert _value(samples, "orchestrator_manifests_failing") == 0
    assert _value(samples, "orchestrator_manifests_loaded") == 0
    assert math.isnan(_value(samples, "orchestrator_next_boundary_timestamp_seconds"))
    assert math.isnan(_value(samples, "orchestrator_last_successful_pass_timestamp_seconds"))
    assert math.isnan(_value(samples, "orchestrator_seconds_since_last_successful_pass"))


def test_ownership_series() -> None:
    metrics = Metrics()
    samples = _scrape(metrics)
    assert _value(samples, "orchestrator_owned_app_ids") == 0
    assert _value(samples, "orchestrator_ownership_losses_total") == 0
    metrics.set_owned_app_ids(3)
    metrics.observe_ownership_lost(2)
    metrics.observe_ownership_lost(1)
    samples = _scrape(metrics)
    assert _value(samples, "orchestrator_owned_app_ids") == 3
    assert _value(samples, "orchestrator_ownership_losses_total") == 3


def test_default_version_is_the_package_version() -> None:
    assert _value(_scrape(Metrics()), "orchestrator_build_info", version=__version__) == 1


def test_observations_appear_with_their_labels() -> None:
    wall, mono = FakeClock(1_700_000_000.0), FakeClock(500.0)
    metrics = Metrics(wall_clock=wall, monotonic=mono)
    metrics.set_sessions({"running": 3, "acquiring": 1, "ended": 7})
    metrics.set_untracked(2)
    metrics.observe_api_call("start", 200, None, 0.02)
    metrics.observe_api_call("start", 400, 7, 0.3)
    metrics.observe_api_call("query", None, None, 30.0)
    metrics.observe_api_call("query", None, None, -1.0)  # a clock step counts as zero
    metrics.observe_rate_wait("0123456789abcdef0123456789abcdef", 0.25)
    metrics.observe_pass("boundary", 1.5, ok=False)
    metrics.observe_pass("resync", 0.5, ok=True)
    metrics.observe_action("start", ok=True)
    metrics.observe_action("stop", ok=False)
    metrics.set_next_boundary(datetime(2024, 5, 1, 9, 0, tzinfo=UTC))
    metrics.set_manifests(1, {"backoff": 2, "kept": 1})
    metrics.set_manifests_loaded(4)
    metrics.observe_reload(True)
    metrics.observe_reload(False)
    metrics.observe_reload(False)
    mono.now += 42.0
    wall.now += 42.0

    samples = _scrape(metrics)
    assert _value(samples, "orchestrator_sessions", phase="running") == 3
    assert _value(samples, "orchestrator_sessions", phase="acquiring") == 1
    assert _value(samples, "orchestrator_sessions", phase="ended") == 7
    assert _value(samples, "orchestrator_sessions", phase="stopping") == 0
    assert _value(samples, "orchestrator_untracked_sessions") == 2

    requests = "orchestrator_api_requests_total"
    assert _value(samples, requests, endpoint="start", status="200", code="") == 1
    assert _value(samples, requests, endpoint="start", status="400", code="7") == 1
    assert _value(samples, requests, endpoint="query", status="", code="") == 2
    latency = "orchestrator_api_latency_seconds"
    assert _value(samples, latency + "_count", endpoint="start") == 2
    assert _value(samples, latency + "_sum", endpoint="start") == pytest.approx(0.32)
    assert _value(samples, latency + "_bucket", endpoint="start", le="0.005") == 0
    assert _value(samples, latency + "_bucket", endpoint="start", le="0.025") == 1
    assert _value(samples, latency + "_bucket", endpoint="query", le="0.005") == 1
    assert _value(samples, latency + "_bucket", endpoint="query", le="30.0") == 2
    assert _value(samples, latency + "_sum", endpoint="query") == 30.0

    wait = "orchestrator_rate_limit_wait_seconds"
    app_id = "0123456789abcdef0123456789abcdef"
    assert _value(samples, wait + "_count", app_id=app_id) == 1
    assert _value(samples, wait + "_sum", app_id=app_id) == 0.25

    duration = "orchestrator_reconcile_pass_duration_seconds"
    assert _value(samples, duration + "_count", trigger="boundary") == 1
    assert _value(samples, duration + "_sum", trigger="resync") == 0.5
    assert _value(samples, duration + "_count", trigger="start") == 0
    passes = "orchestrator_reconcile_passes_total"
    assert _value(samples, passes, trigger="boundary", outcome="failed") == 1
    assert _value(samples, passes, trigger="boundary", outcome="ok") == 0
    assert _value(samples, passes, trigger="resync", outcome="ok") == 1

    actions = "orchestrator_reconcile_actions_total"
    assert _value(samples, actions, action="start", outcome="ok") == 1
    assert _value(samples, actions, action="stop", outcome="failed") == 1

    boundary = datetime(2024, 5, 1, 9, 0, tzinfo=UTC).timestamp()
    assert _value(samples, "orchestrator_next_boundary_timestamp_seconds") == boundary
    assert _value(samples, "orchestrator_manifests_failing") == 1
    assert _value(samples, "orchestrator_manifests_held", reason="backoff") == 2
    assert _value(samples, "orchestrator_manifests_held", reason="kept") == 1
    assert _value(samples, "orchestrator_manifests_held", reason="missed") == 0
    assert _value(samples, "orchestrator_manifests_loaded") == 4
    assert _value(samples, "orchestrator_reloads_total", outcome="ok") == 1
    assert _value(samples, "orchestrator_reloads_total", outcome="failed") == 2

    assert _value(samples, "orchestrator_last_successful_pass_timestamp_seconds") == 1_700_000_000
    assert _value(samples, "orchestrator_seconds_since_last_successful_pass") == 42
    assert metrics.last_successful_pass == 1_700_000_000

    used = {name for _, labels in samples for name, _ in labels}
    assert used <= ALLOWED_LABELS


def test_seconds_since_last_success_is_computed_at_scrape_time() -> None:
    wall, mono = FakeClock(1000.0), FakeClock(10.0)
    metrics = Metrics(wall_clock=wall, monotonic=mono)
    assert metrics.last_successful_pass is None
    metrics.observe_pass("start", 0.1, ok=True)
    mono.now = 15.0
    assert _value(_scrape(metrics), "orchestrator_seconds_since_last_successful_pass") == 5
    mono.now = 75.0
    assert _value(_scrape(metrics), "orchestrator_seconds_since_last_successful_pass") == 65
    metrics.observe_pass("resync", 0.1, ok=False)  # a failure leaves the last success alone
    assert _value(_scrape(metrics), "orchestrator_seconds_since_last_successful_pass") == 65
    wall.now = 2000.0
    metrics.observe_pass("resync", 0.1, ok=True)
    samples = _scrape(metrics)
    assert _value(samples, "orchestrator_seconds_since_last_successful_pass") == 0
    assert _value(samples, "orchestrator_last_successful_pass_timestamp_seconds") == 2000


def test_missing_phases_and_reasons_drop_to_zero() -> None:
    metrics = Metrics()
    metrics.set_sessions({"running": 3, "failed": 2})
    metrics.set_manifests(2, {"deferred": 5})
    metrics.set_sessions({"starting": 1})
    metrics.set_manifests(0, {})
    samples = _scrape(metrics)
    assert _value(samples, "orchestrator_sessions", phase="running") == 0
    assert _value(samples, "orchestrator_sessions", phase="failed") == 0
    assert _value(samples, "orchestrator_sessions", phase="starting") == 1
    assert _value(samples, "orchestrator_manifests_held", reason="deferred") == 0
    assert _value(samples, "orchestrator_manifests_failing") == 0


def test_next_boundary() -> None:
    metrics = Metrics()
    at = datetime(2024, 5, 1, 11, 0, tzinfo=timezone(timedelta(hours=2)))
    metrics.set_next_boundary(at)
    value = _value(_scrape(metrics), "orchestrator_next_boundary_timestamp_seconds")
    assert value == datetime(2024, 5, 1, 9, 0, tzinfo=UTC).timestamp()
    metrics.set_next_boundary(None)
    assert math.isnan(_value(_scrape(metrics), "orchestrator_next_boundary_timestamp_seconds"))
    with pytest.raises(ValueError, match="timezone-aware"):
        metrics.set_next_boundary(datetime(2024, 5, 1, 9, 0))


def test_instances_have_separate_registries() -> None:
    first, second = Metrics(), Metrics()
    first.observe_action("start", ok=True)
    assert (
        _value(_scrape(first), "orchestrator_reconcile_actions_total", action="start", outcome="ok")
        == 1
    )
    name = "orchestrator_reconcile_actions_total"
    assert _value(_scrape(second), name, action="start", outcome="ok") == 0


# ------------------------------------------------------------------ HTTP server


class Readiness:
    def __init__(self) -> None:
        self.answer: tuple[bool, str] = (False, "first pass not finished")
        self.error: Exception | None = None

    def __call__(self) -> ReadinessReport:
        if self.error is not None:
            raise self.error
        ready, detail = self.answer
        facts = {"not_recording": [{"manifest": "a", "reason": "failing"}]} if ready else {}
        return ReadinessReport(ready, detail, facts)


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=httpx.Timeout(10.0), trust_env=False) as client:
        yield client


@pytest.fixture
async def started() -> AsyncIterator[list[HealthServer]]:
    servers: list[HealthServer] = []
    yield servers
    for server in servers:
        await server.stop()


async def _start(
    servers: list[HealthServer],
    metrics: Metrics,
    readiness: Readiness,
    *,
    heartbeat_interval: float = 1.0,
    stale_after: float = 10.0,
    clock: Callable[[], float] = time.monotonic,
) -> tuple[HealthServer, str]:
    server = HealthServer(
        metrics,
        readiness,
        heartbeat_interval=heartbeat_interval,
        stale_after=stale_after,
        clock=clock,
    )
    servers.append(server)
    await server.start("127.0.0.1", 0)
    return server, f"http://127.0.0.1:{server.port}"


async def test_metrics_route(http: httpx.AsyncClient, started: list[HealthServer]) -> None:
    metrics = Metrics()
    _, base = await _start(started, metrics, Readiness())
    metrics.observe_api_call("acquire", 200, None, 0.01)
    metrics.set_sessions({"running": 2})

    response = await http.get(base + "/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"] == CONTENT_TYPE_LATEST
    samples = _samples(response.text)
    name = "orchestrator_api_requests_total"
    assert _value(samples, name, endpoint="acquire", status="200", code="") == 1
    assert _value(samples, "orchestrator_sessions", phase="running") == 2


async def test_healthz(http: httpx.AsyncClient, started: list[HealthServer]) -> None:
    _, base = await _start(started, Metrics(), Readiness(), heartbeat_interval=0.01)
    response = await http.get(base + "/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert isinstance(body["loop_lag_seconds"], float | int)
    assert body["loop_lag_seconds"] >= 0


async def test_healthz_is_503_when_the_heartbeat_is_stale(
    http: httpx.AsyncClient, started: list[HealthServer]
) -> None:
    clock = FakeClock(100.0)
    _, base = await _start(
        started, Metrics(), Readiness(), heartbeat_interval=3600, stale_after=10, clock=clock
    )
    clock.now += 9
    assert (await http.get(base + "/healthz")).status_code == 200
    clock.now += 2
    response = await http.get(base + "/healthz")
    assert response.status_code == 503
    assert response.json()["status"] == "heartbeat stale"
    assert response.json()["heartbeat_age_seconds"] == 11


async def test_readyz_follows_the_readiness_callable(
    http: httpx.AsyncClient, started: list[HealthServer]
) -> None:
    readiness = Readiness()
    _, base = await _start(started, Metrics(), readiness)

    response = await http.get(base + "/readyz")
    assert response.status_code == 503
    assert response.json() == {"ready": False, "detail": "first pass not finished"}

    readiness.answer = (True, "first pass finished; store writable")
    response = await http.get(base + "/readyz")
    assert response.status_code == 200
    assert response.json() == {
        "ready": True,
        "detail": "first pass finished; store writable",
        "not_recording": [{"manifest": "a", "reason": "failing"}],
    }

    readiness.error = RuntimeError("s3cret in a message")
    response = await http.get(base + "/readyz")
    assert response.status_code == 503
    assert response.json() == {"ready": False, "detail": "readiness check failed: RuntimeError"}


async def test_port_in_use_names_the_address(started: list[HealthServer]) -> None:
    first, _ = await _start(started, Metrics(), Readiness())
    second = HealthServer(Metrics(), Readiness())
    with pytest.raises(HealthServerBindError, match=rf"127\.0\.0\.1:{first.port}.*in use"):
        await second.start("127.0.0.1", first.port)
    with pytest.raises(RuntimeError, match="not started"):
        _ = second.port


async def test_stop_is_idempotent_and_closes_the_port(
    http: httpx.AsyncClient, started: list[HealthServer]
) -> None:
    server, base = await _start(started, Metrics(), Readiness())
    await server.stop()
    await server.stop()
    with pytest.raises(httpx.ConnectError):
        await http.get(base + "/healthz")


def test_every_reason_a_plan_holds_a_manifest_for_is_a_held_reason() -> None:
    """`orchestrator_manifests_held` starts each reason at 0: none may first appear when a
    plan holds one (a rollover's failed successor was missing). A rollover that is due is
    not held: it is upcoming."""
    assert set(HELD_REASONS) == {k.value for k in NoteKind} - {NoteKind.ROLLOVER_DUE.value}


def test_every_action_kind_starts_at_zero() -> None:
    """`orchestrator_reconcile_actions_total{outcome="failed"}` exists for every kind of
    action before its first failure (OrchestratorActionsFailing rates it)."""
    assert set(ACTIONS) == {k.value for k in ActionKind}
