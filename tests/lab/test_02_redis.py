"""The redis play on the lab: real redis-server instances, real failover, real repair."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import yaml

from tests.lab.conftest import LabEnv
from tests.lab.redis_helpers import file_digest, layout_table, password, planned_table, read_keys, write_keys
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
    assert swapped[0]["fix"] == "nr run redis"
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
    res = lab.nr("run", "redis", "--json", inventory=inv)
    assert res.code == 0, res.stdout[-3000:] + res.stderr
    restarts = [r["host"] for r in res.json["results"] if r["task"] == "redis.restart"]
    assert restarts == hosts  # in inventory order, each back in a healthy cluster before the next
    for h in hosts:
        assert lab.exec(h, "systemctl show -p MainPID --value redis-server@7000").strip() != pids[h]
        conf = lab.exec(h, "grep '^cluster-node-timeout' /etc/redis/redis-7000.conf").split()
        assert conf == ["cluster-node-timeout", "6000"]
    assert layout_table(lab, hosts) == planned_table(hosts)
    assert read_keys(lab, hosts[0], 300, prefix="restart") == []
    assert lab.nr("run", "redis", "--json", inventory=inv).json["changed"] == 0
    back = lab.nr("run", "redis")  # the shared inventory again (5000 ms) for the tests after this one
    assert back.code == 0, back.stdout[-2000:]
