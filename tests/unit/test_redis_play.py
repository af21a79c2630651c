"""The redis play's orchestration against scripted hosts and a fake cluster: round trips, rolling restarts
(failover first, one host at a time, halting), an unfinished restart remembered, check and drift sharing
their rules, and bad input refused before any host is touched."""

from __future__ import annotations

import pytest
from rich.console import Console

from nr.report import RunReport
from nr.runner import Refused, execute
from tests.fakes.remote import Reply
from tests.unit.redis_scripted import NAMES, PASSWORD, Site, configs


def test_a_converged_site_is_one_round_trip_per_host_and_changes_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    s = Site(monkeypatch)
    for h in NAMES:
        s.remotes[h].expect(s.facts(h))
    ctx, report = s.context()
    s.component().apply(ctx)
    assert report.ok and report.changed == 0, report.failed_reasons
    assert {h: len(r.scripts) for h, r in s.remotes.items()} == {h: 1 for h in NAMES}
    assert s.cluster.events == []
    assert [r.task for r in report.rows] == ["redis.install"] * 3 + ["redis.cluster"]


def test_a_config_change_restarts_host_by_host_after_handing_each_hosts_shards_over(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    s = Site(monkeypatch, data={"redis_node_timeout": 6000}, running={"redis_node_timeout": 5000})
    old = Site(monkeypatch, data={"redis_node_timeout": 5000}).site()
    new = s.site()
    for h in NAMES:
        s.remotes[h].expect(s.facts(h, old=old))
        s.expect_apply(h, lambda _, h=h: s.cluster.write_files(new.configs[h]) or "")  # type: ignore[misc]
        s.expect_restart(h)
    ctx, report = s.context()
    s.component().apply(ctx)
    assert report.ok, report.failed_reasons
    # every host: the masters it holds hand their shard to a replica on another host, then it restarts;
    # vm1's restarted master takes shard 1 back before vm2 restarts (vm2:7003 held it meanwhile)
    assert s.cluster.events == [
        ("failover", "vm2:7003"), ("restart", "vm1:7000"), ("restart", "vm1:7003"),
        ("failover", "vm3:7003"), ("failover", "vm1:7000"), ("restart", "vm2:7000"), ("restart", "vm2:7003"),
        ("failover", "vm1:7003"), ("failover", "vm2:7000"), ("restart", "vm3:7000"), ("restart", "vm3:7003"),
        ("failover", "vm3:7000"),  # the cluster step restores the planned master of shard 3
    ]  # fmt: skip
    assert [r.host for r in report.rows if r.task == "redis.restart"] == list(NAMES)
    assert all(n.config["cluster-node-timeout"] == "6000" for n in s.cluster.nodes.values())
    assert s.cluster.roles()["vm3:7000"] == "master 10923-16383"
    restart = next(r for r in report.rows if r.task == "redis.restart" and r.host == "vm2")
    assert (
        "FAILOVER on vm3:7003: it takes over shard 2 from vm2:7000 before that one restarts" in restart.diff
    )
    assert "cluster-node-timeout 5000 (file: 6000)" in restart.diff
    assert all(PASSWORD not in script for r in s.remotes.values() for script in r.scripts)


def test_a_restart_left_undone_is_drift_and_a_failed_check_then_the_next_run_does_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue 11 item 1: the files are new (an earlier run wrote them) but vm2 and vm3 still run the old ones."""
    s = Site(monkeypatch, data={"redis_node_timeout": 6000}, running={"redis_node_timeout": 5000})
    s.cluster.write_files(configs(s.site()))
    s.cluster.restart("vm1:7000")
    s.cluster.restart("vm1:7003")
    for mode in ("drift", "check"):
        for h in NAMES:
            s.remotes[h].expect(s.facts(h))
        ctx, report = s.context(dry_run=True, inventory_arg="my site")
        getattr(s.component(), mode)(ctx)
        rows = sorted((d.host, d.what, d.actual) for d in report.drift)
        assert rows == [
            (h, f"{h}:{p} running config", "cluster-node-timeout 5000")
            for h in ("vm2", "vm3")
            for p in (7000, 7003)
        ]
        failed = {(c.host, c.name) for c in report.checks if not c.ok}
        assert failed == {(h, f"{h}:{p} running config") for h in ("vm2", "vm3") for p in (7000, 7003)}
        command, note = report.drift[0].fix.split("  # ")  # runnable as printed: the note is a shell comment
        assert command == "nr run redis -i 'my site'" and note.startswith(
            "the run restarts it with its config"
        )
    for h in NAMES:
        s.remotes[h].expect(s.facts(h))
    for h in ("vm2", "vm3"):
        s.expect_restart(h)
    ctx, report = s.context()
    s.component().apply(ctx)
    assert report.ok, report.failed_reasons
    assert [e for e in s.cluster.events if e[0] == "restart"][2:] == [
        ("restart", f"{h}:{p}") for h in ("vm2", "vm3") for p in (7000, 7003)
    ]
    assert s.sent("vm1", "systemctl restart") == []


def test_restarts_stop_at_a_host_whose_restart_fails_and_the_cluster_step_is_skipped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    s = Site(monkeypatch, data={"redis_node_timeout": 6000}, running={"redis_node_timeout": 5000})
    s.cluster.write_files(configs(s.site()))
    for h in NAMES:
        s.remotes[h].expect(s.facts(h))
    s.expect_restart("vm1")
    s.remotes["vm2"].expect(
        Reply("systemctl restart", exited=1, stderr="Job for redis-server@7000.service failed.")
    )
    ctx, report = s.context()
    s.component().apply(ctx)
    assert report.failed_hosts == ["vm2"]
    assert "Job for redis-server@7000.service failed" in report.failed_reasons["vm2"]
    assert s.sent("vm3", "systemctl restart") == []  # vm3 keeps running its old config
    assert not [r for r in report.rows if r.task == "redis.cluster"]
    assert any("restarts stopped at vm2: vm3 after it" in n for n in report.notes)
    assert any("cluster step skipped: vm2 failed earlier" in n for n in report.notes)


def test_restarts_stop_at_a_host_that_does_not_come_back(monkeypatch: pytest.MonkeyPatch) -> None:
    s = Site(monkeypatch, data={"redis_node_timeout": 6000}, running={"redis_node_timeout": 5000})
    s.cluster.write_files(configs(s.site()))
    s.cluster.by_label("vm2:7003").comes_back = False
    for h in NAMES:
        s.remotes[h].expect(s.facts(h))
        s.expect_restart(h)
    ctx, report = s.context()
    s.component(restart_timeout=0.2).apply(ctx)
    assert report.failed_hosts == ["vm2"]
    assert "198.18.0.12:7003 does not answer" in report.failed_reasons["vm2"]
    assert "no further host is restarted" in report.failed_reasons["vm2"]
    assert s.sent("vm3", "systemctl restart") == []


def test_a_master_without_an_in_sync_replica_is_not_restarted(monkeypatch: pytest.MonkeyPatch) -> None:
    """Restarting vm1:7000 while its replica (vm2:7003) is down would fail every write to shard 1."""
    s = Site(monkeypatch, data={"redis_node_timeout": 6000}, running={"redis_node_timeout": 5000})
    s.cluster.write_files(configs(s.site()))
    s.cluster.by_label("vm2:7003").alive = False
    for h in NAMES:
        s.remotes[h].expect(s.facts(h))
    ctx, report = s.context()
    s.component().apply(ctx)
    assert report.failed_hosts == ["vm1"]
    assert "vm1:7000 masters 5461 slots and has no in-sync replica" in report.failed_reasons["vm1"]
    assert s.sent("vm1", "systemctl restart") == [] and s.cluster.events == []


def test_config_set_at_run_time_fails_check_shows_in_drift_and_is_restarted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    s = Site(monkeypatch)
    s.cluster.by_label("vm2:7003").config["appendonly"] = "no"  # CONFIG SET appendonly no
    for mode in ("check", "drift"):
        for h in NAMES:
            s.remotes[h].expect(s.facts(h))
        ctx, report = s.context(dry_run=True)
        getattr(s.component(), mode)(ctx)
        assert [(c.host, c.name, c.detail) for c in report.checks if not c.ok] == [
            ("vm2", "vm2:7003 persistence", "appendonly no (expected appendonly yes)")
        ]
        assert [(d.host, d.what, d.expected) for d in report.drift] == [
            ("vm2", "vm2:7003 persistence", "appendonly yes")
        ]
    for h in NAMES:
        s.remotes[h].expect(s.facts(h))
    s.expect_restart("vm2")
    ctx, report = s.context()
    s.component().apply(ctx)
    assert report.ok and s.cluster.by_label("vm2:7003").config["appendonly"] == "yes"
    # a replica restarts alone, without any handover: its master keeps serving
    assert s.cluster.events == [("restart", "vm2:7003")]


def test_a_dry_run_shows_the_restarts_and_changes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    s = Site(monkeypatch, data={"redis_node_timeout": 6000}, running={"redis_node_timeout": 5000})
    old = Site(monkeypatch, data={"redis_node_timeout": 5000}).site()
    for h in NAMES:
        s.remotes[h].expect(s.facts(h, old=old))
    ctx, report = s.context(dry_run=True)
    s.component().apply(ctx)
    assert {h: len(r.scripts) for h, r in s.remotes.items()} == {h: 1 for h in NAMES}
    assert s.cluster.events == []
    restarts = [r for r in report.rows if r.task == "redis.restart"]
    assert [r.host for r in restarts] == list(NAMES) and all(r.changed for r in restarts)
    assert (
        "~ restart redis-server@7000.service: it runs with cluster-node-timeout 5000 (file: 6000)"
        in restarts[0].diff
    )


def _cluster_reads(s: Site) -> int:
    """How many times the controller read the cluster's layout (CLUSTER NODES of one instance)."""
    first = next(iter(s.cluster.nodes.values())).label
    return sum(1 for label, args in s.cluster.commands if label == first and args[:2] == ("CLUSTER", "NODES"))


def _validated_run(s: Site) -> RunReport:
    """What ``nr run redis`` does: validate, then run with the reads ahead and the preflight."""
    ctx, report = s.context()
    component = s.component()
    assert component.validate(ctx) == []  # the inventory alone: no instance is asked here
    assert s.cluster.commands == []
    execute(ctx.nornir, ctx, report, [component], lambda c, cx: c.apply(cx), Console(quiet=True), "apply")
    return report


def test_a_no_op_run_observes_the_cluster_once_for_the_preflight_and_the_cluster_step(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("NR_READ_AHEAD", raising=False)
    s = Site(monkeypatch)
    for h in NAMES:
        s.remotes[h].expect(s.facts(h))
    report = _validated_run(s)
    assert report.ok and report.changed == 0, report.failed_reasons
    assert _cluster_reads(s) == 1  # before: once to validate the password, once again for the step


def test_a_password_the_instances_refuse_stops_the_run_before_anything_changes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    s = Site(monkeypatch)
    for node in list(s.cluster.nodes.values())[:2]:
        node.config["requirepass"] = "the-password-they-were-started-with"
    for h in NAMES:
        s.remotes[h].expect(s.facts(h))
    with pytest.raises(Refused) as err:
        _validated_run(s)
    (problem,) = err.value.problems
    assert (
        "is refused by the running instance(s) vm1:7000 (wrong-password), vm1:7003 (wrong-password)"
        in problem
    )
    assert "nothing was changed" in problem and PASSWORD not in problem
    assert s.cluster.events == []
    assert all(len(r.scripts) <= 1 for r in s.remotes.values())  # at most the read made ahead: no change
