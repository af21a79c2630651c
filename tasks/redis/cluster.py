"""Controller-side Redis Cluster operations: parse, observe, plan, execute, findings.

The controller talks to every instance directly over TCP with redis-py (``connect(address, port)``); nothing
here uses SSH. The structure follows pyinfra: read the state, plan pure actions, then execute them.

* Parsers (pure): :func:`parse_cluster_nodes`, :func:`parse_cluster_info`, :func:`parse_cluster_shards`,
  :func:`parse_info`.
* :func:`observe` reads CLUSTER MYID / INFO / NODES and INFO replication from every instance of the layout;
  unreachable or auth-failed instances are recorded, not raised.
* :func:`plan_actions` (pure) turns (layout, observation) into a list of :class:`Action`; ``[]`` when the
  cluster already matches the layout. The cluster is built the way Redis's own test harness does it
  (tests/support/cluster_util.tcl), never with ``redis-cli --cluster create --cluster-replicas``:
  CLUSTER MEET every node, ADDSLOTSRANGE on each master, wait for slot agreement, CLUSTER REPLICATE each
  replica, wait for cluster_state:ok.
* :func:`execute` performs the actions and waits (bounded) after each step.
* :func:`findings` (pure) reports faults and drift for checks.

Typical use from tasks/redis.py, once every ``redis-server@<port>`` unit runs with the rendered config::

    layout = plan_layout(hosts, master_port, replica_port)
    actions = plan_actions(layout, observe(layout, password))  # [] = nothing to do
    execute(actions, layout, password)  # waits; TimeoutError / ClusterError on failure
    problems = findings(layout, observe(layout, password))  # [] = healthy and as planned

Secrets: the password is only a parameter of :func:`redis_connector` / :func:`observe` / :func:`execute`.
It is never stored in actions, observations, results or exceptions: every error text that reaches the caller
passes through :func:`_scrub`. MIGRATE carries it as ``AUTH <password>`` inside the redis-py command (never a
shell); Redis redacts MIGRATE's AUTH arguments in SLOWLOG and MONITOR.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar, Literal, Protocol

from tasks.redis.plan import (
    SLOT_COUNT,
    Layout,
    Member,
    PlanError,
    PlannedInstance,
    Role,
    SlotRange,
    count_slots,
    format_endpoint,
    format_ranges,
    plan_membership,
    ranges_from_slots,
    slots_of,
)

log = logging.getLogger(__name__)

__all__ = [
    "Access",
    "AccessError",
    "Action",
    "ActionResult",
    "AddSlots",
    "ClusterError",
    "ClusterInfo",
    "ClusterNode",
    "ClusterObservation",
    "ClusterParseError",
    "ClusterShard",
    "Connector",
    "Failover",
    "Finding",
    "Forget",
    "InstanceState",
    "Meet",
    "MoveSlots",
    "NodeClient",
    "NodeRef",
    "Replicate",
    "SettleSlots",
    "Severity",
    "ShardNode",
    "SlotMigration",
    "execute",
    "findings",
    "observe",
    "parse_cluster_info",
    "parse_cluster_nodes",
    "parse_cluster_shards",
    "parse_info",
    "plan_actions",
    "redis_connector",
]


class ClusterError(RuntimeError):
    """A cluster command failed; the message names the instance and never contains the password."""


class AccessError(ClusterError):
    """Instances of the layout are unreachable, reject the password or are not in cluster mode."""


class ClusterParseError(ValueError):
    """Unexpected CLUSTER NODES / INFO / SHARDS output."""


def _text(value: Any) -> str:
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", errors="replace")
    return str(value)


def _scrub(message: str, password: str | None) -> str:
    return message.replace(password, "<redacted>") if password else message


# ============================================================================================ parsing


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
    for line_no, raw in enumerate(_text(output).splitlines(), start=1):
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
        return {str(k): _text(v) for k, v in output.items()}
    out: dict[str, str] = {}
    for raw in _text(output).splitlines():
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
        return {_text(k): v for k, v in value.items()}
    if isinstance(value, list | tuple) and len(value) % 2 == 0:
        return {_text(value[i]): value[i + 1] for i in range(0, len(value), 2)}
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
            role = _text(node.get("role", ""))
            if role not in ("master", "replica"):
                raise ClusterParseError(f"CLUSTER SHARDS: unknown role {role!r}")
            ip = _text(node.get("ip", ""))
            port_value = node.get("port", node.get("tls-port", 0))
            nodes.append(
                ShardNode(
                    node_id=_text(node.get("id", "")),
                    ip=ip,
                    port=int(port_value),
                    endpoint=_text(node.get("endpoint", ip)),
                    hostname=_text(node["hostname"]) if node.get("hostname") else None,
                    role="master" if role == "master" else "replica",
                    replication_offset=int(node.get("replication-offset", 0)),
                    health=_text(node.get("health", "")),
                )
            )
        shards.append(ClusterShard(slots=_shard_slots(shard.get("slots")), nodes=tuple(nodes)))
    return tuple(shards)


# ======================================================================================= observation


class Access(StrEnum):
    OK = "ok"
    UNREACHABLE = "unreachable"
    WRONG_PASSWORD = "wrong-password"
    NO_PASSWORD = "no-password-configured"
    NOT_CLUSTER = "cluster-disabled"
    ERROR = "error"


@dataclass(frozen=True)
class InstanceState:
    """What one planned instance said about itself and the cluster (or why it could not be read)."""

    host: str
    address: str
    port: int
    access: Access
    error: str | None = None
    node_id: str | None = None
    info: ClusterInfo | None = None
    nodes: tuple[ClusterNode, ...] = ()
    replication: Mapping[str, str] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def endpoint(self) -> str:
        return format_endpoint(self.address, self.port)

    @property
    def reachable(self) -> bool:
        return self.access is Access.OK

    @property
    def myself(self) -> ClusterNode | None:
        return next((n for n in self.nodes if n.myself), None)

    def knows(self, node_id: str) -> bool:
        return any(n.node_id == node_id and not n.handshake for n in self.nodes)

    def describe_access(self) -> str:
        if self.access is Access.OK:
            return "reachable"
        return f"{self.access.value}: {self.error}" if self.error else self.access.value


@dataclass(frozen=True)
class ClusterObservation:
    instances: tuple[InstanceState, ...]

    def get(self, endpoint: str) -> InstanceState | None:
        return next((i for i in self.instances if i.endpoint == endpoint), None)

    @property
    def reachable(self) -> tuple[InstanceState, ...]:
        return tuple(i for i in self.instances if i.reachable)


class _Pipeline(Protocol):
    def execute_command(self, *args: Any, **options: Any) -> Any: ...

    def execute(self, raise_on_error: bool = True) -> list[Any]: ...


class NodeClient(Protocol):
    """The part of redis.Redis used here (raw replies: callbacks are cleared)."""

    def execute_command(self, *args: Any, **options: Any) -> Any: ...

    def pipeline(self, transaction: bool = True) -> Any: ...

    def close(self) -> None: ...


Connector = Callable[[str, int], NodeClient]


def redis_connector(password: str, timeout: float = 5.0, username: str | None = None) -> Connector:
    """``connect(address, port)`` for redis-py clients that AUTH with ``password`` and return raw replies.

    No retries (an unreachable instance must fail fast); socket timeouts of ``timeout`` seconds.
    """
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    def connect(address: str, port: int) -> NodeClient:
        client = redis.Redis(
            host=address,
            port=port,
            username=username,
            password=password,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
            protocol=2,
        )
        client.response_callbacks.clear()  # raw replies: our own parsers do the work
        return client

    return connect


def _classify(exc: Exception, password: str | None) -> tuple[Access, str]:
    import redis

    message = _scrub(str(exc), password) or type(exc).__name__
    lower = message.lower()
    if isinstance(exc, redis.AuthenticationError | redis.exceptions.AuthenticationWrongNumberOfArgsError):
        if "without any password configured" in lower or "no password is set" in lower:
            return Access.NO_PASSWORD, (
                "the instance has no password configured (requirepass is empty) but AUTH was sent; "
                f"render its redis.conf with requirepass ({message})"
            )
        return Access.WRONG_PASSWORD, f"authentication failed: the redis password is wrong ({message})"
    if isinstance(exc, redis.ResponseError) and "noauth" in lower:
        return Access.WRONG_PASSWORD, f"authentication required: no password was sent ({message})"
    if isinstance(exc, redis.ResponseError) and "cluster support disabled" in lower:
        return Access.NOT_CLUSTER, f"cluster mode is disabled (cluster-enabled no): {message}"
    if isinstance(exc, redis.ConnectionError | redis.TimeoutError | OSError):
        return Access.UNREACHABLE, message
    return Access.ERROR, f"{type(exc).__name__}: {message}"


def _observe_instance(inst: PlannedInstance, connect: Connector, password: str | None) -> InstanceState:
    def failed(access: Access, error: str) -> InstanceState:
        return InstanceState(inst.host, inst.address, inst.port, access=access, error=error)

    try:
        client = connect(inst.address, inst.port)
    except Exception as exc:
        return failed(*_classify(exc, password))
    try:
        node_id = _text(client.execute_command("CLUSTER", "MYID"))
        info = parse_cluster_info(client.execute_command("CLUSTER", "INFO"))
        nodes = parse_cluster_nodes(client.execute_command("CLUSTER", "NODES"))
        replication = parse_info(client.execute_command("INFO", "replication"))
    except ClusterParseError as exc:
        return failed(Access.ERROR, str(exc))
    except Exception as exc:
        return failed(*_classify(exc, password))
    finally:
        try:
            client.close()
        except Exception:
            log.debug("closing the connection to %s failed", inst.endpoint, exc_info=True)
    return InstanceState(
        inst.host,
        inst.address,
        inst.port,
        access=Access.OK,
        node_id=node_id,
        info=info,
        nodes=nodes,
        replication=replication,
    )


def observe(
    layout: Layout,
    password: str,
    timeout: float = 5.0,
    *,
    connect: Connector | None = None,
) -> ClusterObservation:
    """Read every planned instance (in parallel). Failures are recorded in :class:`InstanceState`."""
    conn = connect or redis_connector(password, timeout)
    instances = layout.instances
    with ThreadPoolExecutor(max_workers=min(16, len(instances))) as pool:
        states = list(pool.map(lambda i: _observe_instance(i, conn, password), instances))
    return ClusterObservation(instances=tuple(states))


def access_problems(observation: ClusterObservation) -> list[str]:
    """One line per instance that cannot be used (wrong password first)."""
    order = {Access.WRONG_PASSWORD: 0, Access.NO_PASSWORD: 1, Access.NOT_CLUSTER: 2}
    bad = sorted((i for i in observation.instances if not i.reachable), key=lambda i: order.get(i.access, 9))
    return [f"{i.label} ({i.endpoint}): {i.describe_access()}" for i in bad]


def require_access(observation: ClusterObservation) -> None:
    """Raise :class:`AccessError` unless every planned instance is reachable with the password."""
    problems = access_problems(observation)
    if not problems:
        return
    wrong = [i for i in observation.instances if i.access is Access.WRONG_PASSWORD]
    head = (
        "the redis password is wrong for " + ", ".join(i.label for i in wrong)
        if wrong
        else "cannot plan the Redis Cluster: not every instance is usable"
    )
    raise AccessError(
        head
        + "; nothing was changed:\n  "
        + "\n  ".join(problems)
        + "\n(start missing instances with `nr run redis`; a wrong password means the inventory secret "
        "differs from requirepass on the instances)"
    )


# ========================================================================================== topology


@dataclass(frozen=True)
class NodeState:
    """A cluster node as nr sees it: self-reported for reachable instances, else from a peer's view."""

    node_id: str
    address: str
    port: int
    label: str
    host: str | None
    planned: PlannedInstance | None
    role: Role
    master_id: str | None
    slots: frozenset[int]
    down: bool
    migrations: tuple[SlotMigration, ...] = ()

    @property
    def endpoint(self) -> str:
        return format_endpoint(self.address, self.port)

    @property
    def ref(self) -> NodeRef:
        return NodeRef(self.label, self.address, self.port, self.node_id)


