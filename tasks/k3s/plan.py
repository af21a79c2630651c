"""The k3s play, pure part: what every k3s host should look like and in which order to get there.

Nothing here opens a connection or a file. :mod:`tasks.k3s.play` gathers facts, calls these functions and
applies the result; the unit tests call them directly.

* :func:`build_cluster` turns inventory data into a :class:`ClusterSpec` and refuses inventories k3s
  would refuse later (cluster-critical values that differ between servers, ...), naming host and key.
* :func:`render_config` / :func:`render_unit`: /etc/rancher/k3s/config.yaml (0600, the only place the
  token is written on a host) and the systemd unit (``k3s server`` / ``k3s agent``, nothing else on
  the command line).
* :func:`plan_host`: the changes for one host from its gathered facts, and the systemctl script that
  restarts k3s only when its binary, unit or configuration changed.
* :func:`rollout`: first server, then the other servers one at a time, then the agents in parallel;
  an upgrade goes servers one at a time, then agents one at a time.
* Node and deployment status from ``k3s kubectl get ... -o json`` (:func:`parse_nodes`,
  :func:`node_problems`, :func:`deployment_problems`).
* The kubeconfig: :func:`rewrite_kubeconfig` and :func:`merge_kubeconfig` work on dicts.
* Releases: :func:`release_asset`, :func:`release_url`, :func:`parse_sha256sums`.
"""

from __future__ import annotations

import copy
import ipaddress
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any
from urllib.parse import quote as urlquote

from nr.changes import Change
from nr.connection import quote
from nr.facts import Facts, FileState
from nr.ops.files import FileSpec, plan_file, plan_upload

DEFAULT_VERSION = "v1.31.4+k3s1"
DEFAULT_CLUSTER_CIDR = "10.42.0.0/16"
DEFAULT_SERVICE_CIDR = "10.43.0.0/16"
DEFAULT_SITE_NAME = "nr"
API_PORT = 6443

BINARY = "/usr/local/bin/k3s"
CONFIG_DIR = "/etc/rancher/k3s"
CONFIG = f"{CONFIG_DIR}/config.yaml"
REGISTRIES = f"{CONFIG_DIR}/registries.yaml"
REMOTE_KUBECONFIG = f"{CONFIG_DIR}/k3s.yaml"
IMAGES_DIR = "/var/lib/rancher/k3s/agent/images"
DATA_DIR = "/var/lib/rancher/k3s"
UNIT_DIR = "/etc/systemd/system"

RELEASES = "https://github.com/k3s-io/k3s/releases/download"
VERSION_RE = re.compile(r"^v\d+\.\d+\.\d+(-rc\d+)?\+k3s\d+$")
TAINT_RE = re.compile(r"^[^=:\s]+(=[^:\s]*)?:(NoSchedule|PreferNoSchedule|NoExecute)$")
LABEL_RE = re.compile(r"^[^=\s]+=[^=\s]*$")

# The packaged kube-system deployments and the `disable:` name that removes each.
PACKAGED_DEPLOYMENTS = {
    "coredns": "coredns",
    "traefik": "traefik",
    "metrics-server": "metrics-server",
    "local-path-provisioner": "local-storage",
}

# Inventory keys whose values must be identical on every server (k3s refuses the join with
# "critical configuration value mismatch"), and keys that must be identical on every k3s host.
SERVER_CRITICAL_KEYS = ("k3s_cluster_cidr", "k3s_service_cidr", "k3s_disable", "k3s_token")
CLUSTER_WIDE_KEYS = ("k3s_version",)


class Role(StrEnum):
    SERVER = "server"
    AGENT = "agent"

    @property
    def unit(self) -> str:
        return "k3s" if self is Role.SERVER else "k3s-agent"

    @property
    def unit_path(self) -> str:
        return f"{UNIT_DIR}/{self.unit}.service"

    @property
    def other(self) -> Role:
        return Role.AGENT if self is Role.SERVER else Role.SERVER


