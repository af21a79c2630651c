"""Planning the cluster actions (pure): from an observation to the actions that reach the layout.

:func:`plan_actions` builds the cluster the way Redis's own test harness does it
(tests/support/cluster_util.tcl), never with ``redis-cli --cluster create --cluster-replicas``: CLUSTER MEET
every node, ADDSLOTSRANGE on each master, wait for slot agreement, CLUSTER REPLICATE each replica, wait for
cluster_state:ok; later runs restore planned roles (FAILOVER), finish half-done slot moves, grow the cluster.
:func:`plan_handover` plans the failovers that take a master's shard away before it restarts.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from tasks.redis.actions import (
    Action,
    AddSlots,
    Failover,
    Forget,
    Meet,
    MoveSlots,
    NodeRef,
    Replicate,
    SettleSlots,
)
from tasks.redis.errors import PlanError
from tasks.redis.membership import Member, plan_membership
from tasks.redis.observe import ClusterObservation, require_access
from tasks.redis.plan import Layout, PlannedInstance, Role
from tasks.redis.slots import SLOT_COUNT, ranges_from_slots, slots_of
from tasks.redis.topology import Topology, consolidate


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


def _in_sync(observation: ClusterObservation, endpoint: str) -> bool:
    state = observation.get(endpoint)
    return state is not None and state.replication.get("master_link_status") == "up"


def plan_handover(
    layout: Layout, observation: ClusterObservation, restarting: Collection[str]
) -> list[Failover]:
    """Failovers that move every shard off the instances at ``restarting`` (endpoints) before they restart.

    A master holding slots hands its shard to an in-sync replica on another host with a coordinated CLUSTER
    FAILOVER (the master pauses its clients until the replica has caught up, then clients are redirected:
    no write fails, no acknowledged write is lost). Raises :class:`PlanError` for a master without such a
    replica: restarting it would fail every write to its slots until it is back.
    """
    topo = consolidate(layout, observation)
    out: list[Failover] = []
    for endpoint in restarting:
        node = topo.nodes.get(topo.planned_ids.get(endpoint, ""))
        if node is None or node.down or node.role != "master" or not node.slots:
            continue
        ready = [
            r
            for r in topo.replicas_of(node.node_id)
            if not r.down
            and r.host != node.host
            and r.endpoint not in restarting
            and _in_sync(observation, r.endpoint)
        ]
        if not ready:
            others = ", ".join(r.label for r in topo.replicas_of(node.node_id)) or "none"
            raise PlanError(
                f"{node.label} masters {len(node.slots)} slots and has no in-sync replica on another host to "
                f"take them over (replicas: {others}); it is not restarted, so no write fails. Bring its "
                "replica back (nr check redis), then run nr run redis again"
            )
        shard = node.planned.shard if node.planned else 0
        out.append(Failover(ready[0].ref, shard, node.ref, handover=True))
    return out
