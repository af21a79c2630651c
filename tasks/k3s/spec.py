"""The cluster the inventory describes (pure): roles, nodes, cluster-wide values, and what k3s would refuse.

* :func:`build_cluster` turns inventory data into a :class:`ClusterSpec`, refusing inventories k3s
  would refuse later (values that must be identical on every server, one release everywhere, ...),
  each problem naming host and key. Formats are checked earlier, by the contract.
* :func:`version_change_problem`: Kubernetes upgrades go one minor version at a time, never down.
* :func:`pinned_flannel_iface`: on multi-NIC hosts flannel is pinned to the node IP's interface.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from nr.formats import is_ip
from tasks.k3s.contract import DEFAULT_VERSION

DEFAULT_CLUSTER_CIDR = "10.42.0.0/16"
DEFAULT_SERVICE_CIDR = "10.43.0.0/16"
DEFAULT_SITE_NAME = "nr"
API_PORT = 6443
UNIT_DIR = "/etc/systemd/system"

# The packaged kube-system deployments and the `disable:` item that removes each.
PACKAGED_DEPLOYMENTS = {
    "coredns": "coredns",
    "traefik": "traefik",
    "metrics-server": "metrics-server",
    "local-path-provisioner": "local-storage",
}

# Inventory keys k3s compares between servers (pkg/daemons/config/types.go CriticalControlArgs:
# cluster-cidr, service-cidr, secrets-encryption, the token; of `disable`, only servicelb): a
# joining server that differs is refused with "critical configuration value mismatch".
SERVER_CRITICAL_KEYS = ("k3s_cluster_cidr", "k3s_service_cidr", "k3s_secrets_encryption", "k3s_token")
CLUSTER_WIDE_KEYS = ("k3s_version",)

# `disable: [runtimes]` exists since PR #8936 and its backports (#9013, #9014, #9024): the
# December 2023 releases v1.29.0, v1.28.5, v1.27.9, v1.26.12. Older releases do not know the item.
_RUNTIMES_SINCE = {(1, 26): 12, (1, 27): 9, (1, 28): 5}


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
    def env_path(self) -> str:
        """The environment file the unit reads (install.sh's ``EnvironmentFile=-/etc/default/%N``)."""
        return f"/etc/default/{self.unit}"

    @property
    def other(self) -> Role:
        return Role.AGENT if self is Role.SERVER else Role.SERVER


class K3sPlanError(ValueError):
    """The inventory describes a cluster k3s would refuse; ``problems`` names host and key."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class HostInfo:
    """One inventory host as the planner sees it: name, SSH address, role and its resolved data."""

    name: str
    address: str
    role: Role
    data: Mapping[str, Any] = field(default_factory=dict)


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
    env: tuple[tuple[str, str], ...] = ()  # data.k3s_env, sorted

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
    secrets_encryption: bool = True

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


def minor(version: str) -> tuple[int, int] | None:
    m = re.match(r"v?(\d+)\.(\d+)\.", version.strip())
    return (int(m[1]), int(m[2])) if m else None


def knows_runtimes(version: str | None) -> bool:
    """Whether k3s ``version`` accepts ``disable: [runtimes]`` (None: an unknown local binary, trusted)."""
    if version is None:
        return True
    m = re.match(r"v?(\d+)\.(\d+)\.(\d+)", version)
    if not m:
        return True
    major_minor, patch = (int(m[1]), int(m[2])), int(m[3])
    if major_minor >= (1, 29):
        return True
    return major_minor in _RUNTIMES_SINCE and patch >= _RUNTIMES_SINCE[major_minor]


def version_change_problem(current: str, target: str | None) -> str | None:
    """Why going from k3s ``current`` to ``target`` is refused (Kubernetes supports upgrades one minor
    version at a time, and no downgrade of the minor version), or None."""
    now, want = minor(current), minor(target or "")
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
    """``ip route show default`` -> the interface of the (first) default route."""
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


# -- what k3s would refuse ---------------------------------------------------------------------------
def _norm(key: str, value: Any) -> Any:
    if key == "k3s_disable":
        return tuple(sorted(set(value or ())))
    if key == "k3s_cluster_cidr":
        return value or DEFAULT_CLUSTER_CIDR
    if key == "k3s_service_cidr":
        return value or DEFAULT_SERVICE_CIDR
    if key == "k3s_secrets_encryption":
        return value is not False
    return value


def _show(key: str, value: Any) -> str:
    if key == "k3s_token":
        return "(set)" if value else "(unset)"
    return repr(list(value)) if isinstance(value, tuple) else repr(value)


def _disable_problem(h: HostInfo, first: HostInfo) -> str | None:
    mine, theirs = (
        _norm("k3s_disable", h.data.get("k3s_disable")),
        _norm("k3s_disable", first.data.get("k3s_disable")),
    )
    if mine == theirs:
        return None
    head = f"host {h.name}: k3s_disable is {_show('', mine)} but the first server {first.name} has {_show('', theirs)}"
    if ("servicelb" in mine) != ("servicelb" in theirs):
        return f"{head}; servicelb must be disabled on every server or none (k3s refuses the join: critical configuration value mismatch)"
    return (
        f"{head}; k3s would accept the join (only servicelb is a critical value), but a server that keeps an "
        "add-on the others disable re-deploys what they uninstall: set k3s_disable once for every server"
    )


def _server_problems(servers: Sequence[HostInfo]) -> list[str]:
    problems: list[str] = []
    first = servers[0]
    for h in servers[1:]:
        for key in SERVER_CRITICAL_KEYS:
            mine, theirs = _norm(key, h.data.get(key)), _norm(key, first.data.get(key))
            if mine != theirs:
                problems.append(
                    f"host {h.name}: {key} is {_show(key, mine)} but the first server {first.name} has "
                    f"{_show(key, theirs)}; it must be identical on every k3s server (k3s refuses the join: "
                    "critical configuration value mismatch)"
                )
        problem = _disable_problem(h, first)
        if problem:
            problems.append(problem)
    return problems


def _host_problems(h: HostInfo) -> list[str]:
    problems = []
    d = h.data
    if not d.get("node_ip") and not is_ip(h.address):
        problems.append(
            f"host {h.name}: address {h.address!r} is not an IP address; set data.node_ip to the "
            "address k3s should use (hosts with several NICs pick the wrong one otherwise)"
        )
    version = d.get("k3s_version") or (None if d.get("k3s_binary") else DEFAULT_VERSION)
    if "runtimes" in (d.get("k3s_disable") or ()) and not knows_runtimes(version):
        problems.append(
            f"host {h.name}: k3s_disable: k3s {version} does not know 'runtimes' (added in v1.29.0, "
            "v1.28.5, v1.27.9 and v1.26.12)"
        )
    return problems


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
        problems += _server_problems(servers)
    for key in CLUSTER_WIDE_KEYS:
        for h in hosts[1:]:
            mine, ref = h.data.get(key), hosts[0].data.get(key)
            if mine != ref:
                problems.append(
                    f"host {h.name}: {key} is {mine!r} but {hosts[0].name} has {ref!r}; "
                    "every k3s host runs the same release (set it once, in defaults or a group)"
                )
    for h in hosts:
        problems += _host_problems(h)
    return problems


def _node(h: HostInfo, first: HostInfo) -> NodeSpec:
    d = h.data
    sans: tuple[str, ...] = ()
    if h.role is Role.SERVER:
        sans = tuple(dict.fromkeys([first.address, *(d.get("k3s_tls_san") or ())]))
    return NodeSpec(
        name=h.name,
        address=h.address,
        role=h.role,
        node_ip=d.get("node_ip") or (h.address if is_ip(h.address) else None),
        labels=tuple(d.get("k3s_node_labels") or ()),
        taints=tuple(d.get("k3s_node_taints") or ()),
        flannel_iface=d.get("k3s_flannel_iface"),
        tls_san=sans,
        version=d.get("k3s_version") or (None if d.get("k3s_binary") else DEFAULT_VERSION),
        binary=d.get("k3s_binary"),
        airgap_images=d.get("k3s_airgap_images"),
        registries=d.get("k3s_registries"),
        env=tuple(sorted((str(k), str(v)) for k, v in (d.get("k3s_env") or {}).items())),
    )


def build_cluster(hosts: Sequence[HostInfo]) -> ClusterSpec:
    """The cluster the inventory describes (pure); raises :class:`K3sPlanError` listing every problem."""
    problems = cluster_problems(hosts)
    if problems:
        raise K3sPlanError(problems)
    servers = [h for h in hosts if h.role is Role.SERVER]
    agents = [h for h in hosts if h.role is Role.AGENT]
    first = servers[0]
    fd = first.data
    return ClusterSpec(
        nodes=tuple(_node(h, first) for h in servers + agents),
        site_name=str(fd.get("site_name") or DEFAULT_SITE_NAME),
        cluster_cidr=_norm("k3s_cluster_cidr", fd.get("k3s_cluster_cidr")),
        service_cidr=_norm("k3s_service_cidr", fd.get("k3s_service_cidr")),
        disable=_norm("k3s_disable", fd.get("k3s_disable")),
        secrets_encryption=_norm("k3s_secrets_encryption", fd.get("k3s_secrets_encryption")),
    )