class K3sPlanError(ValueError):
    """The inventory describes a cluster k3s would refuse; ``problems`` names host and key."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


# -- the cluster from the inventory -----------------------------------------------------------------
@dataclass(frozen=True)
class HostInfo:
    """One inventory host as the planner sees it: name, SSH address, role and its resolved data."""

    name: str
    address: str
    role: Role
    data: Mapping[str, Any] = field(default_factory=dict)


def _minor(version: str) -> tuple[int, int] | None:
    m = re.match(r"v?(\d+)\.(\d+)\.", version.strip())
    return (int(m[1]), int(m[2])) if m else None


def version_change_problem(current: str, target: str | None) -> str | None:
    """Why going from k3s ``current`` to ``target`` is refused (Kubernetes supports upgrades one minor
    version at a time, and no downgrade of the minor version), or None."""
    now, want = _minor(current), _minor(target or "")
    if now is None or want is None or now == want:
        return None
    if want < now:
        return f"k3s {current} -> {target} is a downgrade of the Kubernetes minor version, which is not supported"
    if want[0] == now[0] and want[1] - now[1] > 1:
        step = f"v{now[0]}.{now[1] + 1}"
        return (
            f"k3s {current} -> {target} skips a Kubernetes minor version: upgrade to a {step}.x release first"
        )
    return None


def host_addresses(ip_addr: str) -> dict[str, str]:
    """``ip -o addr show`` -> {address: interface}."""
    out = {}
    for line in ip_addr.splitlines():
        parts = line.split()
        if len(parts) >= 4 and parts[2] in ("inet", "inet6"):
            out[parts[3].split("/")[0]] = parts[1].split("@")[0]
    return out


def default_interface(routes: str) -> str | None:
    """``ip route show default`` -> the interface of the default route."""
    parts = routes.split()
    return parts[parts.index("dev") + 1] if "dev" in parts[:-1] else None


def pinned_flannel_iface(node_ip: str, ip_addr: str, routes: str) -> str | None:
    """The interface flannel must be pinned to: the node IP's, when it is not the default route's
    (k3s's flannel otherwise picks the default route's interface even with node-ip set: pod traffic
    between nodes breaks on multi-NIC VMs). ValueError when the host does not have ``node_ip``."""
    addresses = host_addresses(ip_addr)
    if not addresses:
        return None  # `ip` gave nothing: cannot tell
    iface = addresses.get(node_ip)
    if iface is None:
        have = ", ".join(
            f"{a} ({i})" for a, i in addresses.items() if not a.startswith(("127.", "::1", "fe80:"))
        )
        raise ValueError(
            f"node-ip {node_ip} is not an address of this host (it has {have or 'no other address'}); the "
            "kubelet would not start: set data.node_ip to one of them (e.g. behind NAT or a floating IP)"
        )
    return iface if iface != default_interface(routes) else None


@dataclass(frozen=True)
class NodeSpec:
    name: str
    address: str  # what the operator's machine connects to
    role: Role
    node_ip: str | None  # data.node_ip, or the address when it is an IP
    labels: tuple[str, ...] = ()
    taints: tuple[str, ...] = ()
    flannel_iface: str | None = None
    tls_san: tuple[str, ...] = ()
    version: str | None = DEFAULT_VERSION  # None: whatever the given k3s_binary reports
    binary: str | None = None  # data.k3s_binary (local path)
    airgap_images: str | None = None
    registries: str | None = None

    @property
    def advertise(self) -> str:
        return self.node_ip or self.address


@dataclass(frozen=True)
class ClusterSpec:
    nodes: tuple[NodeSpec, ...]  # servers first (inventory order), then agents
    site_name: str = DEFAULT_SITE_NAME
    cluster_cidr: str = DEFAULT_CLUSTER_CIDR
    service_cidr: str = DEFAULT_SERVICE_CIDR
    disable: tuple[str, ...] = ()

    @property
    def servers(self) -> list[NodeSpec]:
        return [n for n in self.nodes if n.role is Role.SERVER]

    @property
    def agents(self) -> list[NodeSpec]:
        return [n for n in self.nodes if n.role is Role.AGENT]

    @property
    def first(self) -> NodeSpec:
        return self.servers[0]

    @property
    def ha(self) -> bool:
        return len(self.servers) > 1

    def node(self, name: str) -> NodeSpec:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    @property
    def server_url(self) -> str:
        return api_url(self.first.advertise)

    @property
    def expected_deployments(self) -> list[str]:
        return [d for d, key in PACKAGED_DEPLOYMENTS.items() if key not in self.disable]


def api_url(address: str) -> str:
    host = f"[{address}]" if ":" in address else address
    return f"https://{host}:{API_PORT}"


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _norm(key: str, value: Any) -> Any:
    if key == "k3s_disable":
        return tuple(sorted(set(value or ())))
    if key == "k3s_cluster_cidr":
        return value or DEFAULT_CLUSTER_CIDR
    if key == "k3s_service_cidr":
        return value or DEFAULT_SERVICE_CIDR
    return value


def _show(value: Any) -> str:
    return repr(list(value)) if isinstance(value, tuple) else repr(value)


def cluster_problems(hosts: Sequence[HostInfo]) -> list[str]:
    """Everything about these hosts that k3s would refuse later (pure; empty when fine)."""
    problems: list[str] = []
    servers = [h for h in hosts if h.role is Role.SERVER]
    agents = [h for h in hosts if h.role is Role.AGENT]
    if agents and not servers:
        problems.append(
            f"k3s_agents ({', '.join(h.name for h in agents)}) need at least one host in k3s_servers"
        )
    if servers:
        first = servers[0]
        for h in servers[1:]:
            for key in SERVER_CRITICAL_KEYS:
                mine, theirs = _norm(key, h.data.get(key)), _norm(key, first.data.get(key))
                if mine != theirs:
                    shown = ("(set)" if mine else "(unset)", "(set)" if theirs else "(unset)")
                    if key != "k3s_token":
                        shown = (_show(mine), _show(theirs))
                    problems.append(
                        f"host {h.name}: {key} is {shown[0]} but the first server {first.name} has "
                        f"{shown[1]}; it must be identical on every k3s server (k3s refuses the join: "
                        "critical configuration value mismatch)"
                    )
    if hosts:
        for key in CLUSTER_WIDE_KEYS:
            values = {h.name: h.data.get(key) for h in hosts}
            ref = hosts[0]
            for h in hosts[1:]:
                if values[h.name] != values[ref.name]:
                    problems.append(
                        f"host {h.name}: {key} is {values[h.name]!r} but {ref.name} has {values[ref.name]!r}; "
                        "every k3s host runs the same release (set it once, in defaults or a group)"
                    )
    for h in hosts:
        d = h.data
        version = d.get("k3s_version")
        if version is not None and not VERSION_RE.match(str(version)):
            problems.append(
                f"host {h.name}: k3s_version {version!r} is not a k3s release name (like {DEFAULT_VERSION})"
            )
        if not d.get("node_ip") and not _is_ip(h.address):
            problems.append(
                f"host {h.name}: address {h.address!r} is not an IP address; set data.node_ip to the "
                "address k3s should use (hosts with several NICs pick the wrong one otherwise)"
            )
        for label in d.get("k3s_node_labels") or ():
            if not LABEL_RE.match(label):
                problems.append(f"host {h.name}: k3s_node_labels: {label!r} is not key=value")
        for taint in d.get("k3s_node_taints") or ():
            if not TAINT_RE.match(taint):
                problems.append(
                    f"host {h.name}: k3s_node_taints: {taint!r} is not key[=value]:"
                    "NoSchedule|PreferNoSchedule|NoExecute"
                )
        unknown = set(d.get("k3s_disable") or ()) - set(PACKAGED_DEPLOYMENTS.values()) - {"servicelb"}
        if unknown:
            problems.append(
                f"host {h.name}: k3s_disable: unknown component(s) {', '.join(sorted(unknown))} "
                f"(k3s knows {', '.join(sorted({*PACKAGED_DEPLOYMENTS.values(), 'servicelb'}))})"
            )
    return problems


def build_cluster(hosts: Sequence[HostInfo]) -> ClusterSpec:
    """The cluster the inventory describes (pure); raises :class:`K3sPlanError` listing every problem."""
    problems = cluster_problems(hosts)
    if problems:
        raise K3sPlanError(problems)
    servers = [h for h in hosts if h.role is Role.SERVER]
    agents = [h for h in hosts if h.role is Role.AGENT]
    first = servers[0]
    nodes = []
    for h in servers + agents:
        d = h.data
        node_ip = d.get("node_ip") or (h.address if _is_ip(h.address) else None)
        sans: tuple[str, ...] = ()
        if h.role is Role.SERVER:
            sans = tuple(dict.fromkeys([first.address, *(d.get("k3s_tls_san") or ())]))
        version = d.get("k3s_version") or (None if d.get("k3s_binary") else DEFAULT_VERSION)
        nodes.append(
            NodeSpec(
                name=h.name,
                address=h.address,
                role=h.role,
                node_ip=node_ip,
                labels=tuple(d.get("k3s_node_labels") or ()),
                taints=tuple(d.get("k3s_node_taints") or ()),
                flannel_iface=d.get("k3s_flannel_iface"),
                tls_san=sans,
                version=version,
                binary=d.get("k3s_binary"),
                airgap_images=d.get("k3s_airgap_images"),
                registries=d.get("k3s_registries"),
            )
        )
    fd = first.data
    return ClusterSpec(
        nodes=tuple(nodes),
        site_name=str(fd.get("site_name") or DEFAULT_SITE_NAME),
        cluster_cidr=_norm("k3s_cluster_cidr", fd.get("k3s_cluster_cidr")),
        service_cidr=_norm("k3s_service_cidr", fd.get("k3s_service_cidr")),
        disable=_norm("k3s_disable", fd.get("k3s_disable")),
    )


# -- files on the host ---------------------------------------------------------------------------
def _yaml_scalar(value: str | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value)  # a JSON string is a YAML double-quoted scalar


def config_values(
    cluster: ClusterSpec, node: NodeSpec, token: str
) -> list[tuple[str, str | bool | list[str]]]:
    """The settings of ``node``'s config.yaml, in file order (pure)."""
    values: list[tuple[str, str | bool | list[str]]] = [("token", token), ("node-name", node.name)]
    if node.node_ip:
        values.append(("node-ip", node.node_ip))
    if node.role is Role.SERVER:
        if node.name == cluster.first.name:
            if cluster.ha:
                values.append(("cluster-init", True))
        else:
            values.append(("server", cluster.server_url))
        values.append(("tls-san", list(node.tls_san)))
        values.append(("cluster-cidr", cluster.cluster_cidr))
        values.append(("service-cidr", cluster.service_cidr))
        if cluster.disable:
            values.append(("disable", list(cluster.disable)))
    else:
        values.append(("server", cluster.server_url))
    if node.labels:
        values.append(("node-label", list(node.labels)))
    if node.taints:
        values.append(("node-taint", list(node.taints)))
    if node.flannel_iface:
        values.append(("flannel-iface", node.flannel_iface))
    return values


