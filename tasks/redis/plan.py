"""Pure planning of the Redis Cluster's layout: which instance masters or replicates which shard, where.

For hosts ``h1..hN`` (N >= 3) in inventory order and ports ``P`` (first, master instance) and ``R``
(second, replica instance), see /work/shared/reference/redis-cluster.md:

* ``hi:P`` is the master of shard ``i`` (shards are numbered from 1);
* ``hi:R`` replicates the master of shard ``i-1``; ``h1:R`` replicates shard ``N`` ("rotated replicas"),
  so a master and its replica never share a host;
* the 16384 slots are split into N contiguous ranges with redis-cli's formula
  (3 shards: 0-5460, 5461-10922, 10923-16383) and given to the masters with CLUSTER ADDSLOTSRANGE.

Nothing here does I/O. The instance configs are :mod:`tasks.redis.config`, membership changes (scale-out)
:mod:`tasks.redis.membership`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from tasks.redis.contract import BUS_PORT_OFFSET, MAX_PORT, MIN_HOSTS, port_clash
from tasks.redis.errors import PlanError
from tasks.redis.slots import SlotRange, even_slot_ranges

DEFAULT_MASTER_PORT = 7000
DEFAULT_REPLICA_PORT = 7003

Role = Literal["master", "replica"]

__all__ = [
    "BUS_PORT_OFFSET",
    "DEFAULT_MASTER_PORT",
    "DEFAULT_REPLICA_PORT",
    "Layout",
    "PlanError",
    "PlannedInstance",
    "RedisHost",
    "Role",
    "Shard",
    "check_ports",
    "format_endpoint",
    "plan_layout",
]


@dataclass(frozen=True)
class RedisHost:
    """A host of the ``redis`` inventory group: its inventory name and the address the instances bind."""

    name: str
    address: str


@dataclass(frozen=True)
class PlannedInstance:
    """One redis-server instance of the layout.

    ``shard`` is the shard it masters (role ``master``) or the shard whose master it replicates (``replica``).
    """

    host: str
    address: str
    port: int
    role: Role
    shard: int

    @property
    def endpoint(self) -> str:
        """``address:port`` as the cluster sees it (IPv6 addresses in brackets)."""
        return format_endpoint(self.address, self.port)

    @property
    def label(self) -> str:
        """``host:port`` as humans see it, e.g. ``lab1:7000``."""
        return f"{self.host}:{self.port}"

    @property
    def bus_port(self) -> int:
        return self.port + BUS_PORT_OFFSET

    def describe(self) -> str:
        return f"master of shard {self.shard}" if self.role == "master" else f"replica of shard {self.shard}"


def format_endpoint(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


@dataclass(frozen=True)
class Shard:
    """Shard ``number``: its planned master and replica, and the slots it gets when the cluster is formed."""

    number: int
    master: PlannedInstance
    replica: PlannedInstance
    slots: tuple[SlotRange, ...]


@dataclass(frozen=True)
class Layout:
    """The planned cluster: hosts in inventory order, the two ports and one shard per host."""

    hosts: tuple[RedisHost, ...]
    master_port: int
    replica_port: int
    shards: tuple[Shard, ...]

    @property
    def instances(self) -> tuple[PlannedInstance, ...]:
        """All instances, host by host: ``h1:P, h1:R, h2:P, h2:R, ...``."""
        out: list[PlannedInstance] = []
        for i in range(len(self.hosts)):
            out.append(self.shards[i].master)
            out.append(self.replica_on_host(i + 1))
        return tuple(out)

    def replica_on_host(self, host_number: int) -> PlannedInstance:
        """The second instance of host ``host_number`` (1-based): the replica of shard ``host_number - 1``."""
        n = len(self.hosts)
        return self.shards[(host_number - 2) % n].replica

    def shard(self, number: int) -> Shard:
        if not 1 <= number <= len(self.shards):
            raise PlanError(f"no shard {number}: the layout has shards 1-{len(self.shards)}")
        return self.shards[number - 1]

    def find(self, endpoint: str) -> PlannedInstance | None:
        """The planned instance at ``address:port``, or None."""
        for inst in self.instances:
            if inst.endpoint == endpoint:
                return inst
        return None

    def host_of(self, endpoint: str) -> str | None:
        inst = self.find(endpoint)
        return inst.host if inst else None

    def table(self) -> str:
        """The layout as the markdown table of the reference document."""
        lines = [
            f"| host | port {self.master_port} | port {self.replica_port} |",
            "|------|-----------|-----------|",
        ]
        for i, host in enumerate(self.hosts, start=1):
            master = self.shards[i - 1].master
            replica = self.replica_on_host(i)
            lines.append(f"| {host.name} | {master.describe()} | {replica.describe()} |")
        return "\n".join(lines)


def _check_port(field_name: str, port: object) -> int:
    if isinstance(port, bool) or not isinstance(port, int):
        raise PlanError(f"{field_name} must be an integer port, got {port!r}")
    if port < 1:
        raise PlanError(f"{field_name} {port} is not a valid TCP port (1-{MAX_PORT - BUS_PORT_OFFSET})")
    if port + BUS_PORT_OFFSET > MAX_PORT:
        raise PlanError(
            f"{field_name} {port}: its cluster bus port {port + BUS_PORT_OFFSET} (port+{BUS_PORT_OFFSET}) "
            f"exceeds {MAX_PORT}; use a port <= {MAX_PORT - BUS_PORT_OFFSET}"
        )
    return port


def check_ports(master_port: int, replica_port: int) -> None:
    """Reject out-of-range ports and clashes between the two instances' client and bus ports."""
    _check_port("master_port", master_port)
    _check_port("replica_port", replica_port)
    if master_port == replica_port:
        raise PlanError(
            f"master_port and replica_port are both {master_port}; the two instances of a host need "
            "different ports"
        )
    if replica_port == master_port + BUS_PORT_OFFSET:
        raise PlanError(
            f"replica_port {replica_port} clashes with the cluster bus port of master_port {master_port} "
            f"({master_port}+{BUS_PORT_OFFSET})"
        )
    if master_port == replica_port + BUS_PORT_OFFSET:
        raise PlanError(
            f"master_port {master_port} clashes with the cluster bus port of replica_port {replica_port} "
            f"({replica_port}+{BUS_PORT_OFFSET})"
        )
    for name, port in (("master_port", master_port), ("replica_port", replica_port)):
        for what, p in (
            ("", port),
            (f": its cluster bus port {port + BUS_PORT_OFFSET}", port + BUS_PORT_OFFSET),
        ):
            clash = port_clash(p)
            if clash:
                raise PlanError(f"{name} {port}{what} {clash}")


