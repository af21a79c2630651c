"""Everything apply, check and drift share: the cluster from the inventory, one facts round trip per host,
the tokens, and the plan of every host in scope (pure functions of the facts)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from nornir.core.inventory import Host

from nr.errors import NrError
from nr.facts import Facts, gather
from nr.inventory.schema import COMMON_DATA
from nr.ops import kubectl
from nr.ops.release import BinarySource, ReleaseCache
from nr.outcome import Outcome
from nr.play import HostRun, PlayContext, host_groups
from nr.readahead import Read
from nr.secrets import Secret
from tasks.k3s.contract import AGENTS, CONTRACT, DEFAULT_VERSION, SERVERS
from tasks.k3s.observe import binary_version, facts_request, with_views
from tasks.k3s.plan import HostPlan, images_source, plan_host, role_switch_problem
from tasks.k3s.release import local_binary, release_binary
from tasks.k3s.render import CONFIG
from tasks.k3s.spec import (
    ClusterSpec,
    HostInfo,
    K3sPlanError,
    NodeSpec,
    Role,
    build_cluster,
    pinned_flannel_iface,
    version_change_problem,
)
from tasks.k3s.status import NodeStatus, parse_nodes
from tasks.k3s.tokens import resolve_tokens
from tasks.k3s.versions import Versions, with_version
from tasks.k3s.wait import READY_TIMEOUT

TIMEOUT_ENV = "NR_K3S_READY_TIMEOUT"


def k3s_hosts(ctx: PlayContext) -> list[Host]:
    """Servers then agents, each in inventory order (the whole inventory: planning sees every host)."""
    servers = ctx.all_hosts(SERVERS)
    return servers + [h for h in ctx.all_hosts(AGENTS) if h not in servers]


def host_info(host: Host) -> HostInfo:
    role = Role.SERVER if SERVERS in host_groups(host) else Role.AGENT
    keys = [*COMMON_DATA, *CONTRACT.data]
    data = {k: host.get(k) for k in keys if host.get(k) is not None}
    return HostInfo(host.name, str(host.hostname or ""), role, data)


def ready_timeout(first: Host) -> float:
    value = first.get("k3s_ready_timeout") or os.environ.get(TIMEOUT_ENV)
    try:
        return float(value) if value else READY_TIMEOUT
    except ValueError:
        raise NrError(f"{TIMEOUT_ENV}={value!r} is not a number of seconds") from None


def cluster_of(ctx: PlayContext) -> tuple[ClusterSpec, dict[str, Host]] | None:
    hosts = k3s_hosts(ctx)
    if not hosts:
        ctx.note("no hosts in k3s_servers or k3s_agents: nothing to do")
        return None
    try:
        return build_cluster([host_info(h) for h in hosts]), {h.name: h for h in hosts}
    except K3sPlanError as exc:
        raise NrError("; ".join(exc.problems)) from None


@dataclass
class Prepared:
    cluster: ClusterSpec
    hosts: dict[str, Host]
    targets: list[NodeSpec]  # nodes this run may change (--limit)
    facts: dict[str, Facts] = field(default_factory=dict)
    plans: dict[str, HostPlan] = field(default_factory=dict)
    tokens: dict[str, Secret] = field(default_factory=dict)
    restarted: set[str] = field(default_factory=set)  # k3s restarted in this run, not yet seen to stay up
    versions: Versions | None = None  # what each binary (sha256) answered to --version, on this machine

    @property
    def first_facts(self) -> Facts | None:
        return self.facts.get(self.cluster.first.name)

    def node_list(self) -> dict[str, NodeStatus] | None:
        """The nodes the first server's API listed when the facts were read (None: not readable)."""
        f = self.first_facts
        if f is None or "nodes" not in f.outputs:
            return None
        try:
            return parse_nodes(f.outputs["nodes"])
        except kubectl.KubectlError:
            return None


def reads(ctx: PlayContext) -> list[Read]:
    """The facts round trips :meth:`Planner.prepare` makes (the same hosts, the same requests): for the
    read-ahead (nr.readahead), so without notes or errors of its own (prepare reports those)."""
    hosts = k3s_hosts(ctx)
    if not hosts:
        return []
    cluster = build_cluster([host_info(h) for h in hosts])
    limit = {h.name for h in ctx.hosts()}
    names = [n.name for n in cluster.nodes if n.name in limit]
    if names and cluster.first.name not in limit:
        names.insert(0, cluster.first.name)
    return [Read.of(n, *facts_request(cluster.node(n), n == cluster.first.name)) for n in names]