@dataclass(frozen=True)
class Topology:
    nodes: Mapping[str, NodeState]  # by node id
    planned_ids: Mapping[str, str]  # planned endpoint -> node id
    seed: str | None  # endpoint of the instance that knows most nodes

    def planned(self, inst: PlannedInstance) -> NodeState | None:
        node_id = self.planned_ids.get(inst.endpoint)
        return self.nodes.get(node_id) if node_id else None

    def replicas_of(self, node_id: str) -> list[NodeState]:
        return [n for n in self.nodes.values() if n.role == "replica" and n.master_id == node_id]

    def foreign(self) -> list[NodeState]:
        return [n for n in self.nodes.values() if n.planned is None]

    def owners(self) -> dict[int, str]:
        out: dict[int, str] = {}
        for n in self.nodes.values():
            if n.role == "master":
                for s in n.slots:
                    out[s] = n.node_id
        return out


def _pick_entry(entries: list[ClusterNode]) -> ClusterNode | None:
    usable = [e for e in entries if not e.handshake]
    if not usable:
        return None
    return sorted(usable, key=lambda e: (e.failed or e.noaddr, e.pfail))[0]


def consolidate(layout: Layout, observation: ClusterObservation) -> Topology:
    """Merge the instances' views: each reachable instance's own ``myself`` line is authoritative for it;
    unreachable instances and nodes outside the layout come from the peers' views."""
    reachable = [s for s in observation.instances if s.reachable and s.myself is not None]
    seed_state = max(
        reachable, key=lambda s: (sum(not n.handshake for n in s.nodes), -reachable.index(s)), default=None
    )
    views = ([seed_state] if seed_state else []) + [s for s in reachable if s is not seed_state]
    nodes: dict[str, NodeState] = {}
    planned_ids: dict[str, str] = {}
    for inst in layout.instances:
        state = observation.get(inst.endpoint)
        me = state.myself if state and state.reachable else None
        if me is not None:
            planned_ids[inst.endpoint] = me.node_id
            nodes[me.node_id] = NodeState(
                node_id=me.node_id,
                address=inst.address,
                port=inst.port,
                label=inst.label,
                host=inst.host,
                planned=inst,
                role=me.role,
                master_id=me.master_id,
                slots=slots_of(me.slots),
                down=False,
                migrations=me.migrations,
            )
            continue
        entry = _pick_entry([n for v in views for n in v.nodes if n.endpoint == inst.endpoint])
        if entry is None:
            continue
        planned_ids[inst.endpoint] = entry.node_id
        nodes[entry.node_id] = NodeState(
            node_id=entry.node_id,
            address=inst.address,
            port=inst.port,
            label=inst.label,
            host=inst.host,
            planned=inst,
            role=entry.role,
            master_id=entry.master_id,
            slots=slots_of(entry.slots),
            down=True,
            migrations=entry.migrations,
        )
    for view in views:
        for n in view.nodes:
            if n.node_id in nodes or n.handshake:
                continue
            host = layout.host_of(n.endpoint)
            label = f"{n.endpoint} (stale id of {host}:{n.port})" if host else n.endpoint
            nodes[n.node_id] = NodeState(
                node_id=n.node_id,
                address=n.ip,
                port=n.port,
                label=label,
                host=None,
                planned=None,
                role=n.role,
                master_id=n.master_id,
                slots=slots_of(n.slots),
                down=n.failed or n.pfail,
                migrations=n.migrations,
            )
    return Topology(nodes=nodes, planned_ids=planned_ids, seed=seed_state.endpoint if seed_state else None)


