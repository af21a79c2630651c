"""Consoles made on first use: a command that prints nothing (``--help``, ``--json``, ``inventory
--json``) never imports Rich, and one whose output is no terminal prints through
:class:`nr.plain.PlainConsole` (Rich costs tens of milliseconds at every start)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from rich.console import Console

    from nr.plain import PlainConsole


class _LazyConsole:
    """Stands for a ``rich.console.Console(**options)`` that is created when first used; for a stream
    that is no terminal (seen then), a :class:`~nr.plain.PlainConsole` with the same options."""

    def __init__(self, **options: Any) -> None:
        self._options = options
        self._console: Console | PlainConsole | None = None

    def __getattr__(self, name: str) -> Any:
        if self._console is None:
            from nr.plain import PlainConsole, wants_rich

            if wants_rich(bool(self._options.get("stderr"))) or "file" in self._options:
                from rich.console import Console

                self._console = Console(**self._options)
            else:
                self._console = PlainConsole(**self._options)
        return getattr(self._console, name)


def lazy_console(**options: Any) -> Console:
    """A console with ``options`` (as ``rich.console.Console`` takes them), made on first use."""
    return cast("Console", _LazyConsole(**options))
