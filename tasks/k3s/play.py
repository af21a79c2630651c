"""The ``k3s`` play (and ``k3s-reset``): a k3s cluster on the inventory's k3s_servers and k3s_agents.

A run:

1. ``facts``: one round trip per host reads the binary's hash and version, config.yaml, the units,
   registries.yaml, the services' state and the architecture; on the first server also the nodes
   the cluster knows and its kubeconfig.
2. The token: ``data.k3s_token``, else ``<inventory>/secrets/k3s_token`` (0600), else the token the
   running cluster was made with (read from the first server's config.yaml), else a new one stored
   there. The binary: ``data.k3s_binary``, else the release for the host's architecture from the
   local cache (downloaded once, checked against the release's sha256 file).
3. The pure plan (:mod:`tasks.k3s.plan`) per host, applied in one more round trip per host, in the
   order of :func:`tasks.k3s.plan.rollout`: the first server, the other servers one at a time (each
   Ready before the next joins), the agents in parallel; an upgrade goes servers one at a time, then
   agents one at a time, and halts at the first node that does not come back. k3s restarts only
   when its binary, unit or configuration changed.
4. Waiting, bounded (300 s, ``NR_K3S_READY_TIMEOUT``): ``k3s kubectl get nodes -o json`` on the
   first server until every node is Ready with the expected version, then the packaged kube-system
   deployments. A node whose service keeps exiting fails early; every node that is not Ready fails
   with the tail of its own k3s journal. The operator's machine needs no kubectl.
5. The kubeconfig of the first server, rewritten (its address, the site's name) and merged into the
   operator's kubeconfig without touching other entries.

Under ``--dry-run`` steps 1-3 run and show the diffs (token masked); nothing is written, on the
hosts or locally.
"""

from __future__ import annotations

import os
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import yaml
from nornir.core.inventory import Host
from nornir.core.task import Result, Task

from nr.changes import Change
from nr.connection import CONNECTION_NAME, quote, remote
from nr.errors import NrError
from nr.facts import Facts, gather
from nr.inventory.schema import COMMON_DATA
from nr.legacy import apply_changes
from nr.ops.files import local_sha256
from nr.play import CheckItem, PlayContext, host_groups
from nr.secrets import Secret, SecretError, SecretRef
from nr.transport import Remote
from tasks.k3s.contract import AGENTS as K3S_AGENTS
from tasks.k3s.contract import CONTRACT
from tasks.k3s.contract import SERVERS as K3S_SERVERS
from tasks.k3s.local import (
    ReleaseCache,
    kubeconfig_target,
    load_token,
    local_binary,
    new_token,
    store_token,
    token_path,
    update_kubeconfig,
)
from tasks.k3s.plan import (
    BINARY,
    CONFIG,
    DATA_DIR,
    DEFAULT_VERSION,
    IMAGES_DIR,
    REGISTRIES,
    REMOTE_KUBECONFIG,
    SERVICES_CMD,
    BinarySource,
    ClusterSpec,
    ExpectedNode,
    HostInfo,
    HostPlan,
    K3sPlanError,
    NodeSpec,
    Role,
    Stage,
    api_url,
    build_cluster,
    cluster_problems,
    deployment_problems,
    missing_node_metadata,
    node_problems,
    parse_nodes,
    parse_services,
    pinned_flannel_iface,
    plan_host,
    rewrite_kubeconfig,
    rollout,
    secrets_in_config,
    version_change_problem,
)

READY_TIMEOUT = 300.0
TIMEOUT_ENV = "NR_K3S_READY_TIMEOUT"
POLL_SECONDS = 2.0
PROBE_SECONDS = 6.0  # how often the services of nodes that are not Ready are looked at
CRASH_RESTARTS = 2  # a service restarted this often by systemd since nr started it keeps exiting
STABLE_SECONDS = 6.0  # a restarted service must stay up this long (the API may report a stale Ready)
JOURNAL_LINES = 20

# Data keys the component reads beyond the schema's k3s keys, once the engine knows them.

NODES_CMD = f"{BINARY} kubectl get nodes -o json --request-timeout=10s"
DEPLOY_CMD = f"{BINARY} kubectl get deploy -n kube-system -o json --request-timeout=10s"
INSTALLED = f"[ -x {BINARY} ] && [ -f {REMOTE_KUBECONFIG} ]"


# -- the inventory ---------------------------------------------------------------------------------
def k3s_hosts(ctx: PlayContext) -> list[Host]:
    """Servers then agents, each in inventory order (the whole inventory: planning sees every host)."""
    return ctx.all_hosts(K3S_SERVERS) + [
        h for h in ctx.all_hosts(K3S_AGENTS) if h not in ctx.all_hosts(K3S_SERVERS)
    ]