# ============================================================================================ actions


@dataclass(frozen=True)
class NodeRef:
    """An instance as actions address it: human label, where to connect, its node id."""

    label: str
    address: str
    port: int
    node_id: str

    @property
    def endpoint(self) -> str:
        return format_endpoint(self.address, self.port)


@dataclass(frozen=True)
class Action:
    """Base of the planned actions; ``description`` is what ``nr`` prints."""

    kind: ClassVar[str] = "action"

    @property
    def description(self) -> str:
        raise NotImplementedError

    def __str__(self) -> str:
        return self.description


@dataclass(frozen=True)
class Meet(Action):
    """CLUSTER MEET ``node`` sent to ``seed`` (an instance already in the cluster)."""

    kind: ClassVar[str] = "meet"
    seed: NodeRef
    node: NodeRef

    @property
    def description(self) -> str:
        return f"MEET {self.node.endpoint} from {self.seed.endpoint}"


@dataclass(frozen=True)
class AddSlots(Action):
    """CLUSTER ADDSLOTSRANGE for unassigned slots on the planned master of ``shard``."""

    kind: ClassVar[str] = "addslots"
    node: NodeRef
    shard: int
    slots: tuple[SlotRange, ...]

    @property
    def description(self) -> str:
        bounds = " ".join(f"{r.start} {r.end}" for r in self.slots)
        return f"ADDSLOTSRANGE {bounds} on {self.node.label}"


@dataclass(frozen=True)
class Replicate(Action):
    """CLUSTER REPLICATE on ``replica`` so that it follows ``master``."""

    kind: ClassVar[str] = "replicate"
    replica: NodeRef
    master: NodeRef
    shard: int
    previous_master: str | None = None
    restore: bool = False  # step 1 of restoring a planned master that came back empty

    @property
    def description(self) -> str:
        if self.restore:
            return (
                f"REPLICATE {self.replica.label} -> current master of shard {self.shard} ({self.master.label}), "
                "so that FAILOVER can make it master again"
            )
        text = f"REPLICATE {self.replica.label} -> master of shard {self.shard} ({self.master.label})"
        if self.previous_master:
            text += f" (was replica of {self.previous_master})"
        return text


@dataclass(frozen=True)
class Failover(Action):
    """CLUSTER FAILOVER on the planned master ``node`` (currently a replica of ``current_master``).

    A plain CLUSTER FAILOVER is a coordinated, lossless switch: the master stops accepting writes, the replica
    catches up with the master's replication offset, then takes over and the old master becomes its replica.
    FORCE skips that handshake (only used when the current master is flagged failed, so it cannot take part:
    writes it acknowledged but had not replicated would be lost anyway). TAKEOVER (no majority vote, epoch
    bump by fiat) is never used by nr.
    """

    kind: ClassVar[str] = "failover"
    node: NodeRef
    shard: int
    current_master: NodeRef | None
    force: bool = False

    @property
    def description(self) -> str:
        verb = "FAILOVER FORCE" if self.force else "FAILOVER"
        text = f"{verb} on {self.node.label} to restore planned master of shard {self.shard}"
        if self.current_master:
            text += f" (current master {self.current_master.label})"
        return text


@dataclass(frozen=True)
class MoveSlots(Action):
    """Move ``slots`` online from ``source`` to ``target``: SETSLOT IMPORTING/MIGRATING, MIGRATE the keys in
    batches (AUTH inside the command), SETSLOT NODE on the target, the source and every master."""

    kind: ClassVar[str] = "move"
    source: NodeRef
    target: NodeRef
    shard: int
    slots: tuple[SlotRange, ...]
    masters: tuple[NodeRef, ...]
    resume: bool = False

    @property
    def count(self) -> int:
        return count_slots(self.slots)

    @property
    def description(self) -> str:
        what = "finish migrating" if self.resume else "MIGRATE"
        return (
            f"{what} {self.count} slots {format_ranges(self.slots, limit=4)} from {self.source.label} to "
            f"{self.target.label} (shard {self.shard}), keys moved online"
        )


@dataclass(frozen=True)
class SettleSlots(Action):
    """SETSLOT <slot> NODE <owner> on every master: closes importing/migrating markers left behind."""

    kind: ClassVar[str] = "settle"
    owner: NodeRef
    slots: tuple[SlotRange, ...]
    masters: tuple[NodeRef, ...]

    @property
    def description(self) -> str:
        return (
            f"SETSLOT NODE {self.owner.label} for slots {format_ranges(self.slots, limit=4)} on all masters "
            "(close a half-finished migration)"
        )


