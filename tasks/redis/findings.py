"""The cluster's checks (pure): one small function per check, from an observation to findings.

Each function takes a :class:`ClusterView` (the layout, what the instances said, and the merged
topology) and returns :class:`ClusterFinding` rows naming the host and instance they concern (empty
for cluster-wide ones). :mod:`tasks.redis.rules` turns each into one :class:`nr.outcome.Rule`, so the
same function serves ``nr check`` (a passing or failing item) and ``nr drift`` (the findings);
:func:`findings` lists them all (``[]``: healthy and as planned).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from nr.outcome import Finding, Severity
from tasks.redis.observe import Access, ClusterObservation
from tasks.redis.plan import Layout
from tasks.redis.slots import SLOT_COUNT, format_ranges, ranges_from_slots
from tasks.redis.topology import NodeState, Topology, consolidate, disagreements

FIX_RUN = "nr run redis"

__all__ = ["CLUSTER_CHECKS", "FIX_RUN", "ClusterFinding", "ClusterView", "Severity", "findings", "view"]


@dataclass(frozen=True)
class ClusterFinding:
    """One problem of the cluster. ``host``/``instance`` are empty for cluster-wide findings."""

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

    def finding(self, command: str = FIX_RUN) -> Finding:
        """As a drift row whose fix is ``command`` (the runnable ``nr run redis -i INV``) where the fix is
        a run of this component; a word on what that run does follows as a shell comment, so the line
        still runs as printed."""
        if not self.fix.startswith(FIX_RUN):
            return Finding(self.what, self.expected, self.actual, self.fix, self.severity)
        note = self.fix[len(FIX_RUN) :].strip().removeprefix("(").removesuffix(")")
        return Finding(self.what, self.expected, self.actual, with_note(command, note), self.severity)


def with_note(command: str, note: str) -> str:
    """``command`` followed by ``note`` as a shell comment (pasted into a shell, the note does nothing)."""
    note = " ".join(note.replace("#", "").split())
    return f"{command}  # {note}" if note else command


@dataclass(frozen=True)
class ClusterView:
    layout: Layout
    observation: ClusterObservation
    topology: Topology | None  # None when no instance could be read


def view(layout: Layout, observation: ClusterObservation) -> ClusterView:
    topo = consolidate(layout, observation) if observation.reachable else None
    return ClusterView(layout, observation, topo)


Check = Callable[[ClusterView], list[ClusterFinding]]

_ACCESS_FIX = {
    Access.WRONG_PASSWORD: "set the same password in the inventory secret and in requirepass "
    "(nr run redis renders redis.conf)",
    Access.NO_PASSWORD: "nr run redis (renders requirepass/masterauth and restarts the instance)",
    Access.NOT_CLUSTER: "nr run redis (renders cluster-enabled yes)",
}


def access(v: ClusterView) -> list[ClusterFinding]:
    """Every planned instance answers, accepts the password and runs in cluster mode."""
    return [
        ClusterFinding(
            Severity.ERROR,
            st.host,
            st.label,
            f"{st.label}: access",
            "reachable with the password, cluster mode",
            st.describe_access(),
            _ACCESS_FIX.get(
                st.access, f"start redis-server@{st.port} on {st.host} (nr run redis) and check the network"
            ),
        )
        for st in v.observation.instances
        if not st.reachable
    ]


def cluster_state(v: ClusterView) -> list[ClusterFinding]:
    """Every reachable instance says cluster_state:ok and serves all slots."""
    out: list[ClusterFinding] = []
    for st in v.observation.reachable:
        info = st.info
        if info is None:
            continue
        if not info.ok:
            out.append(
                ClusterFinding(
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
                ClusterFinding(
                    severity,
                    st.host,
                    st.label,
                    f"{st.label}: slots ok",
                    f"{SLOT_COUNT}",
                    info.summary(),
                    "bring back the instances flagged fail?/fail, then nr run redis",
                )
            )
    return out


def slot_coverage(v: ClusterView) -> list[ClusterFinding]:
    """Every slot has an owner."""
    if v.topology is None:
        return []
    owners = v.topology.owners()
    if len(owners) == SLOT_COUNT:
        return []
    missing = ranges_from_slots(set(range(SLOT_COUNT)) - set(owners))
    actual = f"{len(owners)} (unassigned: {format_ranges(missing)})"
    return [ClusterFinding(Severity.ERROR, "", "", "slots assigned", f"{SLOT_COUNT}", actual, FIX_RUN)]


def slot_agreement(v: ClusterView) -> list[ClusterFinding]:
    """Every instance agrees on who owns each slot (a disagreement lasts a few seconds of gossip)."""
    if v.topology is None:
        return []
    return [
        ClusterFinding(
            Severity.WARNING,
            "",
            "",
            "slot configuration agreement",
            "all nodes agree about slots",
            text,
            "wait a few seconds (gossip); if it persists: redis-cli --cluster check",
        )
        for text in disagreements(v.observation, v.topology)
    ]


def open_slots(v: ClusterView) -> list[ClusterFinding]:
    """No slot is left importing or migrating (a slot move that did not finish)."""
    nodes = v.topology.nodes.values() if v.topology else ()
    return [
        ClusterFinding(
            Severity.WARNING,
            node.host or "",
            node.label,
            f"slot {mig.slot}",
            "stable",
            f"{mig.state} ({node.label}, peer {mig.peer_id[:12]})",
            FIX_RUN,
        )
        for node in nodes
        for mig in node.migrations
    ]


def _masters(v: ClusterView) -> list[NodeState]:
    nodes = v.topology.nodes.values() if v.topology else ()
    return [n for n in nodes if n.role == "master" and n.slots]


def replicas(v: ClusterView) -> list[ClusterFinding]:
    """Every master holding slots has exactly one working replica."""
    assert v.topology is not None or not _masters(v)
    out: list[ClusterFinding] = []
    for master in _masters(v):
        reps = v.topology.replicas_of(master.node_id) if v.topology else []
        working = [r for r in reps if not r.down]
        what, host = f"{master.label}: replicas", master.host or ""
        if not working:
            down = ", ".join(f"{r.label} (down)" for r in reps) or "none"
            out.append(
                ClusterFinding(
                    Severity.ERROR,
                    host,
                    master.label,
                    what,
                    "1 working replica on another host",
                    down,
                    FIX_RUN + " once the instances are back",
                )
            )
        elif len(reps) > 1:
            out.append(
                ClusterFinding(
                    Severity.WARNING,
                    host,
                    master.label,
                    what,
                    "exactly 1 replica",
                    ", ".join(r.label for r in reps),
                    FIX_RUN,
                )
            )
    return out


def placement(v: ClusterView) -> list[ClusterFinding]:
    """No replica shares its master's host (losing that host would lose the shard)."""
    out: list[ClusterFinding] = []
    for master in _masters(v):
        host = master.host or ""
        for rep in v.topology.replicas_of(master.node_id) if v.topology else []:
            if rep.host is not None and rep.host == master.host:
                out.append(
                    ClusterFinding(
                        Severity.ERROR,
                        host,
                        rep.label,
                        f"{rep.label}: placement",
                        "replica on another host than its master",
                        f"replica of {master.label} on the same host {host} (losing {host} loses the shard)",
                        FIX_RUN + " (re-points replicas to the rotation)",
                    )
                )
    return out


