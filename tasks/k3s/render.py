"""The files k3s runs from, rendered (pure): config.yaml, the systemd unit and its environment file.

* /etc/rancher/k3s/config.yaml (0600 root): every setting, and the only place the token is
  written on a host.
* the unit (``k3s server`` / ``k3s agent``, nothing else on the command line) with install.sh's
  ``EnvironmentFile=-/etc/default/%N``, so /etc/default/<unit> reaches k3s, kubelet and containerd;
* /etc/default/<unit> (0600 root): ``data.k3s_env``, e.g. HTTP_PROXY/HTTPS_PROXY/NO_PROXY (k3s
  docs, advanced.md "Configuring an HTTP proxy"), CONTAINERD_* for containerd only.
"""

from __future__ import annotations

import json
import re

from nr.ops.files import FileSpec
from tasks.k3s.contract import BINARY
from tasks.k3s.spec import ClusterSpec, NodeSpec, Role

CONFIG_DIR = "/etc/rancher/k3s"
CONFIG = f"{CONFIG_DIR}/config.yaml"
CONFIG_DROPINS = f"{CONFIG_DIR}/config.yaml.d"
REGISTRIES = f"{CONFIG_DIR}/registries.yaml"

Value = str | bool | list[str]


def _yaml_scalar(value: str | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value)  # a JSON string is a YAML double-quoted scalar


def _server_values(cluster: ClusterSpec, node: NodeSpec) -> list[tuple[str, Value]]:
    values: list[tuple[str, Value]] = []
    if node.name == cluster.first.name:
        if cluster.ha:
            values.append(("cluster-init", True))
    else:
        values.append(("server", cluster.server_url))
    values.append(("tls-san", list(node.tls_san)))
    values.append(("cluster-cidr", cluster.cluster_cidr))
    values.append(("service-cidr", cluster.service_cidr))
    if cluster.secrets_encryption:
        values.append(("secrets-encryption", True))
    if cluster.disable:
        values.append(("disable", list(cluster.disable)))
    return values


def config_values(cluster: ClusterSpec, node: NodeSpec, token: str) -> list[tuple[str, Value]]:
    """The settings of ``node``'s config.yaml, in file order (pure)."""
    values: list[tuple[str, Value]] = [("token", token), ("node-name", node.name)]
    if node.node_ip:
        values.append(("node-ip", node.node_ip))
    if node.role is Role.SERVER:
        values += _server_values(cluster, node)
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
# As install.sh: proxies and other variables for k3s, kubelet and containerd, from the file nr
# writes from data.k3s_env (0600). install.sh's <unit>.service.env is not read: it may hold a
# K3S_URL or K3S_TOKEN of an earlier installation.
EnvironmentFile=-/etc/default/%N
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


# Lines masked in diffs whatever their value (a hand-set or old one included): the k3s variables that
# carry a token (k3s docs, "Configuration Options": K3S_TOKEN, K3S_AGENT_TOKEN) in /etc/default/<unit>,
# and the credentials of registries.yaml's ``configs.<registry>.auth`` (k3s docs, "Private Registry
# Configuration": username/password/auth/identity_token).
ENV_SECRET_KEYS = ("K3S_TOKEN", "K3S_AGENT_TOKEN")
REGISTRY_SECRET_KEYS = ("password", "auth", "identity_token")


def render_env(node: NodeSpec) -> str:
    """/etc/default/<unit> (pure): ``data.k3s_env``, one ``NAME="value"`` a line (values checked by the
    contract: no quotes, backslashes, '$', '`' or control characters)."""
    lines = ["# Written by nr (k3s play) from data.k3s_env: the environment of k3s, kubelet and containerd."]
    lines += [f'{name}="{value}"' for name, value in node.env]
    return "\n".join(lines) + "\n"


def env_secrets(node: NodeSpec) -> list[str]:
    """Credentials inside the environment's values (``scheme://user:password@host``), masked in diffs."""
    return [m for _, v in node.env for m in re.findall(r"://([^/@\s]+)@", v)]


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


def config_spec(cluster: ClusterSpec, node: NodeSpec, token: str, old_config: str | None = None) -> FileSpec:
    masked = [token, *secrets_in_config(old_config)]
    return FileSpec.text(CONFIG, render_config(cluster, node, token), mode=0o600, secrets=masked)


def host_files(
    cluster: ClusterSpec, node: NodeSpec, token: str, old_config: str | None, registries: bytes | None
) -> list[FileSpec]:
    """Every small file k3s runs from on ``node`` (the binary and images travel apart)."""
    specs = [
        config_spec(cluster, node, token, old_config),
        FileSpec.text(node.role.unit_path, render_unit(node.role)),
        FileSpec.text(
            node.role.env_path,
            render_env(node),
            mode=0o600,
            secrets=env_secrets(node),
            secret_keys=ENV_SECRET_KEYS,
        ),
    ]
    if registries is not None:
        specs.append(FileSpec(REGISTRIES, registries, mode=0o600, secret_keys=REGISTRY_SECRET_KEYS))
    return specs
