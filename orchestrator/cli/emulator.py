"""CLI commands (filled in by their issue)."""

from orchestrator.cli import cli  # noqa: F401
