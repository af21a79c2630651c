"""The redis play on the lab: real redis-server instances, real failover, real repair."""

from __future__ import annotations

import os
import re
import shlex
import time
from pathlib import Path

import pytest
import redis
import yaml

from tests.lab.conftest import LabEnv
from tests.lab.redis_helpers import (
    Writer,
    addresses,
    connects,
    file_digest,
    layout_table,
    password,
    planned_table,
    read_keys,
    run_and_kill,
    write_keys,
)
from tests.lab.test_01_base import ProcessSampler, copy_inventory

pytestmark = pytest.mark.lab


def test_redis_forms_the_planned_layout_then_changes_nothing(lab: LabEnv) -> None:
    hosts = lab.hosts
    first = lab.nr("run", "redis", "--json")
    assert first.code == 0, first.stdout + first.stderr
    doc = first.json
    cluster = next(r for r in doc["results"] if r["task"] == "redis.cluster")
    assert "ADDSLOTSRANGE 0 5460" in cluster["diff"] and "REPLICATE" in cluster["diff"]
    assert layout_table(lab, hosts) == planned_table(hosts)
    second = lab.nr("run", "redis", "--json")
    assert second.code == 0
    assert second.json["changed"] == 0, second.json
    assert {h: s["commands"] for h, s in second.json["ssh"].items()} == {h: 1 for h in hosts}
    for host in hosts:
        out = lab.exec(host, "stat -c '%a %U:%G' /etc/redis/redis-7000.conf /etc/redis/redis-7003.conf; "
                             "systemctl is-enabled redis-server; systemctl is-active redis-server@7000 redis-server@7003 || true")  # fmt: skip
        assert out.split("\n")[:5] == ["640 redis:redis", "640 redis:redis", "disabled", "active", "active"]
    check = lab.nr("check", "redis", "--json")
    assert check.code == 0, [c for c in check.json["checks"] if not c["ok"]]
    assert lab.nr("drift", "redis").code == 0


def test_password_never_on_a_command_line_or_in_output(lab: LabEnv) -> None:
    secret = password(lab)
    with ProcessSampler(lab, lab.hosts[0]) as sampler:
        res = lab.nr("run", "redis", "--json")
        dry = lab.nr("run", "redis", "--dry-run")
        drift = lab.nr("drift", "redis", "--json")
    assert res.code == 0 and dry.code == 0 and drift.code == 0
    for blob in (res.stdout, res.stderr, dry.stdout, dry.stderr, drift.stdout, *sampler.samples):
        assert secret not in blob
    assert any("redis-server" in s for s in sampler.samples)  # the sampler saw the instances' command lines


def test_failover_drift_and_repair(lab: LabEnv) -> None:
    hosts = lab.hosts
    write_keys(lab, hosts[0], 1000)
    victim = hosts[1]
    lab.stop(victim)
    try:
        # the cluster keeps serving: node-timeout (5 s) + election, then every key is readable
        assert read_keys(lab, hosts[0], 1000, timeout=60) == []
    finally:
        lab.start(victim)
    # the firewall came back with the host, before Redis (a unit of its own, wanted by sysinit.target)
    assert "tcp dport { 7000, 7003 } drop" in lab.exec(victim, "nft list table inet nr_redis")
    # the old master of shard 2 came back as a replica: roles are swapped inside the shard
    deadline = time.monotonic() + 60
    while (
        layout_table(lab, hosts).get((victim, 7000)) != "replica of shard 2" and time.monotonic() < deadline
    ):
        time.sleep(1)
    drift = lab.nr("drift", "redis", "--json")
    assert drift.code == 1, drift.stdout + drift.stderr
    items = drift.json["drift"]
    swapped = [d for d in items if d["what"] == "shard 2: master"]
    assert swapped and swapped[0]["expected"] == f"{victim}:7000"
    assert swapped[0]["actual"].startswith(f"{hosts[2]}:7003")
    assert swapped[0]["fix"].split("  # ")[0] == shlex.join(["nr", "run", "redis", "-i", str(lab.inventory)])
    repair = lab.nr("run", "redis", "--json")
    assert repair.code == 0, repair.stdout + repair.stderr
    cluster = next(r for r in repair.json["results"] if r["task"] == "redis.cluster")
    assert f"FAILOVER on {victim}:7000" in cluster["diff"]
    assert layout_table(lab, hosts) == planned_table(hosts)
    assert lab.nr("drift", "redis").code == 0
    assert read_keys(lab, hosts[0], 1000) == []