def render_config(cluster: ClusterSpec, node: NodeSpec, token: str) -> str:
    """/etc/rancher/k3s/config.yaml for ``node`` (pure). A YAML subset: ``key: scalar`` and lists."""
    lines = [
        f"# Written by nr (k3s play) for k3s {node.role.value} {node.name}. Holds the cluster token: 0600 root.",
        "# Changes here are drift: nr drift reports them and nr run k3s puts this file back.",
    ]
    for key, value in config_values(cluster, node, token):
        if isinstance(value, list):
            lines.append(f"{key}:")
            lines += [f"  - {_yaml_scalar(v)}" for v in value]
        else:
            lines.append(f"{key}: {_yaml_scalar(value)}")
    return "\n".join(lines) + "\n"


def render_unit(role: Role) -> str:
    """The systemd unit for ``role`` (pure): settings come from config.yaml, never the command line."""
    return f"""# Written by nr (k3s play). Settings live in {CONFIG} (0600 root): the token is
# never on this unit, in an environment file or on the k3s command line.
[Unit]
Description=Lightweight Kubernetes (k3s {role.value}, managed by nr)
Documentation=https://k3s.io
Wants=network-online.target
After=network-online.target

[Install]
WantedBy=multi-user.target

[Service]
# Type=exec rather than upstream's Type=notify: with notify, `systemctl restart` blocks until k3s
# reports ready (upstream sets TimeoutStartSec=0, i.e. forever) and an agent that cannot join hangs
# the installer with no hint. With exec, systemctl returns once the binary runs (and fails if it
# cannot be executed); nr then waits for the node to be Ready itself, with a timeout, and shows the
# node's journal when it is not. Any k3s binary runs unchanged under this unit.
Type=exec
# Only the k3s process is stopped on restart: containers (containerd-shim) keep running.
KillMode=process
Delegate=yes
User=root
LimitNOFILE=1048576
LimitNPROC=infinity
LimitCORE=infinity
TasksMax=infinity
Restart=always
RestartSec=5s
ExecStartPre=-/sbin/modprobe br_netfilter
ExecStartPre=-/sbin/modprobe overlay
ExecStart={BINARY} {role.value}
"""


