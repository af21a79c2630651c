"""The patch play against scripted hosts and a fake Redis Cluster: its order, what it refuses to start,
where it stops and what it says then, and its dry run (tests/unit/patch_scripted.py has the site)."""

from __future__ import annotations

import pytest

from tasks.patch.plan import order
from tests.unit.patch_scripted import World


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> World:
    return World(monkeypatch)


def steps(world: World, host: str) -> list[str]:
    return [what for h, what in world.log if h == host]


def test_the_order_is_agents_then_other_hosts_then_servers_with_the_first_server_last() -> None:
    hosts = ["s1", "a1", "db", "s2", "a2", "s3"]
    assert order(hosts, ["s1", "s2", "s3"], ["a1", "a2"]) == ["a1", "a2", "db", "s2", "s3", "s1"]
    assert order(["r1", "r2"], [], []) == ["r1", "r2"]  # no k3s: the inventory order
    assert order(["s1", "a2"], ["s1", "s2", "s3"], ["a1", "a2"]) == ["a2", "s1"]  # --limit: same order


def test_limit_patches_only_the_hosts_chosen_and_the_rest_is_not_touched(world: World) -> None:
    report = world.run(limit=["vm1", "vm3"])
    assert report.ok, report.failed_reasons
    assert [h for h, w in world.log if w == "upgrade"] == ["vm3", "vm1"]
    assert not world.sent("vm2", "apt-get") and "drain" not in steps(world, "vm2")


def test_one_host_at_a_time_each_back_in_service_before_the_next(world: World) -> None:
    world.data["patch_reboot"] = "always"
    report = world.run()
    assert report.ok, report.failed_reasons
    runs = [h for i, (h, _) in enumerate(world.log) if i == 0 or world.log[i - 1][0] != h]
    assert runs == ["vm2", "vm3", "vm1"]  # each host's steps all together, in the documented order
    for host, master in (("vm2", "vm2:7000"), ("vm3", "vm3:7000"), ("vm1", "vm1:7000")):
        assert steps(world, host)[0].startswith(f"hand over {master} to ")
        assert steps(world, host)[-4:] == ["drain", "upgrade", "reboot", "uncordon"], steps(world, host)
    assert world.finished == ["done"] and not world.cordoned


def test_masters_move_to_their_replicas_on_other_hosts_before_the_drain(world: World) -> None:
    world.data["patch_reboot"] = "always"
    assert world.run().ok
    assert steps(world, "vm2")[:2] == ["hand over vm2:7000 to vm3:7003", "drain"]
    # vm3 holds two shards then (its own and vm2's): both leave before its drain
    assert steps(world, "vm3")[:3] == [
        "hand over vm3:7000 to vm1:7003",
        "hand over vm3:7003 to vm2:7000",
        "drain",
    ] or sorted(steps(world, "vm3")[:2]) == [
        "hand over vm3:7000 to vm1:7003",
        "hand over vm3:7003 to vm2:7000",
    ]
    assert steps(world, "vm3")[2] == "drain"


def test_a_reboot_happens_only_when_asked_for(world: World) -> None:
    world.reboot_required = {"vm3"}
    report = world.run()
    assert report.ok, report.failed_reasons
    assert [h for h, what in world.log if what == "reboot"] == ["vm3"]
    reboot = next(r for r in report.rows if r.host == "vm3" and r.task == "patch.reboot")
    assert "/var/run/reboot-required exists (linux-image-amd64)" in reboot.diff
    upgrade = next(r for r in report.rows if r.host == "vm2" and r.task == "patch.upgrade")
    assert "~ base-files 12.4 -> 12.5" in upgrade.diff and "openssl" not in upgrade.diff


def test_never_starts_while_a_shard_has_no_healthy_replica(world: World) -> None:
    world.cluster.by_label("vm1:7003").alive = False  # the only replica of vm3:7000's shard
    report = world.run()
    assert not report.ok and world.finished == []
    reason = report.failed_reasons["vm2"]
    assert "not started: the site cannot lose vm2 now" in reason
    assert (
        "vm3:7000 masters 5461 slots and has no in-sync replica on another host (replicas: vm1:7003 (down))"
        in reason
    )
    assert "vm1:7003" in reason and "Site state now" in reason
    assert report.failed_reasons["vm3"] == "patch.skipped: not patched: the run stopped at vm2 (see there)"
    assert [w for _, w in world.log] == []  # nothing was done anywhere
    for host in ("vm1", "vm2", "vm3"):
        assert not world.sent(host, "set -e") and not world.sent(host, "kubectl drain")


