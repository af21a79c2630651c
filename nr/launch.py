"""The ``nr`` console script: the start-up hooks go in before any other module of nr is imported.

:mod:`nr.dataclass_code` keeps the methods ``@dataclass`` writes, but only for classes defined after
it is installed; :func:`nr.cli.main` installed it once ``nr.cli`` and what it imports (the registry,
the contract, the config, the secrets...) had defined theirs: ~40 % of importing ``nr.cli`` (48-56 ms
-> 28-32 ms on the development machine, ``python -X importtime``). This module imports nothing of
nr's but the two hooks, then the CLI.
"""

from __future__ import annotations


def main() -> None:
    from nr import dataclass_code, import_hooks

    dataclass_code.install()
    import_hooks.install()
    from nr.cli import main as cli_main

    cli_main()