@dataclass(frozen=True)
class Forget(Action):
    """CLUSTER FORGET ``node`` on every instance of the layout (a node not in the layout, without slots)."""

    kind: ClassVar[str] = "forget"
    node: NodeRef
    on: tuple[NodeRef, ...]

    @property
    def description(self) -> str:
        return (
            f"FORGET {self.node.label} (node {self.node.node_id[:12]}, not in the layout, holds no slots) on "
            f"all {len(self.on)} instances"
        )


# ========================================================================================== planning


@dataclass
class _MNode:
    """Mutable projection of a node while planning."""

    ref: NodeRef
    planned: PlannedInstance | None
    role: Role
    master_id: str | None
    slots: set[int]
    down: bool


class _Model:
    def __init__(self, topo: Topology) -> None:
        self.nodes: dict[str, _MNode] = {
            n.node_id: _MNode(n.ref, n.planned, n.role, n.master_id, set(n.slots), n.down)
            for n in topo.nodes.values()
        }
        self.planned_ids = dict(topo.planned_ids)

    def planned(self, inst: PlannedInstance) -> _MNode:
        node = self.nodes.get(self.planned_ids.get(inst.endpoint, ""))
        if node is None:  # require_access() makes this unreachable
            raise PlanError(f"{inst.label} was not observed")
        return node

    def assigned(self) -> set[int]:
        return {s for n in self.nodes.values() if n.role == "master" for s in n.slots}

    def promote(self, node: _MNode) -> None:
        """Project a failover: ``node`` takes over its master's slots; the old master and its other replicas
        follow ``node``."""
        old = self.nodes.get(node.master_id or "")
        node.role, node.master_id = "master", None
        if old is None:
            return
        node.slots, old.slots = set(old.slots), set()
        for other in self.nodes.values():
            if other is not node and other.role == "replica" and other.master_id == old.ref.node_id:
                other.master_id = node.ref.node_id
        if not old.down:
            old.role, old.master_id = "replica", node.ref.node_id

    def members(self) -> list[Member]:
        return [
            Member(
                n.ref.endpoint,
                n.ref.node_id,
                n.role,
                n.master_id,
                ranges_from_slots(n.slots),
                in_layout=n.planned is not None,
            )
            for n in self.nodes.values()
        ]


def _plan_meet(layout: Layout, observation: ClusterObservation, topo: Topology) -> list[Action]:
    seed_state = observation.get(topo.seed or "")
    if seed_state is None:
        return []
    seed_id = topo.planned_ids[seed_state.endpoint]
    seed = topo.nodes[seed_id].ref
    actions: list[Action] = []
    for inst in layout.instances:
        state = observation.get(inst.endpoint)
        node_id = topo.planned_ids[inst.endpoint]
        if state is None or node_id == seed_id:
            continue
        if seed_state.knows(node_id) and state.knows(seed_id):
            continue
        actions.append(Meet(seed=seed, node=topo.nodes[node_id].ref))
    return actions


def _plan_open_slots(layout: Layout, topo: Topology, model: _Model) -> list[Action]:
    """Finish migrations left half-way (importing/migrating markers), like ``redis-cli --cluster fix``."""
    owners = topo.owners()
    masters = tuple(model.planned(s.master).ref for s in layout.shards)
    moves: dict[tuple[str, str], set[int]] = {}
    settle: dict[str, set[int]] = {}
    for node in topo.nodes.values():
        for mig in node.migrations:
            importer = node.node_id if mig.state == "importing" else mig.peer_id
            owner = owners.get(mig.slot)
            if owner is None or importer not in topo.nodes or owner == importer:
                settle.setdefault(owner or importer, set()).add(mig.slot)
            else:
                moves.setdefault((owner, importer), set()).add(mig.slot)
    actions: list[Action] = []
    for (src, dst), slots in sorted(moves.items()):
        source, target = model.nodes[src], model.nodes[dst]
        shard = target.planned.shard if target.planned else 0
        actions.append(
            MoveSlots(source.ref, target.ref, shard, ranges_from_slots(slots), masters, resume=True)
        )
        source.slots -= slots
        target.slots |= slots
    for owner_id, slots in sorted(settle.items()):
        if owner_id in model.nodes:
            holder = model.nodes[owner_id]
            actions.append(SettleSlots(holder.ref, ranges_from_slots(slots), masters))
            if holder.role == "master":
                holder.slots |= slots
    return actions


def _plan_restore(layout: Layout, model: _Model) -> list[Action]:
    """Planned masters that are replicas (roles swapped after a failover) get CLUSTER FAILOVER; a planned
    master that came back empty while its planned replica holds the shard first replicates it."""
    actions: list[Action] = []
    for shard in layout.shards:
        node = model.planned(shard.master)
        if node.role != "replica":
            continue
        current = model.nodes.get(node.master_id or "")
        if current is not None and current.planned is not None and current.planned.role == "master":
            # A failover would only swap two planned masters back and forth.
            raise PlanError(
                f"{node.ref.label} is planned as master of shard {shard.number} but replicates "
                f"{current.ref.label}, the planned master of shard {current.planned.shard}; turn it into an "
                f"empty master first (`REDISCLI_AUTH=… redis-cli -h {node.ref.address} -p {node.ref.port} "
                "CLUSTER RESET SOFT`, which drops its copy of the other shard), then run `nr run redis`"
            )
        force = current is not None and current.down
        actions.append(Failover(node.ref, shard.number, current.ref if current else None, force=force))
        model.promote(node)
    if not model.assigned():
        return actions
    for shard in layout.shards:
        node = model.planned(shard.master)
        acting = model.planned(shard.replica)
        if node.role == "master" and not node.slots and acting.role == "master" and acting.slots:
            actions.append(Replicate(node.ref, acting.ref, shard.number, restore=True))
            actions.append(Failover(node.ref, shard.number, acting.ref))
            node.role, node.master_id = "replica", acting.ref.node_id
            model.promote(node)
    return actions


def _plan_addslots(layout: Layout, model: _Model) -> list[Action]:
    unassigned = set(range(SLOT_COUNT)) - model.assigned()
    actions: list[Action] = []
    for shard in layout.shards:
        wanted = slots_of(shard.slots) & unassigned
        if wanted:
            node = model.planned(shard.master)
            actions.append(AddSlots(node.ref, shard.number, ranges_from_slots(wanted)))
            node.slots |= wanted
    return actions


