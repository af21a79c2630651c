"""The redis component's part of ``nr status`` (pure, from one observation): the seed's table and more.

* the layout as the seed document proves it: one row per host, one column per port, each cell what
  the instance IS ("shard 1 master", "replica of shard 3") and, where that differs from the plan,
  what the plan says (marked);
* one row per shard: who masters it, its replica, its slots and keys, the replication link and lag;
* one box per instance on its host, and one arrow from each replica to its master (the rotation);
* the problems, from the same cluster checks ``nr check`` and ``nr drift`` use, with their fixes.

Everything comes from :func:`tasks.redis.observe.observe` (TCP from the controller, DBSIZE included):
no SSH, nothing changes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from nr.outcome import Severity
from nr.status import Arrow, Box, Cell, Level, Problem, StatusSection, Table
from tasks.redis.findings import FIX_RUN, findings
from tasks.redis.observe import ClusterObservation, InstanceState
from tasks.redis.plan import Layout, PlannedInstance
from tasks.redis.slots import SLOT_COUNT, format_ranges, ranges_from_slots
from tasks.redis.topology import NodeState, Topology, consolidate

COMPONENT = "redis"
_LEVEL = {Severity.ERROR: Level.FAIL, Severity.DRIFT: Level.FAIL, Severity.WARNING: Level.WARN}


@dataclass(frozen=True)
class Roles:
    """Which shard each node serves now: by the slots it holds (a master) or its master's (a replica)."""

    topology: Topology
    shard_of: dict[str, int]  # node id of a master holding slots -> shard number

    @classmethod
    def of(cls, layout: Layout, topology: Topology) -> Roles:
        owners = topology.owners()
        shard_of: dict[str, int] = {}
        for shard in layout.shards:
            owner = owners.get(shard.slots[0].start)
            if owner is not None:
                shard_of.setdefault(owner, shard.number)
        return cls(topology, shard_of)

    def describe(self, node: NodeState | None) -> str:
        if node is None:
            return "not a member"
        if node.role == "master":
            number = self.shard_of.get(node.node_id)
            return f"shard {number} master" if number else "master without slots"
        master = self.topology.nodes.get(node.master_id or "")
        number = self.shard_of.get(master.node_id) if master else None
        if number:
            return f"replica of shard {number}"
        return f"replica of {master.label}" if master else "replica of an unknown node"


def planned_text(inst: PlannedInstance) -> str:
    return f"shard {inst.shard} master" if inst.role == "master" else f"replica of shard {inst.shard}"


def _instance_cell(inst: PlannedInstance, state: InstanceState | None, roles: Roles | None) -> Cell:
    plan = planned_text(inst)
    if state is None or not state.reachable:
        why = state.describe_access() if state is not None else "not read"
        return Cell("down", Level.FAIL, f"plan: {plan}; {why}")
    node = roles.topology.planned(inst) if roles else None
    now = roles.describe(node) if roles else "not a member"
    if now == plan:
        return Cell(now, Level.OK)
    return Cell(now, Level.FAIL, f"plan: {plan}")


def layout_table(layout: Layout, obs: ClusterObservation, roles: Roles | None) -> Table:
    rows = []
    for host in layout.hosts:
        cells = [Cell(host.name)]
        for inst in (i for i in layout.instances if i.host == host.name):
            cells.append(_instance_cell(inst, obs.get(inst.endpoint), roles))
        rows.append(tuple(cells))
    columns = ("host", f"port {layout.master_port}", f"port {layout.replica_port}")
    return Table(
        "Redis layout (as planned: host i masters shard i, replicates shard i-1)", columns, tuple(rows)
    )


def _acting(layout: Layout, roles: Roles, number: int) -> NodeState | None:
    return next((roles.topology.nodes[n] for n, s in roles.shard_of.items() if s == number), None)


def _replication(master: NodeState, replica: NodeState, obs: ClusterObservation) -> Cell:
    """The replica's link to its master and how far behind it is (bytes of the replication stream)."""
    rep = obs.get(replica.endpoint)
    if rep is None or not rep.reachable:
        return Cell("replica down", Level.FAIL)
    info = rep.replication
    link = info.get("master_link_status", "?")
    text = f"link {link}"
    m = obs.get(master.endpoint)
    ahead = m.replication.get("master_repl_offset") if m is not None and m.reachable else None
    behind = info.get("slave_repl_offset")
    if ahead and behind and ahead.isdigit() and behind.isdigit():
        text += f", lag {max(0, int(ahead) - int(behind))} B"
    io = info.get("master_last_io_seconds_ago")
    if io and io.lstrip("-").isdigit():
        text += f", last I/O {io} s ago"
    return Cell(text, Level.OK if link == "up" else Level.FAIL)


