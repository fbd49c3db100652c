"""The daemon's config, built as data, checked by the config model, written as JSON.

A test, benchmark or the demo says what it wants as keyword arguments and a nested
`changes` mapping; `config_data` builds the document (the file's own camelCase
keys), `write_config` validates it with `orchestrator.config.Config` (a typo or an
invalid value fails here, naming the field, not later in the child) and writes it
as JSON, which the YAML loader reads. A change later is a new document merged from
the old one, never an edit of the file's text.

The metrics endpoint binds port 0 by default: the daemon logs `metrics.listening`
with the real address (`Daemon.metrics_url`), so no port is ever picked here and
handed over.

Must never: hold a secret value (only `{env: NAME}` references), or pick a port.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from orchestrator.config import Config

#: The values the harness's children are given for the references in every config
#: it writes (the customer's credentials: `credentials()`).
CUSTOMER_ID_VARIABLE = "HARNESS_CUSTOMER_ID"
CUSTOMER_SECRET_VARIABLE = "HARNESS_CUSTOMER_SECRET"

Document = dict[str, Any]


def merged(base: Mapping[str, Any], changes: Mapping[str, Any]) -> Document:
    """`base` with `changes` applied: mappings merge key by key, anything else (a
    value, a list, None) replaces."""
    out: Document = dict(base)
    for key, value in changes.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merged(out[key], value)
        else:
            out[key] = value
    return out


def config_data(
    apps: Mapping[str, str],
    base_url: str,
    *,
    state: Mapping[str, Any] | None = None,
    resync: str = "2s",
    backoff: tuple[str, str] = ("1s", "5s"),
    watch_interval: str = "100ms",
    metrics: bool = True,
    log_level: str = "info",
    drain: str = "5s",
    customer: tuple[str, str] = (CUSTOMER_ID_VARIABLE, CUSTOMER_SECRET_VARIABLE),
    changes: Mapping[str, Any] | None = None,
) -> Document:
    """A daemon config for App ID profiles `apps` (name -> App ID) served at
    `base_url`, with the state in ./state and the manifests in ./recordings.d
    (relative to the file), JSON logs, metrics on 127.0.0.1:0, and the short
    intervals a test wants (a resync every 2 s, a 100 ms watch debounce). The
    customer's ID and secret are `{env: ...}` references to the variables `customer`
    names (`credentials()` gives them values); `changes` is merged in last."""
    data: Document = {
        "apps": {
            name: {
                "appId": app_id,
                "customerId": {"env": customer[0]},
                "customerSecret": {"env": customer[1]},
                "baseUrl": base_url,
            }
            for name, app_id in apps.items()
        },
        "state": dict(state) if state is not None else {"dir": "./state"},
        "manifests": {"dir": "./recordings.d", "watch": True, "watchInterval": watch_interval},
        "logging": {"level": log_level, "format": "json"},
        "metrics": {"address": "127.0.0.1:0" if metrics else None},
        "reconcile": {
            "resyncInterval": resync,
            "restartBackoff": {"initial": backoff[0], "max": backoff[1]},
        },
        "shutdown": {"drainTimeout": drain},
    }
    return merged(data, changes or {})


def credentials(customer_id: str, customer_secret: str) -> dict[str, str]:
    """The environment that the references of `config_data` read."""
    return {CUSTOMER_ID_VARIABLE: customer_id, CUSTOMER_SECRET_VARIABLE: customer_secret}


def write_config(path: Path, data: Mapping[str, Any], *, comment: str = "") -> Path:
    """Validate `data` with the config model (relative paths against `path`'s
    directory), then write it to `path` as JSON, after `comment` as `# ` lines (YAML
    comments); returns `path`."""
    Config.model_validate(dict(data), context={"base_dir": path.parent, "environ": {}})
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    header = "".join(f"# {line}\n".replace("# \n", "#\n") for line in comment.splitlines())
    tmp.write_text(header + json.dumps(data, indent=1) + "\n", encoding="utf-8")
    tmp.replace(path)  # whole or not at all: a daemon may read it at any time
    return path