def _acting(topo: Topology, m: NodeState, r: NodeState | None) -> NodeState | None:
    """Who serves the shard planned for master ``m`` when ``m`` does not (its replica after a failover)."""
    if m.role == "replica":
        return topo.nodes.get(m.master_id or "")
    if not m.slots and r is not None and r.role == "master" and r.slots:
        return r
    return None


def shard_masters(v: ClusterView) -> list[ClusterFinding]:
    """Each shard is mastered by its planned master (roles swapped after a failover are drift)."""
    out: list[ClusterFinding] = []
    for shard in v.layout.shards if v.topology else ():
        assert v.topology is not None
        m, r = v.topology.planned(shard.master), v.topology.planned(shard.replica)
        if m is None or (m.role == "master" and m.slots):
            continue
        acting = _acting(v.topology, m, r)
        actual = acting.label if acting else ("none (holds no slots)" if m.role == "master" else "unknown")
        if acting is not None and acting.host != m.host and acting is r:
            actual += " (roles swapped inside the shard; safe)"
        out.append(
            ClusterFinding(
                Severity.DRIFT,
                shard.master.host,
                shard.master.label,
                f"shard {shard.number}: master",
                shard.master.label,
                actual,
                FIX_RUN,
            )
        )
    return out


def _replica_now(topo: Topology, r: NodeState) -> str:
    if r.role == "master":
        return f"a master with {len(r.slots)} slots" if r.slots else "a master without slots"
    if r.master_id and r.master_id in topo.nodes:
        return f"replica of {topo.nodes[r.master_id].label}"
    return f"replica of unknown node {r.master_id}"


