"""The ``nr`` command group: lazy commands (``lab``, ``vms``, ``status``, ``backup``, ``restore`` load when used) and
the catalog's plays and components in ``nr --help``."""

from __future__ import annotations

import click

from nr.registry import registry


class NrGroup(click.Group):
    """The ``nr`` group: ``lab``, ``vms``, ``status``, ``backup`` and ``restore`` live outside the engine core and
    load when used."""

    LAZY = {
        "lab": "nr.machines.cli:lab",
        "status": "nr.status_cli:status",
        "vms": "nr.machines.cli:vms",
        "backup": "nr.backup.cli:backup",
        "restore": "nr.backup.cli:restore",
    }

    # The help text of the lazy commands whose modules are heavy to import, for `nr --help` (held equal
    # to the commands' own help by tests/unit/test_startup.py).
    HELP = {
        "status": "Read-only: the site at a glance, in one round trip per host.",
        "backup": "Back up the site's data: every component that keeps data (in the site play's order), the "
        "inventory's files and where each secret is kept, into DEST/<site>-<UTC time>/ with a manifest "
        "and the sha256 of every file.",
        "restore": "Restore the site's data from BACKUP (a folder nr backup made): checks every file's sha256 "
        "and that the backup fits the inventory, shows the plan, asks (or --yes), then restores each "
        "component.",
    }

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *self.LAZY])

    def format_help_text(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The group's help, then the plays and components of the catalog (the engine names none)."""
        super().format_help_text(ctx, formatter)
        reg = registry()
        with formatter.section("Plays"):
            formatter.write_dl([(name, ", ".join(members)) for name, members in reg.plays.items()])
        with formatter.section("Components"):
            formatter.write_dl([(e.name, e.description) for e in reg.entries.values()])

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """As click does, without importing a lazy command's module only to print its short help."""
        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max(map(len, names))
        rows = []
        for name in names:
            if name in self.HELP:
                rows.append((name, click.Command(name, help=self.HELP[name]).get_short_help_str(limit)))
                continue
            cmd = self.get_command(ctx, name)
            if cmd is not None and not cmd.hidden:
                rows.append((name, cmd.get_short_help_str(limit)))
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.LAZY:
            import importlib

            module, _, attr = self.LAZY[cmd_name].partition(":")
            cmd: click.Command = getattr(importlib.import_module(module), attr)
            return cmd
        return super().get_command(ctx, cmd_name)
