"""``nr run`` options that components declare (:class:`nr.contract.RunOption`): a flag that sets one of
the component's data keys on every host for that run, over the inventory's value.

The options are read from the catalog's contracts only when ``nr run`` parses its arguments or shows its
help. A value is checked by the data key's :class:`~nr.contract.Field` (and its choices), and a play that
runs no component declaring the option refuses it: both before any host is touched (exit 2).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import click

from nr.errors import NrError
from nr.registry import registry

if TYPE_CHECKING:  # `nr --help` and `nr inventory` import this module: no Nornir there
    from nornir.core import Nornir

RESERVED_FLAGS = frozenset(
    {"-i", "--inventory", "--limit", "--dry-run", "--diff", "--json", "--workers", "-h", "--help"}
)


def option_params() -> list[click.Parameter]:
    """The ``nr run`` options the components declare (their contracts' ``run_options``)."""
    params: list[click.Parameter] = []
    for flag, (opt, owners) in registry().run_options().items():
        if flag in RESERVED_FLAGS or not flag.startswith("--"):
            raise NrError(f"run option {flag} of {', '.join(owners)} clashes with nr run's own options")
        kind = click.Choice(list(opt.choices)) if opt.choices else click.STRING
        help_text = f"{opt.help} ({', '.join(owners)})"
        params.append(click.Option([flag, opt.key], type=kind, default=None, help=help_text))
    return params


class RunCommand(click.Command):
    """``nr run``: its own options and those the catalog's components declare (loaded when used)."""

    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        params = super().get_params(ctx)
        return params[:-1] + option_params() + params[-1:]  # --help stays last


def set_run_options(nr: Nornir, play: str, components: Iterable[str], given: dict[str, str]) -> list[str]:
    """Problems with the run options given (naming the flag) to a play of ``components`` (names); when
    there are none, each option's data key is set on every host."""
    options = {opt.key: (flag, owners) for flag, (opt, owners) in registry().run_options().items()}
    names = set(components)
    problems = []
    for key, value in given.items():
        flag, owners = options[key]
        field = registry().schema.data.get(key)
        problem = field.check(value) if field is not None and field.check is not None else None
        if not names & set(owners):
            problems.append(
                f"{flag}: play {play} runs no component that takes it (it is an option of {', '.join(owners)})"
            )
        elif problem:
            problems.append(f"{flag} {value}: {problem}")
    if not problems:
        for host in nr.inventory.hosts.values():
            host.data.update(given)
    return problems