def host_info(host: Host) -> HostInfo:
    role = Role.SERVER if K3S_SERVERS in host_groups(host) else Role.AGENT
    keys = [*COMMON_DATA, *CONTRACT.data]
    data = {k: host.get(k) for k in keys if host.get(k) is not None}
    return HostInfo(host.name, str(host.hostname or ""), role, data)


def inventory_dir(ctx: PlayContext) -> Path:
    return ctx.inventory_dir


def host_remote(ctx: PlayContext, name: str) -> Remote:
    """The open connection of any inventory host (outside the host's own task, e.g. while waiting)."""
    conn: Remote = ctx.nornir.inventory.hosts[name].get_connection(CONNECTION_NAME, ctx.nornir.config)
    return conn


def ready_timeout(cluster_first: Host) -> float:
    value = cluster_first.get("k3s_ready_timeout") or os.environ.get(TIMEOUT_ENV)
    try:
        return float(value) if value else READY_TIMEOUT
    except ValueError:
        raise NrError(f"{TIMEOUT_ENV}={value!r} is not a number of seconds") from None


def expected(node: NodeSpec) -> ExpectedNode:
    return ExpectedNode(node.name, node.role, node.version)


def binary_version(facts: Facts) -> str:
    """``k3s version v1.31.4+k3s1 (abcd)`` -> ``v1.31.4+k3s1`` ("" when not installed)."""
    words = facts.out("version").split() if "version" in facts.outputs else []
    return words[2] if len(words) > 2 and words[:2] == ["k3s", "version"] else ""


# -- facts -------------------------------------------------------------------------------------------
def facts_request(node: NodeSpec, first: bool) -> tuple[list[str], dict[str, str]]:
    files = [BINARY, CONFIG, REGISTRIES, Role.SERVER.unit_path, Role.AGENT.unit_path]
    if node.airgap_images:
        files.append(f"{IMAGES_DIR}/{Path(node.airgap_images).name}")
    commands = {
        "arch": "uname -m",
        "addrs": "ip -o addr show 2>/dev/null || true",
        "routes": "ip route show default 2>/dev/null || true",
        "services": SERVICES_CMD,
        "version": f"if [ -x {BINARY} ]; then {BINARY} --version 2>/dev/null | head -n1; fi",
    }
    if first:
        files.append(REMOTE_KUBECONFIG)
        commands["nodes"] = f"if {INSTALLED}; then {NODES_CMD}; else echo 'k3s is not installed'; exit 3; fi"
        commands["deploy"] = f"if {INSTALLED}; then {DEPLOY_CMD}; else exit 3; fi"
    return files, commands


def _facts_task(task: Task, cluster: ClusterSpec) -> Result:
    node = cluster.node(task.host.name)
    files, commands = facts_request(node, node.name == cluster.first.name)
    facts = gather(remote(task), files=files, commands=commands)
    version = binary_version(facts) or "not installed"
    return Result(host=task.host, result=f"k3s {version}", facts=facts)


@dataclass
class Prepared:
    cluster: ClusterSpec
    hosts: dict[str, Host]
    targets: list[NodeSpec]  # nodes this run may change (--limit)
    facts: dict[str, Facts] = field(default_factory=dict)
    plans: dict[str, HostPlan] = field(default_factory=dict)
    tokens: dict[str, Secret] = field(default_factory=dict)
    restarted: set[str] = field(default_factory=set)  # k3s restarted in this run, not yet seen to stay up