def test_wrong_password_is_refused_and_changes_nothing(lab: LabEnv, tmp_path: Path) -> None:
    inv = copy_inventory(lab, tmp_path)
    wrong = tmp_path / "secrets" / "redis_password"
    wrong.write_text("not-the-right-password-123\n")
    os.chmod(wrong, 0o600)
    before = {h: file_digest(lab, h, "/etc/redis/redis-7000.conf") for h in lab.hosts}
    res = lab.nr("run", "redis", inventory=inv)
    assert res.code == 2, res.stdout + res.stderr
    assert "password" in res.stderr and "is refused by the running instance(s)" in res.stderr
    assert "nothing was changed" in res.stderr
    assert "not-the-right-password-123" not in res.stdout + res.stderr
    assert {h: file_digest(lab, h, "/etc/redis/redis-7000.conf") for h in lab.hosts} == before
    site = lab.nr("run", "site", inventory=inv)  # the site play stops before base touches anything
    assert site.code == 2


def test_bad_redis_inventory_is_refused(lab: LabEnv, tmp_path: Path) -> None:
    inv = copy_inventory(lab, tmp_path)
    groups = yaml.safe_load((inv / "groups.yaml").read_text())
    groups["redis"] = {"data": {"redis_ports": [7000, 17000]}}
    (inv / "groups.yaml").write_text(yaml.safe_dump(groups))
    res = lab.nr("run", "redis", inventory=inv)
    assert res.code == 2
    assert "one is the other's cluster bus port" in res.stderr


def test_a_config_change_restarts_one_host_at_a_time_into_a_healthy_cluster(
    lab: LabEnv, tmp_path: Path
) -> None:
    hosts = lab.hosts
    write_keys(lab, hosts[0], 300, prefix="restart")
    inv = copy_inventory(lab, tmp_path)
    groups = yaml.safe_load((inv / "groups.yaml").read_text())
    groups["redis"]["data"]["redis_node_timeout"] = 6000
    (inv / "groups.yaml").write_text(yaml.safe_dump(groups))
    pids = {h: lab.exec(h, "systemctl show -p MainPID --value redis-server@7000").strip() for h in hosts}
    with Writer(lab, hosts[0]) as writer:  # issue 11 item 4: an application writing all along
        time.sleep(1)
        res = lab.nr("run", "redis", "--json", inventory=inv)
        time.sleep(1)
    assert res.code == 0, res.stdout[-3000:] + res.stderr
    restarts = [r["host"] for r in res.json["results"] if r["task"] == "redis.restart"]
    assert restarts == hosts  # in inventory order, each back in a healthy cluster before the next
    # every master handed its shard to its replica before its restart: no write failed, none was lost
    assert len(writer.acked) > 200, len(writer.acked)
    assert writer.failed == [], writer.failed[:5]
    assert writer.lost() == []
    handovers = "".join(r["diff"] for r in res.json["results"] if r["task"] == "redis.restart")
    assert handovers.count("before that one restarts") == 2 * len(hosts) - 1
    for h in hosts:
        assert lab.exec(h, "systemctl show -p MainPID --value redis-server@7000").strip() != pids[h]
        conf = lab.exec(h, "grep '^cluster-node-timeout' /etc/redis/redis-7000.conf").split()
        assert conf == ["cluster-node-timeout", "6000"]
    assert layout_table(lab, hosts) == planned_table(hosts)
    assert read_keys(lab, hosts[0], 300, prefix="restart") == []
    assert lab.nr("run", "redis", "--json", inventory=inv).json["changed"] == 0
    back = lab.nr("run", "redis")  # the shared inventory again (5000 ms) for the tests after this one
    assert back.code == 0, back.stdout[-2000:]


def test_a_restart_cut_short_by_a_kill_is_drift_and_the_next_run_does_it(lab: LabEnv, tmp_path: Path) -> None:
    """Issue 11 item 1: nr is killed after writing every host's config, as the rolling restart begins."""
    hosts = lab.hosts
    inv = copy_inventory(lab, tmp_path)
    groups = yaml.safe_load((inv / "groups.yaml").read_text())
    groups["redis"]["data"]["redis_node_timeout"] = 7000
    (inv / "groups.yaml").write_text(yaml.safe_dump(groups))
    run_and_kill(lab, ["run", "redis"], inv, "redis.restart")
    for h in hosts:  # every file says 7000 now
        assert lab.exec(h, "grep '^cluster-node-timeout' /etc/redis/redis-7003.conf").split()[1] == "7000"
    drift = lab.nr("drift", "redis", "--json", inventory=inv)
    assert drift.code == 1, drift.stdout + drift.stderr
    pending = {(d["host"], d["what"]) for d in drift.json["drift"] if d["what"].endswith("running config")}
    assert {(h, f"{h}:{p} running config") for h in hosts[1:] for p in (7000, 7003)} <= pending
    assert all(
        d["actual"] == "cluster-node-timeout 5000"
        for d in drift.json["drift"]
        if d["what"].endswith("config")
    )
    check = lab.nr("check", "redis", "--json", inventory=inv)
    assert check.code == 1
    assert {
        c["host"] for c in check.json["checks"] if not c["ok"] and c["name"].endswith("running config")
    } >= set(hosts[1:])
    again = lab.nr("run", "redis", "--json", inventory=inv)
    assert again.code == 0, again.stdout[-3000:] + again.stderr
    restarted = [r["host"] for r in again.json["results"] if r["task"] == "redis.restart"]
    assert restarted[-2:] == hosts[1:]
    assert lab.nr("drift", "redis", inventory=inv).code == 0
    assert layout_table(lab, hosts) == planned_table(hosts)
    back = lab.nr("run", "redis")  # the shared inventory again (5000 ms)
    assert back.code == 0, back.stdout[-2000:]


