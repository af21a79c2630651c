"""What the redis play reads from the inventory: its role group, settings and the generated password.

Format checks run in the validator, before any host is touched, and name the file, the host or
group and the field: ports that clash with SSH, k3s, the NodePort range or each other's cluster bus
port, a node timeout out of bounds, firewall sources that are not addresses or networks.
"""

from __future__ import annotations

from typing import Any

from nr import formats
from nr.contract import Contract, Field, GeneratedSecret, Kind, Membership, RoleGroup

GROUP = "redis"
MIN_HOSTS = 3
BUS_PORT_OFFSET = 10000
MAX_PORT = 65535
MIN_PORT = 1024  # redis-server runs as user redis (Debian's unit): it cannot bind a privileged port
PASSWORD_MIN_LENGTH = 16
NODE_TIMEOUT_DEFAULT_MS = 5000
NODE_TIMEOUT_MIN_MS = 1000
NODE_TIMEOUT_MAX_MS = 60000

# TCP ports a site host already uses (a Redis client or bus port there would fail to bind, or take the
# port from k3s). k3s: docs.k3s.io/installation/requirements#inbound-rules-for-k3s-nodes (6443 API server,
# 10250 kubelet, 2379-2380 embedded etcd), 6444 the agents' API load balancer, 10248-10259 the kubelet's and
# control plane's local ports; 8472 (flannel VXLAN) and 51820/51821 (WireGuard) are UDP and cannot clash.
RESERVED_TCP: tuple[tuple[int, int, str], ...] = (
    (22, 22, "SSH"),
    (2379, 2380, "k3s's embedded etcd"),
    (6443, 6444, "the k3s API server and its agent load balancer"),
    (10248, 10259, "the kubelet and the k3s control plane"),
    (30000, 32767, "the Kubernetes NodePort range"),
)


def port_clash(port: int) -> str | None:
    """What ``port`` (a client or bus port) clashes with on a site host, or None."""
    for low, high, what in RESERVED_TCP:
        if low <= port <= high:
            where = str(low) if low == high else f"{low}-{high}"
            return f"clashes with {what} ({where})"
    if port < MIN_PORT:
        return f"is a privileged port (below {MIN_PORT}); redis-server runs as user redis and cannot bind it"
    if port > MAX_PORT:
        return f"is above {MAX_PORT}"
    return None


def ports_problem(value: Any) -> str | None:
    """``data.redis_ports``: two ports whose client and bus ports (port+10000) are all usable and distinct."""
    if len(value) != 2:
        return f"must list exactly two ports (master, replica), got {len(value)}"
    a, b = value
    if abs(a - b) == BUS_PORT_OFFSET:
        return f"ports {a} and {b} clash: one is the other's cluster bus port (port+{BUS_PORT_OFFSET})"
    for p in value:
        bus = p + BUS_PORT_OFFSET
        if bus > MAX_PORT:
            return f"port {p}: its cluster bus port {bus} is above {MAX_PORT}"
        clash = port_clash(p)
        if clash:
            return f"port {p} {clash}"
        clash = port_clash(bus)
        if clash:
            return f"port {p}: its cluster bus port {bus} (port+{BUS_PORT_OFFSET}) {clash}"
    return None


def node_timeout_problem(value: Any) -> str | None:
    if NODE_TIMEOUT_MIN_MS <= value <= NODE_TIMEOUT_MAX_MS:
        return None
    return (
        f"must be between {NODE_TIMEOUT_MIN_MS} and {NODE_TIMEOUT_MAX_MS} milliseconds, got {value} (shorter: "
        "a busy host, a fork for persistence or a network hiccup fails masters over for nothing; longer: "
        "a lost host blocks writes to its shards for that long)"
    )


def host_count_rule(membership: Membership, hosts_file: str) -> list[str]:
    hosts = [h for h, g in membership.items() if GROUP in g]
    if 0 < len(hosts) < MIN_HOSTS:
        return [
            f"{hosts_file}: group {GROUP} has {len(hosts)} host(s) ({', '.join(hosts)}); a Redis Cluster "
            f"with rotated replicas needs at least {MIN_HOSTS}"
        ]
    return []


def _source(value: Any) -> str | None:
    if isinstance(value, str) and (formats.is_ip(value) or formats.cidr(value) is None):
        return None
    return "must be an IP address or a network in CIDR notation (e.g. 192.168.10.0/24)"


CONTRACT = Contract(
    data={
        "redis_ports": Field(
            Kind.PORTS,
            "the two instance ports per host: master, replica (default 7000, 7003); their bus ports are +10000",
            ports_problem,
        ),
        "redis_password": Field(
            Kind.SECRET,
            f"password of every Redis instance (requirepass and masterauth), at least {PASSWORD_MIN_LENGTH} "
            "characters; the same reference on every redis host",
        ),
        "redis_node_timeout": Field(
            Kind.INT,
            f"cluster-node-timeout in milliseconds ({NODE_TIMEOUT_MIN_MS}-{NODE_TIMEOUT_MAX_MS}, default "
            f"{NODE_TIMEOUT_DEFAULT_MS}): how long a master may be silent before its replica takes over",
            node_timeout_problem,
        ),
        "redis_firewall": Field(
            Kind.BOOL,
            "restrict the Redis client and bus ports with nftables (default true; see redis_clients)",
        ),
        "redis_clients": Field(
            Kind.STR_LIST,
            "addresses or CIDR networks that may reach the Redis client ports, besides the site's hosts, "
            "the pod network (data.k3s_cluster_cidr, default 10.42.0.0/16) and the machine nr runs on",
            formats.each(_source),
        ),
    },
    roles=[
        RoleGroup(
            GROUP, "redis", "hosts of the Redis Cluster (two instances each)", lambda i, n: n >= MIN_HOSTS
        )
    ],
    rules=[host_count_rule],
    secrets=[GeneratedSecret("redis_password")],
    # the lab's app containers (the k3s stand-in's pods) get addresses of the lab network, not 10.42/16
    lab_data={"redis_clients": ["{lab_subnet}"]},
)
