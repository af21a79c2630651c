"""``NrYAMLInventory``: Nornir SimpleInventory files, validated before anything connects.

Same files and format as Nornir's SimpleInventory (``hosts.yaml``, ``groups.yaml``,
``defaults.yaml``), but duplicate keys, unknown fields, wrong types, plain-text secrets and role
mistakes are refused with a message naming the file, host and field.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from nr.inventory.validate import RawInventory, load_yaml

if TYPE_CHECKING:
    from nornir.core.inventory import Inventory


def read_raw(path: Path) -> RawInventory:
    """Read the three SimpleInventory files of folder ``path`` (groups and defaults are optional)."""
    hosts_file, groups_file, defaults_file = path / "hosts.yaml", path / "groups.yaml", path / "defaults.yaml"
    return RawInventory(
        hosts=load_yaml(hosts_file, required=True),
        groups=load_yaml(groups_file, required=False),
        defaults=load_yaml(defaults_file, required=False),
        hosts_source=str(hosts_file),
        groups_source=str(groups_file),
        defaults_source=str(defaults_file),
        base_dir=path.resolve(),
    )


class NrYAMLInventory:
    """Nornir inventory plugin reading SimpleInventory YAML files from one folder."""

    def __init__(self, path: str = "inventory", **_: object) -> None:
        self.path = Path(path).expanduser()

    def load(self) -> Inventory:
        from nr.inventory.build import build_inventory

        return build_inventory(read_raw(self.path))