def secrets_in_config(text: str | None) -> list[str]:
    """Token values in an existing config.yaml (to mask them in diffs; pure)."""
    out = []
    for line in (text or "").splitlines():
        m = re.match(r"^\s*(token|agent-token)\s*:\s*(.+?)\s*$", line)
        if m:
            raw = m.group(2)
            try:
                value = json.loads(raw) if raw.startswith('"') else raw.strip("'")
            except json.JSONDecodeError:
                value = raw
            if isinstance(value, str) and value:
                out.append(value)
    return out


# -- planning one host --------------------------------------------------------------------------
@dataclass(frozen=True)
class BinarySource:
    """The k3s binary a host should run: its sha256, where it is locally and what it is."""

    sha256: str
    label: str  # "k3s v1.31.4+k3s1 linux/amd64 (release)" or "local file /path/k3s"
    path: Path | None  # None: not downloaded (dry run); the plan still compares hashes


@dataclass(frozen=True)
class ServiceState:
    active: str  # active, inactive, failed, activating, ...
    enabled: str  # enabled, disabled, "" (no unit)


def parse_services(text: str) -> dict[str, ServiceState]:
    """Lines ``unit active-state enabled-state`` (see :data:`SERVICES_CMD`) -> states (pure)."""
    out: dict[str, ServiceState] = {}
    for line in text.splitlines():
        parts = line.split()
        if parts:
            out[parts[0]] = ServiceState(
                parts[1] if len(parts) > 1 else "unknown", parts[2] if len(parts) > 2 else ""
            )
    return out


