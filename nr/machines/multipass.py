"""``MultipassInventory``: hosts built from ``multipass list --format json``.

Options (``config.yaml`` of an inventory folder)::

    inventory:
      plugin: MultipassInventory
      options:
        name_prefix: vm          # only VMs whose names start with this
        groups: {vm1: [servers, db]}   # explicit groups per VM (default: each component's
                                       # default roles, e.g. the first VM a server)
        username: ubuntu         # the default
        key_filename: ~/.ssh/id_ed25519
        known_hosts: known_hosts
        network: 192.168.64.0/24 # pick the address in this network (default: the first address
                                 # outside the networks components create, such as pod networks)

``groups.yaml`` and ``defaults.yaml`` beside ``config.yaml`` are read as in SimpleInventory.
Every VM must be Running: a stopped VM has no address, and silently leaving it out would change
placements that follow the host order.
"""

from __future__ import annotations

import ipaddress
import json
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nornir.core.inventory import Inventory

from nr.contract import Schema
from nr.inventory.build import build_inventory
from nr.inventory.validate import InventoryError, RawInventory, load_yaml
from nr.registry import registry
from nr.text import command


def multipass_list(binary: str = "multipass") -> dict[str, Any]:
    """Run ``multipass list --format json`` and return the parsed document."""
    exe = shutil.which(binary)
    if exe is None:
        raise InventoryError(
            [f"multipass: '{binary}' not found on PATH (install Multipass or use hosts.yaml)"]
        )
    proc = subprocess.run(
        [exe, "list", "--format", "json"], capture_output=True, text=True, timeout=60, check=False
    )
    if proc.returncode != 0:
        raise InventoryError([f"multipass list failed (exit {proc.returncode}): {proc.stderr.strip()}"])
    try:
        doc = json.loads(proc.stdout)
    except json.JSONDecodeError as exc:
        raise InventoryError([f"multipass list: output is not JSON: {exc}"]) from None
    if not isinstance(doc, dict) or not isinstance(doc.get("list"), list):
        raise InventoryError(["multipass list: unexpected output (no 'list' array)"])
    return doc


def pick_address(
    addresses: list[str], network: str | None = None, internal: Sequence[str] = ()
) -> str | None:
    """The VM's own address: in ``network`` if given, else the first one outside the ``internal``
    networks (those components create on the hosts, e.g. pod networks)."""
    net = ipaddress.ip_network(network, strict=False) if network else None
    skip = [ipaddress.ip_network(n, strict=False) for n in internal]
    for a in addresses:
        try:
            ip = ipaddress.ip_address(a)
        except ValueError:
            continue  # "N/A" and friends
        if net is not None:
            if ip in net:
                return a
        elif not any(ip in n for n in skip):
            return a
    return None


def hosts_from_list(doc: dict[str, Any], options: dict[str, Any], schema: Schema) -> dict[str, Any]:
    """Raw ``hosts.yaml``-shaped data from a ``multipass list`` document."""
    if "servers" in options:
        raise InventoryError(
            [
                "multipass: option 'servers' is gone: name each VM's groups with 'groups: {vm1: [...]}' "
                "(without it, every component's default roles apply)"
            ]
        )
    prefix = str(options.get("name_prefix", ""))
    vms = sorted(
        (v for v in doc["list"] if str(v.get("name", "")).startswith(prefix)), key=lambda v: v["name"]
    )
    if not vms:
        raise InventoryError([f"multipass: no VM whose name starts with '{prefix}'"])
    problems = []
    explicit: dict[str, list[str]] | None = options.get("groups")
    hosts: dict[str, Any] = {}
    for i, vm in enumerate(vms):
        name = vm["name"]
        if vm.get("state") != "Running":
            problems.append(
                f"multipass: VM '{name}' is {vm.get('state', 'in an unknown state')}; start it "
                f"({command('multipass', 'start', name)}) or leave it out with name_prefix"
            )
            continue
        addr = pick_address(
            [str(a) for a in vm.get("ipv4") or []], options.get("network"), schema.internal_networks
        )
        if addr is None:
            problems.append(f"multipass: VM '{name}' has no usable IPv4 address ({vm.get('ipv4')})")
            continue
        if explicit is not None:
            groups = list(explicit.get(name, []))
        else:
            groups = schema.default_groups(i, len(vms))
        host: dict[str, Any] = {
            "hostname": addr,
            "groups": groups,
            "username": options.get("username", "ubuntu"),
        }
        hosts[name] = host
    if problems:
        raise InventoryError(problems)
    return hosts


class MultipassInventory:
    """Nornir inventory plugin for Multipass VMs."""

    def __init__(self, base_dir: str = ".", multipass: str = "multipass", **options: Any) -> None:
        self.base_dir = Path(base_dir).expanduser().resolve()
        self.binary = multipass
        self.options = options

    def load(self) -> Inventory:
        schema = registry().schema
        hosts = hosts_from_list(multipass_list(self.binary), self.options, schema)
        defaults = load_yaml(self.base_dir / "defaults.yaml", required=False)
        if not isinstance(defaults, dict):
            defaults = {}
        conn: dict[str, Any] = {}
        for key in ("key_filename", "known_hosts"):
            if self.options.get(key):
                conn[key] = self.options[key]
        if conn:
            fabric = defaults.setdefault("connection_options", {}).setdefault("fabric", {})
            fabric.setdefault("extras", {}).update(conn)
        raw = RawInventory(
            hosts=hosts,
            groups=load_yaml(self.base_dir / "groups.yaml", required=False),
            defaults=defaults,
            hosts_source=f"multipass ({self.base_dir / 'config.yaml'})",
            groups_source=str(self.base_dir / "groups.yaml"),
            defaults_source=str(self.base_dir / "defaults.yaml"),
            base_dir=self.base_dir,
        )
        return build_inventory(raw, schema)
