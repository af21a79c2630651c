"""What the k3s play reads from the inventory: its role groups, settings, and the lab's binary option."""

from __future__ import annotations

from nr.contract import Contract, Field, Kind, LabOption, Membership, RoleGroup

SERVERS = "k3s_servers"
AGENTS = "k3s_agents"


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
        "k3s_version": Field(Kind.STR, "k3s release, e.g. v1.31.4+k3s1"),
        "k3s_token": Field(Kind.SECRET, "cluster token (generated and kept 0600 locally when not given)"),
        "k3s_binary": Field(Kind.PATH, "local k3s binary to push instead of downloading the release"),
        "k3s_airgap_images": Field(Kind.PATH, "local images tarball placed in the agent images folder"),
        "k3s_node_labels": Field(Kind.STR_LIST, "node labels key=value, applied at registration"),
        "k3s_node_taints": Field(Kind.STR_LIST, "node taints key=value:Effect, applied at registration"),
        "k3s_tls_san": Field(Kind.STR_LIST, "extra names/addresses in the API server certificate"),
        "k3s_cluster_cidr": Field(Kind.STR, "pod network (identical on all servers)"),
        "k3s_service_cidr": Field(Kind.STR, "service network (identical on all servers)"),
        "k3s_flannel_iface": Field(Kind.STR, "network interface flannel uses"),
        "k3s_disable": Field(Kind.STR_LIST, "packaged components to disable (identical on all servers)"),
        "k3s_registries": Field(Kind.PATH, "local registries.yaml pushed to every node"),
        "k3s_kubeconfig": Field(
            Kind.PATH,
            "kubeconfig the cluster's context is merged into (default: first path of $KUBECONFIG, ~/.kube/config)",
        ),
        "k3s_ready_timeout": Field(Kind.INT, "seconds to wait for nodes to be Ready (default 300)"),
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
)
