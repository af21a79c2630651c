"""Multipass VMs for a real site: ``nr vms up`` / ``nr vms down`` (the seed's mp-up.sh, done right).

``up`` launches PREFIX1..PREFIXN (reusing VMs that exist), with cloud-init installing the operator's
SSH public key for user ``ubuntu``. Each VM's SSH host key is then read through ``multipass exec``
(a channel Multipass already authenticates) into a known_hosts file, so the first SSH connection is
checked strictly. Finally an inventory folder is written that uses the ``MultipassInventory``
plugin: addresses are read from ``multipass list`` on every run, so a VM that got a new DHCP
address keeps working.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console

from nr.errors import NrError
from nr.machines.labfiles import write_generated_secrets
from nr.machines.multipass import pick_address
from nr.registry import registry


@dataclass(frozen=True)
class VmSpec:
    count: int
    prefix: str
    cpus: int
    memory: str
    disk: str
    image: str
    ssh_key: Path

    def names(self) -> list[str]:
        return [f"{self.prefix}{i}" for i in range(1, self.count + 1)]


def multipass(*args: str, timeout: float = 900) -> str:
    exe = shutil.which("multipass")
    if exe is None:
        raise NrError("multipass is not installed (https://multipass.run); or write hosts.yaml for your VMs")
    proc = subprocess.run([exe, *args], capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise NrError(f"multipass {' '.join(args[:2])} failed: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout


def cloud_init(public_key: str) -> str:
    """cloud-init user-data that authorises ``public_key`` for the default user (pure)."""
    doc = {
        "ssh_authorized_keys": [public_key.strip()],
        "package_update": False,
        "ssh_pwauth": False,
    }
    return "#cloud-config\n" + yaml.safe_dump(doc, sort_keys=False)


def inventory_config(prefix: str, key_file: Path) -> dict[str, Any]:
    """config.yaml of the written inventory folder (pure)."""
    return {
        "inventory": {
            "plugin": "MultipassInventory",
            "options": {
                "name_prefix": prefix,
                "username": "ubuntu",
                "key_filename": str(key_file),
                "known_hosts": "../known_hosts",
            },
        }
    }


def vms_up(spec: VmSpec, state_dir: Path, log: Console | None = None) -> Path:
    if not spec.ssh_key.exists():
        raise NrError(f"--ssh-key {spec.ssh_key}: not found (create one with ssh-keygen -t ed25519)")
    if not spec.ssh_key.name.endswith(".pub"):
        raise NrError(f"--ssh-key {spec.ssh_key}: give the PUBLIC key (.pub); the private key stays with you")
    private_key = spec.ssh_key.with_suffix("")
    public = spec.ssh_key.read_text().strip()
    state_dir.mkdir(parents=True, exist_ok=True)
    user_data = state_dir / "cloud-init.yaml"
    user_data.write_text(cloud_init(public))
    existing = {v["name"]: v for v in json.loads(multipass("list", "--format", "json"))["list"]}
    for name in spec.names():
        vm = existing.get(name)
        if vm is None:
            if log:
                log.print(f"Launching {name} ({spec.image}, {spec.cpus} CPU, {spec.memory}, {spec.disk})…")
            multipass(
                "launch",
                spec.image,
                "--name",
                name,
                "--cpus",
                str(spec.cpus),
                "--memory",
                spec.memory,
                "--disk",
                spec.disk,
                "--cloud-init",
                str(user_data),
            )
        elif vm.get("state") != "Running":
            multipass("start", name)
    listing = json.loads(multipass("list", "--format", "json"))["list"]
    by_name = {v["name"]: v for v in listing}
    known = []
    for name in spec.names():
        addr = pick_address(
            [str(a) for a in by_name[name].get("ipv4") or []], None, registry().schema.internal_networks
        )
        if addr is None:
            raise NrError(f"VM {name} has no IPv4 address yet; run nr vms up again in a minute")
        hostkey = multipass("exec", name, "--", "cat", "/etc/ssh/ssh_host_ed25519_key.pub").split()
        known.append(f"{addr} {hostkey[0]} {hostkey[1]}\n")
    (state_dir / "known_hosts").write_text("".join(known))
    inv = state_dir / "inventory"
    inv.mkdir(parents=True, exist_ok=True)
    (inv / "config.yaml").write_text(
        "# Written by `nr vms up`: hosts come from `multipass list` on every run.\n"
        + yaml.safe_dump(inventory_config(spec.prefix, private_key), sort_keys=False)
    )
    schema = registry().schema
    defaults = inv / "defaults.yaml"
    if not defaults.exists():
        data = {"site_name": spec.prefix, **{s.key: f"file:../secrets/{s.key}" for s in schema.secrets}}
        defaults.write_text(
            "# Site settings for the Multipass VMs (edit freely; nr vms up keeps this file).\n"
            + yaml.safe_dump({"data": data}, sort_keys=False)
        )
    write_generated_secrets(state_dir, schema)
    return inv


def vms_down(prefix: str, count: int, log: Console | None = None) -> None:
    names = [f"{prefix}{i}" for i in range(1, count + 1)]
    existing = {v["name"] for v in json.loads(multipass("list", "--format", "json"))["list"]}
    gone = [n for n in names if n in existing]
    if gone:
        multipass("delete", "--purge", *gone)
    if log:
        log.print(f"Deleted {', '.join(gone) if gone else 'nothing'}")
