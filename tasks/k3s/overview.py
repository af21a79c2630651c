"""The k3s component's part of ``nr status`` (pure, from the facts of the engine's one round trip).

Each k3s host adds its binary's version and its unit's state to the round trip; the first server
adds the status snapshot (``k3s kubectl get nodes,deployments,... -o json``, run once for this
section and deploy's: :data:`tasks.k3s.observe.STATUS_CMD`), of which this reads the Nodes. The
section says, per node: the role the inventory gives it, the version and Ready condition its Node
reports, and whether its service runs; each host's line in the picture reads e.g.
``server v1.31.4+k3s1 Ready``. The problems are the k3s checks' own
(:func:`tasks.k3s.status.node_problems`), with ``nr run k3s --limit HOST`` as the fix.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from nr.facts import Facts
from nr.ops import kubectl
from nr.status import Cell, HostLine, Level, Problem, Reads, StatusSection, Table
from tasks.k3s.observe import STATUS_CMD, UNITS, binary_version, unit_state
from tasks.k3s.spec import ClusterSpec, NodeSpec
from tasks.k3s.status import NodeStatus, api_problem, expected, node_problems, parse_nodes
from tasks.k3s.versions import VERSION_CMD

COMPONENT = "k3s"


def reads(cluster: ClusterSpec) -> dict[str, Reads]:
    out: dict[str, Reads] = {}
    for node in cluster.nodes:
        commands = {"version": VERSION_CMD, UNITS.name: UNITS.command}
        if node.name == cluster.first.name:
            commands["nodes"] = STATUS_CMD  # the Nodes are seen in it (kubectl.view)
        out[node.name] = Reads(commands=commands)
    return out


def registered(cluster: ClusterSpec, facts: Mapping[str, Facts]) -> tuple[dict[str, NodeStatus] | None, str]:
    """The Nodes as the first server's API lists them, or (None, why not)."""
    first = facts.get(cluster.first.name)
    if first is None or "nodes" not in first.outputs:
        return None, f"{cluster.first.name} could not be read"
    out = kubectl.view(first.outputs["nodes"], "Node")
    if out.rc != 0:
        return None, f"the API on {cluster.first.name} does not answer ({api_problem(out)})"
    try:
        return parse_nodes(out), ""
    except kubectl.KubectlError as exc:
        return None, f"unreadable node list from {cluster.first.name}: {exc}"


def _service(node: NodeSpec, facts: Facts | None) -> Cell:
    if facts is None:
        return Cell("not read", Level.FAIL)
    state = unit_state(facts, node.role.unit)
    return Cell(f"{node.role.unit} {state.active}", Level.OK if state.running else Level.FAIL)


def _row(node: NodeSpec, status: NodeStatus | None, facts: Facts | None, problem: str) -> tuple[Cell, ...]:
    version = status.version if status else (binary_version(facts) if facts else "")
    ready = Cell(
        status.ready if status else "not registered",
        Level.OK if status and status.ready == "True" else Level.FAIL,
    )
    want = node.version
    v_cell = Cell(
        version or "?",
        Level.FAIL if want and version != want else Level.OK,
        f"plan: {want}" if want and version != want else "",
    )
    role = Cell(node.role.value, Level.FAIL if problem and "role" in problem else Level.INFO)
    return (Cell(node.name), role, v_cell, ready, _service(node, facts))


def _line(node: NodeSpec, row: tuple[Cell, ...], problem: str) -> HostLine:
    text = f"{node.role.value} {row[2].text} {'Ready' if row[3].text == 'True' else row[3].text}"
    return HostLine(node.name, COMPONENT, Cell(text, Level.FAIL if problem else Level.OK, problem))


def section(cluster: ClusterSpec, facts: Mapping[str, Facts], fix: Callable[[str], str]) -> StatusSection:
    """``fix(host)``: the command that repairs a node (``nr run k3s [-i INV] --limit HOST``)."""
    nodes, api_error = registered(cluster, facts)
    want = [expected(n) for n in cluster.nodes]
    problems_by_node = (
        node_problems(nodes, want) if nodes is not None else {n.name: api_error for n in cluster.nodes}
    )
    rows, lines = [], []
    for node in cluster.nodes:
        problem = problems_by_node.get(node.name, "")
        row = _row(node, (nodes or {}).get(node.name), facts.get(node.name), problem)
        rows.append(row)
        lines.append(_line(node, row, problem))
    problems = tuple(
        Problem(f"k3s node {name}", name, "Ready, with the planned role and version", why, fix(name))
        for name, why in problems_by_node.items()
    )
    ready = sum(1 for r in rows if r[3].text == "True")
    summary = Cell(
        f"{len(cluster.servers)} server(s), {len(cluster.agents)} agent(s), {ready}/{len(rows)} Ready",
        Level.FAIL if problems else Level.OK,
    )
    table = Table("k3s nodes", ("node", "role", "version", "Ready", "service"), tuple(rows))
    return StatusSection(COMPONENT, "k3s", summary, (table,), tuple(lines), problems=problems)