def test_config_set_at_run_time_fails_check_shows_in_drift_and_is_restarted(lab: LabEnv) -> None:
    hosts = lab.hosts
    target = addresses(lab)[hosts[1]]
    client = redis.Redis(host=target, port=7003, password=password(lab))
    client.config_set("appendonly", "no")
    client.close()
    check = lab.nr("check", "redis", "--json")
    assert check.code == 1
    failed = [(c["host"], c["name"], c["detail"]) for c in check.json["checks"] if not c["ok"]]
    assert failed == [(hosts[1], f"{hosts[1]}:7003 persistence", "appendonly no (expected appendonly yes)")]
    drift = lab.nr("drift", "redis", "--json")
    assert drift.code == 1
    assert [(d["host"], d["what"], d["actual"]) for d in drift.json["drift"]] == [
        (hosts[1], f"{hosts[1]}:7003 persistence", "appendonly no")
    ]
    repair = lab.nr("run", "redis", "--json")
    assert repair.code == 0, repair.stdout[-2000:]
    assert [(r["host"], r["task"]) for r in repair.json["results"] if r["task"] == "redis.restart"] == [
        (hosts[1], "redis.restart")
    ]
    assert lab.nr("check", "redis").code == 0


def test_the_firewall_lets_only_the_site_reach_the_redis_ports(lab: LabEnv, tmp_path: Path) -> None:
    """Issue 10 item 13: the bus ports from the Redis hosts only, the client ports from the site."""
    hosts = lab.hosts
    addr = addresses(lab)
    outsider = addr[hosts[0]].rsplit(".", 1)[0] + ".70"  # a container on the lab network, no Redis host
    target = addr[hosts[1]]
    assert connects(lab, outsider, target, 7000)  # the lab inventory lets the lab network (the app) in
    assert not connects(lab, outsider, target, 17000)  # the cluster bus: Redis hosts only
    lab.exec(hosts[0], f"python3 -c \"import socket; socket.create_connection(('{target}', 17000), 3)\"")
    inv = copy_inventory(lab, tmp_path)
    defaults = yaml.safe_load((inv / "defaults.yaml").read_text())
    defaults["data"]["redis_clients"] = []
    (inv / "defaults.yaml").write_text(yaml.safe_dump(defaults))
    narrow = lab.nr("run", "redis", "--json", inventory=inv)
    assert narrow.code == 0, narrow.stdout[-2000:] + narrow.stderr
    assert not connects(lab, outsider, target, 7000)  # now only the site's hosts, pods and nr's machine
    assert lab.nr("check", "redis", inventory=inv).code == 0  # nr itself (the lab's gateway) still gets in
    # a rule removed by hand is drift, a failed check, and put back by the next run
    chain = lab.exec(hosts[1], "nft -a list chain inet nr_redis input")
    handle = re.search(r"^\s*tcp dport \{ 7000, 7003 \} drop # handle (\d+)$", chain, re.M)
    assert handle, chain
    lab.exec(hosts[1], f"nft delete rule inet nr_redis input handle {handle.group(1)}")
    drift = lab.nr("drift", "redis", "--json", inventory=inv)
    assert drift.code == 1
    assert [(d["host"], d["what"], d["expected"], d["actual"]) for d in drift.json["drift"]] == [
        (hosts[1], "nftables rule", "tcp dport { 7000, 7003 } drop", "missing")
    ]
    assert lab.nr("check", "redis", inventory=inv).code == 1
    assert lab.nr("run", "redis", inventory=inv).code == 0
    assert lab.nr("drift", "redis", inventory=inv).code == 0
    assert lab.nr("run", "redis").code == 0  # the shared inventory's table again
    assert connects(lab, outsider, target, 7000)
