"""Parsers of what Redis answers (pure): CLUSTER NODES, CLUSTER INFO / INFO sections, CLUSTER SHARDS.

Tested against real Redis 7.0.15 output (tests/unit/fixtures/redis).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from tasks.redis.errors import ClusterParseError, PlanError
from tasks.redis.plan import Role, format_endpoint
from tasks.redis.slots import SlotRange, count_slots

log = logging.getLogger(__name__)

__all__ = [
    "ClusterInfo",
    "ClusterNode",
    "ClusterParseError",
    "ClusterShard",
    "ShardNode",
    "SlotMigration",
    "as_text",
    "parse_cluster_info",
    "parse_cluster_nodes",
    "parse_cluster_shards",
    "parse_info",
]


def as_text(value: Any) -> str:
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", errors="replace")
    return str(value)


@dataclass(frozen=True)
class SlotMigration:
    """``[slot->-id]`` (this node is migrating ``slot`` to ``peer_id``) or ``[slot-<-id]`` (importing)."""

    slot: int
    state: Literal["migrating", "importing"]
    peer_id: str


NODE_FLAGS = frozenset(
    {"myself", "master", "slave", "fail?", "fail", "handshake", "noaddr", "nofailover", "noflags"}
)


@dataclass(frozen=True)
class ClusterNode:
    """One line of CLUSTER NODES:
    ``<id> <ip:port@cport[,hostname][,aux=val]> <flags> <master|-> <ping> <pong> <epoch> <link> <slots...>``."""

    node_id: str
    ip: str
    port: int
    bus_port: int
    hostname: str | None
    flags: tuple[str, ...]
    master_id: str | None
    ping_sent: int
    pong_received: int
    config_epoch: int
    link_state: str
    slots: tuple[SlotRange, ...] = ()
    migrations: tuple[SlotMigration, ...] = ()
    aux: tuple[tuple[str, str], ...] = ()

    @property
    def endpoint(self) -> str:
        return format_endpoint(self.ip, self.port)

    @property
    def myself(self) -> bool:
        return "myself" in self.flags

    @property
    def is_master(self) -> bool:
        return "master" in self.flags

    @property
    def is_replica(self) -> bool:
        return "slave" in self.flags

    @property
    def role(self) -> Role:
        return "replica" if self.is_replica else "master"

    @property
    def failed(self) -> bool:
        return "fail" in self.flags

    @property
    def pfail(self) -> bool:
        return "fail?" in self.flags

    @property
    def handshake(self) -> bool:
        return "handshake" in self.flags

    @property
    def noaddr(self) -> bool:
        return "noaddr" in self.flags or not self.ip

    @property
    def nofailover(self) -> bool:
        return "nofailover" in self.flags

    @property
    def connected(self) -> bool:
        return self.link_state == "connected"

    @property
    def slot_count(self) -> int:
        return count_slots(self.slots)


def _parse_address(token: str, line_no: int) -> tuple[str, int, int, str | None, tuple[tuple[str, str], ...]]:
    addr, *extras = token.split(",")
    hostport, _, cport = addr.partition("@")
    ip, sep, port_text = hostport.rpartition(":")
    if not sep:
        raise ClusterParseError(f"CLUSTER NODES line {line_no}: bad address {token!r}")
    ip = ip.strip("[]")
    try:
        port = int(port_text)
        bus_port = int(cport) if cport else port + 10000
    except ValueError:
        raise ClusterParseError(f"CLUSTER NODES line {line_no}: bad port in {token!r}") from None
    hostname: str | None = None
    aux: list[tuple[str, str]] = []
    for extra in extras:
        if "=" in extra:
            key, _, value = extra.partition("=")
            aux.append((key, value))
        elif hostname is None:
            hostname = extra or None
    return ip, port, bus_port, hostname, tuple(aux)


def _parse_slot_token(token: str, line_no: int) -> SlotRange | SlotMigration:
    try:
        if token.startswith("["):
            body = token.strip("[]")
            if "->-" in body:
                slot, peer = body.split("->-", 1)
                return SlotMigration(int(slot), "migrating", peer)
            if "-<-" in body:
                slot, peer = body.split("-<-", 1)
                return SlotMigration(int(slot), "importing", peer)
            raise ValueError(token)
        start, _, end = token.partition("-")
        return SlotRange(int(start), int(end) if end else int(start))
    except (ValueError, PlanError):
        raise ClusterParseError(f"CLUSTER NODES line {line_no}: bad slot entry {token!r}") from None


def parse_cluster_nodes(output: str | bytes) -> tuple[ClusterNode, ...]:
    """Parse CLUSTER NODES output (every flag, hostnames/aux fields, single slots, open slots)."""
    nodes: list[ClusterNode] = []
    for line_no, raw in enumerate(as_text(output).splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) < 8:
            raise ClusterParseError(f"CLUSTER NODES line {line_no}: expected >= 8 fields, got {line!r}")
        node_id, address, flags_text, master, ping, pong, epoch, link, *slot_tokens = parts
        ip, port, bus_port, hostname, aux = _parse_address(address, line_no)
        flags = tuple(f for f in flags_text.split(",") if f and f != "noflags")
        unknown = set(flags) - NODE_FLAGS
        if unknown:
            log.debug("CLUSTER NODES line %d: unknown flags %s", line_no, sorted(unknown))
        slots: list[SlotRange] = []
        migrations: list[SlotMigration] = []
        for token in slot_tokens:
            item = _parse_slot_token(token, line_no)
            if isinstance(item, SlotMigration):
                migrations.append(item)
            else:
                slots.append(item)
        try:
            ping_sent, pong_received, config_epoch = int(ping), int(pong), int(epoch)
        except ValueError:
            raise ClusterParseError(f"CLUSTER NODES line {line_no}: bad counters in {line!r}") from None
        nodes.append(
            ClusterNode(
                node_id=node_id,
                ip=ip,
                port=port,
                bus_port=bus_port,
                hostname=hostname,
                flags=flags,
                master_id=None if master == "-" else master,
                ping_sent=ping_sent,
                pong_received=pong_received,
                config_epoch=config_epoch,
                link_state=link,
                slots=tuple(slots),
                migrations=tuple(migrations),
                aux=aux,
            )
        )
    return tuple(nodes)


@dataclass(frozen=True)
class ClusterInfo:
    """CLUSTER INFO; ``fields`` keeps every line as text."""

    state: str
    slots_assigned: int
    slots_ok: int
    slots_pfail: int
    slots_fail: int
    known_nodes: int
    size: int
    current_epoch: int
    my_epoch: int
    fields: Mapping[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.state == "ok"

    def summary(self) -> str:
        return (
            f"{self.state} (slots assigned {self.slots_assigned}, ok {self.slots_ok}, pfail {self.slots_pfail}, "
            f"fail {self.slots_fail}; known nodes {self.known_nodes})"
        )


def parse_info(output: str | bytes | Mapping[str, Any]) -> dict[str, str]:
    """``key:value`` lines (INFO sections, CLUSTER INFO) into a dict; comments and blanks skipped."""
    if isinstance(output, Mapping):
        return {str(k): as_text(v) for k, v in output.items()}
    out: dict[str, str] = {}
    for raw in as_text(output).splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or ":" not in line:
            continue
        key, _, value = line.partition(":")
        out[key] = value
    return out


def parse_cluster_info(output: str | bytes | Mapping[str, Any]) -> ClusterInfo:
    fields = parse_info(output)
    if "cluster_state" not in fields:
        raise ClusterParseError("CLUSTER INFO output has no cluster_state line")

    def num(key: str) -> int:
        try:
            return int(fields.get(key, "0"))
        except ValueError:
            raise ClusterParseError(f"CLUSTER INFO {key} is not a number: {fields[key]!r}") from None

    return ClusterInfo(
        state=fields["cluster_state"],
        slots_assigned=num("cluster_slots_assigned"),
        slots_ok=num("cluster_slots_ok"),
        slots_pfail=num("cluster_slots_pfail"),
        slots_fail=num("cluster_slots_fail"),
        known_nodes=num("cluster_known_nodes"),
        size=num("cluster_size"),
        current_epoch=num("cluster_current_epoch"),
        my_epoch=num("cluster_my_epoch"),
        fields=fields,
    )


@dataclass(frozen=True)
class ShardNode:
    node_id: str
    ip: str
    port: int
    endpoint: str
    hostname: str | None
    role: Role
    replication_offset: int
    health: str

    @property
    def address(self) -> str:
        return format_endpoint(self.ip, self.port)


@dataclass(frozen=True)
class ClusterShard:
    slots: tuple[SlotRange, ...]
    nodes: tuple[ShardNode, ...]

    @property
    def master(self) -> ShardNode | None:
        return next((n for n in self.nodes if n.role == "master"), None)

    @property
    def replicas(self) -> tuple[ShardNode, ...]:
        return tuple(n for n in self.nodes if n.role == "replica")


def _pairs(value: Any) -> dict[str, Any]:
    """A RESP map as a dict with str keys: dict (RESP3 / redis-py) or flat [k, v, k, v] list (RESP2)."""
    if isinstance(value, Mapping):
        return {as_text(k): v for k, v in value.items()}
    if isinstance(value, list | tuple) and len(value) % 2 == 0:
        return {as_text(value[i]): value[i + 1] for i in range(0, len(value), 2)}
    raise ClusterParseError(f"CLUSTER SHARDS: expected a map, got {type(value).__name__}")


def _shard_slots(value: Any) -> tuple[SlotRange, ...]:
    flat: list[int] = []
    for item in value or ():
        if isinstance(item, list | tuple):  # redis-py's legacy parser: [(start, end), ...]
            flat.extend(int(x) for x in item)
        else:
            flat.append(int(item))
    if len(flat) % 2:
        raise ClusterParseError(f"CLUSTER SHARDS: odd number of slot bounds {flat}")
    return tuple(SlotRange(flat[i], flat[i + 1]) for i in range(0, len(flat), 2))


def parse_cluster_shards(reply: Any) -> tuple[ClusterShard, ...]:
    """Normalise CLUSTER SHARDS in any shape redis-py returns: a list of dicts whose keys/values are bytes or
    str (also mixed: RedisCluster.cluster_shards() gives str top-level keys and bytes node keys), the raw RESP2
    flat lists, or slots given as (start, end) pairs."""
    shards: list[ClusterShard] = []
    for raw_shard in reply or ():
        shard = _pairs(raw_shard)
        nodes: list[ShardNode] = []
        for raw_node in shard.get("nodes") or ():
            node = _pairs(raw_node)
            role = as_text(node.get("role", ""))
            if role not in ("master", "replica"):
                raise ClusterParseError(f"CLUSTER SHARDS: unknown role {role!r}")
            ip = as_text(node.get("ip", ""))
            port_value = node.get("port", node.get("tls-port", 0))
            nodes.append(
                ShardNode(
                    node_id=as_text(node.get("id", "")),
                    ip=ip,
                    port=int(port_value),
                    endpoint=as_text(node.get("endpoint", ip)),
                    hostname=as_text(node["hostname"]) if node.get("hostname") else None,
                    role="master" if role == "master" else "replica",
                    replication_offset=int(node.get("replication-offset", 0)),
                    health=as_text(node.get("health", "")),
                )
            )
        shards.append(ClusterShard(slots=_shard_slots(shard.get("slots")), nodes=tuple(nodes)))
    return tuple(shards)
