"""orchestrator: a declarative orchestrator for Agora Cloud Recording."""

__version__ = "0.1.0.dev0"