SERVICES_CMD = (
    "for u in k3s k3s-agent; do "
    'printf "%s %s %s\\n" "$u" "$(systemctl is-active "$u" 2>/dev/null | head -n1)" '
    '"$(systemctl is-enabled "$u" 2>/dev/null | head -n1)"; done'
)


@dataclass(frozen=True)
class HostPlan:
    node: NodeSpec
    changes: tuple[Change, ...]
    restart: bool  # binary, unit, config, registries or images changed: restart k3s
    upgrade: bool  # an installed k3s binary is replaced
    after: str  # systemctl script run after the changes

    @property
    def changed(self) -> bool:
        return bool(self.changes)


def config_spec(cluster: ClusterSpec, node: NodeSpec, token: str, old_config: str | None = None) -> FileSpec:
    masked = [token, *secrets_in_config(old_config)]
    return FileSpec.text(CONFIG, render_config(cluster, node, token), mode=0o600, secrets=masked)


def _binary_change(source: BinarySource, state: FileState, version_now: str) -> Change | None:
    if source.path is not None:
        change = plan_upload(source.path, BINARY, state, mode=0o755)
    else:
        same = state.exists and state.sha256 == source.sha256 and state.mode == 0o755
        change = None
        if not same:
            change = Change(
                f"file {BINARY}",
                f"sha256 {source.sha256[:12]} 0755 root:root",
                "absent" if not state.exists else f"sha256 {(state.sha256 or '?')[:12]}",
                f"echo 'nr: {source.label} was not downloaded' >&2; exit 1",
                f"{'~ replace' if state.exists else '+ install'} {BINARY} from {source.label} (sha256 {source.sha256[:12]})\n",
            )
    if change is None:
        return None
    was = f" (was: {version_now})" if state.exists and version_now else ""
    first, _, rest = change.diff.partition("\n")
    return Change(
        change.what,
        change.expected,
        change.actual,
        change.script,
        f"{first.replace(f'from {source.path}', f'from {source.label}') if source.path else first}{was}\n{rest}",
        change.fix,
        change.upload,
    )


