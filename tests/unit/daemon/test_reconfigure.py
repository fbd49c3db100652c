"""`reconfigure`: what a SIGHUP's config takes on live, and what waits for a restart.

Covers: logging, manifests, shutdown and reconcile keys change live; App profiles,
state, metrics, retry, replica and reconcile.concurrency keep their running values
and are named; nothing changed names nothing; keys are spelled as in the file.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from orchestrator.config import Config
from orchestrator.daemon.reconfigure import reconfigure

APP = {
    "appId": "0123456789abcdef0123456789abcdef",
    "customerId": {"env": "A"},
    "customerSecret": {"env": "B"},
}


def config(**sections: Any) -> Config:
    data: dict[str, Any] = {
        "apps": {"main": dict(APP)},
        "state": {"dir": "/tmp/s"},
        "manifests": {"dir": "/tmp/m"},
    }
    data.update(sections)
    return Config.model_validate(data)


def test_live_keys_change_and_the_others_wait() -> None:
    running = config(reconcile={"concurrency": 8})
    loaded = config(
        logging={"level": "debug"},
        manifests={"dir": "/tmp/other", "watchInterval": "2s"},
        reconcile={"resyncInterval": "30s", "concurrency": 4},
        apps={"main": {**APP, "rateLimit": 5}},
        metrics={"address": "127.0.0.1:9999"},
    )
    change = reconfigure(running, loaded)
    assert change.changed == (
        "logging.level",
        "manifests.dir",
        "manifests.watchInterval",
        "reconcile.resyncInterval",
    )
    assert change.restart_needed == (
        "apps.main.rateLimit",
        "metrics.address",
        "reconcile.concurrency",
    )
    after = change.config
    assert after.logging.level == "debug" and after.manifests.dir == Path("/tmp/other")
    assert after.reconcile.resync_interval == timedelta(seconds=30)
    assert after.reconcile.concurrency == 8  # the running value, until a restart
    assert after.apps["main"].rate_limit == running.apps["main"].rate_limit
    assert after.metrics == running.metrics


def test_nothing_changed_names_nothing() -> None:
    change = reconfigure(config(), config())
    assert (change.changed, change.restart_needed) == ((), ())
    assert change.refused == ()


def test_live_keys_that_break_a_rule_with_the_running_ones_are_refused() -> None:
    """Defect: `tokenLifetime` 2m -> 24h (waits for a restart) with `rolloverLead`
    50s -> 5m (live) was taken: the daemon ran a 5-minute lead on 2-minute tokens, a
    config its start refuses."""
    certified = {**APP, "appCertificate": {"env": "C"}}
    running = config(
        apps={"main": {**certified, "tokenLifetime": "2m"}}, reconcile={"rolloverLead": "50s"}
    )
    loaded = config(
        apps={"main": {**certified, "tokenLifetime": "24h"}}, reconcile={"rolloverLead": "5m"}
    )
    change = reconfigure(running, loaded)
    assert change.refused == (
        "reconcile.rolloverLead: reconcile.rolloverLead (5m) must be less than half of "
        "apps.main.tokenLifetime (2m)",
    )