def _keys(node: NodeState, obs: ClusterObservation) -> Cell:
    state = obs.get(node.endpoint)
    if state is None or state.keys is None:
        return Cell("?", Level.WARN)
    return Cell(str(state.keys))


def _shard_row(layout: Layout, obs: ClusterObservation, roles: Roles, number: int) -> tuple[Cell, ...]:
    shard = layout.shard(number)
    master = _acting(layout, roles, number)
    if master is None:
        none = Cell("none", Level.FAIL, f"plan: {shard.master.label}")
        return (Cell(str(number)), none, Cell("-"), Cell("0", Level.FAIL), Cell("-"), Cell("-"))
    replicas = roles.topology.replicas_of(master.node_id)
    planned = master.planned == shard.master
    m_cell = Cell(
        master.label, Level.OK if planned else Level.FAIL, "" if planned else f"plan: {shard.master.label}"
    )
    slots = Cell(f"{len(master.slots)} ({format_ranges(ranges_from_slots(master.slots))})")
    if not replicas:
        return (Cell(str(number)), m_cell, Cell("none", Level.FAIL), slots, _keys(master, obs), Cell("-"))
    rep = replicas[0]
    r_cell = Cell(", ".join(r.label for r in replicas), Level.FAIL if len(replicas) > 1 else Level.OK)
    return (Cell(str(number)), m_cell, r_cell, slots, _keys(master, obs), _replication(master, rep, obs))


def shards_table(layout: Layout, obs: ClusterObservation, roles: Roles | None) -> Table:
    columns = ("shard", "master", "replica", "slots", "keys", "replication")
    rows = tuple(_shard_row(layout, obs, roles, s.number) for s in layout.shards) if roles else ()
    return Table("Redis shards", columns, rows)


def box_id(host: str, port: int) -> str:
    return f"{COMPONENT}:{host}:{port}"


def boxes(layout: Layout, obs: ClusterObservation, roles: Roles | None) -> tuple[Box, ...]:
    out = []
    for inst in layout.instances:
        cell = _instance_cell(inst, obs.get(inst.endpoint), roles)
        label = f":{inst.port} {cell.text}"
        out.append(Box(box_id(inst.host, inst.port), inst.host, "redis", label, cell.level, cell.note))
    return tuple(out)


def arrows(obs: ClusterObservation, roles: Roles | None) -> tuple[Arrow, ...]:
    """One arrow from each replica of the layout to its master (a planned instance too)."""
    if roles is None:
        return ()
    out: list[tuple[int, Arrow]] = []
    for node in roles.topology.nodes.values():
        master = roles.topology.nodes.get(node.master_id or "")
        if node.role != "replica" or node.planned is None or master is None or master.planned is None:
            continue
        number = roles.shard_of.get(master.node_id)
        state = obs.get(node.endpoint)
        up = state is not None and state.reachable and state.replication.get("master_link_status") == "up"
        source, target = box_id(node.planned.host, node.port), box_id(master.planned.host, master.port)
        arrow = Arrow(source, target, f"shard {number}" if number else "", Level.OK if up else Level.FAIL)
        out.append((number or 0, arrow))
    return tuple(a for _, a in sorted(out, key=lambda pair: pair[0]))


def _summary(
    layout: Layout, obs: ClusterObservation, topology: Topology | None, problems: list[Problem]
) -> Cell:
    up = sum(1 for i in obs.instances if i.reachable)
    served = len(topology.owners()) if topology else 0
    text = f"{len(layout.shards)} shards, {served}/{SLOT_COUNT} slots served, {up}/{len(obs.instances)} instances up"
    failing = any(p.level is Level.FAIL for p in problems)
    return Cell(text, Level.FAIL if failing else (Level.WARN if problems else Level.OK))


def section(layout: Layout, obs: ClusterObservation, fix: Callable[[str], str]) -> StatusSection:
    """The redis section of ``nr status``; ``fix(command)`` puts the inventory into a fix command."""
    topology = consolidate(layout, obs) if obs.reachable else None
    roles = Roles.of(layout, topology) if topology else None
    problems = [
        Problem(f.what, f.host, f.expected, f.actual, fix(f.fix), _LEVEL[f.severity])
        for f in findings(layout, obs)
    ]
    return StatusSection(
        COMPONENT,
        "Redis Cluster",
        _summary(layout, obs, topology, problems),
        tables=(layout_table(layout, obs, roles), shards_table(layout, obs, roles)),
        boxes=boxes(layout, obs, roles),
        arrows=arrows(obs, roles),
        problems=tuple(problems),
    )


def with_inventory(run_command: str) -> Callable[[str], str]:
    """``fix`` for :func:`section`: ``nr run redis ...`` becomes ``run_command ...`` (with ``-i``)."""

    def fix(text: str) -> str:
        return run_command + text[len(FIX_RUN) :] if text.startswith(FIX_RUN) else text

    return fix
