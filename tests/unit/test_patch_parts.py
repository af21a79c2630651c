"""The patch play's pure parts: what apt and kubectl print, the budget check before a drain, the reboot
wait; and the engine's run options (``--reboot``) and reconnection."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from nr.cli import cli
from nr.errors import NrError
from nr.facts import Output
from nr.interrupt import Interrupted
from nr.ssh_trust import HostKeyRejected
from nr.transport import CommandResult
from tasks.patch import apt, kube
from tasks.patch.reboot import wait_back
from tests.unit.patch_scripted import SIMULATION, FakeClock


def test_the_simulation_lists_upgrades_new_packages_removals_and_what_is_kept_back() -> None:
    lines = apt.sections(SIMULATION)["simulate"] + [
        "Inst linux-image-6.1.0-18-amd64 (6.1.76-1 Debian-Security:12/stable-security [amd64])",
        "Remv linux-image-6.1.0-10-amd64 [6.1.38-4]",
    ]
    sim = apt.parse_simulation(lines)
    assert [c.describe() for c in sim.changes] == [
        "~ libssl3 3.0.11-1~deb12u1 -> 3.0.11-1~deb12u2",
        "~ openssl 3.0.11-1~deb12u1 -> 3.0.11-1~deb12u2",
        "+ linux-image-6.1.0-18-amd64 6.1.76-1 (new)",
        "- linux-image-6.1.0-10-amd64 6.1.38-4 (removed)",
    ]
    assert sim.kept_back == ("linux-image-amd64",)
    assert (
        apt.parse_simulation(["0 upgraded, 0 newly installed, 0 to remove and 0 not upgraded."]).changes == ()
    )


def test_what_an_upgrade_changed_is_the_difference_of_the_installed_versions() -> None:
    out = "@@before\na 1\nb 2\nc 3\n@@after\na 1\nb 2.1\nd 4\n@@reboot\nrequired\nlinux-image-amd64\nlibc6\n"
    parts = apt.sections(out)
    changed = apt.changed(apt.versions(parts["before"]), apt.versions(parts["after"]))
    assert apt.listing(changed) == "~ b 2 -> 2.1\n- c 3 (removed)\n+ d 4 (new)\n"
    fact = apt.reboot_fact(parts["reboot"])
    assert fact.required and fact.describe() == "/var/run/reboot-required exists (linux-image-amd64, libc6)"
    assert not apt.reboot_fact([]).required and apt.summary([]) == "no package to upgrade"


def test_the_upgrade_keeps_changed_config_files_and_the_dry_run_touches_no_state() -> None:
    script = apt.upgrade_script("full-upgrade")
    assert "DEBIAN_FRONTEND=noninteractive" in script
    assert (
        "apt-get -q -y -o DPkg::Lock::Timeout=600 -o Dpkg::Options::=--force-confdef "
        "-o Dpkg::Options::=--force-confold full-upgrade >&2" in script
    )
    plan = apt.plan_script("upgrade")
    assert (
        "Dir::State::Lists=$d/lists" in plan
        and "apt-get -s -q $o" in plan
        and "trap 'rm -rf \"$d\"' EXIT" in plan
    )
    with pytest.raises(ValueError, match="must be one of upgrade, full-upgrade"):
        apt.upgrade_script("dist-upgrade; reboot")


def out(doc: Any) -> Output:
    return Output(0, json.dumps(doc), "")


def pod(name: str, node: str, deploy: str, ready: bool = True, ns: str = "app") -> dict[str, Any]:
    return {"metadata": {"name": f"{deploy}-abc123-{name}", "namespace": ns,
                         "labels": {"app": deploy, "pod-template-hash": "abc123"},
                         "ownerReferences": [{"kind": "ReplicaSet", "name": f"{deploy}-abc123", "controller": True}]},
            "spec": {"nodeName": node}, "status": {"conditions": [{"type": "Ready", "status": str(ready)}]}}  # fmt: skip


def deploy(name: str, ready: int, ns: str = "app") -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": ns}, "status": {"readyReplicas": ready}}


def test_a_deployment_whose_ready_pods_are_all_on_the_node_needs_a_budget() -> None:
    pods = out({"items": [pod("1", "n1", "web"), pod("2", "n1", "web"), pod("3", "n1", "api"), pod("4", "n2", "api"),
                          pod("5", "n1", "dns", ns="kube-system"),
                          {"metadata": {"name": "svclb", "namespace": "kube-system",
                                        "ownerReferences": [{"kind": "DaemonSet", "name": "x", "controller": True}]},
                           "spec": {"nodeName": "n1"}}]})  # fmt: skip
    deployments = out({"items": [deploy("web", 2), deploy("api", 2), deploy("dns", 1, "kube-system")]})
    none = out({"items": []})
    found = kube.unprotected("n1", pods, deployments, none)
    assert sorted(found) == ["app/web", "kube-system/dns"]  # api has a ready pod on n2
    assert found["app/web"] == "its 2 ready pod(s) are all on n1 and no PodDisruptionBudget guards it"
    budget = out(
        {"items": [{"metadata": {"namespace": "app"}, "spec": {"selector": {"matchLabels": {"app": "web"}}}}]}
    )
    assert sorted(kube.unprotected("n1", pods, deployments, budget)) == ["kube-system/dns"]


def test_drain_output_is_read_like_kubectl_prints_it() -> None:
    ok = kube.parse_drain(0, "node/n1 cordoned\nevicting pod app/a\nevicting pod app/b\npod/a evicted\npod/b evicted\n"
                          "node/n1 drained\n",
                          'error when evicting pods/"b" -n "app" (will retry after 5s): Cannot evict pod as it would '
                          "violate the pod's disruption budget.\n")  # fmt: skip
    assert ok.ok and ok.evicted == ("a", "b") and ok.refusals == {"b": 1}
    assert (
        ok.describe("n1", 300)
        == "drained n1: 2 pod(s) evicted (1 eviction(s) refused by a PodDisruptionBudget first)"
    )
    err = (
        'error: unable to drain node "n1" due to error: cannot delete Pods with local storage (use '
        "--delete-emptydir-data to override): app/a, continuing command...\nThere are pending nodes to be drained:\n"
        " n1\nerror: cannot delete Pods with local storage (use --delete-emptydir-data to override): app/a\n"
    )
    bad = kube.parse_drain(1, "node/n1 cordoned\n", err)
    assert not bad.ok and bad.pending == ()
    assert (
        bad.error == "cannot delete Pods with local storage (use --delete-emptydir-data to override): app/a"
    )
    assert kube.drain_command("n1", 300) == (
        "/usr/local/bin/k3s kubectl drain n1 --ignore-daemonsets --delete-emptydir-data --timeout=300s"
    )


class Flaky:
    """A host that is down for a while, then answers with or without the marker of the old boot."""

    def __init__(self, answers: list[Any]) -> None:
        self.answers = answers

    def connect(self) -> Flaky:
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        self.next = answer
        return self

    def run(self, script: str, **_: Any) -> CommandResult:
        return CommandResult(0, self.next, "")


def test_the_reboot_wait_tells_the_old_boot_from_the_new_one_and_refuses_a_new_host_key() -> None:
    down = NrError("cannot connect to 198.18.0.12:22: No route to host")
    host = Flaky(["tok\n@@state\nrunning\n@@failed\n", down, down, "@@state\nstarting\n@@failed\n",
                  "@@state\ndegraded\n@@failed\nfoo.service\n"])  # fmt: skip
    back = wait_back(host.connect, "vm2", "tok", 60, FakeClock())  # type: ignore[arg-type]
    assert back.seconds == 10 and back.failed_units == ("foo.service",)
    with pytest.raises(NrError, match="vm2 came back with another SSH host key; nothing more is done on it"):
        wait_back(
            Flaky([HostKeyRejected("host key of 198.18.0.12 CHANGED")]).connect, "vm2", "tok", 60, FakeClock()
        )  # type: ignore[arg-type]
    with pytest.raises(NrError, match="vm2 is not back 60 s after its reboot: it has not gone down yet"):
        wait_back(Flaky(["tok\n@@state\nrunning\n"]).connect, "vm2", "tok", 60, FakeClock())  # type: ignore[arg-type]
    clock = FakeClock()
    with pytest.raises(Interrupted):  # Ctrl-C ends the wait at once (an NrError, but no host still booting)
        wait_back(Flaky([down, Interrupted("interrupted")]).connect, "vm2", "tok", 600, clock)  # type: ignore[arg-type]
    assert clock.t - 1_700_000_000.0 < 60


def inventory(tmp_path: Path) -> Path:
    folder = tmp_path / "inv"
    folder.mkdir()
    hosts = {f"vm{i}": {"hostname": f"198.18.0.1{i}", "groups": ["redis"]} for i in (1, 2, 3)}
    (folder / "hosts.yaml").write_text(yaml.safe_dump(hosts))
    (folder / "defaults.yaml").write_text(yaml.safe_dump({"data": {"redis_password": "env:NR_X_PASSWORD"}}))
    return folder


def test_run_options_are_the_components_own_and_checked_before_any_host_is_touched(tmp_path: Path) -> None:
    folder = str(inventory(tmp_path))
    runner = CliRunner()
    assert "--reboot [needed|always]" in runner.invoke(cli, ["run", "--help"]).output
    res = runner.invoke(cli, ["run", "site", "-i", folder, "--reboot", "always"])
    assert res.exit_code == 2
    assert "--reboot: play site runs no component that takes it (it is an option of patch)" in res.output
    res = runner.invoke(cli, ["run", "patch", "-i", folder, "--reboot", "sometimes"])
    assert res.exit_code == 2 and "'sometimes' is not one of 'needed', 'always'" in res.output


def test_a_run_option_sets_its_data_key_on_every_host(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nr import cli as cli_module

    seen: dict[str, Any] = {}

    def fake_run(
        nr: Any, report: Any, selected: Any, limit: Any, inventory: str, *rest: Any
    ) -> dict[str, Any]:
        seen.update({h.name: h.get("patch_reboot") for h in nr.inventory.hosts.values()})
        return {}

    monkeypatch.setattr(cli_module, "_run_selected", fake_run)
    res = CliRunner().invoke(
        cli, ["run", "patch", "-i", str(inventory(tmp_path)), "--reboot", "always", "--dry-run"]
    )
    assert res.exit_code == 0, res.output
    assert seen == {"vm1": "always", "vm2": "always", "vm3": "always"}


def test_reconnect_replaces_the_hosts_connection_for_every_later_step(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from nornir.core.plugins.connections import ConnectionPluginRegister

    from nr.play import PlayContext
    from tests.fakes.remote import scripted_context

    class Plugin:
        opened: list[Plugin] = []

        def open(self, **_: Any) -> None:
            self.connection, self.closed = object(), False
            Plugin.opened.append(self)

        def close(self) -> None:
            self.closed = True

    monkeypatch.setitem(ConnectionPluginRegister.available, "fabric", Plugin)
    scripted, report = scripted_context({"vm1": {"hostname": "198.18.0.11"}}, {})
    ctx = PlayContext(scripted.nornir, component="t", recorder=report)  # connections through Nornir
    first = ctx.remote("vm1")
    assert ctx.remote("vm1") is first and len(Plugin.opened) == 1  # one connection per host per run
    again = ctx.reconnect("vm1")
    assert again is not first and Plugin.opened[0].closed and ctx.remote("vm1") is again


def test_every_deployment_of_the_app_has_a_budget_that_keeps_a_ready_pod_through_a_drain() -> None:
    """k3s/base: a PodDisruptionBudget per Deployment, minAvailable >= 1, below the HPA's minReplicas (or
    a drain could never evict: it would wait until its timeout)."""
    base = Path(__file__).resolve().parents[2] / "k3s" / "base"
    docs = [d for f in sorted(base.glob("*.yaml")) for d in yaml.safe_load_all(f.read_text()) if d]
    budgets = [d for d in docs if d["kind"] == "PodDisruptionBudget"]
    for deployment in (d for d in docs if d["kind"] == "Deployment"):
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        guards = [b for b in budgets if b["spec"]["selector"]["matchLabels"].items() <= labels.items()]
        assert len(guards) == 1, deployment["metadata"]["name"]
        hpa = next(d for d in docs if d["kind"] == "HorizontalPodAutoscaler"
                   and d["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"])  # fmt: skip
        assert 1 <= guards[0]["spec"]["minAvailable"] < hpa["spec"]["minReplicas"]


def test_every_pod_of_the_app_leaves_the_endpoints_before_it_stops() -> None:
    """A drained pod is removed from every node's endpoints while the kubelet already stops it: a preStop
    sleep (KEP-3960) keeps it serving until kube-proxy everywhere forgot it, within its grace period."""
    base = Path(__file__).resolve().parents[2] / "k3s" / "base"
    docs = [d for f in sorted(base.glob("*.yaml")) for d in yaml.safe_load_all(f.read_text()) if d]
    for deployment in (d for d in docs if d["kind"] == "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        for container in pod["containers"]:
            sleep = container["lifecycle"]["preStop"]["sleep"]["seconds"]
            assert 3 <= sleep < pod.get("terminationGracePeriodSeconds", 30), deployment["metadata"]["name"]