def plan_actions(layout: Layout, observation: ClusterObservation) -> list[Action]:
    """Pure: the actions that bring the observed cluster to ``layout``; ``[]`` when it already matches.

    Order: MEET unknown instances; finish half-done migrations; restore planned masters (FAILOVER); ADDSLOTS
    for unassigned slots (fresh or half-formed cluster); REPLICATE fresh replicas, then re-point existing ones
    (scale-out re-rotation: no master is left without a replica meanwhile); move slots online to new shards;
    FORGET slot-free nodes that are no longer in the layout.

    Raises :class:`AccessError` when an instance is unreachable or rejects the password, and
    :class:`~tasks.redis.plan.PlanError` when a host to be removed still holds slots (with how to move them).
    """
    require_access(observation)
    topo = consolidate(layout, observation)
    model = _Model(topo)
    actions: list[Action] = []
    actions += _plan_meet(layout, observation, topo)
    actions += _plan_open_slots(layout, topo, model)
    actions += _plan_restore(layout, model)
    actions += _plan_addslots(layout, model)
    change = plan_membership(layout, model.members())
    for rp in change.repoints:
        replica = model.planned(rp.replica)
        master = model.planned(rp.new_master)
        previous = model.nodes[replica.master_id].ref.label if replica.master_id in model.nodes else None
        actions.append(Replicate(replica.ref, master.ref, rp.new_master.shard, previous_master=previous))
        replica.role, replica.master_id = "replica", master.ref.node_id
    masters = tuple(model.planned(s.master).ref for s in layout.shards)
    for mv in change.slot_moves:
        source = model.nodes[model.planned_ids[mv.source]]
        target = model.nodes[model.planned_ids[mv.target]]
        shard = target.planned.shard if target.planned else 0
        actions.append(MoveSlots(source.ref, target.ref, shard, mv.slots, masters))
    on = tuple(model.planned(i).ref for i in layout.instances)
    for member in change.forget:
        actions.append(Forget(model.nodes[member.node_id].ref, on))
    return actions


# ========================================================================================== findings


class Severity(StrEnum):
    ERROR = "error"  # a fault: data or availability at risk now
    DRIFT = "drift"  # safe, but not the plan; `nr run redis` restores it
    WARNING = "warning"  # transient or unusual; look at it


@dataclass(frozen=True)
class Finding:
    """One check result. ``host``/``instance`` are empty for cluster-wide findings."""

    severity: Severity
    host: str
    instance: str
    what: str
    expected: str
    actual: str
    fix: str

    @property
    def message(self) -> str:
        return f"{self.what} is {self.actual}, plan says {self.expected} — fix: {self.fix}"


FIX_RUN = "nr run redis"


def _disagreements(layout: Layout, observation: ClusterObservation, topo: Topology) -> list[str]:
    owners = topo.owners()
    out: list[str] = []
    for state in observation.reachable:
        seen: dict[int, str] = {}
        for n in state.nodes:
            if n.is_master and not n.handshake:
                for r in n.slots:
                    for s in r.slots():
                        seen[s] = n.node_id
        diff = [s for s in range(SLOT_COUNT) if seen.get(s) != owners.get(s)]
        if diff:
            s = diff[0]

            def name(node_id: str | None) -> str:
                return (
                    topo.nodes[node_id].label if node_id and node_id in topo.nodes else (node_id or "nobody")
                )

            out.append(
                f"{state.label} disagrees on {len(diff)} slots (slot {s}: it says {name(seen.get(s))}, "
                f"the owner is {name(owners.get(s))})"
            )
    return out


def findings(layout: Layout, observation: ClusterObservation) -> list[Finding]:
    """Pure checks of an observation against the layout; ``[]`` means healthy and as planned."""
    out: list[Finding] = []
    for st in observation.instances:
        if st.reachable:
            continue
        fix = {
            Access.WRONG_PASSWORD: "set the same password in the inventory secret and in requirepass "
            "(nr run redis renders redis.conf)",
            Access.NO_PASSWORD: "nr run redis (renders requirepass/masterauth and restarts the instance)",
            Access.NOT_CLUSTER: "nr run redis (renders cluster-enabled yes)",
        }.get(st.access, f"start redis-server@{st.port} on {st.host} (nr run redis) and check the network")
        out.append(
            Finding(
                Severity.ERROR,
                st.host,
                st.label,
                f"{st.label}: access",
                "reachable with the password, cluster mode",
                st.describe_access(),
                fix,
            )
        )
    reachable = observation.reachable
    if not reachable:
        return out
    topo = consolidate(layout, observation)

    for st in reachable:
        info = st.info
        if info is None:
            continue
        if not info.ok:
            out.append(
                Finding(
                    Severity.ERROR,
                    st.host,
                    st.label,
                    f"{st.label}: cluster_state",
                    "ok",
                    info.summary(),
                    FIX_RUN,
                )
            )
        elif info.slots_ok != SLOT_COUNT or info.slots_pfail or info.slots_fail:
            # state ok but slots not all served (cluster-require-full-coverage no, or a node just went PFAIL)
            severity = Severity.ERROR if info.slots_fail else Severity.WARNING
            out.append(
                Finding(
                    severity,
                    st.host,
                    st.label,
                    f"{st.label}: slots ok",
                    f"{SLOT_COUNT}",
                    info.summary(),
                    "bring back the instances flagged fail?/fail, then nr run redis",
                )
            )
    owners = topo.owners()
    if len(owners) < SLOT_COUNT:
        missing = ranges_from_slots(set(range(SLOT_COUNT)) - set(owners))
        out.append(
            Finding(
                Severity.ERROR,
                "",
                "",
                "slots assigned",
                f"{SLOT_COUNT}",
                f"{len(owners)} (unassigned: {format_ranges(missing)})",
                FIX_RUN,
            )
        )
    for text in _disagreements(layout, observation, topo):
        out.append(
            Finding(
                Severity.WARNING,
                "",
                "",
                "slot configuration agreement",
                "all nodes agree about slots",
                text,
                "wait a few seconds (gossip); if it persists: redis-cli --cluster check",
            )
        )
    for node in topo.nodes.values():
        for mig in node.migrations:
            out.append(
                Finding(
                    Severity.WARNING,
                    node.host or "",
                    node.label,
                    f"slot {mig.slot}",
                    "stable",
                    f"{mig.state} ({node.label}, peer {mig.peer_id[:12]})",
                    FIX_RUN,
                )
            )

    # Masters with slots: exactly one working replica, on another host.
    for master in topo.nodes.values():
        if master.role != "master" or not master.slots:
            continue
        replicas = topo.replicas_of(master.node_id)
        working = [r for r in replicas if not r.down]
        host = master.host or ""
        if not working:
            down = ", ".join(f"{r.label} (down)" for r in replicas) or "none"
            out.append(
                Finding(
                    Severity.ERROR,
                    host,
                    master.label,
                    f"{master.label}: replicas",
                    "1 working replica on another host",
                    down,
                    FIX_RUN + " once the instances are back",
                )
            )
        elif len(replicas) > 1:
            out.append(
                Finding(
                    Severity.WARNING,
                    host,
                    master.label,
                    f"{master.label}: replicas",
                    "exactly 1 replica",
                    ", ".join(r.label for r in replicas),
                    FIX_RUN,
                )
            )
        for rep in replicas:
            if rep.host is not None and rep.host == master.host:
                out.append(
                    Finding(
                        Severity.ERROR,
                        host,
                        rep.label,
                        f"{rep.label}: placement",
                        "replica on another host than its master",
                        f"replica of {master.label} on the same host {host} (losing {host} loses the shard)",
                        FIX_RUN + " (re-points replicas to the rotation)",
                    )
                )
    # The plan: who masters each shard, who replicates whom.
    for shard in layout.shards:
        m = topo.planned(shard.master)
        r = topo.planned(shard.replica)
        if m is None:
            continue
        acting: NodeState | None = None
        if m.role == "replica":
            acting = topo.nodes.get(m.master_id or "")
        elif not m.slots and r is not None and r.role == "master" and r.slots:
            acting = r
        if m.role != "master" or not m.slots:
            actual = (
                acting.label if acting else ("none (holds no slots)" if m.role == "master" else "unknown")
            )
            safe = acting is not None and acting.host != m.host
            note = " (roles swapped inside the shard; safe)" if safe and acting is r else ""
            out.append(
                Finding(
                    Severity.DRIFT,
                    shard.master.host,
                    shard.master.label,
                    f"shard {shard.number}: master",
                    shard.master.label,
                    actual + note,
                    FIX_RUN,
                )
            )
        if r is None or r is acting:
            continue
        if r.role != "replica" or r.master_id != m.node_id:
            if r.role == "master":
                now = f"a master with {len(r.slots)} slots" if r.slots else "a master without slots"
            elif r.master_id and r.master_id in topo.nodes:
                now = f"replica of {topo.nodes[r.master_id].label}"
            else:
                now = f"replica of unknown node {r.master_id}"
            out.append(
                Finding(
                    Severity.DRIFT,
                    shard.replica.host,
                    shard.replica.label,
                    f"{shard.replica.label}: role",
                    f"replica of shard {shard.number} ({shard.master.label})",
                    now,
                    FIX_RUN,
                )
            )
    # Membership: planned instances outside the cluster, nodes outside the layout.
    seed = observation.get(topo.seed or "")
    if seed is not None:
        for inst in layout.instances:
            node_id = topo.planned_ids.get(inst.endpoint)
            if node_id and inst.endpoint != seed.endpoint and not seed.knows(node_id):
                out.append(
                    Finding(
                        Severity.DRIFT,
                        inst.host,
                        inst.label,
                        f"{inst.label}: membership",
                        "member of the cluster",
                        f"not known to {seed.label}",
                        FIX_RUN,
                    )
                )
    for node in topo.foreign():
        if node.role == "master" and node.slots:
            out.append(
                Finding(
                    Severity.ERROR,
                    "",
                    node.label,
                    f"{node.label}: membership",
                    "only layout instances hold slots",
                    f"not in the layout, master of {len(node.slots)} slots",
                    "move its slots to planned masters (redis-cli --cluster rebalance/reshard), "
                    "then nr run redis",
                )
            )
        else:
            out.append(
                Finding(
                    Severity.DRIFT,
                    "",
                    node.label,
                    f"{node.label}: membership",
                    "not in the cluster",
                    f"known to the cluster as {node.role}",
                    FIX_RUN + " (CLUSTER FORGET)",
                )
            )
    return out


