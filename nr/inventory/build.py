"""Turn validated raw inventory data into Nornir's ``Inventory`` objects."""

from __future__ import annotations

from typing import Any

from nornir.core.inventory import (
    ConnectionOptions,
    Defaults,
    Group,
    Groups,
    Host,
    Hosts,
    Inventory,
    ParentGroups,
)

from nr.contract import Schema
from nr.inventory.validate import RawInventory, validate

CONNECTION = "fabric"


def _options(data: dict[str, Any]) -> dict[str, ConnectionOptions]:
    return {
        name: ConnectionOptions(
            hostname=o.get("hostname"),
            port=o.get("port"),
            username=o.get("username"),
            password=o.get("password"),
            platform=o.get("platform"),
            extras=dict(o["extras"]) if o.get("extras") is not None else None,
        )
        for name, o in (data.get("connection_options") or {}).items()
    }


def _element(cls: type[Host], name: str, data: dict[str, Any], defaults: Defaults) -> Host:
    return cls(
        name=name,
        hostname=data.get("hostname"),
        port=data.get("port"),
        username=data.get("username"),
        password=data.get("password"),
        platform=data.get("platform"),
        data=dict(data.get("data") or {}),
        defaults=defaults,
        connection_options=_options(data),
    )


def _merged_extras(host: Host, defaults: Defaults) -> dict[str, Any]:
    """SSH extras merged key by key: defaults, then groups (farthest first), then the host.

    Nornir itself takes the whole ``extras`` mapping from the nearest level; merging lets an operator
    set ``key_filename`` in defaults and ``known_hosts`` in a group.
    """
    layers: list[dict[str, Any]] = []
    d = defaults.connection_options.get(CONNECTION)
    if d is not None and d.extras:
        layers.append(d.extras)
    for g in reversed(list(_ancestors(host))):
        o = g.connection_options.get(CONNECTION)
        if o is not None and o.extras:
            layers.append(o.extras)
    o = host.connection_options.get(CONNECTION)
    if o is not None and o.extras:
        layers.append(o.extras)
    merged: dict[str, Any] = {}
    for layer in layers:
        merged.update(layer)
    return merged


def _ancestors(host: Host) -> list[Group]:
    """Groups in Nornir's resolution order (nearest first, depth first)."""
    out: list[Group] = []
    for g in host.groups:
        if g not in out:
            out.append(g)
        for a in _ancestors(g):
            if a not in out:
                out.append(a)
    return out


def build_inventory(raw: RawInventory, schema: Schema | None = None) -> Inventory:
    """Validate ``raw`` against ``schema`` (default: every registered component's) and build the
    Nornir inventory (raises InventoryError)."""
    if schema is None:
        from nr.registry import registry

        schema = registry().schema
    validate(raw, schema)
    ddata = raw.defaults or {}
    defaults = Defaults(
        hostname=ddata.get("hostname"),
        port=ddata.get("port"),
        username=ddata.get("username"),
        password=ddata.get("password"),
        platform=ddata.get("platform"),
        data=dict(ddata.get("data") or {}),
        connection_options=_options(ddata),
    )
    groups = Groups()
    for name, g in (raw.groups or {}).items():
        groups[name] = _element(Group, name, g or {}, defaults)  # type: ignore[assignment]
    for name in schema.role_groups:  # role groups exist even when groups.yaml does not define them
        if name not in groups:
            groups[name] = _element(Group, name, {}, defaults)  # type: ignore[assignment]
    for name, g in (raw.groups or {}).items():
        groups[name].groups = ParentGroups([groups[p] for p in (g or {}).get("groups") or []])
    hosts = Hosts()
    for name, h in raw.hosts.items():
        host = _element(Host, name, h, defaults)
        host.groups = ParentGroups([groups[p] for p in h.get("groups") or []])
        hosts[name] = host
    for host in hosts.values():
        extras = _merged_extras(host, defaults)
        opt = host.connection_options.get(CONNECTION) or ConnectionOptions()
        opt.extras = extras
        host.connection_options[CONNECTION] = opt
    return Inventory(hosts=hosts, groups=groups, defaults=defaults)