class K3sComponent:
    name = "k3s"

    def __init__(self, cache: ReleaseCache | None = None) -> None:
        self.cache = cache or ReleaseCache()

    # -- validation -----------------------------------------------------------------------------
    def validate(self, ctx: PlayContext) -> list[str]:
        hosts = k3s_hosts(ctx)
        problems = list(_cluster_problems(hosts))
        seen_refs: set[str] = set()
        for h in hosts:
            for key in ("k3s_binary", "k3s_airgap_images", "k3s_registries"):
                value = h.get(key)
                if value and not Path(value).expanduser().is_file():
                    problems.append(f"host {h.name}: {key}: {value} is not a file")
            ref = h.get("k3s_token")
            if ref and ref not in seen_refs:
                seen_refs.add(ref)
                try:
                    SecretRef.parse(ref).resolve()
                except SecretError as exc:
                    problems.append(f"host {h.name}: k3s_token: {exc}")
        if hosts and any(not h.get("k3s_token") for h in hosts):
            try:
                load_token(inventory_dir(ctx))
            except SecretError as exc:
                problems.append(f"k3s token: {exc}")
        if hosts:
            first = hosts[0]
            try:
                ready_timeout(first)
            except NrError as exc:
                problems.append(str(exc))
        return problems

    # -- shared by apply and drift ------------------------------------------------------------------
    def _cluster(self, ctx: PlayContext) -> tuple[ClusterSpec, dict[str, Host]] | None:
        hosts = k3s_hosts(ctx)
        if not hosts:
            ctx.note("no hosts in k3s_servers or k3s_agents: nothing to do")
            return None
        try:
            return build_cluster([host_info(h) for h in hosts]), {h.name: h for h in hosts}
        except K3sPlanError as exc:
            raise NrError("; ".join(exc.problems)) from None

    def _prepare(self, ctx: PlayContext) -> Prepared | None:
        found = self._cluster(ctx)
        if found is None:
            return None
        cluster, hosts = found
        limit = {h.name for h in ctx.hosts()}
        prep = Prepared(cluster, hosts, [n for n in cluster.nodes if n.name in limit])
        if not prep.targets:
            ctx.note("no k3s host within --limit: nothing to do")
            return None
        first = cluster.first
        readers = [hosts[n.name] for n in prep.targets]
        if first.name not in limit:  # read-only: the cluster's state and token live there
            readers.insert(0, hosts[first.name])
        result = ctx.run_nornir("facts", lambda task: _facts_task(task, cluster), hosts=readers)
        prep.facts = {h: r[0].facts for h, r in result.items() if not r.failed}  # type: ignore[attr-defined]
        self._resolve_tokens(ctx, prep)
        self._plan(ctx, prep)
        return prep

    def _resolve_tokens(self, ctx: PlayContext, prep: Prepared) -> None:
        cluster, first = prep.cluster, prep.cluster.first
        running = secrets_in_config(
            prep.facts[first.name].files[CONFIG].text
            if first.name in prep.facts and prep.facts[first.name].files[CONFIG].exists
            else None
        )
        running_token = Secret(running[0], "the running cluster") if running else None
        default: Secret | None = None
        for node in cluster.nodes:
            ref = prep.hosts[node.name].get("k3s_token")
            if ref:
                prep.tokens[node.name] = SecretRef.parse(ref).resolve()
                continue
            if default is None:
                default = self._default_token(ctx, running_token, readable=first.name in prep.facts)
            prep.tokens[node.name] = default
        want = prep.tokens[first.name]
        if running_token is not None and running_token != want:
            raise NrError(
                f"the cluster on {first.name} was created with another token, and k3s cannot change it "
                f"(it encrypts the datastore): set data.k3s_token to the cluster's token, or rebuild the "
                f"cluster with {ctx.fix_command('k3s-reset')} and {ctx.fix_command()}"
            )

    def _default_token(self, ctx: PlayContext, running: Secret | None, readable: bool = True) -> Secret:
        inv = inventory_dir(ctx)
        path = token_path(inv)
        try:
            kept = load_token(inv)
        except SecretError as exc:
            raise NrError(f"k3s token: {exc}") from None
        if kept is not None:
            return kept
        if running is not None:
            if not ctx.dry_run:
                store_token(inv, running)
            verb = "would be stored" if ctx.dry_run else "stored"
            ctx.note(f"the running cluster's token (from {CONFIG}) {verb} in {path} (0600)")
            return running
        if not readable:  # k3s may well run there: a new token now would be kept and later refused
            raise NrError(
                f"k3s token: no token is kept in {path} and the first server could not be read, so it is "
                "unknown whether a cluster (with its own token) runs there: make it reachable, or set data.k3s_token"
            )
        token = new_token()
        if ctx.dry_run:
            ctx.note(f"a cluster token would be generated and stored in {path} (0600)")
        else:
            store_token(inv, token)
            ctx.note(
                f"generated the cluster token and stored it in {path} (0600): back it up, k3s cannot "
                "change it later"
            )
        return token

    def _plan(self, ctx: PlayContext, prep: Prepared) -> None:
        sources: dict[tuple[str, str], BinarySource] = {}
        for target in prep.targets:
            node, facts = target, prep.facts.get(target.name)
            if facts is None:
                continue
            try:
                arch = facts.out("arch").strip()
                if node.binary:
                    key = (node.binary, arch)
                    if key not in sources:
                        sources[key] = local_binary(Path(node.binary), arch)
                else:
                    key = (node.version or DEFAULT_VERSION, arch)
                    if key not in sources:
                        sources[key] = self.cache.binary(key[0], arch, download=not ctx.dry_run)
                images = None
                if node.airgap_images:
                    p = Path(node.airgap_images)
                    images = BinarySource(local_sha256(p), f"local file {p}", p)
                problem = version_change_problem(binary_version(facts), node.version)
                if problem:
                    raise NrError(problem)
                if node.node_ip and not node.flannel_iface and "addrs" in facts.outputs:
                    iface = pinned_flannel_iface(node.node_ip, facts.out("addrs"), facts.out("routes"))
                    if iface:
                        node = replace(node, flannel_iface=iface)
                        ctx.note(
                            f"{node.name}: flannel pinned to {iface}, the interface of node-ip {node.node_ip}"
                        )
                registries = Path(node.registries).read_bytes() if node.registries else None
                prep.plans[node.name] = plan_host(
                    prep.cluster,
                    node,
                    prep.tokens[node.name].reveal(),
                    facts,
                    sources[key],
                    registries=registries,
                    images=images,
                )
            except (NrError, ValueError, OSError) as exc:
                ctx.fail_host(prep.hosts[node.name], "plan", str(exc))

    # -- apply ----------------------------------------------------------------------------------------
    def apply(self, ctx: PlayContext) -> None:
        prep = self._prepare(ctx)
        if prep is None:
            return
        cluster = prep.cluster
        upgrade = any(p.upgrade for p in prep.plans.values())
        stages = rollout([n.name for n in cluster.servers], [n.name for n in cluster.agents], upgrade=upgrade)
        timeout = ready_timeout(prep.hosts[cluster.first.name])
        halt: str | None = None  # why the remaining stages do not start
        if ctx.failed(cluster.first.name):
            halt = f"the first server {cluster.first.name} could not be read or planned"
        for stage in stages:
            names = [n for n in stage.hosts if n in prep.plans and not ctx.failed(n)]
            if not names:
                continue
            if halt is not None:
                for n in names:
                    if prep.plans[n].changed:  # a host with nothing to change is left alone
                        ctx.fail_host(prep.hosts[n], stage.step, f"not started: {halt}")
                continue
            bad = self._run_stage(ctx, prep, stage, names, timeout)
            if upgrade and bad:
                halt = f"{bad[0]} failed during the upgrade (upgrade halted: servers first, one at a time)"
            elif cluster.first.name in names and ctx.failed(cluster.first.name):
                halt = f"the first server {cluster.first.name} is not up"
        if ctx.dry_run:
            self._kubeconfig_dry_run(ctx, prep)
            return
        waiting = [expected(n) for n in prep.targets if not ctx.failed(n.name)]
        if ctx.failed(cluster.first.name) or not waiting:
            return
        found = self._settled(prep, waiting) or self._wait(
            ctx, cluster, waiting, timeout, deployments=True, restarted=prep.restarted
        )
        for name, message in found.problems.items():
            ctx.fail_host(prep.hosts[name], "ready", message)
        if found.deployments and cluster.first.name in {n.name for n in prep.targets}:
            ctx.fail_host(
                prep.hosts[cluster.first.name],
                "ready",
                "kube-system deployments not available after "
                f"{found.elapsed:.0f} s: "
                + "; ".join(f"{d}: {why}" for d, why in found.deployments.items())
                + f" (look at: {BINARY} kubectl -n kube-system get pods on {cluster.first.name})",
            )
        if found.kubeconfig:
            self._merge_kubeconfig(ctx, prep, found.kubeconfig)

    def _settled(self, prep: Prepared, waiting: Sequence[ExpectedNode]) -> WaitOutcome | None:
        """The cluster as read before the run, when nothing changed and it was already Ready (no poll)."""
        first = prep.facts.get(prep.cluster.first.name)
        if first is None or any(p.changed for p in prep.plans.values()):
            return None
        problems, deployments = _cluster_status(first, waiting, prep.cluster, True)
        if problems or deployments:
            return None
        return WaitOutcome({}, {}, first.files[REMOTE_KUBECONFIG].text, 0.0)

    def _run_stage(
        self, ctx: PlayContext, prep: Prepared, stage: Stage, names: list[str], timeout: float
    ) -> list[str]:
        """Apply the plans of ``names``; in a serial stage stop at the first node that fails.
        Returns the nodes that failed (their apply, or becoming Ready)."""
        problems: dict[str, str] = {}  # node -> why it did not become Ready
        broken: list[str] = []  # nodes whose apply failed

        def converge(task: Task) -> Result:
            name = task.host.name
            if stage.serial and (problems or broken):
                bad = next(iter(problems), None) or broken[0]
                raise NrError(f"not started: {bad} failed first (one node at a time: the rollout halted)")
            plan = prep.plans[name]
            try:
                result = apply_changes(task, plan.changes, after=plan.after, conn=remote(task))
            except Exception:
                broken.append(name)
                raise
            if plan.restart and not task.is_dry_run():
                prep.restarted.add(name)
                if stage.wait_each:
                    node = [expected(plan.node)]
                    found = self._wait(ctx, prep.cluster, node, timeout, deployments=False, restarted=[name])
                    problems.update(found.problems)
                    prep.restarted.discard(name)
            return result

        ctx.run_nornir(stage.step, converge, hosts=[prep.hosts[n] for n in names], serial=stage.serial)
        for name, message in problems.items():
            ctx.fail_host(prep.hosts[name], "ready", message)
        return list(problems) + broken

    # -- waiting ----------------------------------------------------------------------------------------
    def _wait(
        self,
        ctx: PlayContext,
        cluster: ClusterSpec,
        want: Sequence[ExpectedNode],
        timeout: float,
        *,
        deployments: bool,
        restarted: Collection[str] = (),
    ) -> WaitOutcome:
        """Poll the first server until ``want`` are Ready (bounded) and explain every node that is not.

        A node k3s was restarted on in this run must also have kept its service up for
        ``STABLE_SECONDS``: the API may still call it Ready from before the restart. Nodes whose service
        keeps exiting, is stopped or whose host cannot be reached are given up on early.
        """
        start = time.monotonic()
        api = host_remote(ctx, cluster.first.name)
        commands = {
            "nodes": f"if {INSTALLED}; then {NODES_CMD}; else echo 'k3s is not installed'; exit 3; fi"
        }
        if deployments:
            commands["deploy"] = f"if {INSTALLED}; then {DEPLOY_CMD}; else exit 3; fi"
        gave_up: dict[str, str] = {}
        unsure = {e.name for e in want if e.name in restarted}  # restarted, not yet seen to stay up
        next_probe = start + PROBE_SECONDS
        while True:
            facts = gather(api, files=[REMOTE_KUBECONFIG], commands=commands)
            pending = [e for e in want if e.name not in gave_up]
            problems, dep = _cluster_status(facts, pending, cluster, deployments)
            now = time.monotonic()
            probe = [n for n in unsure if n not in problems]
            if now >= next_probe:
                probe += list(problems)
                next_probe = now + PROBE_SECONDS
            for name, state in self._probe(ctx, cluster, probe).items():
                verdict = state.verdict()
                if verdict is not None:
                    gave_up[name] = f"{problems.get(name, 'Ready as the API last saw it')}; {verdict}"
                    unsure.discard(name)
                elif name not in problems and state.running and state.up >= STABLE_SECONDS:
                    unsure.discard(name)
            waiting = [n for n in problems if n not in gave_up] + sorted(unsure)
            if not waiting and not dep:
                break
            if now - start >= timeout:
                for name in unsure:
                    problems[name] = (
                        f"its service did not stay up for {STABLE_SECONDS:.0f} s after the restart"
                    )
                break
            time.sleep(POLL_SECONDS)
        elapsed = time.monotonic() - start
        kubeconfig = facts.files[REMOTE_KUBECONFIG].text
        failed = {**{n: w for n, w in problems.items() if n not in gave_up}, **gave_up}
        messages = {}
        for name, why in failed.items():
            node = cluster.node(name)
            messages[name] = (
                f"node {name} is not Ready after {elapsed:.0f} s: {why}; last lines of its journal "
                f"(journalctl -u {node.role.unit} -n {JOURNAL_LINES} --no-pager on {name}):\n"
                + self._journal(ctx, node)
            )
        return WaitOutcome(messages, dep, kubeconfig, elapsed)

    def _probe(self, ctx: PlayContext, cluster: ClusterSpec, names: Sequence[str]) -> dict[str, ServiceProbe]:
        """The k3s service of each node, read on its own host (one command per host)."""
        out = {}
        for name in dict.fromkeys(names):
            unit = cluster.node(name).role.unit
            try:
                res = host_remote(ctx, name).run(PROBE_CMD.format(unit=unit), check=False, timeout=30)
            except NrError as exc:
                out[name] = ServiceProbe(unit, error=str(exc))
                continue
            out[name] = ServiceProbe.parse(unit, res.stdout)
        return out

    def _journal(self, ctx: PlayContext, node: NodeSpec) -> str:
        try:
            res = host_remote(ctx, node.name).run(
                f"journalctl -u {node.role.unit} -n {JOURNAL_LINES} --no-pager", check=False, timeout=30
            )
        except NrError as exc:
            return f"  (could not read it: {exc})"
        text = (res.stdout.strip() or res.stderr.strip() or "(empty)").splitlines()
        return "\n".join("  " + line for line in text[-JOURNAL_LINES:])

    # -- kubeconfig --------------------------------------------------------------------------------------
    def _kubeconfig_path(self, prep: Prepared) -> Path:
        return kubeconfig_target(prep.hosts[prep.cluster.first.name].get("k3s_kubeconfig"))

    def _merge_kubeconfig(self, ctx: PlayContext, prep: Prepared, fetched: str) -> None:
        cluster = prep.cluster
        path = self._kubeconfig_path(prep)
        try:
            doc = yaml.safe_load(fetched)
            new = rewrite_kubeconfig(doc, api_url(cluster.first.address), cluster.site_name)
            changed = update_kubeconfig(path, new, cluster.site_name)
        except (yaml.YAMLError, AttributeError, TypeError) as exc:
            raise NrError(f"{REMOTE_KUBECONFIG} on {cluster.first.name} is not a kubeconfig: {exc}") from None
        what = "merged into" if changed else "already up to date in"
        ctx.note(f"kubeconfig: context '{cluster.site_name}' {what} {path}")

    def _kubeconfig_dry_run(self, ctx: PlayContext, prep: Prepared) -> None:
        path = self._kubeconfig_path(prep)
        ctx.note(
            f"kubeconfig: context '{prep.cluster.site_name}' would be merged into {path} (if it differs)"
        )

    # -- check -------------------------------------------------------------------------------------------
    def check(self, ctx: PlayContext) -> None:
        found = self._cluster(ctx)
        if found is None:
            return
        cluster, hosts = found
        limit = {h.name for h in ctx.hosts()}
        first = cluster.first

        def cluster_task(task: Task) -> Result:
            facts = gather(
                remote(task),
                commands={
                    "nodes": f"if {INSTALLED}; then {NODES_CMD}; else echo 'k3s is not installed'; exit 3; fi",
                    "deploy": f"if {INSTALLED}; then {DEPLOY_CMD}; else exit 3; fi",
                },
            )
            items = cluster_checks(cluster, facts, [n for n in cluster.nodes if n.name in limit])
            passed = sum(i.ok for i in items)
            return Result(host=task.host, result=f"{passed}/{len(items)} passed", checks=items)

        ctx.run_nornir("cluster", cluster_task, hosts=[hosts[first.name]])

        def node_task(task: Task) -> Result:
            node = cluster.node(task.host.name)
            facts = gather(
                remote(task),
                commands={"services": SERVICES_CMD, "version": facts_request(node, False)[1]["version"]},
            )
            items = service_checks(node, facts)
            passed = sum(i.ok for i in items)
            return Result(host=task.host, result=f"{passed}/{len(items)} passed", checks=items)

        ctx.run_nornir("service", node_task, hosts=[hosts[n.name] for n in cluster.nodes if n.name in limit])

    # -- drift ----------------------------------------------------------------------------------------
    def drift(self, ctx: PlayContext) -> None:
        prep = self._prepare(ctx)
        if prep is None:
            return
        first = prep.cluster.first
        node_changes: dict[str, list[Change]] = {}
        if first.name in prep.facts:
            ff = prep.facts[first.name]
            problems, _ = _cluster_status(ff, [expected(n) for n in prep.targets], prep.cluster, False)
            for name, why in problems.items():
                node = prep.cluster.node(name)
                want = f"Ready, {node.version or 'any version'}, {node.role.value}"
                node_changes.setdefault(name, []).append(
                    Change(f"node {name}", want, why, "", fix=ctx.fix_command(host=name))
                )
            try:
                status = parse_nodes(ff.out("nodes")) if ff.rc("nodes") == 0 else {}
            except ValueError:
                status = {}
            for node in prep.targets:
                registered = status.get(node.name)
                if registered is None or node.name in problems:
                    continue
                for what, cmd in missing_node_metadata(registered, node, f"{BINARY} kubectl"):
                    why = "absent (k3s applies it only at registration)"
                    change = Change(
                        f"node {node.name} {what}", "present", why, "", fix=f"{cmd}  # on {first.name}"
                    )
                    node_changes.setdefault(node.name, []).append(change)

        def report(task: Task) -> Result:
            name = task.host.name
            plan = prep.plans.get(name)
            changes = list(plan.changes if plan else ()) + node_changes.get(name, [])
            diff = "".join(c.summary() if c.summary().endswith("\n") else c.summary() + "\n" for c in changes)
            return Result(
                host=task.host,
                changed=bool(changes),
                diff=diff,
                result=[c.what for c in changes],
                changes=changes,
            )

        names = [n.name for n in prep.targets if n.name in prep.plans]
        ctx.run_nornir("plan", report, hosts=[prep.hosts[n] for n in names])


