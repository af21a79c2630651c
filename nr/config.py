"""Open an inventory folder as a Nornir object.

An inventory folder holds Nornir SimpleInventory files (``hosts.yaml``, ``groups.yaml``,
``defaults.yaml``). It may also hold a ``config.yaml`` in Nornir's configuration format to pick
another inventory plugin (e.g. ``MultipassInventory``) or runner options::

    inventory:
      plugin: MultipassInventory
      options: {name_prefix: vm}
    runner:
      options: {num_workers: 20}

Relative paths in plugin options are resolved from the inventory folder.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nr.errors import InventoryError

if TYPE_CHECKING:
    from nornir.core import Nornir

DEFAULT_INVENTORY = "inventory"
DEFAULT_WORKERS = 20
MAX_WORKERS = 200
CONFIG_KEYS = {"inventory", "runner"}


@dataclass(frozen=True)
class Settings:
    inventory: Path
    workers: int | None = None
    dry_run: bool = False


def _read_config(folder: Path) -> dict[str, Any]:
    from nr.inventory.loader import load_yaml

    path = folder / "config.yaml"
    cfg = load_yaml(path, required=False)
    if not isinstance(cfg, dict):
        raise InventoryError([f"{path}: must be a mapping"])
    issues = [
        f"{path}: unknown section '{k}' (allowed: {', '.join(sorted(CONFIG_KEYS))})"
        for k in cfg
        if k not in CONFIG_KEYS
    ]
    for section in ("inventory", "runner"):
        sec = cfg.get(section)
        if sec is not None and not isinstance(sec, dict):
            issues.append(f"{path}: {section}: must be a mapping")
        elif sec and not isinstance(sec.get("options", {}), dict):
            issues.append(f"{path}: {section}.options: must be a mapping")
    if issues:
        raise InventoryError(issues)
    return cfg


def _open_folder(settings: Settings) -> tuple[Path, dict[str, Any], dict[str, Any]]:
    """The inventory folder, its config.yaml, and the inventory section with the plugin and its options."""
    folder = settings.inventory.expanduser()
    if not folder.exists():
        raise InventoryError([f"{folder}: inventory folder not found"])
    if not folder.is_dir():
        raise InventoryError([f"{folder}: must be an inventory folder (with hosts.yaml), not a file"])
    cfg = _read_config(folder)
    inv = dict(cfg.get("inventory") or {})
    inv["plugin"] = inv.get("plugin", "NrYAMLInventory")
    options = dict(inv.get("options") or {})
    if inv["plugin"] == "NrYAMLInventory":
        options.setdefault("path", str(folder))
    else:
        options.setdefault("base_dir", str(folder))
    inv["options"] = options
    return folder, cfg, inv


def inventory_rows(settings: Settings) -> list[dict[str, Any]]:
    """What ``nr inventory`` shows. Inventory files read by nr's own plugin are resolved without
    building Nornir's objects (nr.inventory.resolve: a fast start); another plugin goes through Nornir."""
    _, _, inv = _open_folder(settings)
    transform = inv.get("transform_function") or os.environ.get("NORNIR_INVENTORY_TRANSFORM_FUNCTION")
    if inv["plugin"] != "NrYAMLInventory" or transform:
        from nr import views

        return views.inventory_rows(init_nornir(settings))
    from nr.inventory import resolve
    from nr.inventory.validate import validate
    from nr.inventory.yaml_plugin import read_raw
    from nr.registry import registry

    raw = read_raw(Path(inv["options"]["path"]).expanduser())
    schema = registry().schema
    validate(raw, schema)
    return resolve.inventory_rows(raw, schema)


def init_nornir(settings: Settings) -> Nornir:
    """Validate and load the inventory; raises :class:`InventoryError` (exit 2) on bad input.

    The Nornir object is built directly (not with ``InitNornir``): our own inventory plugins and
    Nornir's runners are found without scanning the entry points of every installed package
    (:mod:`nr.plugins`); only a plugin name nr does not know falls back to Nornir's registers.
    """
    from nornir.core import Nornir
    from nornir.core.configuration import Config
    from nornir.core.exceptions import PluginNotRegistered
    from nornir.core.state import GlobalState

    from nr import plugins

    _quiet_nornir_logs()
    folder, cfg, inv = _open_folder(settings)
    plugin, options = inv["plugin"], inv["options"]
    runner = dict(cfg.get("runner") or {})
    runner_options = dict(runner.get("options") or {})
    env_workers = os.environ.get("NR_WORKERS")
    workers = settings.workers or (int(env_workers) if env_workers and env_workers.isdigit() else None)
    if workers:
        runner_options["num_workers"] = workers
    try:
        config = Config.from_dict(
            inventory={**inv, "plugin": plugin, "options": options},
            runner={"plugin": runner.get("plugin", "threaded"), "options": runner_options},
            logging={"enabled": False},
        )
        inventory = plugins.load_inventory(config)
        runner_options.setdefault("num_workers", default_workers(len(inventory.hosts)))
        return Nornir(
            inventory=inventory,
            runner=plugins.runner(config.runner.plugin, runner_options),
            config=config,
            data=GlobalState(dry_run=settings.dry_run),
        )
    except PluginNotRegistered as exc:
        raise InventoryError([f"{folder / 'config.yaml'}: unknown plugin: {exc}"]) from None
    except TypeError as exc:
        raise InventoryError([f"{folder / 'config.yaml'}: bad plugin options: {exc}"]) from None


def _quiet_nornir_logs() -> None:
    """Nornir logs every failed task with its traceback; with logging disabled those records would reach
    Python's last-resort handler (stderr, unredacted). The run report shows failures instead."""
    import logging

    log = logging.getLogger("nornir")
    if not any(isinstance(h, logging.NullHandler) for h in log.handlers):
        log.addHandler(logging.NullHandler())


def default_workers(hosts: int) -> int:
    """Hosts handled at once when nothing says otherwise: every host (a host waits on its network,
    not on this machine's CPU), at least DEFAULT_WORKERS, at most MAX_WORKERS."""
    return max(DEFAULT_WORKERS, min(hosts, MAX_WORKERS))
