"""The plan for one k3s host, from its facts (pure but for hashing local files), and the rollout order.

* :func:`plan_host`: the binary, images, config.yaml, unit, environment file and registries.yaml a
  host should have, and the systemctl lines that restart k3s only when one of them changed. A change
  k3s has not picked up yet (a file newer than the running process: the run that wrote it never got
  to the restart) is a restart to do, and drift until it is done.
* :func:`role_switch_problem`: a server cannot become an agent in place while its Node exists.
* :func:`rollout`: first server, then the other servers one at a time, then the agents in parallel;
  an upgrade goes servers one at a time, then agents one at a time.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from nr.changes import Change
from nr.facts import Facts, FileState
from nr.local_digests import local_sha256
from nr.ops.files import plan_file, plan_upload
from nr.ops.release import BinarySource
from tasks.k3s.contract import BINARY, KUBECTL
from tasks.k3s.observe import IMAGES_DIR, binary_version, started, unit_state
from tasks.k3s.render import CONFIG, host_files
from tasks.k3s.spec import ClusterSpec, NodeSpec, Role
from tasks.k3s.status import ETCD, NodeStatus


@dataclass(frozen=True)
class HostPlan:
    node: NodeSpec
    changes: tuple[Change, ...]
    restart: bool  # k3s (re)starts on this host in this run
    upgrade: bool  # an installed k3s binary is replaced (or was, and k3s still runs the old one)
    after: str  # systemctl lines run after the changes

    @property
    def changed(self) -> bool:
        return bool(self.changes)

    @property
    def installs_binary(self) -> bool:
        """The k3s binary is installed or replaced by this plan."""
        return any(c.what == f"file {BINARY}" for c in self.changes)


def _absent(path: str) -> FileState:
    return FileState(path, False)


def binary_change(source: BinarySource, state: FileState, version_now: str) -> Change | None:
    """Install or replace /usr/local/bin/k3s when its hash or mode differs."""
    if source.path is not None:
        change = plan_upload(source.path, BINARY, state, mode=0o755)
    elif state.exists and state.sha256 == source.sha256 and state.mode == 0o755:
        change = None
    else:
        change = Change(
            f"file {BINARY}",
            f"sha256 {source.sha256[:12]} 0755 root:root",
            "absent" if not state.exists else f"sha256 {(state.sha256 or '?')[:12]}",
            f"echo {shlex.quote(f'nr: {source.label} was not downloaded')} >&2; exit 1",
            f"{'~ replace' if state.exists else '+ install'} {BINARY} from {source.label} (sha256 {source.sha256[:12]})\n",
        )
    if change is None:
        return None
    was = f" (was: {version_now})" if state.exists and version_now else ""
    first, _, rest = change.diff.partition("\n")
    if source.path is not None:
        first = first.replace(f"from {source.path}", f"from {source.label}")
    return replace(change, diff=f"{first}{was}\n{rest}")


def _file_changes(
    cluster: ClusterSpec,
    node: NodeSpec,
    token: str,
    facts: Facts,
    binary: BinarySource,
    registries: bytes | None,
    images: BinarySource | None,
) -> list[Change]:
    files = facts.files
    changes: list[Change] = []
    c = binary_change(binary, files.get(BINARY, _absent(BINARY)), facts.out("version").strip())
    if c:
        changes.append(c)
    if images is not None and images.path is not None:
        dest = f"{IMAGES_DIR}/{images.path.name}"
        c = plan_upload(images.path, dest, files.get(dest, _absent(dest)), mode=0o644)
        if c:
            changes.append(c)
    old_config = files.get(CONFIG, _absent(CONFIG)).text
    for spec in host_files(cluster, node, token, old_config, registries):
        c = plan_file(spec, files.get(spec.path, _absent(spec.path)))
        if c:
            changes.append(c)
    return changes


def _other_role_change(node: NodeSpec, facts: Facts) -> Change | None:
    other = node.role.other
    present = [p for p in (other.unit_path, other.env_path) if facts.files.get(p, _absent(p)).exists]
    if not present:
        return None
    paths = " ".join(shlex.quote(p) for p in present)
    return Change(
        f"service {other.unit}",
        "absent",
        "present",
        f"systemctl disable --now {other.unit} 2>/dev/null || true\nrm -f {paths}",
        "".join(f"- remove {p} (this host is now a k3s {node.role.value})\n" for p in present),
    )


def service_script(unit: str, *, reload: bool, enable: bool, restart: bool, start: bool) -> str:
    """systemctl lines (pure): restart only when ``restart``, else start when ``start``."""
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


def _service_change(node: NodeSpec, facts: Facts) -> Change | None:
    """With no file to change: start a stopped k3s, enable it, or do a restart that never happened."""
    unit = node.role.unit
    state = unit_state(facts, unit)
    pending = started(facts).newer() if state.running else []
    enable = not state.is_enabled
    if pending:
        return Change(
            f"service {unit} restart",
            "running since its files last changed",
            f"started before {', '.join(pending)} changed (the restart did not happen)",
            service_script(
                unit, reload=node.role.unit_path in pending, enable=enable, restart=True, start=False
            ),
            f"~ restart {unit}: it still runs with the {'binary' if BINARY in pending else 'settings'} "
            f"it started with ({', '.join(pending)} changed since)\n",
        )
    if state.running and not enable:
        return None
    want = ("enabled, " if enable else "") + ("active" if not state.running else "")
    return Change(
        f"service {unit}",
        want.rstrip(", "),
        f"{state.enabled or 'no unit file'}, {state.active}",
        service_script(unit, reload=False, enable=enable, restart=False, start=not state.running),
        f"+ {'enable ' if enable else ''}{'start ' if not state.running else ''}{unit}.service (now {state.active})\n",
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
    changes = _file_changes(cluster, node, token, facts, binary, registries, images)
    upgrade = (
        any(c.what == f"file {BINARY}" for c in changes) and facts.files.get(BINARY, _absent(BINARY)).exists
    )
    other = _other_role_change(node, facts)
    if other:
        changes.append(other)
    after = ""
    if changes:
        unit_changed = other is not None or any(c.what == f"file {node.role.unit_path}" for c in changes)
        enable = not unit_state(facts, node.role.unit).is_enabled
        after = service_script(node.role.unit, reload=unit_changed, enable=enable, restart=True, start=False)
    else:
        service = _service_change(node, facts)
        if service:
            changes.append(service)
            upgrade = BINARY in started(facts).newer()
    return HostPlan(node, tuple(changes), bool(changes), upgrade, after)


def role_switch_problem(
    node: NodeSpec,
    facts: Facts,
    nodes: Mapping[str, NodeStatus] | None,
    first: str,
    reset_fix: str,
    run_fix: str,
) -> str | None:
    """Why ``node`` (now an agent) cannot take over a host that runs a k3s server while its Node exists.

    k3s never removes a server's control-plane/master/etcd labels nor its etcd member when the host
    comes back as an agent: the member stays until the Node is deleted (pkg/etcd member controller).
    """
    if node.role is not Role.AGENT or not facts.files.get(Role.SERVER.unit_path, _absent("")).exists:
        return None
    status = None if nodes is None else nodes.get(node.name)
    if nodes is not None and (status is None or not (status.control_plane or ETCD in status.labels)):
        return None  # its server Node is gone: the agent may take over
    delete = shlex.join([*KUBECTL.split(), "delete", "node", node.name])
    known = "cannot be read, so its Node may still exist" if nodes is None else "still has its server Node"
    return (
        f"{node.name} runs a k3s server and is now listed as an agent; the cluster {known} (with the "
        "control-plane/etcd roles and an etcd member, which k3s keeps when a server comes back as an agent). "
        f"Take it out of the cluster first: `{delete}` on {first} (removes its etcd member and node "
        f"password), then `{reset_fix}`, then `{run_fix}`"
    )


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


def images_source(path: str | None) -> BinarySource | None:
    if not path:
        return None
    p = Path(path)
    return BinarySource(local_sha256(p), f"local file {p}", p)


__all__ = ["HostPlan", "Stage", "binary_version", "plan_host", "role_switch_problem", "rollout"]
