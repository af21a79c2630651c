"""What ``nr lab up`` writes: the remembered options, the inventory documents and generated secrets."""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from nr.contract import Schema
from nr.errors import NrError
from nr.inventory.loader import InventoryError, load_yaml
from nr.machines.image import IMAGE
from nr.secrets import write_secret_file

USER = "nr"


@dataclass(frozen=True)
class LabOptions:
    """Choices made at `nr lab up`, remembered in <state dir>/lab.json for later `up`s: data keys set
    by the components' lab options (e.g. a local binary to push) and whether the Docker socket is mounted."""

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


def _lab_value(value: str | Sequence[str], subnet: str, lab_dir: Path) -> str | list[str]:
    """A contract's lab_data value with the lab's image, network and folder (absolute) filled in."""

    def fill(text: str) -> str:
        return (
            text.replace("{lab_image}", IMAGE)
            .replace("{lab_subnet}", subnet)
            .replace("{lab_dir}", str(lab_dir.expanduser().resolve()))
        )

    return fill(value) if isinstance(value, str) else [fill(v) for v in value]


def lab_inventory(
    hosts: list[tuple[str, str]],
    state_dir: Path,
    options: LabOptions,
    schema: Schema,
    site: str = "lab",
    subnet: str = "198.18.0.0/24",
) -> dict[str, dict[str, Any]]:
    """hosts/groups/defaults documents for the lab (pure): role groups, generated secrets and
    settings come from the components' contracts; the site is named after the lab (``site``), so two
    labs on one machine never share a kubeconfig context."""
    out_hosts: dict[str, Any] = {}
    for i, (name, address) in enumerate(hosts):
        out_hosts[name] = {"hostname": address, "groups": schema.default_groups(i, len(hosts))}
    data: dict[str, Any] = {"site_name": site}
    data.update({s.key: f"file:../secrets/{s.key}" for s in schema.secrets})
    # the service images and the like build offline on the lab's own base image
    data.update({k: _lab_value(v, subnet, state_dir) for k, v in schema.lab_data.items()})
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


_MISSING: Any = object()


def _merge_key(key: str, base: dict[str, Any], mine: dict[str, Any], new: dict[str, Any]) -> Any:
    if key in new and key in mine:
        return merge(base.get(key, _MISSING), mine[key], new[key])
    if key in new:  # not in the file: removed by the operator (stays removed unless lab's value changed)
        return _MISSING if key in base and base[key] == new[key] else new[key]
    # only in the file: lab wrote it once and no longer does (dropped unless edited), or the operator's own
    return _MISSING if key in base and base[key] == mine[key] else mine[key]


def merge(base: Any, mine: Any, new: Any) -> Any:
    """What ``nr lab up`` writes (``new``) with the operator's edits kept: a value changed since lab last
    wrote it (``base``) stays as the operator left it; one not changed takes lab's new value (pure)."""
    if isinstance(mine, dict) and isinstance(new, dict):
        b = base if isinstance(base, dict) else {}
        keys = [*new, *(k for k in mine if k not in new)]
        merged = {k: _merge_key(k, b, mine, new) for k in keys}
        return {k: v for k, v in merged.items() if v is not _MISSING}
    if base is _MISSING:  # a value the operator added where lab now writes one too: theirs
        return mine
    return new if mine == base else mine


def merge_inventory(
    written: dict[str, Any], current: dict[str, Any], new: dict[str, dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    """The three inventory documents with the operator's edits kept. Which hosts exist is lab's to say
    (``nr lab up --hosts N``); their fields, groups, defaults and data are merged with :func:`merge`."""
    out: dict[str, dict[str, Any]] = {}
    for name, doc in new.items():
        merged = merge(written.get(name, _MISSING), current.get(name, {}), doc)
        if name == "hosts":
            merged = {h: merged.get(h, entry) for h, entry in doc.items()}
        out[name] = merged
    return out


WRITTEN = ".written-by-lab.json"  # what `nr lab up` wrote last (the base of the next merge)
HEADER = (
    "# Written by `nr lab up` for lab '{name}'. Edit freely: a later `nr lab up` updates only what it\n"
    "# wrote and you did not change (comments are not kept).\n"
)


def write_inventory(inv_dir: Path, docs: dict[str, dict[str, Any]], lab_name: str) -> None:
    """Write the lab's inventory documents into ``inv_dir``, keeping the operator's edits."""
    inv_dir.mkdir(parents=True, exist_ok=True)
    snapshot = inv_dir / WRITTEN
    written = json.loads(snapshot.read_text()) if snapshot.exists() else {}
    current: dict[str, Any] = {}
    for name in docs:
        try:
            doc = load_yaml(inv_dir / f"{name}.yaml", required=False)
        except InventoryError as exc:
            raise NrError(
                f"cannot keep your edits: {'; '.join(exc.issues)} (fix or remove the file)"
            ) from None
        current[name] = doc if isinstance(doc, dict) else {}
    merged = merge_inventory(written, current, docs)
    for name, doc in merged.items():
        text = HEADER.format(name=lab_name) + yaml.safe_dump(doc, sort_keys=False)
        (inv_dir / f"{name}.yaml").write_text(text)
    snapshot.write_text(json.dumps(docs, indent=1) + "\n")
