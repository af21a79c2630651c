"""What the k3s play reads on a host, in one round trip, and small parsers of it (stdout only).

Commands whose output is parsed, and what upstream prints:

* ``k3s --version`` (asked only for a binary this machine has not seen: :mod:`tasks.k3s.versions`):
  ``k3s version vX+k3sN (<commit>)`` then ``go version ...`` on stdout; it does not unpack the data
  dir (cmd/k3s/main.go handles it before any command), so no stderr.
* ``systemctl show -p Id,ActiveState,UnitFileState`` (:func:`nr.ops.systemd.units`): one block per
  unit; a missing unit is ``inactive`` with an empty ``UnitFileState``: "not enabled".
* ``systemctl show -p ActiveEnterTimestamp --value`` (``Tue 2025-01-07 10:00:00 UTC``, or empty) and
  ``stat -c %Y``: when k3s last started, and when its files last changed (issue 11: a change whose
  restart never happened).
* ``k3s kubectl get nodes,namespaces,deployments --all-namespaces -o json`` on the first server (one
  ``List``, kubectl get.go ``printGeneric``; :func:`with_views`, :mod:`tasks.k3s.status`): JSON on
  stdout; discovery errors, data-dir unpacking and warnings on stderr even with exit 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from shlex import quote

from nr.facts import Facts
from nr.ops import kubectl, systemd
from tasks.k3s.contract import BINARY, KUBECTL
from tasks.k3s.render import CONFIG, CONFIG_DROPINS, REGISTRIES
from tasks.k3s.spec import NodeSpec, Role

REMOTE_KUBECONFIG = "/etc/rancher/k3s/k3s.yaml"
IMAGES_DIR = "/var/lib/rancher/k3s/agent/images"
DATA_DIR = "/var/lib/rancher/k3s"

UNITS = systemd.units([Role.SERVER.unit, Role.AGENT.unit], "services")
INSTALLED = f"[ -x {BINARY} ] && [ -f {REMOTE_KUBECONFIG} ]"
NOT_INSTALLED = "k3s is not installed"


def _on_a_server(cmd: str) -> str:
    """``cmd`` where k3s and its kubeconfig are, or exit 3 saying k3s is not installed there."""
    return f"if {INSTALLED}; then {cmd}; else echo '{NOT_INSTALLED}' >&2; exit 3; fi"


def kubectl_get(resource: str, namespace: str | None = None) -> str:
    """``k3s kubectl get RESOURCE -o json`` on a server (exit 3 without k3s)."""
    return _on_a_server(kubectl.get_command(KUBECTL, resource, namespace=namespace))


NODES_CMD = kubectl_get("nodes")
DEPLOY_CMD = kubectl_get("deployments", "kube-system")
# Nodes, namespaces and Deployments in one kubectl start on the first server (nr.ops.kubectl.snapshot_command):
# the k3s facts, deploy and checks read it with this very command, so a run's read-ahead runs it once.
CLUSTER_CMD = _on_a_server(kubectl.snapshot_command(KUBECTL))
# What k3s's and deploy's parts of `nr status` read on the first server, as one kubectl start: both
# declare this very text, and the status read runs a command that several components declare once.
STATUS_CMD = _on_a_server(kubectl.snapshot_command(KUBECTL, kubectl.STATUS_TYPES))


def managed_files(node: NodeSpec) -> list[str]:
    """The files whose change k3s only sees after a restart (binary, config, unit, environment)."""
    files = [BINARY, CONFIG, node.role.unit_path, node.role.env_path]
    if node.registries:
        files.append(REGISTRIES)
    if node.airgap_images:
        files.append(f"{IMAGES_DIR}/{Path(node.airgap_images).name}")
    return files


def started_command(node: NodeSpec) -> str:
    """``started EPOCH`` (when the unit last became active) and ``PATH EPOCH`` (mtime) per managed file."""
    unit = quote(node.role.unit)
    files = " ".join(quote(f) for f in managed_files(node))
    return (
        f"t=$(systemctl show -p ActiveEnterTimestamp --value {unit} 2>/dev/null); "
        'if [ -n "$t" ]; then echo "started $(date -d "$t" +%s)"; fi; '
        f'set --; for f in {files}; do if [ -e "$f" ]; then set -- "$@" "$f"; fi; done; '
        'if [ "$#" -gt 0 ]; then stat -c \'%n %Y\' -- "$@"; fi'  # one stat for them all
    )


def facts_request(node: NodeSpec, first: bool) -> tuple[list[str], dict[str, str]]:
    files = [*managed_files(node), Role.SERVER.unit_path, Role.AGENT.unit_path, Role.SERVER.env_path,
             Role.AGENT.env_path, REGISTRIES]  # fmt: skip
    commands = {
        "arch": "uname -m",
        "addrs": "ip -o addr show 2>/dev/null || true",
        "routes": "ip route show default 2>/dev/null || true",
        UNITS.name: UNITS.command,
        "started": started_command(node),
        "dropins": f'for f in {CONFIG_DROPINS}/*.yaml; do if [ -e "$f" ]; then echo "$f"; fi; done',
    }
    if first:
        files.append(REMOTE_KUBECONFIG)
        commands["cluster"] = CLUSTER_CMD
    return list(dict.fromkeys(files)), commands


def with_views(facts: Facts) -> Facts:
    """The facts with the first server's ``cluster`` snapshot also seen as ``nodes`` (every Node) and
    ``deploy`` (kube-system's Deployments), what the rules and plans read."""
    if "cluster" not in facts.outputs:
        return facts
    snapshot = facts.outputs["cluster"]
    views = {
        "nodes": kubectl.view(snapshot, "Node"),
        "deploy": kubectl.view(snapshot, "Deployment", "kube-system"),
    }
    return Facts(dict(facts.files), {**facts.outputs, **views})


def binary_version(facts: Facts) -> str:
    """``k3s version v1.31.4+k3s1 (abcd)`` -> ``v1.31.4+k3s1`` ("" when not installed)."""
    words = facts.out("version").split() if "version" in facts.outputs else []
    return words[2] if len(words) > 2 and words[:2] == ["k3s", "version"] else ""


def unit_state(facts: Facts, unit: str) -> systemd.UnitState:
    states = facts.get(UNITS) if UNITS.name in facts.outputs else {}
    return states.get(unit, systemd.UnitState("inactive", ""))


def dropins(facts: Facts) -> list[str]:
    return facts.out("dropins").split() if "dropins" in facts.outputs else []


@dataclass(frozen=True)
class Started:
    """When k3s last started on a host, and when each file it runs from last changed (epoch seconds)."""

    at: int | None
    mtimes: dict[str, int]

    @classmethod
    def parse(cls, text: str) -> Started:
        at, mtimes = None, {}
        for line in text.splitlines():
            key, _, value = line.rpartition(" ")
            if not value.isdigit():
                continue
            if key == "started":
                at = int(value)
            elif key:
                mtimes[key] = int(value)
        return cls(at, mtimes)

    def newer(self) -> list[str]:
        """Files changed after k3s started: a change whose restart did not happen (still running the old)."""
        if self.at is None:
            return []
        return [path for path, mtime in self.mtimes.items() if mtime > self.at]


def started(facts: Facts) -> Started:
    return Started.parse(facts.out("started")) if "started" in facts.outputs else Started(None, {})