PROBE_CMD = (
    "systemctl show -p NRestarts -p ActiveState -p SubState {unit}\n"
    "t=$(systemctl show -p ActiveEnterTimestamp --value {unit})\n"
    'if [ -n "$t" ]; then echo "Up=$(( $(date +%s) - $(date -d "$t" +%s) ))"; fi'
)


@dataclass(frozen=True)
class ServiceProbe:
    """A k3s service as systemd sees it on its host."""

    unit: str
    active: str = "unknown"
    sub: str = ""
    restarts: int = 0  # restarts by systemd (Restart=always) since the unit was last started by hand
    up: float = 0.0  # seconds since it last became active
    error: str = ""  # the host could not be asked

    @classmethod
    def parse(cls, unit: str, text: str) -> ServiceProbe:
        kv = dict(line.partition("=")[::2] for line in text.splitlines() if "=" in line)

        def num(key: str) -> int:
            value = kv.get(key, "").strip()
            return int(value) if value.lstrip("-").isdigit() else 0

        return cls(
            unit, kv.get("ActiveState", "unknown"), kv.get("SubState", ""), num("NRestarts"), num("Up")
        )

    @property
    def running(self) -> bool:
        return self.active == "active" and self.sub == "running"

    def verdict(self) -> str | None:
        """Why waiting longer will not help (None: it might still come up)."""
        if self.error:
            return f"its host cannot be reached: {self.error}"
        if self.restarts >= CRASH_RESTARTS:
            return f"{self.unit} keeps exiting (restarted {self.restarts} times by systemd)"
        if self.active in ("inactive", "failed"):
            return f"{self.unit} is {self.active}"
        return None