# ========================================================================================== execution


@dataclass(frozen=True)
class ActionResult:
    description: str
    seconds: float
    detail: str = ""


_FATAL_ACCESS = frozenset({Access.WRONG_PASSWORD, Access.NO_PASSWORD, Access.NOT_CLUSTER})


class _Borrowed:
    """A cached client handed to observe(): its close() must not close the shared connection."""

    def __init__(self, client: NodeClient) -> None:
        self._client = client

    def execute_command(self, *args: Any, **options: Any) -> Any:
        return self._client.execute_command(*args, **options)

    def pipeline(self, transaction: bool = True) -> Any:
        return self._client.pipeline(transaction)

    def close(self) -> None:
        return None


class _Session:
    def __init__(
        self,
        layout: Layout,
        password: str,
        connect: Connector,
        timeout: float,
        poll: float,
        migrate_batch: int,
        migrate_timeout_ms: int,
    ) -> None:
        self.layout = layout
        self.password = password
        self._connect = connect
        self.timeout = timeout
        self.poll = poll
        self.migrate_batch = migrate_batch
        self.migrate_timeout_ms = migrate_timeout_ms
        self._clients: dict[tuple[str, int], NodeClient] = {}

    def client(self, address: str, port: int) -> NodeClient:
        key = (address, port)
        if key not in self._clients:
            self._clients[key] = self._connect(address, port)
        return self._clients[key]

    def borrowed(self, address: str, port: int) -> NodeClient:
        return _Borrowed(self.client(address, port))

    def close(self) -> None:
        for client in self._clients.values():
            try:
                client.close()
            except Exception:
                log.debug("close failed", exc_info=True)
        self._clients.clear()

    def run(self, ref: NodeRef, *args: Any) -> Any:
        try:
            return self.client(ref.address, ref.port).execute_command(*args)
        except Exception as exc:
            raise self._error(ref, args, exc) from None

    def batch(self, ref: NodeRef, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
        if not commands:
            return []
        try:
            pipe = self.client(ref.address, ref.port).pipeline(transaction=False)
            for cmd in commands:
                pipe.execute_command(*cmd)
            result: list[Any] = pipe.execute()
            return result
        except Exception as exc:
            raise self._error(ref, commands[0], exc) from None

    def _error(self, ref: NodeRef, args: Sequence[Any], exc: Exception) -> ClusterError:
        access, text = _classify(exc, self.password)
        command = " ".join(_text(a) for a in args[:2])
        if access in (Access.WRONG_PASSWORD, Access.NO_PASSWORD, Access.UNREACHABLE):
            return AccessError(f"{ref.label} ({ref.endpoint}): {command}: {text}")
        return ClusterError(f"{ref.label} ({ref.endpoint}): {command} failed: {text}")

    def observe(self) -> ClusterObservation:
        return observe(self.layout, self.password, connect=self.borrowed)

    def wait(
        self,
        what: str,
        pending: Callable[[ClusterObservation], str | None],
        on_poll: Callable[[float], None] | None = None,
    ) -> None:
        """Poll observations until ``pending`` returns None; TimeoutError names what and the last reason."""
        start = time.monotonic()
        reason: str | None = "not observed yet"
        while True:
            obs = self.observe()
            if any(i.access in _FATAL_ACCESS for i in obs.instances):
                require_access(obs)  # a wrong password or a non-cluster instance will not heal by waiting
            problems = access_problems(obs)
            reason = ("; ".join(problems) if problems else None) or pending(obs)
            if reason is None:
                return
            elapsed = time.monotonic() - start
            if elapsed > self.timeout:
                raise TimeoutError(
                    f"timed out after {self.timeout:.0f} s waiting for {what}; still: {reason}"
                )
            if on_poll:
                on_poll(elapsed)
            time.sleep(self.poll)


# ----------------------------------------------------------------------------------- wait conditions


def _pending_membership(layout: Layout, obs: ClusterObservation) -> str | None:
    ids = {s.endpoint: s.node_id for s in obs.reachable if s.node_id}
    for st in obs.reachable:
        for inst in layout.instances:
            other = ids.get(inst.endpoint)
            if other and other != st.node_id and not st.knows(other):
                return f"{st.label} does not know {inst.label} yet"
    return None


def _pending_slots(layout: Layout, obs: ClusterObservation) -> str | None:
    topo = consolidate(layout, obs)
    problems = _disagreements(layout, obs, topo)
    if problems:
        return problems[0]
    for st in obs.reachable:
        me = st.myself
        if me is not None and me.migrations:
            return f"{st.label} still has open slots {[m.slot for m in me.migrations][:5]}"
    return None


def _pending_roles(layout: Layout, obs: ClusterObservation, expected: Mapping[str, str | None]) -> str | None:
    """``expected`` maps node id -> master id (None: master). Self-reports, every view, replication links."""
    by_id = {s.node_id: s for s in obs.reachable if s.node_id}
    for node_id, master_id in expected.items():
        st = by_id.get(node_id)
        me = st.myself if st else None
        if st is None or me is None:
            continue
        if me.master_id != master_id or (master_id is None) != me.is_master:
            return f"{st.label} is not yet {'a master' if master_id is None else 'a replica of ' + master_id[:12]}"
        if master_id is not None and st.replication.get("master_link_status") != "up":
            return f"{st.label}: replication link to its master is not up yet"
        for view in obs.reachable:
            entry = next((n for n in view.nodes if n.node_id == node_id), None)
            if entry is not None and (entry.master_id != master_id or (master_id is None) != entry.is_master):
                return f"{view.label} does not see the new role of {st.label} yet"
    return None


def _pending_state_ok(obs: ClusterObservation) -> str | None:
    for st in obs.reachable:
        if st.info is None or not st.info.ok:
            return f"{st.label}: cluster_state {st.info.summary() if st.info else 'unknown'}"
    return None


def _pending_forgotten(obs: ClusterObservation, node_ids: Iterable[str]) -> str | None:
    for st in obs.reachable:
        for node_id in node_ids:
            if st.knows(node_id):
                return f"{st.label} still knows node {node_id[:12]}"
    return None


def _planned_roles(layout: Layout, obs: ClusterObservation) -> dict[str, str | None]:
    ids = {s.endpoint: s.node_id for s in obs.reachable if s.node_id}
    out: dict[str, str | None] = {}
    for shard in layout.shards:
        m, r = ids.get(shard.master.endpoint), ids.get(shard.replica.endpoint)
        if m:
            out[m] = None
        if r and m:
            out[r] = m
    return out


def _pending_layout(layout: Layout, obs: ClusterObservation) -> str | None:
    return (
        _pending_state_ok(obs)
        or _pending_slots(layout, obs)
        or _pending_roles(layout, obs, _planned_roles(layout, obs))
    )


# ----------------------------------------------------------------------------------------- executors


def _groups(actions: Sequence[Action]) -> Iterator[list[Action]]:
    group: list[Action] = []
    for action in actions:
        if group and (type(action) is not type(group[0]) or isinstance(action, Failover | MoveSlots)):
            yield group
            group = []
        group.append(action)
    if group:
        yield group


def _do_meet(s: _Session, group: list[Meet]) -> None:
    for a in group:
        s.run(a.seed, "CLUSTER", "MEET", a.node.address, a.node.port)
    s.wait("all instances to know each other (CLUSTER NODES)", lambda o: _pending_membership(s.layout, o))


def _do_addslots(s: _Session, group: list[AddSlots]) -> None:
    for a in group:
        args: list[Any] = ["CLUSTER", "ADDSLOTSRANGE"]
        for r in a.slots:
            args += [r.start, r.end]
        s.run(a.node, *args)
    s.wait("all instances to agree on slot ownership", lambda o: _pending_slots(s.layout, o))


def _do_replicate(s: _Session, group: list[Replicate]) -> None:
    for a in group:
        deadline = time.monotonic() + s.timeout
        while True:  # the replica must know the master id; MEET waits for that, gossip may still lag
            try:
                s.run(a.replica, "CLUSTER", "REPLICATE", a.master.node_id)
                break
            except ClusterError as exc:
                if "unknown node" not in str(exc).lower() or time.monotonic() > deadline:
                    raise
                time.sleep(s.poll)
    expected = {a.replica.node_id: a.master.node_id for a in group}
    s.wait(
        "replicas to follow their masters (" + ", ".join(a.replica.label for a in group) + ")",
        lambda o: _pending_roles(s.layout, o, expected),
    )


# A manual failover that does not complete within Redis's CLUSTER_MF_TIMEOUT (5 s) is aborted; retry then.
_FAILOVER_RETRY_S = 6.0


def _do_failover(s: _Session, a: Failover) -> None:
    args = ["CLUSTER", "FAILOVER"] + (["FORCE"] if a.force else [])
    if a.current_master and not a.force:
        # A coordinated failover needs the replica in sync with its master: wait for the replication link.
        before: dict[str, str | None] = {a.node.node_id: a.current_master.node_id}
        s.wait(
            f"{a.node.label} to be an in-sync replica of {a.current_master.label} before FAILOVER",
            lambda o: _pending_roles(s.layout, o, before),
        )
    s.run(a.node, *args)
    sent = [time.monotonic()]

    def retry(_: float) -> None:
        if time.monotonic() - sent[0] < _FAILOVER_RETRY_S:
            return
        me = parse_cluster_nodes(s.run(a.node, "CLUSTER", "NODES"))
        if any(n.myself and n.is_replica for n in me):
            log.info("manual failover of %s did not complete yet; sending it again", a.node.label)
            s.run(a.node, *args)
        sent[0] = time.monotonic()

    expected: dict[str, str | None] = {a.node.node_id: None}
    if a.current_master and not a.force:
        expected[a.current_master.node_id] = a.node.node_id
    s.wait(
        f"{a.node.label} to be master of shard {a.shard} again and the cluster ok",
        lambda o: _pending_roles(s.layout, o, expected) or _pending_state_ok(o),
        on_poll=retry,
    )


def _migrate_keys(s: _Session, a: MoveSlots, slot: int, count: int) -> int:
    """MIGRATE the keys of an open slot in batches. While the slot is MIGRATING the source creates no new
    keys (it answers ASK for missing ones), so a short GETKEYSINSLOT batch means the slot is empty."""
    moved = 0
    while count > 0:
        keys = s.run(a.source, "CLUSTER", "GETKEYSINSLOT", slot, s.migrate_batch)
        if not keys:
            break
        base: list[Any] = ["MIGRATE", a.target.address, a.target.port, "", 0, s.migrate_timeout_ms]
        auth: list[Any] = ["AUTH", s.password, "KEYS", *keys]
        try:
            s.run(a.source, *base, *auth)
        except ClusterError as exc:
            if "BUSYKEY" not in str(exc):
                raise
            # A previous, interrupted run copied the key already; the source copy is the current one.
            s.run(a.source, *base, "REPLACE", *auth)
        moved += len(keys)
        if len(keys) < s.migrate_batch:
            break
    return moved


def _move_chunk(s: _Session, a: MoveSlots, chunk: Sequence[int]) -> int:
    """The documented online move (CLUSTER SETSLOT docs) for a few slots at once, pipelined per node:
    IMPORTING on the target, MIGRATING on the source, MIGRATE the keys, NODE on the target (it bumps its
    epoch) and then on the source. The other masters are told in batches by the caller."""
    s.batch(a.target, [("CLUSTER", "SETSLOT", n, "IMPORTING", a.source.node_id) for n in chunk])
    replies = s.batch(
        a.source,
        [
            cmd
            for n in chunk
            for cmd in (
                ("CLUSTER", "SETSLOT", n, "MIGRATING", a.target.node_id),
                ("CLUSTER", "COUNTKEYSINSLOT", n),
            )
        ],
    )
    moved = 0
    for n, count in zip(chunk, replies[1::2], strict=True):
        if int(count):
            moved += _migrate_keys(s, a, n, int(count))
    node_cmds = [("CLUSTER", "SETSLOT", n, "NODE", a.target.node_id) for n in chunk]
    s.batch(a.target, node_cmds)
    s.batch(a.source, node_cmds)
    return moved


def _do_move(s: _Session, a: MoveSlots, batch: int = 128) -> str:
    """Move the slots online. Clients get ASK redirects for a slot only while it is open, so empty slots
    move in pipelined batches (open for a few round trips) and slots holding keys one at a time (open while
    their keys are MIGRATEd)."""
    others = [m for m in a.masters if m.node_id not in (a.source.node_id, a.target.node_id)]
    slots = sorted(slots_of(a.slots))
    counts: list[Any] = []
    for i in range(0, len(slots), 1024):
        counts += s.batch(a.source, [("CLUSTER", "COUNTKEYSINSLOT", n) for n in slots[i : i + 1024]])
    empty = [n for n, c in zip(slots, counts, strict=True) if not int(c)]
    full = [n for n, c in zip(slots, counts, strict=True) if int(c)]
    chunks = [empty[i : i + batch] for i in range(0, len(empty), batch)] + [[n] for n in full]
    moved = 0
    pending: list[int] = []

    def notify_others() -> None:
        cmds = [("CLUSTER", "SETSLOT", n, "NODE", a.target.node_id) for n in pending]
        for m in others:
            s.batch(m, cmds)
        pending.clear()

    for chunk in chunks:
        moved += _move_chunk(s, a, chunk)
        pending.extend(chunk)
        if len(pending) >= batch:
            notify_others()
    notify_others()
    s.wait(
        f"all instances to agree that {a.target.label} owns {a.count} moved slots",
        lambda o: _pending_slots(s.layout, o) or _pending_state_ok(o),
    )
    return f"{moved} keys moved"


def _do_settle(s: _Session, a: SettleSlots) -> None:
    cmds = [("CLUSTER", "SETSLOT", n, "NODE", a.owner.node_id) for n in sorted(slots_of(a.slots))]
    s.batch(a.owner, cmds)
    for m in a.masters:
        if m.node_id != a.owner.node_id:
            s.batch(m, cmds)
    s.wait("open slots to be closed", lambda o: _pending_slots(s.layout, o))


def _do_forget(s: _Session, group: list[Forget]) -> None:
    # FORGET bans the id for 60 s on each node; send it everywhere quickly so gossip cannot re-add it.
    for a in group:
        for ref in a.on:
            try:
                s.run(ref, "CLUSTER", "FORGET", a.node.node_id)
            except ClusterError as exc:
                if "unknown node" not in str(exc).lower():
                    raise
    ids = [a.node.node_id for a in group]
    s.wait("the removed nodes to be forgotten", lambda o: _pending_forgotten(o, ids))


def execute(
    actions: Sequence[Action],
    layout: Layout,
    password: str,
    *,
    timeout: float = 60.0,
    connect: Connector | None = None,
    poll: float = 0.2,
    migrate_batch: int = 100,
    progress: Callable[[str], None] | None = None,
) -> list[ActionResult]:
    """Perform ``actions`` (from :func:`plan_actions` for the same ``layout``) in order and wait after each
    step (at most ``timeout`` seconds per wait, TimeoutError names what was awaited); at the end wait until
    the cluster matches the layout and every instance reports cluster_state:ok."""
    if not actions:
        return []
    conn = connect or redis_connector(password, timeout=min(30.0, max(5.0, timeout / 2)))
    session = _Session(
        layout,
        password,
        conn,
        timeout,
        poll,
        migrate_batch,
        migrate_timeout_ms=int(min(30.0, max(5.0, timeout / 2)) * 500),
    )
    results: list[ActionResult] = []
    try:
        for group in _groups(actions):
            start = time.monotonic()
            detail = ""
            for a in group:
                log.info("redis: %s", a.description)
                if progress:
                    progress(a.description)
            first = group[0]
            if isinstance(first, Meet):
                _do_meet(session, [a for a in group if isinstance(a, Meet)])
            elif isinstance(first, AddSlots):
                _do_addslots(session, [a for a in group if isinstance(a, AddSlots)])
            elif isinstance(first, Replicate):
                _do_replicate(session, [a for a in group if isinstance(a, Replicate)])
            elif isinstance(first, Failover):
                _do_failover(session, first)
            elif isinstance(first, MoveSlots):
                detail = _do_move(session, first)
            elif isinstance(first, SettleSlots):
                for a in group:
                    if isinstance(a, SettleSlots):
                        _do_settle(session, a)
            elif isinstance(first, Forget):
                _do_forget(session, [a for a in group if isinstance(a, Forget)])
            else:
                raise ClusterError(f"unknown action {first!r}")
            seconds = time.monotonic() - start
            results.extend(ActionResult(a.description, seconds / len(group), detail) for a in group)
        session.wait(
            "the cluster to match the layout (cluster_state:ok, slots agreed, planned roles)",
            lambda o: _pending_layout(layout, o),
        )
    finally:
        session.close()
    return results