def _check_address(host: RedisHost, position: int) -> None:
    if not host.address:
        raise PlanError(f"host {host.name or f'#{position}'}: address is empty")
    try:
        ip = ipaddress.ip_address(host.address)
    except ValueError:
        raise PlanError(
            f"host {host.name}: address {host.address!r} is not an IP address; CLUSTER MEET and nodes.conf "
            "need the IP the instances bind (put the IP in the inventory)"
        ) from None
    if ip.is_unspecified:
        raise PlanError(
            f"host {host.name}: address {host.address} is the unspecified address; bind and announce the "
            "host's routable address"
        )


def plan_layout(
    hosts: Sequence[RedisHost | tuple[str, str]],
    master_port: int = DEFAULT_MASTER_PORT,
    replica_port: int = DEFAULT_REPLICA_PORT,
) -> Layout:
    """Plan the rotated layout for ``hosts`` (in inventory order). Raises :class:`PlanError`."""
    parsed = tuple(h if isinstance(h, RedisHost) else RedisHost(name=h[0], address=h[1]) for h in hosts)
    if len(parsed) < MIN_HOSTS:
        names = ", ".join(h.name for h in parsed) or "none"
        raise PlanError(
            f"a Redis Cluster with rotated replicas needs at least {MIN_HOSTS} hosts in the redis group, "
            f"got {len(parsed)} ({names})"
        )
    names_seen: dict[str, int] = {}
    addresses_seen: dict[str, str] = {}
    for position, host in enumerate(parsed, start=1):
        if not host.name or not host.name.strip():
            raise PlanError(f"host #{position} (address {host.address or 'empty'}) has an empty name")
        if host.name in names_seen:
            raise PlanError(
                f"host name {host.name!r} appears twice (positions {names_seen[host.name]} and {position})"
            )
        names_seen[host.name] = position
        _check_address(host, position)
        canonical = str(ipaddress.ip_address(host.address))
        if canonical in addresses_seen:
            raise PlanError(
                f"hosts {addresses_seen[canonical]} and {host.name} share address {host.address}; each host "
                "needs its own address (a host runs both instances of the layout)"
            )
        addresses_seen[canonical] = host.name
    check_ports(master_port, replica_port)

    n = len(parsed)
    ranges = even_slot_ranges(n)
    shards: list[Shard] = []
    for i, host in enumerate(parsed, start=1):
        master = PlannedInstance(host.name, host.address, master_port, "master", i)
        replica_host = parsed[i % n]  # host i+1 (wrapping) replicates shard i
        replica = PlannedInstance(replica_host.name, replica_host.address, replica_port, "replica", i)
        shards.append(Shard(number=i, master=master, replica=replica, slots=(ranges[i - 1],)))
    return Layout(hosts=parsed, master_port=master_port, replica_port=replica_port, shards=tuple(shards))