@dataclass(frozen=True)
class WaitOutcome:
    problems: dict[str, str]  # node -> why it is not Ready (with its journal)
    deployments: dict[str, str]  # kube-system deployment -> why it is not available
    kubeconfig: str | None
    elapsed: float


def _cluster_problems(hosts: Sequence[Host]) -> list[str]:
    return cluster_problems([host_info(h) for h in hosts])


def _cluster_status(
    facts: Facts, want: Sequence[ExpectedNode], cluster: ClusterSpec, deployments: bool
) -> tuple[dict[str, str], dict[str, str]]:
    """(node problems, deployment problems) from a poll of the first server (pure)."""
    if facts.rc("nodes") != 0:
        why = (facts.out("nodes").strip().splitlines() or ["no answer"])[-1]
        return {e.name: f"the API on {cluster.first.name} does not answer ({why})" for e in want}, {}
    try:
        problems = node_problems(parse_nodes(facts.out("nodes")), want)
    except ValueError as exc:
        return {e.name: f"unreadable node list from {cluster.first.name}: {exc}" for e in want}, {}
    dep: dict[str, str] = {}
    if deployments and not problems:
        if facts.rc("deploy") != 0:
            dep = {"kube-system": (facts.out("deploy").strip().splitlines() or ["no answer"])[-1]}
        else:
            try:
                dep = deployment_problems(facts.out("deploy"), cluster.expected_deployments)
            except ValueError as exc:
                dep = {"kube-system": f"unreadable deployment list: {exc}"}
    return problems, dep


