"""What ``nft -j list table inet nr_redis`` prints for a planned table, for facts fixtures.

The shape follows real nftables 1.0.6 (Debian bookworm) output, captured from a lab host in
tests/unit/fixtures/nft/nr_redis.json: a ``metainfo`` item, the table, each set with ``elem`` (plain
addresses as strings, networks as ``{"prefix": {"addr", "len"}}``; no ``elem`` key when empty), the chain
with its numeric ``prio``, and each rule as a list of ``match`` expressions and a verdict (``{"accept":
null}``); a set of ports is ``{"set": [...]}``. tests/unit/test_redis_firewall.py checks that this
function and the captured output parse to the same table.
"""

from __future__ import annotations

import ipaddress
import json
from typing import Any

from tasks.redis.firewall import TABLE, FirewallSpec


def _elem(text: str) -> Any:
    if "/" not in text:
        return text
    net = ipaddress.ip_network(text)
    return {"prefix": {"addr": str(net.network_address), "len": net.prefixlen}}


def _match(left: Any, right: Any, op: str = "==") -> dict[str, Any]:
    return {"match": {"op": op, "left": left, "right": right}}


def _ports(ports: tuple[int, ...]) -> dict[str, Any]:
    return _match({"payload": {"protocol": "tcp", "field": "dport"}}, {"set": sorted(ports)})


def _saddr(family: str, name: str) -> dict[str, Any]:
    return _match({"payload": {"protocol": family, "field": "saddr"}}, f"@{name}")


def _rules(spec: FirewallSpec) -> list[list[dict[str, Any]]]:
    accept, drop = {"accept": None}, {"drop": None}
    out = [
        [_match({"meta": {"key": "iif"}}, "lo"), accept],
        [_match({"ct": {"key": "state"}}, ["established", "related"], "in"), accept],
    ]
    for ports, name in ((spec.bus_ports, "peers"), (spec.ports, "clients")):
        out += [
            [_ports(ports), _saddr("ip", f"{name}4"), accept],
            [_ports(ports), _saddr("ip6", f"{name}6"), accept],
            [_ports(ports), drop],
        ]
    return out


def nft_json(spec: FirewallSpec, *, drop_rule: int | None = None, drop_element: str | None = None) -> str:
    """The JSON for ``spec`` as loaded; optionally with rule number ``drop_rule`` or one element removed
    (what a hand-made ``nft delete rule`` / ``nft delete element`` leaves)."""
    items: list[dict[str, Any]] = [
        {"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}},
        {"table": {"family": "inet", "name": TABLE, "handle": 7}},
    ]
    for handle, (name, elements) in enumerate(spec.sets().items(), start=2):
        kind = "ipv4_addr" if name.endswith("4") else "ipv6_addr"
        s: dict[str, Any] = {"family": "inet", "name": name, "table": TABLE, "type": kind, "handle": handle,
                             "flags": ["interval"]}  # fmt: skip
        kept = [e for e in elements if e != drop_element]
        if kept:
            s["elem"] = [_elem(e) for e in kept]
        items.append({"set": s})
    items.append({"chain": {"family": "inet", "table": TABLE, "name": "input", "handle": 1, "type": "filter",
                            "hook": "input", "prio": -5, "policy": "accept"}})  # fmt: skip
    for i, expr in enumerate(_rules(spec)):
        if i != drop_rule:
            items.append(
                {"rule": {"family": "inet", "table": TABLE, "chain": "input", "handle": 10 + i, "expr": expr}}
            )
    return json.dumps({"nftables": items})
