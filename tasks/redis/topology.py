"""One view of the cluster from the instances' views: who is which node, with which role and slots.

Each reachable instance's own ``myself`` line is authoritative for it; unreachable instances and nodes
outside the layout come from the peers' views (:func:`consolidate`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from tasks.redis.actions import NodeRef
from tasks.redis.observe import ClusterObservation, InstanceState
from tasks.redis.parse import ClusterNode, SlotMigration
from tasks.redis.plan import Layout, PlannedInstance, Role, format_endpoint
from tasks.redis.slots import SLOT_COUNT, slots_of


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


def _seed(observation: ClusterObservation) -> tuple[InstanceState | None, list[InstanceState]]:
    """The reachable instance that knows most nodes, and every reachable view (the seed first)."""
    reachable = [s for s in observation.instances if s.reachable and s.myself is not None]
    seed = max(
        reachable, key=lambda s: (sum(not n.handshake for n in s.nodes), -reachable.index(s)), default=None
    )
    return seed, ([seed] if seed else []) + [s for s in reachable if s is not seed]


def _planned_node(inst: PlannedInstance, entry: ClusterNode, down: bool) -> NodeState:
    return NodeState(
        node_id=entry.node_id,
        address=inst.address,
        port=inst.port,
        label=inst.label,
        host=inst.host,
        planned=inst,
        role=entry.role,
        master_id=entry.master_id,
        slots=slots_of(entry.slots),
        down=down,
        migrations=entry.migrations,
    )


def _foreign_node(layout: Layout, n: ClusterNode) -> NodeState:
    host = layout.host_of(n.endpoint)
    label = f"{n.endpoint} (stale id of {host}:{n.port})" if host else n.endpoint
    return NodeState(
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


def consolidate(layout: Layout, observation: ClusterObservation) -> Topology:
    """Merge the instances' views: each reachable instance's own ``myself`` line is authoritative for it;
    unreachable instances and nodes outside the layout come from the peers' views."""
    seed, views = _seed(observation)
    nodes: dict[str, NodeState] = {}
    planned_ids: dict[str, str] = {}
    for inst in layout.instances:
        state = observation.get(inst.endpoint)
        me = state.myself if state and state.reachable else None
        entry = me or _pick_entry([n for v in views for n in v.nodes if n.endpoint == inst.endpoint])
        if entry is None:
            continue
        planned_ids[inst.endpoint] = entry.node_id
        nodes[entry.node_id] = _planned_node(inst, entry, down=me is None)
    for view in views:
        for n in view.nodes:
            if n.node_id not in nodes and not n.handshake:
                nodes[n.node_id] = _foreign_node(layout, n)
    return Topology(nodes=nodes, planned_ids=planned_ids, seed=seed.endpoint if seed else None)


def disagreements(observation: ClusterObservation, topo: Topology) -> list[str]:
    """One line per reachable instance whose view of slot ownership differs from the merged one."""
    owners: list[str | None] = [None] * SLOT_COUNT  # slot -> owner, compared a whole list at a time
    for slot, node_id in topo.owners().items():
        owners[slot] = node_id
    out: list[str] = []

    def name(node_id: str | None) -> str:
        return topo.nodes[node_id].label if node_id and node_id in topo.nodes else (node_id or "nobody")

    for state in observation.reachable:
        seen: list[str | None] = [None] * SLOT_COUNT
        for n in state.nodes:
            if n.is_master and not n.handshake:
                for r in n.slots:
                    seen[r.start : r.end + 1] = [n.node_id] * r.count
        if seen == owners:
            continue
        diff = [s for s in range(SLOT_COUNT) if seen[s] != owners[s]]
        s = diff[0]
        out.append(
            f"{state.label} disagrees on {len(diff)} slots (slot {s}: it says {name(seen[s])}, "
            f"the owner is {name(owners[s])})"
        )
    return out
