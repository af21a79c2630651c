"""What an inventory may contain: the fields of hosts, groups and defaults and their types.

The engine validates every inventory before it connects to anything, so the schema lists the
``data`` keys of every component. A key not listed here is a typo until proven otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Kind(Enum):
    STR = "a string"
    INT = "an integer"
    BOOL = "true or false"
    PORT = "a TCP port (1-65535)"
    PORTS = "a list of TCP ports"
    STR_LIST = "a list of strings"
    STR_MAP = "a mapping of strings to strings"
    SECRET = "a secret reference 'env:NAME' or 'file:PATH'"
    PATH = "a local file path"
    IP = "an IPv4 or IPv6 address"


@dataclass(frozen=True)
class Field:
    kind: Kind
    help: str


# Role groups: the names of the groups that give hosts their roles in the site.
K3S_SERVERS = "k3s_servers"
K3S_AGENTS = "k3s_agents"
REDIS = "redis"
ROLE_GROUPS = {K3S_SERVERS: "k3s-server", K3S_AGENTS: "k3s-agent", REDIS: "redis"}
MIN_REDIS_HOSTS = 3

HOST_KEYS = {"hostname", "port", "username", "password", "platform", "groups", "data", "connection_options"}
GROUP_KEYS = HOST_KEYS
DEFAULTS_KEYS = HOST_KEYS - {"groups"}
CONNECTION_KEYS = {"hostname", "port", "username", "password", "platform", "extras"}
CONNECTION_PLUGINS = {"fabric"}

# connection_options.fabric.extras
SSH_EXTRAS: dict[str, Field] = {
    "key_filename": Field(Kind.PATH, "private key file used for SSH authentication"),
    "known_hosts": Field(Kind.PATH, "known_hosts file checked before ~/.ssh/known_hosts"),
    "accept_new": Field(Kind.BOOL, "accept and record keys of hosts not yet known (never changed keys)"),
    "connect_timeout": Field(Kind.INT, "seconds to wait for the SSH connection"),
    "command_timeout": Field(Kind.INT, "seconds a remote command may run"),
    "sudo_password": Field(Kind.SECRET, "password for sudo when the user is not root"),
    "ssh_config": Field(Kind.PATH, "ssh_config file to read instead of ~/.ssh/config"),
}

DATA_KEYS: dict[str, Field] = {
    # general
    "node_ip": Field(Kind.IP, "address the services bind and advertise (default: hostname, if an IP)"),
    "site_name": Field(Kind.STR, "name of the site: kubeconfig context, labels"),
    # base
    "packages": Field(Kind.STR_LIST, "extra packages installed by the base play"),
    "set_hostname": Field(Kind.BOOL, "set the host's hostname to its inventory name (default true)"),
    # redis
    "redis_ports": Field(Kind.PORTS, "the two instance ports per host: master, replica (default 7000, 7003)"),
    "redis_password": Field(Kind.SECRET, "password of every Redis instance (requirepass and masterauth)"),
    "redis_node_timeout": Field(Kind.INT, "cluster-node-timeout in milliseconds (default 5000)"),
    # k3s
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
    # deploy
    "adapter_node_port": Field(Kind.PORT, "NodePort of the gRPC adapter (default 30051)"),
    "image_registry": Field(Kind.STR, "registry to pull the service images from instead of pushing them"),
    "image_base": Field(Kind.STR, "base image for building the service images (default python:3.11-slim)"),
}