def replica_roles(v: ClusterView) -> list[ClusterFinding]:
    """Each planned replica follows its planned master (the rotation)."""
    out: list[ClusterFinding] = []
    for shard in v.layout.shards if v.topology else ():
        assert v.topology is not None
        m, r = v.topology.planned(shard.master), v.topology.planned(shard.replica)
        if m is None or r is None or r is _acting(v.topology, m, r):
            continue
        if r.role != "replica" or r.master_id != m.node_id:
            out.append(
                ClusterFinding(
                    Severity.DRIFT,
                    shard.replica.host,
                    shard.replica.label,
                    f"{shard.replica.label}: role",
                    f"replica of shard {shard.number} ({shard.master.label})",
                    _replica_now(v.topology, r),
                    FIX_RUN,
                )
            )
    return out


def membership(v: ClusterView) -> list[ClusterFinding]:
    """Every planned instance is a member of the cluster."""
    seed = v.observation.get(v.topology.seed or "") if v.topology else None
    if seed is None or v.topology is None:
        return []
    out: list[ClusterFinding] = []
    for inst in v.layout.instances:
        node_id = v.topology.planned_ids.get(inst.endpoint)
        if node_id and inst.endpoint != seed.endpoint and not seed.knows(node_id):
            out.append(
                ClusterFinding(
                    Severity.DRIFT,
                    inst.host,
                    inst.label,
                    f"{inst.label}: membership",
                    "member of the cluster",
                    f"not known to {seed.label}",
                    FIX_RUN,
                )
            )
    return out


def foreign_nodes(v: ClusterView) -> list[ClusterFinding]:
    """No node outside the layout is in the cluster (and none holds slots)."""
    out: list[ClusterFinding] = []
    for node in v.topology.foreign() if v.topology else []:
        what = f"{node.label}: membership"
        if node.role == "master" and node.slots:
            out.append(
                ClusterFinding(
                    Severity.ERROR,
                    "",
                    node.label,
                    what,
                    "only layout instances hold slots",
                    f"not in the layout, master of {len(node.slots)} slots",
                    "move its slots to planned masters (redis-cli --cluster rebalance/reshard), then nr run redis",
                )
            )
        else:
            out.append(
                ClusterFinding(
                    Severity.DRIFT,
                    "",
                    node.label,
                    what,
                    "not in the cluster",
                    f"known to the cluster as {node.role}",
                    FIX_RUN + " (CLUSTER FORGET)",
                )
            )
    return out


# (check name, function, whether it concerns each host or the cluster as a whole)
CLUSTER_CHECKS: tuple[tuple[str, Check, bool], ...] = (
    ("instances reachable", access, True),
    ("cluster_state ok", cluster_state, True),
    ("slots assigned", slot_coverage, False),
    ("slot configuration agreement", slot_agreement, False),
    ("no open slots", open_slots, False),
    ("masters have a replica", replicas, True),
    ("replicas on another host", placement, True),
    ("shard masters as planned", shard_masters, True),
    ("replicas as planned", replica_roles, True),
    ("planned instances are members", membership, True),
    ("no nodes outside the layout", foreign_nodes, False),
)


def findings(layout: Layout, observation: ClusterObservation) -> list[ClusterFinding]:
    """Every check of an observation against the layout; ``[]`` means healthy and as planned."""
    v = view(layout, observation)
    return [f for _, check, _ in CLUSTER_CHECKS for f in check(v)]
