"""An in-memory Redis Cluster behind the redis play's connector seam: orchestration tests without servers.

The play talks to instances through ``connect(address, port) -> client`` (``tasks.redis.resp.Client``: raw
replies). :class:`FakeRedisCluster` answers the commands the play sends, the way Redis 7.0 does, and
records them, so a test can assert the order of failovers, restarts and waits. It is a unit-test fake,
not a stand-in: the real cluster is exercised by tests/redis_local (redis-server processes) and the lab.
What it imitates, and from where:

* ``CLUSTER NODES`` lines ``<id> <ip:port@cport> <flags> <master|-> <ping> <pong> <epoch> <link> <slots>``
  (redis.io/commands/cluster-nodes); a stopped node is flagged ``fail`` by its peers;
* ``CLUSTER INFO``: ``cluster_state:ok`` only while every slot has a live master (cluster-require-full-
  coverage yes, redis.conf); ``INFO replication``: ``role:slave`` + ``master_link_status:up`` when its
  master is live (src/server.c genRedisInfoString);
* ``CLUSTER FAILOVER`` is refused on a master ("ERR You should send CLUSTER FAILOVER to a replica",
  src/cluster.c); on a replica it swaps roles with its master: the replica takes the slots, the old
  master and the other replicas follow it (redis.io/commands/cluster-failover, coordinated failover);
* ``CONFIG GET name`` -> ``[name, value]`` of the running config; a restart re-reads the config file
  (the running values become the file's: what ``CONFIG SET`` changed is lost, src/config.c);
* a restarted node keeps its role and slots (nodes.conf); a node that is down refuses connections;
* ``DBSIZE``: an integer reply, the node's key count (redis.io/commands/dbsize).

Not imitated: automatic failover after cluster-node-timeout, gossip delays, slot moves. A stopped master
leaves its slots uncovered here until a test fails it over itself (the lab and tests/redis_local cover
those with real servers).
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from tasks.redis.config import InstanceConfig, runtime_settings
from tasks.redis.plan import Layout
from tasks.redis.resp import ReplyError, Unreachable, error_reply
from tasks.redis.slots import SLOT_COUNT, format_ranges, ranges_from_slots, slots_of


def node_id(label: str) -> str:
    return hashlib.sha1(label.encode()).hexdigest()


@dataclass
class FakeNode:
    label: str  # host:port
    host: str
    address: str
    port: int
    node_id: str
    role: str = "master"
    master_id: str | None = None
    slots: set[int] = field(default_factory=set)
    alive: bool = True
    file: dict[str, str] = field(default_factory=dict)  # what its config file says (CONFIG GET shape)
    config: dict[str, str] = field(default_factory=dict)  # what the process runs with
    comes_back: bool = True  # False: a restart leaves it down (a host that does not come back)
    keys: int = 0  # what DBSIZE answers

    @property
    def endpoint(self) -> str:
        return f"{self.address}:{self.port}"


class FakeRedisCluster:
    """A formed cluster in the planned layout, with running configs from ``configs`` and ``password``."""

    def __init__(self, layout: Layout, configs: Iterable[InstanceConfig], password: str) -> None:
        self.password = password
        self.lock = threading.RLock()
        self.events: list[tuple[str, str]] = []  # ("failover", label), ("restart", label), ...
        self.commands: list[tuple[str, tuple[str, ...]]] = []
        self.nodes: dict[str, FakeNode] = {}
        by_label = {f"{c.host}:{c.port}": c for c in configs}
        for inst in layout.instances:
            settings = self.settings(by_label[inst.label])
            self.nodes[inst.endpoint] = FakeNode(
                inst.label, inst.host, inst.address, inst.port, node_id(inst.label),
                file=dict(settings), config=dict(settings),
            )  # fmt: skip
        for shard in layout.shards:
            master = self.nodes[shard.master.endpoint]
            master.slots = set(slots_of(shard.slots))
            replica = self.nodes[shard.replica.endpoint]
            replica.role, replica.master_id = "replica", master.node_id

    def settings(self, config: InstanceConfig) -> dict[str, str]:
        values = runtime_settings(config)
        return {k: self.password if v == "<redacted>" else v for k, v in values.items()}

    # -- what tests do to it --------------------------------------------------------------------
    def by_label(self, label: str) -> FakeNode:
        return next(n for n in self.nodes.values() if n.label == label)

    def write_files(self, configs: Iterable[InstanceConfig]) -> None:
        """The install step wrote new config files (the processes still run the old ones)."""
        with self.lock:
            for c in configs:
                self.by_label(f"{c.host}:{c.port}").file = self.settings(c)

    def restart(self, label: str) -> None:
        with self.lock:
            node = self.by_label(label)
            self.events.append(("restart", label))
            node.config = dict(node.file)
            node.alive = node.comes_back

    def restart_units(self, host: str, script: str) -> str:
        """The answer to a restart script over SSH: restart the units it names on ``host``."""
        for port in re.findall(r"redis-server@(\d+)\.service", script.split("systemctl restart", 1)[1]):
            self.restart(f"{host}:{port}")
        return ""

    def roles(self) -> dict[str, str]:
        """label -> "master 0-5460" / "replica of host:port" (for assertions)."""
        ids = {n.node_id: n.label for n in self.nodes.values()}
        return {
            n.label: f"master {format_ranges(ranges_from_slots(n.slots))}"
            if n.role == "master"
            else f"replica of {ids[n.master_id or '']}"
            for n in self.nodes.values()
        }

    # -- the connector seam ---------------------------------------------------------------------
    def connector(self, password: Any, timeout: float = 3.0) -> Callable[[str, int], FakeClient]:
        given = password.reveal() if hasattr(password, "reveal") else str(password)

        def connect(address: str, port: int) -> FakeClient:
            return FakeClient(self, f"{address}:{port}", given)

        return connect

    def state_ok(self) -> bool:
        owned = {s for n in self.nodes.values() if n.role == "master" and n.alive for s in n.slots}
        return len(owned) == SLOT_COUNT

    def nodes_text(self, me: FakeNode) -> str:
        lines = []
        for n in self.nodes.values():
            flags = (["myself"] if n is me else []) + ["master" if n.role == "master" else "slave"]
            if not n.alive:
                flags.append("fail")
            slots = " ".join(str(r) for r in ranges_from_slots(n.slots)) if n.role == "master" else ""
            link = "connected" if n.alive else "disconnected"
            lines.append(
                f"{n.node_id} {n.endpoint}@{n.port + 10000} {','.join(flags)} {n.master_id or '-'} 0 0 1 {link} {slots}"
            )
        return "\n".join(lines) + "\n"

    def failover(self, node: FakeNode) -> None:
        if node.role != "replica":
            raise ReplyError("ERR You should send CLUSTER FAILOVER to a replica")
        old = next(n for n in self.nodes.values() if n.node_id == node.master_id)
        self.events.append(("failover", node.label))
        node.role, node.master_id, node.slots = "master", None, set(old.slots)
        old.slots = set()
        for other in self.nodes.values():
            if other.role == "replica" and other.master_id == old.node_id:
                other.master_id = node.node_id
        old.role, old.master_id = "replica", node.node_id

    def answer(self, endpoint: str, password: str, args: tuple[str, ...]) -> Any:
        with self.lock:
            node = self.nodes[endpoint]
            self.commands.append((node.label, args))
            if not node.alive:
                raise Unreachable(f"cannot connect to {endpoint}: Connection refused")
            if password != node.config.get("requirepass"):
                raise error_reply("WRONGPASS invalid username-password pair or user is disabled.")
            return self._dispatch(node, [a.upper() for a in args[:2]], args)

    def _dispatch(self, node: FakeNode, head: list[str], args: tuple[str, ...]) -> Any:
        if head == ["CLUSTER", "MYID"]:
            return node.node_id.encode()
        if head == ["CLUSTER", "INFO"]:
            assigned = len({s for n in self.nodes.values() if n.role == "master" for s in n.slots})
            state = "ok" if self.state_ok() else "fail"
            return (
                f"cluster_state:{state}\r\ncluster_slots_assigned:{assigned}\r\ncluster_slots_ok:{assigned}\r\n"
                f"cluster_slots_pfail:0\r\ncluster_slots_fail:0\r\ncluster_known_nodes:{len(self.nodes)}\r\n"
                f"cluster_size:{sum(1 for n in self.nodes.values() if n.role == 'master' and n.slots)}\r\n"
            ).encode()
        if head == ["CLUSTER", "NODES"]:
            return self.nodes_text(node).encode()
        if head == ["INFO", "REPLICATION"]:
            if node.role == "master":
                return b"# Replication\r\nrole:master\r\n"
            master = next(n for n in self.nodes.values() if n.node_id == node.master_id)
            link = "up" if master.alive else "down"
            return f"# Replication\r\nrole:slave\r\nmaster_link_status:{link}\r\n".encode()
        if head == ["CONFIG", "GET"]:
            name = args[2]
            return [name.encode(), node.config[name].encode()] if name in node.config else []
        if head == ["DBSIZE"]:
            return node.keys
        if head == ["CLUSTER", "FAILOVER"]:
            self.failover(node)
            return b"OK"
        raise ReplyError(f"ERR the fake does not know {' '.join(args)}")


class FakePipeline:
    def __init__(self, client: FakeClient) -> None:
        self.client = client
        self.queued: list[tuple[str, ...]] = []

    def execute_command(self, *args: Any, **options: Any) -> None:
        self.queued.append(tuple(str(a) for a in args))

    def execute(self, raise_on_error: bool = True) -> list[Any]:
        return [self.client.execute_command(*a) for a in self.queued]


class FakeClient:
    def __init__(self, cluster: FakeRedisCluster, endpoint: str, password: str) -> None:
        self.cluster, self.endpoint, self.password = cluster, endpoint, password

    def execute_command(self, *args: Any, **options: Any) -> Any:
        return self.cluster.answer(self.endpoint, self.password, tuple(str(a) for a in args))

    def pipeline(self, transaction: bool = True) -> FakePipeline:
        return FakePipeline(self)

    def close(self) -> None:
        return None