def cluster_checks(cluster: ClusterSpec, facts: Facts, nodes: Sequence[NodeSpec]) -> list[CheckItem]:
    """Checks as the first server's API sees the cluster: each node, then kube-system (pure)."""
    first = cluster.first
    api_ok = facts.rc("nodes") == 0
    items = [
        CheckItem(
            f"k3s API on {first.name}",
            api_ok,
            "answers" if api_ok else (facts.out("nodes").strip().splitlines() or ["no answer"])[-1],
            f"journalctl -u k3s -n 50 --no-pager on {first.name}; nr run k3s",
        )
    ]
    if not api_ok:
        return items
    try:
        status = parse_nodes(facts.out("nodes"))
    except ValueError as exc:
        return [*items, CheckItem("node list", False, str(exc), "")]
    for node in nodes:
        problem = node_problems(status, [expected(node)]).get(node.name)
        n = status.get(node.name)
        detail = (
            f"Ready, {n.version}, {'control-plane' if n.control_plane else 'agent'}"
            if n is not None and problem is None
            else problem or ""
        )
        items.append(
            CheckItem(
                f"node {node.name} ({node.role.value})",
                problem is None,
                detail,
                f"is {node.name} up? journalctl -u {node.role.unit} -n 50 --no-pager "
                f"on {node.name}; nr run k3s --limit {node.name}",
            )
        )
        if n is not None and (node.labels or node.taints):
            missing = missing_node_metadata(n, node, f"{BINARY} kubectl")
            items.append(
                CheckItem(
                    f"node {node.name} labels and taints",
                    not missing,
                    "; ".join(f"missing {what}" for what, _ in missing) or "as configured",
                    "; ".join(cmd for _, cmd in missing) + f" (on {first.name})" if missing else "",
                )
            )
    try:
        dep = (
            deployment_problems(facts.out("deploy"), cluster.expected_deployments)
            if facts.rc("deploy") == 0
            else None
        )
    except ValueError:
        dep = None
    for name in cluster.expected_deployments:
        why = "no answer" if dep is None else dep.get(name)
        items.append(
            CheckItem(
                f"kube-system deployment {name}",
                why is None,
                why or "available",
                f"{BINARY} kubectl -n kube-system describe deploy/{name} on {first.name}",
            )
        )
    return items