def test_never_starts_while_a_k3s_node_is_not_ready(world: World) -> None:
    world.ready["vm3"] = False
    report = world.run()
    assert (
        "not started: the site cannot lose vm2 now: k3s: k3s node vm3 is not Ready"
        in report.failed_reasons["vm2"]
    )
    assert world.log == []


def test_a_host_that_does_not_come_back_stops_the_run_and_the_state_is_reported(world: World) -> None:
    world.data["patch_reboot"] = "always"
    world.comes_back["vm3"] = False
    report = world.run()
    assert not report.ok and world.finished == []
    reason = report.failed_reasons["vm3"]
    assert reason.startswith("patch.reboot: vm3 is not back 600 s after its reboot: cannot connect")
    assert "  vm2: patched, back in service" in reason
    assert (
        "  vm3: stopped after: " in reason
        and "cordoned and drained, upgraded (1 package), reboot started" in reason
    )
    assert "  vm1: untouched" in reason
    assert "  redis: shard 3: mastered by vm1:7003 (planned: vm3:7000, down)" in reason
    assert "  redis: instances not answering: vm3:7000, vm3:7003" in reason
    assert "  k3s: node vm3: NOT Ready, cordoned" in reason
    # continued as it was run: rebooting every host
    assert "`nr run patch --limit vm3,vm1 --reboot always`" in reason and "`nr run redis`" in reason
    assert report.failed_reasons["vm1"] == "patch.skipped: not patched: the run stopped at vm3 (see there)"
    assert steps(world, "vm1") == []  # nothing was done there (vm3's shard went to its replica vm1:7003)
    assert not world.sent("vm1", "apt-get") and not world.sent("vm1", "reboot")


def test_a_drain_that_a_budget_blocks_stops_before_the_upgrade_naming_the_pods(world: World) -> None:
    refused = 'error when evicting pods/"app-1" -n "aeroalpes" (will retry after 5s): Cannot evict pod as it would violate the pod\'s disruption budget.\n'
    stderr = (refused * 3 + 'There are pending pods in node "vm2" when an error occurred: error when evicting '
              'pods/"app-1" -n "aeroalpes": global timeout reached: 5m0s\npod/app-1\nerror: unable to drain node '
              '"vm2" due to error: x, continuing command...\nThere are pending nodes to be drained:\n vm2\n'
              'error: error when evicting pods/"app-1" -n "aeroalpes": global timeout reached: 5m0s\n')  # fmt: skip
    world.drain = (1, "node/vm2 cordoned\nevicting pod aeroalpes/app-1\n", stderr)
    world.cordoned.add("vm2")  # kubectl drain cordons first
    world.remotes["vm1"] = world.remote("vm1")
    report = world.run()
    reason = report.failed_reasons["vm2"]
    assert reason.startswith(
        "patch.prepare: drain of vm2 stopped after 300 s; pods still there: app-1 (refused by their PodDisruptionBudget"
    )
    assert "vm2 stays cordoned" in reason and "k3s: node vm2: Ready, cordoned" in reason
    assert not world.sent("vm2", "apt-get -q -y") and world.finished == []


