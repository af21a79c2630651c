"""What the redis play reads from the inventory: its role group, settings and the generated password."""

from __future__ import annotations

from typing import Any

from nr.contract import Contract, Field, GeneratedSecret, Kind, Membership, RoleGroup

GROUP = "redis"
MIN_HOSTS = 3
BUS_PORT_OFFSET = 10000


def _ports_problem(value: Any) -> str | None:
    if len(value) != 2:
        return f"must list exactly two ports (master, replica), got {len(value)}"
    for p in value:
        if p + BUS_PORT_OFFSET > 65535:
            return f"port {p}: its cluster bus port {p + BUS_PORT_OFFSET} is above 65535"
    a, b = value
    if abs(a - b) == BUS_PORT_OFFSET:
        return f"ports {a} and {b} clash: one is the other's cluster bus port (port+{BUS_PORT_OFFSET})"
    return None


def host_count_rule(membership: Membership, hosts_file: str) -> list[str]:
    hosts = [h for h, g in membership.items() if GROUP in g]
    if 0 < len(hosts) < MIN_HOSTS:
        return [
            f"{hosts_file}: group {GROUP} has {len(hosts)} host(s) ({', '.join(hosts)}); a Redis Cluster "
            f"with rotated replicas needs at least {MIN_HOSTS}"
        ]
    return []


CONTRACT = Contract(
    data={
        "redis_ports": Field(
            Kind.PORTS,
            "the two instance ports per host: master, replica (default 7000, 7003)",
            _ports_problem,
        ),
        "redis_password": Field(Kind.SECRET, "password of every Redis instance (requirepass and masterauth)"),
        "redis_node_timeout": Field(Kind.INT, "cluster-node-timeout in milliseconds (default 5000)"),
    },
    roles=[
        RoleGroup(
            GROUP, "redis", "hosts of the Redis Cluster (two instances each)", lambda i, n: n >= MIN_HOSTS
        )
    ],
    rules=[host_count_rule],
    secrets=[GeneratedSecret("redis_password")],
)