def service_checks(node: NodeSpec, facts: Facts) -> list[CheckItem]:
    """The k3s service and binary on one host (pure)."""
    unit = node.role.unit
    state = parse_services(facts.out("services")).get(unit)
    version = binary_version(facts)
    hint = f"journalctl -u {unit} -n 50 --no-pager on {node.name}; nr run k3s --limit {node.name}"
    items = [
        CheckItem(
            f"{unit} active",
            state is not None and state.active == "active",
            state.active if state else "?",
            hint,
        ),
        CheckItem(
            f"{unit} enabled",
            state is not None and state.enabled == "enabled",
            state.enabled if state else "?",
            hint,
        ),
    ]
    want = node.version
    ok = bool(version) and (want is None or version == want)
    detail = f"{version or 'not installed'}" + (f" (want {want})" if want and version != want else "")
    items.append(CheckItem("k3s version", ok, detail, f"nr run k3s --limit {node.name}"))
    return items


# -- k3s-reset --------------------------------------------------------------------------------------------
RESET_PATHS = (
    BINARY,
    Role.SERVER.unit_path,
    Role.AGENT.unit_path,
    "/etc/rancher/k3s",
    DATA_DIR,
    "/var/lib/kubelet",
    "/run/k3s",
    "/run/flannel",
)

