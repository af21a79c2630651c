"""Rich consoles made on first use: a command that prints nothing through Rich (``--help``, ``--json``,
``inventory --json``) never imports it (Rich costs tens of milliseconds at every start)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from rich.console import Console


class _LazyConsole:
    """Stands for a ``rich.console.Console(**options)`` that is created when first used."""

    def __init__(self, **options: Any) -> None:
        self._options = options
        self._console: Console | None = None

    def __getattr__(self, name: str) -> Any:
        if self._console is None:
            from rich.console import Console

            self._console = Console(**self._options)
        return getattr(self._console, name)


def lazy_console(**options: Any) -> Console:
    """A console with ``options`` (as ``rich.console.Console`` takes them), made on first use."""
    return cast("Console", _LazyConsole(**options))
