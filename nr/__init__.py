"""nr: the bare-metal orchestrator engine."""

__version__ = "0.1.0"