def plan_host(
    cluster: ClusterSpec,
    node: NodeSpec,
    token: str,
    facts: Facts,
    binary: BinarySource,
    *,
    registries: bytes | None = None,
    images: BinarySource | None = None,
) -> HostPlan:
    """Every change k3s needs on ``node`` given its ``facts`` (pure but for hashing local files)."""
    files = facts.files
    absent = FileState("", False)
    changes: list[Change] = []
    version_now = facts.outputs["version"].text.strip() if "version" in facts.outputs else ""

    binary_change = _binary_change(binary, files.get(BINARY, absent), version_now)
    if binary_change:
        changes.append(binary_change)
    upgrade = binary_change is not None and files.get(BINARY, absent).exists
    if images is not None and images.path is not None:
        dest = f"{IMAGES_DIR}/{images.path.name}"
        c = plan_upload(images.path, dest, files.get(dest, FileState(dest, False)), mode=0o644)
        if c:
            changes.append(c)
    old_config = files.get(CONFIG, absent).text
    specs = [
        config_spec(cluster, node, token, old_config),
        FileSpec.text(node.role.unit_path, render_unit(node.role)),
    ]
    if registries is not None:
        specs.append(FileSpec(REGISTRIES, registries, mode=0o600))
    file_changes = [
        c for s in specs if (c := plan_file(s, files.get(s.path, FileState(s.path, False)))) is not None
    ]
    changes += file_changes
    unit_changed = any(c.what == f"file {node.role.unit_path}" for c in file_changes)
    restart = bool(changes)

    other = node.role.other
    services = parse_services(facts.out("services")) if "services" in facts.outputs else {}
    if files.get(other.unit_path, absent).exists:
        changes.append(
            Change(
                f"service {other.unit}",
                "absent",
                "present",
                f"systemctl disable --now {other.unit} 2>/dev/null || true\nrm -f {quote(other.unit_path)}",
                f"- remove {other.unit_path} (this host is now a k3s {node.role.value})\n",
            )
        )
        unit_changed = True
    state = services.get(node.role.unit, ServiceState("inactive", ""))
    enable = state.enabled != "enabled"
    if enable:
        changes.append(
            Change(
                f"service {node.role.unit} enabled",
                "enabled",
                state.enabled or "absent",
                ": enabled below",
                f"+ enable {node.role.unit}.service\n",
            )
        )
    start = state.active != "active" and not restart
    if state.active != "active":
        changes.append(
            Change(
                f"service {node.role.unit} active",
                "active",
                state.active,
                ": started below",
                f"+ start {node.role.unit}.service (now {state.active})\n",
            )
        )
    return HostPlan(
        node,
        tuple(changes),
        restart,
        upgrade,
        service_script(node.role.unit, reload=unit_changed, enable=enable, restart=restart, start=start),
    )


def service_script(unit: str, *, reload: bool, enable: bool, restart: bool, start: bool) -> str:
    """systemctl lines run after the file changes (pure): restart only when ``restart``."""
    lines = []
    if reload:
        lines.append("systemctl daemon-reload")
    if enable:
        lines.append(f"systemctl enable --quiet {unit}")
    if restart or start:
        # reset-failed also zeroes NRestarts, which tells later whether this start keeps exiting
        lines.append(f"systemctl reset-failed {unit} 2>/dev/null || true")
        lines.append(f"systemctl {'restart' if restart else 'start'} {unit}")
    return "\n".join(lines)


# -- order ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Stage:
    step: str
    hosts: tuple[str, ...]
    serial: bool  # one host at a time
    wait_each: bool  # each restarted host waits for its node to be Ready before the next one


def rollout(servers: Sequence[str], agents: Sequence[str], *, upgrade: bool) -> list[Stage]:
    """The order of a run (pure). Install: the first server, then the other servers one at a time
    (each Ready before the next joins: embedded etcd adds one member at a time), then the agents in
    parallel. Upgrade: every server one at a time, then every agent one at a time."""
    if upgrade:
        stages = [
            Stage("upgrade-servers", tuple(servers), True, True),
            Stage("upgrade-agents", tuple(agents), True, True),
        ]
    else:
        stages = [
            Stage("first-server", tuple(servers[:1]), False, True),
            Stage("join-servers", tuple(servers[1:]), True, True),
            Stage("agents", tuple(agents), False, False),
        ]
    return [s for s in stages if s.hosts]


