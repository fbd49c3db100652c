"""The long-running daemon's process plumbing: systemd notifications, metrics, health.

This package sits between the reconciler and the operating system. It must never
make a reconcile decision, and its `__init__` imports nothing, so importing one
submodule (for example `orchestrator.daemon.notify`) does not pull in aiohttp or
prometheus-client.
"""
