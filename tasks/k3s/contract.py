"""What the k3s play reads from the inventory: its role groups, settings (with their formats), and the
lab's binary option. Also the few names other components use (the binary, ``k3s kubectl``).

Formats are checked by the validator before any host is touched (exit 2, naming file, host and field):
CIDRs, the flannel interface, tls-san entries (IP or DNS name), node labels and taints in Kubernetes
syntax (labels the kubelet may not set on its own Node are refused: k3s would not start), the
``disable`` items k3s knows, and the environment file's variables (the names install.sh writes).
"""

from __future__ import annotations

import re
from typing import Any

from nr import formats
from nr.contract import Contract, Field, Kind, LabOption, Membership, RoleGroup

SERVERS = "k3s_servers"
AGENTS = "k3s_agents"

# For other components (deploy, checks): every cluster command runs on a server as `k3s kubectl`.
BINARY = "/usr/local/bin/k3s"
KUBECTL = f"{BINARY} kubectl"

DEFAULT_VERSION = "v1.32.3+k3s1"  # a version whose sums tasks/k3s/release.py pins
VERSION_RE = re.compile(r"^v\d+\.\d+\.\d+(-rc\d+)?\+k3s\d+$")

# `disable:` items (k3s docs, cli/server.md: "coredns, servicelb, traefik, local-storage,
# metrics-server, runtimes"; `runtimes` exists since the December 2023 releases, see spec.py).
DISABLE_ITEMS = ("coredns", "servicelb", "traefik", "local-storage", "metrics-server", "runtimes")

# The environment file's variables: what install.sh's create_env_file copies (K3S_*, CONTAINERD_*,
# HTTP(S)_PROXY, NO_PROXY in any case), minus what nr sets in config.yaml (a K3S_ variable would
# silently override it) and the token (a secret belongs in data.k3s_token).
_ENV_NAME = re.compile(r"^(K3S_[A-Z0-9_]+|CONTAINERD_[A-Z0-9_]+|(?i:https?_proxy|no_proxy))$")
RESERVED_ENV = frozenset(
    f"K3S_{n}"
    for n in ("TOKEN", "TOKEN_FILE", "AGENT_TOKEN", "AGENT_TOKEN_FILE", "URL", "NODE_NAME", "NODE_IP",
              "CONFIG_FILE", "DATA_DIR", "CLUSTER_INIT", "KUBECONFIG_OUTPUT", "KUBECONFIG_MODE")
)  # fmt: skip
_ENV_VALUE_BAD = re.compile(r"[\x00-\x1f\x7f\"\\`$]")

# Labels the kubelet may set on its own Node (k8s.io/kubelet well_known_labels.go, IsKubeletLabel):
# any other key in the kubernetes.io or k8s.io domains makes the kubelet, and so k3s, refuse to start.
_KUBELET_LABELS = frozenset(
    ("kubernetes.io/hostname", "kubernetes.io/os", "kubernetes.io/arch", "beta.kubernetes.io/os",
     "beta.kubernetes.io/arch", "beta.kubernetes.io/instance-type", "node.kubernetes.io/instance-type",
     "topology.kubernetes.io/zone", "topology.kubernetes.io/region",
     "failure-domain.beta.kubernetes.io/zone", "failure-domain.beta.kubernetes.io/region")
)  # fmt: skip
_KUBELET_NAMESPACES = ("kubelet.kubernetes.io", "node.kubernetes.io")


def _in_domain(namespace: str, domains: tuple[str, ...]) -> bool:
    return any(namespace == d or namespace.endswith("." + d) for d in domains)


def node_label(value: Any) -> str | None:
    """A Kubernetes label the kubelet may set on its own Node (k3s passes node-label to it)."""
    problem = formats.k8s_label(value)
    if problem:
        return problem
    key = str(value).partition("=")[0]
    namespace = key.rpartition("/")[0]
    if (
        _in_domain(namespace, ("kubernetes.io", "k8s.io"))
        and key not in _KUBELET_LABELS
        and not _in_domain(namespace, _KUBELET_NAMESPACES)
    ):
        return (
            f"label {key!r} is in a kubernetes.io/k8s.io namespace the kubelet may not set (NodeRestriction): "
            "k3s would not start; use your own prefix, or node.kubernetes.io/, or set it with kubectl"
        )
    return None


def version(value: Any) -> str | None:
    if isinstance(value, str) and VERSION_RE.match(value):
        return None
    return f"must be a k3s release name such as {DEFAULT_VERSION}"