def _read(run: HostRun, cluster: ClusterSpec, versions: Versions) -> Outcome[Facts]:
    node = cluster.node(run.name)
    files, commands = facts_request(node, node.name == cluster.first.name)
    facts = with_version(run.remote, with_views(gather(run.remote, files=files, commands=commands)), versions)
    return Outcome(value=facts, summary=f"k3s {binary_version(facts) or 'not installed'}")


def _encryption(ctx: PlayContext, cluster: ClusterSpec, first: Host, config: str | None) -> ClusterSpec:
    """secrets-encryption is on by default for a new cluster only: k3s does not support enabling it on a
    cluster that was started without it (docs: security/secrets-encryption, cli/secrets-encrypt)."""
    if config is None or not cluster.secrets_encryption or "secrets-encryption: true" in config:
        return cluster
    if first.get("k3s_secrets_encryption") is True:
        raise NrError(
            f"the cluster on {first.name} was created without secrets-encryption, and k3s does not support "
            "enabling it later; remove data.k3s_secrets_encryption, or rebuild the cluster to have it"
        )
    ctx.note(
        f"the cluster on {first.name} was created without secrets-encryption (k3s cannot enable it later): kept off"
    )
    return replace(cluster, secrets_encryption=False)


class Planner:
    """Reads every host in scope (and the first server, read-only, when outside --limit) and plans it."""

    def __init__(self, cache: ReleaseCache) -> None:
        self.cache = cache
        self.sources: dict[tuple[str, str], BinarySource] = {}

    def prepare(self, ctx: PlayContext) -> Prepared | None:
        found = cluster_of(ctx)
        if found is None:
            return None
        cluster, hosts = found
        limit = {h.name for h in ctx.hosts()}
        prep = Prepared(cluster, hosts, [n for n in cluster.nodes if n.name in limit])
        if not prep.targets:
            ctx.note("no k3s host within --limit: nothing to do")
            return None
        readers = [hosts[n.name] for n in prep.targets]
        if cluster.first.name not in limit:  # read-only: the cluster's state and token live there
            readers.insert(0, hosts[cluster.first.name])
        versions = prep.versions = Versions(self.cache.root)
        prep.facts = ctx.run("facts", lambda run: _read(run, cluster, versions), hosts=readers).values
        first = prep.first_facts
        config = first.file(CONFIG).text if first is not None else None
        prep.tokens = resolve_tokens(ctx, cluster, hosts, config, readable=first is not None)
        prep.cluster = _encryption(ctx, cluster, hosts[cluster.first.name], config)
        nodes = prep.node_list()
        for target in prep.targets:
            if target.name in prep.facts:
                try:
                    prep.plans[target.name] = self._plan(ctx, prep, target, nodes)
                except (NrError, ValueError, OSError) as exc:
                    ctx.fail_host(hosts[target.name], "plan", str(exc))
        return prep

    def _binary(self, ctx: PlayContext, node: NodeSpec, arch: str) -> BinarySource:
        key = (node.binary or node.version or DEFAULT_VERSION, arch)
        if key not in self.sources:
            if node.binary:
                self.sources[key] = local_binary(Path(node.binary), arch)
            else:
                self.sources[key] = release_binary(self.cache, key[0], arch, download=not ctx.dry_run)
        return self.sources[key]

    def _plan(
        self, ctx: PlayContext, prep: Prepared, node: NodeSpec, nodes: dict[str, NodeStatus] | None
    ) -> HostPlan:
        facts = prep.facts[node.name]
        first = prep.cluster.first.name
        problem = version_change_problem(binary_version(facts), node.version) or role_switch_problem(
            node,
            facts,
            nodes,
            first,
            ctx.fix_command("k3s-reset", node.name),
            ctx.fix_command("k3s", node.name),
        )
        if problem:
            raise NrError(problem)
        if node.node_ip and not node.flannel_iface and "addrs" in facts.outputs:
            iface = pinned_flannel_iface(node.node_ip, facts.out("addrs"), facts.out("routes"))
            if iface:
                node = replace(node, flannel_iface=iface)
                ctx.note(f"{node.name}: flannel pinned to {iface}, the interface of node-ip {node.node_ip}")
        registries = Path(node.registries).read_bytes() if node.registries else None
        return plan_host(
            prep.cluster,
            node,
            prep.tokens[node.name].reveal(),
            facts,
            self._binary(ctx, node, facts.out("arch").strip()),
            registries=registries,
            images=images_source(node.airgap_images),
        )
