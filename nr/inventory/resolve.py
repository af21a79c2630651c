"""What ``nr inventory`` shows, resolved from the validated files without building Nornir's objects.

``nr inventory`` only reads: importing Nornir (with ruamel.yaml and importlib.metadata) would cost
more than everything else it does (issue 12). The resolution is Nornir's, for the fields shown: a
``data`` key and the address, port and user come from the host, then its groups (nearest first,
depth first: :func:`nr.inventory.build.ancestors`), then the defaults (a ``data`` value of ``None`` in
the defaults counts as unset, as in Nornir); SSH extras merge key by key (:func:`nr.inventory.build`).
tests/unit/test_inventory_resolve.py holds it equal to the rows computed from the Nornir inventory.
"""

from __future__ import annotations

from typing import Any

from nr.contract import Schema
from nr.inventory.validate import RawInventory

CONNECTION = "fabric"
_MISSING = object()


class _Element:
    def __init__(self, name: str, data: dict[str, Any], parents: list[_Element]) -> None:
        self.name, self.data, self.parents = name, data, parents

    def ancestors(self) -> list[_Element]:
        """Groups in Nornir's resolution order (nearest first, depth first, no repeats)."""
        out: list[_Element] = []
        for g in self.parents:
            for a in [g, *g.ancestors()]:
                if a not in out:
                    out.append(a)
        return out


def _groups(raw: RawInventory, schema: Schema) -> dict[str, _Element]:
    defined: dict[str, Any] = dict(raw.groups or {})
    groups = {name: _Element(name, g or {}, []) for name, g in defined.items()}
    for name in schema.role_groups:
        groups.setdefault(name, _Element(name, {}, []))
    for name, g in defined.items():
        groups[name].parents = [groups[p] for p in (g or {}).get("groups") or []]
    return groups


def _extras(data: dict[str, Any]) -> dict[str, Any]:
    options = (data.get("connection_options") or {}).get(CONNECTION) or {}
    return dict(options.get("extras") or {})


def _row(host: _Element, defaults: dict[str, Any], schema: Schema) -> dict[str, Any]:
    chain = [host, *host.ancestors()]

    def attr(key: str) -> Any:
        for e in chain:
            if e.data.get(key) is not None:
                return e.data[key]
        return defaults.get(key)

    def data(key: str) -> Any:
        for e in chain:
            value = (e.data.get("data") or {}).get(key, _MISSING)
            if value is not _MISSING:
                return value
        return (defaults.get("data") or {}).get(key)

    extras = _extras(defaults)
    for e in reversed(chain):
        extras.update(_extras(e.data))
    names = sorted(g.name for g in host.ancestors())
    return {
        "name": host.name,
        "address": attr("hostname"),
        "port": attr("port") or 22,
        "username": attr("username"),
        "groups": names,
        "roles": [r.role for r in schema.roles if r.name in names],
        "data": {k: data(k) for k in schema.data if data(k) is not None},
        "ssh": extras,
    }


def inventory_rows(raw: RawInventory, schema: Schema) -> list[dict[str, Any]]:
    """The rows of ``nr inventory`` for a validated inventory (see :func:`nr.views.inventory_rows`)."""
    groups = _groups(raw, schema)
    defaults = dict(raw.defaults or {})
    hosts = [
        _Element(name, h or {}, [groups[p] for p in (h or {}).get("groups") or []])
        for name, h in raw.hosts.items()
    ]
    return [_row(h, defaults, schema) for h in hosts]
