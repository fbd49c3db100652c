"""What a SIGHUP changes in a running daemon's config.

`systemctl reload` re-reads the config file (and the environment) along with the
manifests. Keys the daemon can take on live are taken: `logging.*`,
`manifests.*`, `reconcile.*` but `concurrency`, `queryShare` and `failoverGrace`
(the resync interval, the restart backoff, stop on shutdown), and `shutdown.*`.
Every other key (`apps.*`: App IDs, credentials, endpoints, rate limits; `state.*`;
`metrics.*`; `notifications.*`; `retry.*`; `replica.*`; those three of `reconcile`)
needs a restart: a change to one is named in
a warning and the running value is kept. A config that does not load is one error
in the log, and the running config is kept whole; so is one whose live keys break a
rule between keys with the running values of the others (a `rolloverLead` that is
not less than half the running `tokenLifetime`): `refused` says which.

This module only compares: it is pure, and the daemon applies what it returns.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from orchestrator.config import Config
from orchestrator.secrets import CredentialSecret, EnvSecret, FileSecret, LiteralSecret

#: Sections whose every key the daemon takes on live.
LIVE_SECTIONS = ("logging", "manifests", "shutdown", "reconcile")
#: Keys of a live section that still need a restart (dotted, as the file spells them).
RESTART_KEYS = frozenset(
    {"reconcile.concurrency", "reconcile.queryShare", "reconcile.failoverGrace"}
)


@dataclass(frozen=True)
class Reconfiguration:
    config: Config  # the config to run with from now on
    changed: tuple[str, ...]  # keys taken on live (dotted, as the file spells them)
    restart_needed: tuple[str, ...]  # keys whose new value waits for a restart
    # The rules between keys the config put together breaks: nothing is taken on then.
    refused: tuple[str, ...] = ()


def reconfigure(running: Config, loaded: Config) -> Reconfiguration:
    """The config to run with after a reload from `running` to `loaded`: the live
    sections of `loaded`, every other key as `running` has it."""
    before, after = dict(_leaves(running)), dict(_leaves(loaded))
    differ = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    live = [k for k in differ if k.split(".")[0] in LIVE_SECTIONS and k not in RESTART_KEYS]
    waiting = [k for k in differ if k not in live]
    update: dict[str, Any] = {
        "logging": loaded.logging,
        "manifests": loaded.manifests,
        "shutdown": loaded.shutdown,
        "reconcile": loaded.reconcile.model_copy(
            update={
                "concurrency": running.reconcile.concurrency,
                "query_share": running.reconcile.query_share,
                "failover_grace": running.reconcile.failover_grace,
            }
        ),
    }
    merged = running.model_copy(update=update)
    return Reconfiguration(merged, tuple(live), tuple(waiting), tuple(merged.violations()))


def _leaves(model: BaseModel, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted key as the file spells it, value) of every leaf of `model`; values are
    compared, never shown (a secret reference is a value here)."""
    for name, info in type(model).model_fields.items():
        key = f"{prefix}{info.alias or name}"
        value = getattr(model, name)
        if isinstance(value, BaseModel) and not _is_leaf(value):
            yield from _leaves(value, f"{key}.")
        elif isinstance(value, Mapping):
            for entry, item in value.items():
                if isinstance(item, BaseModel):
                    yield from _leaves(item, f"{key}.{entry}.")
                else:
                    yield f"{key}.{entry}", item
        else:
            yield key, value


def _is_leaf(value: BaseModel) -> bool:
    """A secret reference (`{env: NAME}`) is one value, not a section."""
    return isinstance(value, EnvSecret | FileSecret | CredentialSecret | LiteralSecret)