RESET_SCRIPT = f"""\
for u in k3s-agent k3s; do systemctl disable --now "$u" >/dev/null 2>&1 || true; done
# Like k3s-killall.sh: every process running the k3s binary or one it unpacked (containerd, the
# containerd-shims), and their descendants (the containers).
nr_roots() {{
  for d in /proc/[0-9]*; do
    exe=$(readlink "$d/exe" 2>/dev/null) || continue
    case "$exe" in {BINARY}|{DATA_DIR}/data/*) echo "${{d#/proc/}}"; continue;; esac
    set -- $(tr '\\0' ' ' < "$d/cmdline" 2>/dev/null)
    if [ "${{1:-}}" = {BINARY} ] || [ "${{2:-}}" = {BINARY} ]; then echo "${{d#/proc/}}"; fi
  done
}}
pids=" $(nr_roots | tr '\\n' ' ') "
while :; do
  command -v ps >/dev/null 2>&1 || break
  more=$(ps -e -o pid= -o ppid= | while read -r p pp; do
    case "$pids" in *" $pp "*) case "$pids" in *" $p "*) ;; *) printf '%s ' "$p";; esac;; esac
  done)
  [ -n "$more" ] || break
  pids="$pids$more"
done
for p in $pids; do [ "$p" = "$$" ] || kill -9 "$p" 2>/dev/null || true; done
awk '$2 ~ "^(/run/k3s|{DATA_DIR}|/var/lib/kubelet|/run/netns/cni-)" {{print $2}}' /proc/self/mounts \\
  | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
for i in cni0 flannel.1 flannel-v6.1 flannel-wg flannel-wg-v6 kube-ipvs0; do
  if ip link show "$i" >/dev/null 2>&1; then ip link delete "$i" || true; fi
done
for t in iptables ip6tables; do
  if command -v "$t-save" >/dev/null 2>&1; then
    "$t-save" | grep -v KUBE- | grep -v CNI- | grep -iv flannel | "$t-restore" || true
  fi
done
rm -rf {" ".join(quote(p) for p in RESET_PATHS)}
systemctl daemon-reload
systemctl reset-failed k3s k3s-agent >/dev/null 2>&1 || true"""


def _reset_task(task: Task) -> Result:
    conn = remote(task)
    paths = " ".join(quote(p) for p in RESET_PATHS)
    facts = gather(
        conn,
        commands={
            "present": f'for p in {paths}; do if [ -e "$p" ]; then echo "$p"; fi; done',
            "services": SERVICES_CMD,
        },
    )
    present = facts.out("present").split()
    running = [
        u for u, s in parse_services(facts.out("services")).items() if s.active in ("active", "activating")
    ]
    if not present and not running:
        return Result(host=task.host, result="k3s not installed", changes=[])
    what = ", ".join(present + [f"{u} running" for u in running])
    change = Change(
        "k3s installation",
        "absent",
        what,
        RESET_SCRIPT,
        "".join(f"- remove {p}\n" for p in present) + "".join(f"- stop {u}\n" for u in running),
    )
    return apply_changes(task, [change], conn=conn)


class K3sResetComponent:
    name = "k3s-reset"

    def validate(self, ctx: PlayContext) -> list[str]:
        chosen, every = ctx.hosts(K3S_SERVERS), ctx.all_hosts(K3S_SERVERS)
        if chosen and len(chosen) < len(every):
            names = ", ".join(h.name for h in chosen)
            return [
                f"k3s-reset --limit {names}: resetting some servers of a cluster leaves their Node and etcd "
                f"member behind (one failure from losing quorum). Take them out first with `k3s kubectl delete "
                f"node NAME` on a remaining server, or reset the whole cluster (no --limit)"
            ]
        return []

    def apply(self, ctx: PlayContext) -> None:
        servers = ctx.hosts(K3S_SERVERS)
        agents = [h for h in ctx.hosts(K3S_AGENTS) if h not in servers]
        if agents:
            ctx.run_nornir("agents", _reset_task, hosts=agents)
        if servers:
            ctx.run_nornir("servers", _reset_task, hosts=servers)
        if not ctx.dry_run and (servers or agents):
            ctx.note(
                f"the cluster token in {token_path(inventory_dir(ctx))} (if any) and your kubeconfig are "
                "kept: a new cluster reuses the token"
            )

    def check(self, ctx: PlayContext) -> None:
        return None

    def drift(self, ctx: PlayContext) -> None:
        return None


component = K3sComponent()
reset_component = K3sResetComponent()

__all__ = [
    "K3sComponent",
    "K3sResetComponent",
    "cluster_checks",
    "component",
    "reset_component",
    "service_checks",
]
