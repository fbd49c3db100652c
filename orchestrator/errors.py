"""The one root of everything the orchestrator raises on purpose.

A caller (the CLI, the daemon, a script using the package) can catch
`OrchestratorError` to catch every failure the package reports, and the
subtrees below to tell them apart. Each subtree is drawn in its own module's
docstring::

    OrchestratorError
    ├── AgoraError                 orchestrator.agora.errors: a failed API call
    ├── StoreError                 orchestrator.state.errors: the state store
    ├── ConfigError                orchestrator.config: the daemon config
    ├── SecretError                orchestrator.secrets: a secret reference
    ├── TranslationError           orchestrator.reconcile.translate: a manifest
    │                              that cannot become a request (a bug)
    ├── TokenError                 orchestrator.agora.token: a token that cannot be
    │                              built or read
    ├── SnapshotError              orchestrator.manifest.snapshot: the daemon's
    │                              manifest cache on disk cannot be used
    └── UnresolvedSecretError,     orchestrator.agora.wire: a request sent before
        EmptySecretError           its secrets were resolved, or with an empty one

Exceptions that stay inside one module (a parse step's signal, a refused emulator
request) need not hang here. This module is a leaf: it imports nothing of ours.
"""

from __future__ import annotations


class OrchestratorError(Exception):
    """Something the orchestrator reports: its message is one line for people, and
    never carries a secret value."""


__all__ = ["OrchestratorError"]
