"""A scripted site for the patch play's orchestration tests: three hosts (one k3s server, two agents, all
Redis hosts) as ScriptedRemotes answering from a small model of the world, and a fake Redis Cluster.

Every step a host takes is appended to ``World.log`` (``(host, what)``), the Redis failovers included,
so a test can assert the order of everything across hosts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pytest

from nr.play import PlayContext
from nr.report import RunReport
from nr.ssh_trust import ConnectionFailed
from tasks.k3s.observe import REMOTE_KUBECONFIG
from tasks.k3s.wait import Clock
from tasks.patch.play import PatchComponent
from tasks.redis.config import instance_configs
from tasks.redis.plan import plan_layout
from tests.fakes.redis_cluster import FakeNode, FakeRedisCluster
from tests.fakes.remote import Reply, ScriptedRemote, facts_reply, scripted_context

PASSWORD = "scripted-patch-password-0123"
ENV = "NR_TEST_PATCH_REDIS_PASSWORD"
NAMES = ("vm1", "vm2", "vm3")
ADDRESS = {n: f"198.18.0.1{i}" for i, n in enumerate(NAMES, start=1)}
HOSTS = {
    "vm1": {"hostname": ADDRESS["vm1"], "groups": ["k3s_servers", "redis"]},
    "vm2": {"hostname": ADDRESS["vm2"], "groups": ["k3s_agents", "redis"]},
    "vm3": {"hostname": ADDRESS["vm3"], "groups": ["k3s_agents", "redis"]},
}
DRAINED = "node/{n} cordoned\nevicting pod aeroalpes/app-1\npod/app-1 evicted\nnode/{n} drained\n"


class FakeClock(Clock):
    def __init__(self) -> None:
        self.t = 1_700_000_000.0
        super().__init__(now=lambda: self.t, sleep=self.advance)

    def advance(self, seconds: float) -> None:
        self.t += seconds


class Hosts(dict[str, ScriptedRemote]):
    """The connections: a host that is down refuses them (as SSH to a powered-off VM)."""

    def __init__(self, remotes: dict[str, ScriptedRemote]) -> None:
        super().__init__(remotes)
        self.down: set[str] = set()

    def __getitem__(self, name: str) -> ScriptedRemote:
        if name in self.down:
            raise ConnectionFailed(f"cannot connect to {ADDRESS[name]}:22: No route to host")
        return super().__getitem__(name)


@dataclass
class World:
    monkeypatch: pytest.MonkeyPatch
    hosts: dict[str, Any] = field(default_factory=lambda: dict(HOSTS))
    data: dict[str, Any] = field(default_factory=dict)
    log: list[tuple[str, str]] = field(default_factory=list)
    ready: dict[str, bool] = field(default_factory=lambda: dict.fromkeys(NAMES, True))
    cordoned: set[str] = field(default_factory=set)
    comes_back: dict[str, bool] = field(default_factory=lambda: dict.fromkeys(NAMES, True))
    reboot_required: set[str] = field(default_factory=set)
    pods: list[dict[str, Any]] = field(default_factory=list)
    drain: tuple[int, str, str] | None = None  # (rc, stdout, stderr) instead of a clean drain
    finished: list[str] = field(default_factory=list)
    up_to_date: set[str] = field(default_factory=set)  # hosts with no package to upgrade
    # kube-system add-on -> how many more reads show it unavailable (after a server reboot: metrics-server)
    add_ons_unready: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.monkeypatch.setenv(ENV, PASSWORD)
        layout = plan_layout([(n, ADDRESS[n]) for n in NAMES])
        self.cluster = FakeRedisCluster(layout, instance_configs(layout), PASSWORD)
        original = self.cluster.failover

        def failover(node: FakeNode) -> None:  # logged for the host that gives its shard away
            old = next(n for n in self.cluster.nodes.values() if n.node_id == node.master_id)
            original(node)
            self.log.append((old.host, f"hand over {old.label} to {node.label}"))

        self.cluster.failover = failover  # type: ignore[method-assign]
        self.remotes = Hosts({n: self.remote(n) for n in self.hosts})
        self.clock = FakeClock()

    # -- what the hosts answer ------------------------------------------------------------------
    def node_json(self, name: str) -> dict[str, Any]:
        labels = {"node-role.kubernetes.io/control-plane": "true"} if name == "vm1" else {}
        spec = {"unschedulable": True} if name in self.cordoned else {}
        cond = {"type": "Ready", "status": "True" if self.ready[name] else "Unknown"}
        return {"metadata": {"name": name, "labels": labels}, "spec": spec,
                "status": {"conditions": [cond], "nodeInfo": {"kubeletVersion": "v1.31.4+k3s1"}}}  # fmt: skip

    def outputs(self) -> dict[str, Any]:
        k3s = [n for n, h in self.hosts.items() if any(g.startswith("k3s_") for g in h["groups"])]
        nodes = {"kind": "List", "items": [self.node_json(n) for n in k3s]}
        return {"nodes": json.dumps(nodes), "pods": json.dumps({"items": self.pods}),
                "deploy": json.dumps({"items": self.add_ons()}), "pdb": json.dumps({"items": []})}  # fmt: skip

    def add_ons(self) -> list[dict[str, Any]]:
        """k3s's packaged kube-system Deployments, each available unless still counted unready."""
        out = []
        for name in ("coredns", "traefik", "metrics-server", "local-path-provisioner"):
            waiting = self.add_ons_unready.get(name, 0)
            if waiting:
                self.add_ons_unready[name] = waiting - 1
            status = {} if waiting else {"availableReplicas": 1, "readyReplicas": 1}
            out.append({"metadata": {"name": name, "namespace": "kube-system"}, "spec": {"replicas": 1},
                        "status": status})  # fmt: skip
        return out

    def facts(self, script: str) -> str:
        files = {REMOTE_KUBECONFIG: "apiVersion: v1\n"}
        answer = facts_reply(files, self.outputs(), strict=True).stdout
        assert callable(answer)
        return answer(script)

    def remote(self, name: str) -> ScriptedRemote:
        def act(what: str, out: str = "") -> Any:
            def do(script: str) -> str:
                self.log.append((name, what))
                return out

            return do

        def drain(script: str) -> str:
            node = script.split("drain ")[1].split(maxsplit=1)[0]
            self.cordoned.add(node)
            self.log.append((node, "drain"))
            return DRAINED.format(n=node)

        def uncordon(script: str) -> str:
            node = script.split("uncordon ")[1].split(maxsplit=1)[0]
            self.cordoned.discard(node)
            self.log.append((node, "uncordon"))
            return f"node/{node} uncordoned\n"

        def upgrade(script: str) -> str:
            self.log.append((name, "upgrade"))
            reboot = "required\nlinux-image-amd64\n" if name in self.reboot_required else ""
            return f"@@before\nbase-files 12.4\nopenssl 3.0.1\n@@after\nbase-files 12.5\nopenssl 3.0.1\n@@reboot\n{reboot}"

        def reboot(script: str) -> str:
            self.log.append((name, "reboot"))
            for n in self.cluster.nodes.values():
                if n.host == name:
                    n.alive = False
            self.ready[name] = False
            self.remotes.down.add(name)
            if self.comes_back[name]:
                self.remotes.down.discard(name)  # it answers again at the next connection
                for n in self.cluster.nodes.values():
                    if n.host == name:
                        n.alive = True
                self.ready[name] = True
            return ""

        def look(script: str) -> str:
            reboot = "required\nlinux-image-amd64\n" if name in self.reboot_required else ""
            return (UP_TO_DATE if name in self.up_to_date else SIMULATION) + reboot

        replies = [
            Reply("Timeout=600 update >&2\necho \"@@simulate\"", look, times=None),
            Reply('printf "%s end\\n" "$M"', self.facts, times=None),
            Reply("kubectl drain", drain, times=None) if self.drain is None else
            Reply("kubectl drain", self.drain[1], self.drain[2], self.drain[0], times=None),
            Reply("kubectl uncordon", uncordon, times=None),
            Reply("apt-get -q -y", upgrade, times=None),
            Reply("systemctl reboot", reboot, times=None),
            Reply("@@state", "@@state\nrunning\n@@failed\n", times=None),
            Reply("systemctl show -p NRestarts", "NRestarts=0\nActiveState=active\nSubState=running\nNow=1\nUp=30\n", times=None),
            Reply("@@simulate", act("plan", SIMULATION), times=None),
        ]  # fmt: skip
        return ScriptedRemote(name, replies)

    # -- running the play -----------------------------------------------------------------------
    def context(self, **kw: Any) -> tuple[PlayContext, RunReport]:
        defaults = {"data": {"redis_password": f"env:{ENV}", **self.data}}
        return scripted_context(self.hosts, self.remotes, defaults=defaults, component="patch", **kw)  # type: ignore[arg-type]

    def component(self) -> PatchComponent:
        return PatchComponent(self.cluster.connector, clock=self.clock, finish=lambda ctx: self.finished.append("done"),
                              redis_timeout=2.0, poll=0.01)  # fmt: skip

    def run(self, **kw: Any) -> RunReport:
        ctx, report = self.context(**kw)
        self.component().apply(ctx)
        return report

    def sent(self, host: str, text: str) -> list[str]:
        return [s for s in dict.__getitem__(self.remotes, host).scripts if text in s]


UP_TO_DATE = """@@simulate
NOTE: This is only a simulation!
0 upgraded, 0 newly installed, 0 to remove and 0 not upgraded.
@@reboot
"""
SIMULATION = """@@simulate
NOTE: This is only a simulation!
      apt-get needs root privileges for real execution.
The following packages have been kept back:
  linux-image-amd64
The following packages will be upgraded:
  libssl3 openssl
2 upgraded, 0 newly installed, 0 to remove and 1 not upgraded.
Inst libssl3 [3.0.11-1~deb12u1] (3.0.11-1~deb12u2 Debian-Security:12/stable-security [amd64])
Inst openssl [3.0.11-1~deb12u1] (3.0.11-1~deb12u2 Debian-Security:12/stable-security [amd64])
Conf libssl3 (3.0.11-1~deb12u2 Debian-Security:12/stable-security [amd64])
Conf openssl (3.0.11-1~deb12u2 Debian-Security:12/stable-security [amd64])
@@reboot
"""
