"""What ``nr lab up`` writes: the remembered options, the inventory documents and generated secrets."""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nr.contract import Schema
from nr.machines.image import IMAGE
from nr.secrets import write_secret_file

USER = "nr"


@dataclass(frozen=True)
class LabOptions:
    """Choices made at `nr lab up`, remembered in <state dir>/lab.json for later `up`s: data keys set
    by the components' lab options (e.g. a local k3s binary) and whether the Docker socket is mounted."""

    data: dict[str, str] = field(default_factory=dict)
    docker_socket: bool = False  # mount the Docker engine's socket into the hosts

    @classmethod
    def load(cls, state_dir: Path) -> LabOptions:
        path = state_dir / "lab.json"
        if not path.exists():
            return cls()
        doc = json.loads(path.read_text())
        data = dict(doc.get("data") or {})
        # lab.json of earlier versions kept the options at the top level
        data.update({k: v for k, v in doc.items() if k not in ("data", "docker_socket") and v})
        return cls(data, bool(doc.get("docker_socket")))

    def merged(self, data: dict[str, str], docker_socket: bool | None) -> LabOptions:
        return LabOptions(
            {**self.data, **data}, docker_socket if docker_socket is not None else self.docker_socket
        )

    def save(self, state_dir: Path) -> None:
        doc = {"data": self.data, "docker_socket": self.docker_socket}
        (state_dir / "lab.json").write_text(json.dumps(doc, indent=1) + "\n")


def _lab_value(value: str | Sequence[str], subnet: str) -> str | list[str]:
    """A contract's lab_data value with the lab's image and network filled in."""

    def fill(text: str) -> str:
        return text.replace("{lab_image}", IMAGE).replace("{lab_subnet}", subnet)

    return fill(value) if isinstance(value, str) else [fill(v) for v in value]


def lab_inventory(
    hosts: list[tuple[str, str]],
    state_dir: Path,
    options: LabOptions,
    schema: Schema,
    subnet: str = "198.18.0.0/24",
) -> dict[str, dict[str, Any]]:
    """hosts/groups/defaults documents for the lab (pure): role groups, generated secrets and
    settings come from the components' contracts."""
    out_hosts: dict[str, Any] = {}
    for i, (name, address) in enumerate(hosts):
        out_hosts[name] = {"hostname": address, "groups": schema.default_groups(i, len(hosts))}
    data: dict[str, Any] = {"site_name": "lab"}
    data.update({s.key: f"file:../secrets/{s.key}" for s in schema.secrets})
    # the service images and the like build offline on the lab's own base image
    data.update({k: _lab_value(v, subnet) for k, v in schema.lab_data.items()})
    data.update(options.data)
    defaults = {
        "username": USER,
        "data": data,
        "connection_options": {
            "fabric": {"extras": {"key_filename": "../id_ed25519", "known_hosts": "../known_hosts"}}
        },
    }
    groups_doc: dict[str, Any] = {g: {"data": {}} for g in schema.role_groups}
    return {"hosts": out_hosts, "groups": groups_doc, "defaults": defaults}


def write_generated_secrets(state_dir: Path, schema: Schema) -> None:
    """Each secret the components generate for a new site (random, 0600), once."""
    for s in schema.secrets:
        path = state_dir / "secrets" / s.key
        if not path.exists():
            write_secret_file(path, secrets.token_urlsafe(s.nbytes))