# -- cluster status -------------------------------------------------------------------------------
@dataclass(frozen=True)
class NodeStatus:
    name: str
    ready: str  # "True", "False", "Unknown"
    reason: str
    version: str
    control_plane: bool
    labels: Mapping[str, str]
    taints: tuple[str, ...] = ()  # key=value:Effect (key:Effect without a value)


def _taint_text(t: Mapping[str, Any]) -> str:
    value = f"={t['value']}" if t.get("value") else ""
    return f"{t.get('key', '')}{value}:{t.get('effect', '')}"


def missing_node_metadata(status: NodeStatus, node: NodeSpec, kubectl: str) -> list[tuple[str, str]]:
    """(what is missing, the command that adds it) for the node's configured labels and taints.

    k3s applies node-label/node-taint from config.yaml only when a node registers, so a later change
    to them never reaches the Node: it is reported with the ``kubectl`` command that applies it.
    """
    out = []
    for label in node.labels:
        key, _, value = label.partition("=")
        if status.labels.get(key) != value:
            out.append((f"label {label}", f"{kubectl} label node {node.name} {label} --overwrite"))
    for taint in node.taints:
        if taint not in status.taints:
            out.append((f"taint {taint}", f"{kubectl} taint node {node.name} {taint} --overwrite"))
    return out


def parse_nodes(text: str) -> dict[str, NodeStatus]:
    """``kubectl get nodes -o json`` -> status by node name (pure; ValueError if not JSON)."""
    doc = json.loads(text)
    out: dict[str, NodeStatus] = {}
    for item in doc.get("items") or []:
        meta = item.get("metadata") or {}
        labels = meta.get("labels") or {}
        status = item.get("status") or {}
        ready: dict[str, Any] = next(
            (c for c in status.get("conditions") or [] if c.get("type") == "Ready"), {}
        )
        out[meta.get("name", "")] = NodeStatus(
            name=meta.get("name", ""),
            ready=str(ready.get("status", "Unknown")),
            reason=str(ready.get("message") or ready.get("reason") or ""),
            version=str((status.get("nodeInfo") or {}).get("kubeletVersion", "")),
            control_plane=labels.get("node-role.kubernetes.io/control-plane") == "true",
            labels=labels,
            taints=tuple(_taint_text(t) for t in (item.get("spec") or {}).get("taints") or []),
        )
    return out


@dataclass(frozen=True)
class ExpectedNode:
    name: str
    role: Role
    version: str | None  # None: any version


def node_problems(nodes: Mapping[str, NodeStatus], expected: Sequence[ExpectedNode]) -> dict[str, str]:
    """Why each expected node is not what it should be (pure; missing from the dict = fine)."""
    out: dict[str, str] = {}
    for e in expected:
        n = nodes.get(e.name)
        if n is None:
            out[e.name] = "not registered with the cluster"
        elif n.ready != "True":
            out[e.name] = f"NotReady (Ready={n.ready}{': ' + n.reason if n.reason else ''})"
        elif e.version and n.version != e.version:
            out[e.name] = f"runs {n.version or '?'}, expected {e.version}"
        elif e.role is Role.SERVER and not n.control_plane:
            out[e.name] = "registered without the control-plane role (is it an agent?)"
        elif e.role is Role.AGENT and n.control_plane:
            out[e.name] = "registered as a control-plane node, expected an agent"
    return out


def deployment_problems(text: str, expected: Sequence[str]) -> dict[str, str]:
    """``kubectl get deploy -n kube-system -o json`` -> why each expected deployment is not available."""
    doc = json.loads(text)
    found = {(i.get("metadata") or {}).get("name"): i for i in doc.get("items") or []}
    out: dict[str, str] = {}
    for name in expected:
        d = found.get(name)
        if d is None:
            out[name] = "not deployed (yet)"
            continue
        want = int((d.get("spec") or {}).get("replicas", 1))
        status = d.get("status") or {}
        have = int(status.get("availableReplicas") or 0)
        if have < want:
            out[name] = f"{have}/{want} replicas available"
    return out