def env_problem(value: Any) -> str | None:
    """The variables of the units' environment file (/etc/default/k3s, /etc/default/k3s-agent)."""
    for name, val in (value or {}).items() if isinstance(value, dict) else ():
        if not _ENV_NAME.match(str(name)):
            return f"{name!r}: only K3S_*, CONTAINERD_*, HTTP_PROXY, HTTPS_PROXY and NO_PROXY (as install.sh)"
        if name in RESERVED_ENV:
            return f"{name!r}: nr sets this in config.yaml (or data.k3s_token); it cannot be overridden here"
        if _ENV_VALUE_BAD.search(str(val)) or len(str(val)) > 4096:
            return f"{name!r}: the value may not hold control characters, quotes, '\\', '`' or '$'"
    return None


def positive(value: Any) -> str | None:
    return None if isinstance(value, int) and value > 0 else "must be a positive number of seconds"


def roles_rule(membership: Membership, hosts_file: str) -> list[str]:
    servers = [h for h, g in membership.items() if SERVERS in g]
    agents = [h for h, g in membership.items() if AGENTS in g]
    problems = [
        f"{hosts_file}: host '{h}': groups: is in both {SERVERS} and {AGENTS}; pick one role"
        for h in servers
        if h in agents
    ]
    if agents and not servers:
        problems.append(
            f"{hosts_file}: group {AGENTS} has hosts ({', '.join(agents)}) but {SERVERS} has none"
        )
    if servers and len(servers) % 2 == 0:
        problems.append(
            f"{hosts_file}: group {SERVERS} has {len(servers)} hosts ({', '.join(servers)}); embedded etcd "
            "needs an odd number of servers (1, 3, 5)"
        )
    return problems


CONTRACT = Contract(
    data={
        "k3s_version": Field(Kind.STR, f"k3s release (default {DEFAULT_VERSION})", version),
        "k3s_token": Field(Kind.SECRET, "cluster token (generated and kept 0600 locally when not given)"),
        "k3s_binary": Field(Kind.PATH, "local k3s binary to push instead of downloading the release"),
        "k3s_airgap_images": Field(Kind.PATH, "local images tarball placed in the agent images folder"),
        "k3s_node_labels": Field(
            Kind.STR_LIST, "node labels key=value; k3s applies them at every start", formats.each(node_label)
        ),
        "k3s_node_taints": Field(
            Kind.STR_LIST, "node taints key[=value]:Effect; k3s applies them only when the node registers",
            formats.each(formats.k8s_taint),
        ),
        "k3s_tls_san": Field(
            Kind.STR_LIST, "extra names/addresses in the API server certificate", formats.each(formats.address)
        ),
        "k3s_cluster_cidr": Field(Kind.STR, "pod network (identical on all servers)", formats.cidr),
        "k3s_service_cidr": Field(Kind.STR, "service network (identical on all servers)", formats.cidr),
        "k3s_flannel_iface": Field(Kind.STR, "network interface flannel uses", formats.interface),
        "k3s_disable": Field(
            Kind.STR_LIST, f"packaged components to disable ({', '.join(DISABLE_ITEMS)}); same on all servers",
            formats.each(formats.one_of(DISABLE_ITEMS)),
        ),
        "k3s_secrets_encryption": Field(
            Kind.BOOL, "encrypt Secrets at rest (default true; only when a cluster is created: see README)"
        ),
        "k3s_env": Field(
            Kind.STR_MAP,
            "environment of k3s and containerd (HTTP_PROXY, HTTPS_PROXY, NO_PROXY, CONTAINERD_*, K3S_*), "
            "written to /etc/default/<unit> (0600)",
            env_problem,
        ),
        "k3s_registries": Field(Kind.PATH, "local registries.yaml pushed to every node"),
        "k3s_kubeconfig": Field(
            Kind.PATH,
            "kubeconfig the cluster's context is merged into (default: first path of $KUBECONFIG, ~/.kube/config)",
        ),
        "k3s_ready_timeout": Field(Kind.INT, "seconds to wait for nodes to be Ready (default 300)", positive),
    },
    roles=[
        RoleGroup(
            SERVERS,
            "k3s-server",
            "k3s servers (control plane, embedded etcd; an odd number)",
            lambda i, n: i == 0,
        ),
        RoleGroup(AGENTS, "k3s-agent", "k3s agents (workers)", lambda i, n: i > 0),
    ],
    rules=[roles_rule],
    lab_options=[
        LabOption(
            "--k3s-binary",
            "k3s_binary",
            "a local k3s binary the k3s play pushes to the hosts (data.k3s_binary), as for air-gapped hosts",
        )
    ],
    # k3s's default pod and service networks: addresses there belong to flannel/cni, not to the host
    internal_networks=["10.42.0.0/16", "10.43.0.0/16"],
)  # fmt: skip
