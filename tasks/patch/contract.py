"""What the patch play reads from the inventory, and its ``nr run`` option ``--reboot``."""

from __future__ import annotations

from nr import formats
from nr.contract import Contract, Field, Kind, RunOption

REBOOT = "patch_reboot"
UPGRADE = "patch_upgrade"
REBOOT_TIMEOUT = "patch_reboot_timeout"
DRAIN_TIMEOUT = "patch_drain_timeout"
APT_TIMEOUT = "patch_apt_timeout"

REBOOT_CHOICES = ("needed", "always")
UPGRADE_CHOICES = ("upgrade", "full-upgrade")


def _positive(value: object) -> str | None:
    return None if isinstance(value, int) and value > 0 else "must be a positive number of seconds"


CONTRACT = Contract(
    data={
        REBOOT: Field(
            Kind.STR,
            "reboot after the upgrade: needed (only when /var/run/reboot-required exists, the default) or always",
            formats.one_of(REBOOT_CHOICES),
        ),
        UPGRADE: Field(
            Kind.STR,
            "apt-get upgrade (default: never removes or adds a package) or full-upgrade (may, e.g. a new kernel)",
            formats.one_of(UPGRADE_CHOICES),
        ),
        REBOOT_TIMEOUT: Field(
            Kind.INT,
            "seconds a rebooted host has to answer SSH again and finish booting (default 600)",
            _positive,
        ),
        DRAIN_TIMEOUT: Field(
            Kind.INT,
            "seconds kubectl drain may wait for evictions (PodDisruptionBudgets; default 300)",
            _positive,
        ),
        APT_TIMEOUT: Field(
            Kind.INT, "seconds apt-get update and upgrade may take on a host (default 1800)", _positive
        ),
    },
    run_options=[
        RunOption(
            "--reboot",
            REBOOT,
            "reboot every patched host (always) or only those that ask for it (needed: /var/run/reboot-required)",
            REBOOT_CHOICES,
        )
    ],
)