# -- kubeconfig ------------------------------------------------------------------------------------
def rewrite_kubeconfig(doc: Mapping[str, Any], server: str, name: str) -> dict[str, Any]:
    """k3s.yaml as fetched (127.0.0.1, everything named ``default``) -> reachable and named ``name``."""
    out = copy.deepcopy(dict(doc))
    renames: dict[str, dict[Any, str]] = {}
    for section, inner in (("clusters", "cluster"), ("users", "user"), ("contexts", "context")):
        for entry in out.get(section) or []:
            renames.setdefault(section, {})[entry.get("name")] = name
            entry["name"] = name
            if section == "clusters":
                entry.setdefault(inner, {})["server"] = server
    for entry in out.get("contexts") or []:
        ctx = entry.setdefault("context", {})
        ctx["cluster"] = renames.get("clusters", {}).get(ctx.get("cluster"), name)
        ctx["user"] = renames.get("users", {}).get(ctx.get("user"), name)
    out["current-context"] = name
    return out


def merge_kubeconfig(existing: Mapping[str, Any] | None, new: Mapping[str, Any], name: str) -> dict[str, Any]:
    """``existing`` with the cluster, user and context ``name`` taken from ``new`` (pure).

    Every other cluster, user and context is kept as it is; current-context is set only when the
    existing file has none. The same cluster moved (same CA) or rebuilt at the same address is
    replaced; a cluster ``name`` with another server AND another CA is another site with the same
    name: ValueError, nothing is replaced.
    """

    def entry(doc: Mapping[str, Any]) -> tuple[str, str] | None:
        found = [e.get("cluster") or {} for e in doc.get("clusters") or [] if e.get("name") == name]
        return (
            (str(found[0].get("server")), str(found[0].get("certificate-authority-data"))) if found else None
        )

    old, now = entry(existing or {}), entry(new)
    if old and now and old[0] != now[0] and old[1] != now[1]:
        raise ValueError(
            f"it already has a cluster named {name!r} for another cluster ({old[0]}, another CA): give this "
            "site another data.site_name, or remove that entry"
        )
    out: dict[str, Any] = copy.deepcopy(dict(existing or {}))
    out.setdefault("apiVersion", "v1")
    out.setdefault("kind", "Config")
    out.setdefault("preferences", {})
    for section in ("clusters", "users", "contexts"):
        entries = [e for e in out.get(section) or [] if e.get("name") != name]
        entries += [copy.deepcopy(e) for e in new.get(section) or [] if e.get("name") == name]
        out[section] = entries
    if not out.get("current-context"):
        out["current-context"] = name
    return out


# -- releases ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Asset:
    arch: str  # k3s's name for it: amd64, arm64, arm
    binary: str  # release asset of the binary
    checksums: str  # release asset with the sha256 of every asset of that arch


_ARCHES = {
    "x86_64": Asset("amd64", "k3s", "sha256sum-amd64.txt"),
    "amd64": Asset("amd64", "k3s", "sha256sum-amd64.txt"),
    "aarch64": Asset("arm64", "k3s-arm64", "sha256sum-arm64.txt"),
    "arm64": Asset("arm64", "k3s-arm64", "sha256sum-arm64.txt"),
    "armv7l": Asset("arm", "k3s-armhf", "sha256sum-arm.txt"),
}


def release_asset(machine: str) -> Asset:
    """The release assets for a host whose ``uname -m`` is ``machine`` (ValueError if k3s has none)."""
    try:
        return _ARCHES[machine.strip()]
    except KeyError:
        raise ValueError(
            f"no k3s release for architecture {machine.strip()!r} (k3s ships x86_64, aarch64, armv7l)"
        ) from None


def release_url(version: str, filename: str) -> str:
    return f"{RELEASES}/{urlquote(version, safe='')}/{filename}"


def parse_sha256sums(text: str) -> dict[str, str]:
    """A ``sha256sum`` listing -> {file name: lowercase hex digest} (pure)."""
    out = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and re.fullmatch(r"[0-9a-fA-F]{64}", parts[0]):
            out[parts[1].lstrip("*")] = parts[0].lower()
    return out
