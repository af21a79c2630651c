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

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nornir import InitNornir
from nornir.core import Nornir
from nornir.core.exceptions import PluginNotRegistered

from nr.inventory.validate import InventoryError, load_yaml

# Nornir logs every failed task with its traceback; with logging disabled those records would reach
# Python's last-resort handler (stderr, unredacted). The run report shows failures instead.
logging.getLogger("nornir").addHandler(logging.NullHandler())

DEFAULT_INVENTORY = "inventory"
DEFAULT_WORKERS = 20
CONFIG_KEYS = {"inventory", "runner"}


@dataclass(frozen=True)
class Settings:
    inventory: Path
    workers: int | None = None
    dry_run: bool = False


def _read_config(folder: Path) -> dict[str, Any]:
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


def init_nornir(settings: Settings) -> Nornir:
    """Validate and load the inventory; raises :class:`InventoryError` (exit 2) on bad input."""
    folder = settings.inventory.expanduser()
    if not folder.exists():
        raise InventoryError([f"{folder}: inventory folder not found"])
    if not folder.is_dir():
        raise InventoryError([f"{folder}: must be an inventory folder (with hosts.yaml), not a file"])
    cfg = _read_config(folder)
    inv = dict(cfg.get("inventory") or {})
    plugin = inv.get("plugin", "NrYAMLInventory")
    options = dict(inv.get("options") or {})
    if plugin == "NrYAMLInventory":
        options.setdefault("path", str(folder))
    else:
        options.setdefault("base_dir", str(folder))
    runner = dict(cfg.get("runner") or {})
    runner_options = dict(runner.get("options") or {})
    env_workers = os.environ.get("NR_WORKERS")
    workers = settings.workers or (int(env_workers) if env_workers and env_workers.isdigit() else None)
    if workers:
        runner_options["num_workers"] = workers
    runner_options.setdefault("num_workers", DEFAULT_WORKERS)
    try:
        return InitNornir(
            inventory={"plugin": plugin, "options": options},
            runner={"plugin": runner.get("plugin", "threaded"), "options": runner_options},
            logging={"enabled": False},
            dry_run=settings.dry_run,
        )
    except PluginNotRegistered as exc:
        raise InventoryError([f"{folder / 'config.yaml'}: unknown plugin: {exc}"]) from None
    except TypeError as exc:
        raise InventoryError([f"{folder / 'config.yaml'}: bad plugin options: {exc}"]) from None