def test_the_last_ready_node_is_not_drained(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    world.hosts = {
        "vm1": world.hosts["vm1"],
        **{n: {**world.hosts[n], "groups": ["redis"]} for n in ("vm2", "vm3")},
    }
    world.remotes.update({n: world.remote(n) for n in world.hosts})
    report = world.run()
    assert report.ok, report.failed_reasons
    assert "drain" not in steps(world, "vm1") and "vm1: vm1 is the last Ready k3s node" not in report.notes
    assert any("vm1 is the last Ready k3s node: not drained" in n for n in report.notes)
    assert [h for h, w in world.log if w == "upgrade"] == ["vm2", "vm3", "vm1"]


def test_dry_run_lists_moves_packages_and_reboots_and_changes_nothing(world: World) -> None:
    world.reboot_required = {"vm1"}
    report = world.run(dry_run=True)
    assert report.ok, report.failed_reasons
    rows = {r.host: r.diff for r in report.rows if r.task == "patch.plan"}
    assert "~ hand over Redis master vm2:7000 to its replica\n~ cordon and drain node vm2\n" in rows["vm2"]
    assert (
        "~ apt-get update && apt-get -y upgrade: 2 packages\n  ~ libssl3 3.0.11-1~deb12u1 -> 3.0.11-1~deb12u2"
        in rows["vm2"]
    )
    assert "kept back (full-upgrade would take them): linux-image-amd64" in rows["vm2"]
    assert "reboot only if the upgrade asks for one" in rows["vm2"]
    assert "~ reboot (/var/run/reboot-required exists" not in rows["vm1"]  # the fixture's simulation has none
    for host in ("vm1", "vm2", "vm3"):
        assert not world.sent(host, "set -e") and not world.sent(host, "kubectl drain")
    assert [w for _, w in world.log] == ["plan"] * 3 and world.cluster.events == []


def test_a_host_with_nothing_to_do_is_left_alone_so_a_second_run_changes_nothing(world: World) -> None:
    world.up_to_date = {"vm2", "vm3"}
    world.reboot_required = {"vm3"}  # a reboot pending from an earlier upgrade: vm3 still has to go
    report = world.run()
    assert report.ok, report.failed_reasons
    assert steps(world, "vm2") == [] and not world.sent("vm2", "apt-get -q -y") and world.cluster.events
    look = next(r for r in report.rows if r.host == "vm2" and r.task == "patch.look")
    assert not look.changed and "up to date: no package to upgrade" in look.diff
    assert "reboot" in steps(world, "vm3") and "upgrade" in steps(world, "vm1")
    world.log.clear()
    world.up_to_date, world.reboot_required = {"vm1", "vm2", "vm3"}, set()
    world.cluster.events.clear()
    again = world.run()
    assert again.ok and not again.changed, again.failed_reasons
    assert world.log == [] and world.cluster.events == [] and world.finished == ["done", "done"]


def test_a_node_left_cordoned_by_a_stopped_run_is_patched_again_and_uncordoned(world: World) -> None:
    world.up_to_date = {"vm1", "vm2", "vm3"}
    world.cordoned.add("vm3")
    report = world.run()
    assert report.ok, report.failed_reasons
    assert steps(world, "vm2") == [] and steps(world, "vm1") == []
    assert steps(world, "vm3")[-2:] == ["upgrade", "uncordon"] and not world.cordoned


def test_after_a_reboot_kube_system_is_available_again_before_the_next_host(world: World) -> None:
    """A server's reboot takes the API away and metrics-server stays unready a while after: the next host
    goes down only once kube-system's Deployments are available again."""
    world.data["patch_reboot"] = "always"
    original, unready_at = world.add_ons, []

    def add_ons() -> list[dict[str, object]]:
        if ("vm2", "reboot") in world.log and len(unready_at) < 3:
            unready_at.append(len(world.log))  # where the run was when it saw metrics-server unready
            world.add_ons_unready["metrics-server"] = 1
        return original()

    world.add_ons = add_ons  # type: ignore[method-assign]
    report = world.run()
    assert report.ok, report.failed_reasons
    first_of_vm3 = next(i for i, (h, _) in enumerate(world.log) if h == "vm3")
    assert len(unready_at) == 3 and all(i <= first_of_vm3 for i in unready_at)
    (reboot,) = [r for r in report.rows if (r.host, r.task) == ("vm2", "patch.reboot")]
    assert "kube-system available" in reboot.diff


def test_kube_system_that_never_comes_back_stops_the_run_before_the_next_host(world: World) -> None:
    world.data["patch_reboot"] = "always"
    original = world.add_ons

    def add_ons() -> list[dict[str, object]]:
        if ("vm2", "reboot") in world.log:
            world.add_ons_unready["metrics-server"] = 1
        return original()

    world.add_ons = add_ons  # type: ignore[method-assign]
    report = world.run()
    why = report.failed_reasons["vm2"]
    assert "kube-system not available again" in why and "metrics-server: 0/1 replicas available" in why
    assert not [w for h, w in world.log if h == "vm3"]  # never touched
