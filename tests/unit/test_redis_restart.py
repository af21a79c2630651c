"""Planning the handover before a restart, and telling when restarted instances are back (pure parts)."""

from __future__ import annotations

import pytest

from tasks.redis.config import instance_configs
from tasks.redis.errors import PlanError
from tasks.redis.observe import observe
from tasks.redis.plan import plan_layout
from tasks.redis.reconcile import plan_handover
from tasks.redis.restart import back_in_cluster
from tests.fakes.redis_cluster import FakeRedisCluster

PASSWORD = "handover-test-password-42"
LAYOUT = plan_layout([(f"vm{i}", f"198.18.0.1{i}") for i in (1, 2, 3)])


def cluster() -> FakeRedisCluster:
    return FakeRedisCluster(LAYOUT, instance_configs(LAYOUT), PASSWORD)


def look(c: FakeRedisCluster):  # type: ignore[no-untyped-def]
    return observe(LAYOUT, PASSWORD, connect=c.connector(PASSWORD))


def test_only_masters_holding_slots_are_handed_over_each_to_its_replica_on_another_host() -> None:
    c = cluster()
    plan = plan_handover(LAYOUT, look(c), ["198.18.0.12:7000", "198.18.0.12:7003"])
    assert [a.description for a in plan] == [
        "FAILOVER on vm3:7003: it takes over shard 2 from vm2:7000 before that one restarts"
    ]
    assert plan[0].handover and not plan[0].force


def test_a_replica_that_restarts_too_or_is_not_in_sync_is_no_candidate() -> None:
    c = cluster()
    c.by_label("vm2:7003").alive = False  # vm1:7000's only replica
    with pytest.raises(PlanError, match=r"vm1:7000 masters 5461 slots and has no in-sync replica .*vm2:7003"):
        plan_handover(LAYOUT, look(c), ["198.18.0.11:7000"])
    c = cluster()
    with pytest.raises(PlanError, match="no in-sync replica"):  # both copies of shard 1 at once: refused
        plan_handover(LAYOUT, look(c), ["198.18.0.11:7000", "198.18.0.12:7003"])


def test_restarted_instances_are_back_when_they_answer_the_cluster_is_ok_and_replicas_are_in_sync() -> None:
    c = cluster()
    assert back_in_cluster(look(c), ["198.18.0.12:7003"]) is None
    c.by_label("vm2:7003").alive = False
    assert back_in_cluster(look(c), ["198.18.0.12:7003"]).startswith("198.18.0.12:7003 does not answer")  # type: ignore[union-attr]
    c.by_label("vm2:7003").alive = True
    c.by_label("vm1:7000").alive = False  # its master: the replica is up but not in sync, the cluster fails
    assert "cluster is not ok" in (back_in_cluster(look(c), ["198.18.0.12:7003"]) or "")
