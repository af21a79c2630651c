"""Parsers against real Redis 7.0.15 output (tests/unit/fixtures/redis, see its README), and observe() with a
fake connect(address, port) factory."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tasks.redis.errors import ClusterParseError
from tasks.redis.findings import findings
from tasks.redis.observe import Access, observe
from tasks.redis.parse import (
    ClusterNode,
    SlotMigration,
    parse_cluster_info,
    parse_cluster_nodes,
    parse_cluster_shards,
    parse_info,
)
from tasks.redis.plan import plan_layout
from tasks.redis.reconcile import plan_actions
from tasks.redis.resp import Unreachable, error_reply
from tasks.redis.slots import SlotRange
from tasks.redis.topology import consolidate

FIXTURES = Path(__file__).parent / "fixtures" / "redis"
MANIFEST = json.loads((FIXTURES / "manifest.json").read_text())
P, R = MANIFEST["ports"]
IDS: dict[str, str] = MANIFEST["ids"]
LABEL = {v: k for k, v in IDS.items()}


def nodes(name: str) -> dict[str, ClusterNode]:
    """label (lab1:P ...) -> node, from a captured CLUSTER NODES."""
    parsed = parse_cluster_nodes((FIXTURES / f"{name}.nodes.txt").read_text())
    return {LABEL.get(n.node_id, n.node_id): n for n in parsed}


def shards_json(name: str) -> Any:
    return json.loads((FIXTURES / f"{name}.shards.json").read_text())


def lab(i: int, port: int) -> str:
    return f"lab{i}:{port}"


# --------------------------------------------------------------------------------------- CLUSTER NODES


def test_healthy_cluster_nodes() -> None:
    got = nodes("healthy")
    assert len(got) == 6
    me = got[lab(1, P)]
    assert me.myself and me.is_master and me.flags == ("myself", "master")
    assert (me.ip, me.port, me.bus_port, me.hostname) == ("127.0.0.1", P, P + 10000, None)
    assert {k: [str(r) for r in n.slots] for k, n in got.items() if n.is_master} == {
        lab(1, P): ["0-5460"],
        lab(2, P): ["5461-10922"],
        lab(3, P): ["10923-16383"],
    }
    # rotated replicas: host i's second instance follows the master of host i-1
    assert {k: LABEL[n.master_id or ""] for k, n in got.items() if n.is_replica} == {
        lab(1, R): lab(3, P),
        lab(2, R): lab(1, P),
        lab(3, R): lab(2, P),
    }
    assert all(n.connected and not n.failed and not n.pfail and not n.migrations for n in got.values())
    assert all(n.master_id is None for n in got.values() if n.is_master)


def test_replica_view_has_myself_slave() -> None:
    me = nodes("healthy-replica")[lab(2, R)]
    assert me.flags == ("myself", "slave") and me.role == "replica"
    assert me.master_id == IDS[lab(1, P)] and me.slots == ()


def test_flags_handshake_nofailover_hostname() -> None:
    got = nodes("flags")
    handshake = [n for n in got.values() if n.handshake]
    assert len(handshake) == 1
    hs = handshake[0]
    assert (hs.ip, hs.port, hs.bus_port, hs.link_state) == ("127.0.0.1", 9, 10009, "disconnected")
    assert hs.node_id not in LABEL
    assert got[lab(1, R)].nofailover and got[lab(1, R)].flags == ("slave", "nofailover")
    me = got[lab(1, P)]
    assert me.hostname == "lab1.example" and me.endpoint == f"127.0.0.1:{P}"
    assert nodes("flags-peer")[lab(1, P)].hostname == "lab1.example"


def test_migration_markers() -> None:
    src = nodes("migrating-source")[lab(1, P)]
    assert src.slots == (SlotRange(0, 5460),)
    assert src.migrations == (SlotMigration(100, "migrating", IDS[lab(2, P)]),)
    dst = nodes("migrating-target")[lab(2, P)]
    assert dst.slots == (SlotRange(5461, 10922),)
    assert dst.migrations == (SlotMigration(100, "importing", IDS[lab(1, P)]),)
    # markers are only shown for myself: the source as seen by the target has none
    assert nodes("migrating-target")[lab(1, P)].migrations == ()
    assert all(not n.migrations for n in nodes("migrating-other").values())


def test_single_slots_after_migration_and_pfail() -> None:
    got = nodes("pfail")
    assert [str(r) for r in got[lab(2, P)].slots] == ["100", "5461-10922"]
    assert got[lab(2, P)].slot_count == 5463
    assert [str(r) for r in got[lab(1, P)].slots] == ["0-99", "101-5460"]
    lab3 = [got[lab(3, P)], got[lab(3, R)]]
    pfail = [n for n in lab3 if n.pfail]
    assert pfail and all(n.flags[-1] == "fail?" and not n.failed for n in pfail)
    assert all(not n.connected and n.ping_sent > 0 for n in lab3)


def test_failed_and_failover() -> None:
    failed = nodes("failed")
    assert failed[lab(3, P)].failed and failed[lab(3, P)].flags == ("master", "fail")
    assert failed[lab(3, P)].slots == (SlotRange(10923, 16383),)
    assert failed[lab(3, R)].flags == ("slave", "fail")
    after = nodes("failed-after-failover")
    assert after[lab(1, R)].is_master and after[lab(1, R)].slots == (SlotRange(10923, 16383),)
    assert after[lab(3, P)].failed and after[lab(3, P)].slots == ()
    assert after[lab(1, R)].config_epoch > failed[lab(3, P)].config_epoch
    swapped = nodes("failover")
    assert swapped[lab(3, P)].is_replica and swapped[lab(3, P)].master_id == IDS[lab(1, R)]
    own = nodes("failover-old-master")[lab(3, P)]
    assert own.flags == ("myself", "slave") and own.master_id == IDS[lab(1, R)]


def test_noaddr_and_unannounced_fresh_node() -> None:
    got = parse_cluster_nodes((FIXTURES / "noaddr.nodes.txt").read_text())
    noaddr = [n for n in got if "noaddr" in n.flags]
    assert len(noaddr) == 4
    assert all(n.noaddr and n.ip == "" and n.port == 0 and n.bus_port == 0 for n in noaddr)
    fresh = parse_cluster_nodes((FIXTURES / "fresh-unannounced.nodes.txt").read_text())[0]
    assert (fresh.ip, fresh.port, fresh.bus_port) == ("", 27000, 37000) and fresh.noaddr
    assert fresh.config_epoch == 0 and fresh.myself


def test_aux_fields_and_ipv6_and_bytes() -> None:
    line = (
        b"e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca ::1:30001@40001,host-a,shard-id=abc,tls-port=0 "
        b"myself,master - 0 0 1 connected 0-5460 7000"
    )
    node = parse_cluster_nodes(line)[0]
    assert (node.ip, node.port, node.bus_port, node.hostname) == ("::1", 30001, 40001, "host-a")
    assert dict(node.aux) == {"shard-id": "abc", "tls-port": "0"}
    assert node.endpoint == "[::1]:30001"
    assert [str(r) for r in node.slots] == ["0-5460", "7000"]
    # Redis < 4 had no @cport; an empty hostname field (",") means none
    old = parse_cluster_nodes("a 10.0.0.1:7000, master - 0 0 0 connected")[0]
    assert old.bus_port == 17000 and old.hostname is None


@pytest.mark.parametrize(
    "bad",
    [
        "abc 127.0.0.1:7000@17000 master - 0 0",  # too few fields
        "abc 127.0.0.1@17000 master - 0 0 0 connected",  # no port
        "abc 127.0.0.1:7000@17000 master - 0 0 0 connected 5-x",  # bad slot
        "abc 127.0.0.1:7000@17000 master - 0 0 0 connected 16384",  # slot out of range
        "abc 127.0.0.1:7000@17000 master - 0 0 0 connected [5-?-def]",  # bad marker
        "abc 127.0.0.1:7000@17000 master - zero 0 0 connected",  # bad counter
    ],
)
def test_malformed_nodes_lines(bad: str) -> None:
    with pytest.raises(ClusterParseError):
        parse_cluster_nodes(bad)


# ---------------------------------------------------------------------------------------- CLUSTER INFO


def test_cluster_info() -> None:
    healthy = parse_cluster_info((FIXTURES / "healthy.info.txt").read_bytes())
    assert healthy.ok and (healthy.slots_assigned, healthy.slots_ok, healthy.known_nodes, healthy.size) == (
        16384,
        16384,
        6,
        3,
    )
    assert healthy.fields["cluster_stats_messages_sent"].isdigit()
    failed = parse_cluster_info((FIXTURES / "failed.info.txt").read_text())
    assert not failed.ok
    assert (failed.slots_ok, failed.slots_fail, failed.slots_pfail) == (10923, 5461, 0)
    after = parse_cluster_info((FIXTURES / "failed-after-failover.info.txt").read_text())
    assert after.ok and after.current_epoch > failed.current_epoch
    fresh = parse_cluster_info((FIXTURES / "fresh.info.txt").read_text())
    assert fresh.state == "fail" and fresh.slots_assigned == 0 and fresh.known_nodes == 1
    assert parse_cluster_info({"cluster_state": "ok", "cluster_size": 3}).size == 3  # redis-py dict shape
    with pytest.raises(ClusterParseError):
        parse_cluster_info("role:master\r\n")


def test_info_replication() -> None:
    text = "# Replication\r\nrole:slave\r\nmaster_host:127.0.0.1\r\nmaster_link_status:up\r\n\r\n"
    assert parse_info(text) == {"role": "slave", "master_host": "127.0.0.1", "master_link_status": "up"}


# -------------------------------------------------------------------------------------- CLUSTER SHARDS


def to_bytes(value: Any) -> Any:
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, dict):
        return {to_bytes(k): to_bytes(v) for k, v in value.items()}
    if isinstance(value, list):
        return [to_bytes(v) for v in value]
    return value


def to_flat(value: Any) -> Any:
    """The raw RESP2 shape: maps as flat [k, v, ...] lists."""
    if isinstance(value, dict):
        return [x for k, v in value.items() for x in (k, to_flat(v))]
    if isinstance(value, list):
        return [to_flat(v) for v in value]
    return value


def summary(shards: Any) -> list[tuple[list[str], list[tuple[str, str, str]]]]:
    return sorted(
        ([str(r) for r in s.slots], [(LABEL.get(n.node_id, n.node_id), n.role, n.health) for n in s.nodes])
        for s in shards
    )


def test_cluster_shards_healthy_in_every_shape() -> None:
    raw = shards_json("healthy")
    expected = [
        (["0-5460"], [(lab(1, P), "master", "online"), (lab(2, R), "replica", "loading")]),
        (["10923-16383"], [(lab(3, P), "master", "online"), (lab(1, R), "replica", "loading")]),
        (["5461-10922"], [(lab(2, P), "master", "online"), (lab(3, R), "replica", "loading")]),
    ]
    decoded = parse_cluster_shards(raw)  # Redis(decode_responses=True)
    assert summary(decoded) == expected
    assert summary(parse_cluster_shards(to_bytes(raw))) == expected  # Redis(decode_responses=False)
    mixed = [
        {"slots": s["slots"], "nodes": to_bytes(s["nodes"])} for s in raw
    ]  # RedisCluster.cluster_shards()
    assert summary(parse_cluster_shards(mixed)) == expected
    assert summary(parse_cluster_shards(to_flat(to_bytes(raw)))) == expected  # raw RESP2
    legacy = [{"slots": [tuple(s["slots"])], "nodes": s["nodes"]} for s in raw]  # slots as (start, end)
    assert summary(parse_cluster_shards(legacy)) == expected
    shard = next(s for s in decoded if s.master and s.master.node_id == IDS[lab(1, P)])
    assert shard.master is not None and shard.master.address == f"127.0.0.1:{P}"
    assert [n.node_id for n in shard.replicas] == [IDS[lab(2, R)]]


def test_cluster_shards_failed_and_migrated() -> None:
    failed = summary(parse_cluster_shards(shards_json("failed")))
    assert (
        ["100", "5461-10922"],
        [(lab(2, P), "master", "online"), (lab(3, R), "replica", "fail")],
    ) in failed
    shard3 = next(s for s in failed if s[0] == ["10923-16383"])
    assert (lab(3, P), "master", "fail") in shard3[1]
    with pytest.raises(ClusterParseError):
        parse_cluster_shards([{"slots": [1], "nodes": []}])


# ------------------------------------------------------------------------------ observe (fake connect)


PASSWORD = "pw-Secret-42"


class FakeClient:
    def __init__(self, replies: dict[tuple[str, ...], Any] | Exception) -> None:
        self.replies = replies
        self.closed = False

    def execute_command(self, *args: Any, **options: Any) -> Any:
        if isinstance(self.replies, Exception):
            raise self.replies
        reply = self.replies[tuple(str(a).upper() for a in args)]
        if isinstance(reply, Exception):
            raise reply
        return reply

    def pipeline(self, transaction: bool = True) -> Any:
        raise NotImplementedError

    def close(self) -> None:
        self.closed = True


def capture_replies(name: str, label: str) -> dict[tuple[str, ...], Any]:
    return {
        ("CLUSTER", "MYID"): IDS[label].encode(),
        ("CLUSTER", "INFO"): (FIXTURES / f"{name}.info.txt").read_bytes(),
        ("CLUSTER", "NODES"): (FIXTURES / f"{name}.nodes.txt").read_bytes(),
        ("INFO", "REPLICATION"): b"# Replication\r\nrole:master\r\nconnected_slaves:1\r\n",
    }


LAYOUT = plan_layout([("lab1", "127.0.0.1"), ("lab2", "127.0.0.2"), ("lab3", "127.0.0.3")], P, R)


def test_observe_records_failures_instead_of_raising() -> None:
    clients: list[FakeClient] = []

    def connect(address: str, port: int) -> FakeClient:
        label = f"lab{address[-1]}:{port}"
        if label == lab(1, P):
            client = FakeClient(capture_replies("healthy", label))
        elif label == lab(2, P):
            client = FakeClient(error_reply("WRONGPASS invalid username-password pair or user is disabled."))
        elif label == lab(2, R):
            client = FakeClient(Unreachable(f"cannot connect to {address}:{port}: Connection refused"))
        elif label == lab(3, P):
            client = FakeClient(error_reply("ERR This instance has cluster support disabled"))
        elif label == lab(3, R):
            client = FakeClient(
                error_reply(
                    "ERR AUTH <password> called without any password configured for the default user. "
                    "Are you sure your configuration is correct?"
                )
            )
        else:  # an error text that happens to contain the password must not leak it
            client = FakeClient(error_reply(f"ERR weird reply mentioning {PASSWORD}"))
        clients.append(client)
        return client

    obs = observe(LAYOUT, PASSWORD, connect=connect)
    by_label = {s.label: s for s in obs.instances}
    assert by_label[lab(1, P)].access is Access.OK
    assert by_label[lab(1, P)].node_id == IDS[lab(1, P)] and by_label[lab(1, P)].info is not None
    assert by_label[lab(1, P)].myself is not None and by_label[lab(1, P)].myself.slots == (
        SlotRange(0, 5460),
    )
    assert by_label[lab(2, P)].access is Access.WRONG_PASSWORD
    assert "the redis password is wrong" in (by_label[lab(2, P)].error or "")
    assert by_label[lab(2, R)].access is Access.UNREACHABLE
    assert by_label[lab(3, P)].access is Access.NOT_CLUSTER
    assert by_label[lab(3, R)].access is Access.NO_PASSWORD
    assert by_label[lab(1, R)].access is Access.ERROR
    assert PASSWORD not in repr(obs) and "<redacted>" in (by_label[lab(1, R)].error or "")
    assert all(c.closed for c in clients)
    # findings name each instance; plan_actions refuses, wrong password first
    found = {f.what: f for f in findings(LAYOUT, obs)}
    assert found[f"{lab(2, P)}: access"].actual.startswith("wrong-password")
    with pytest.raises(Exception, match=r"^the redis password is wrong for lab2:\d+; nothing was changed"):
        plan_actions(LAYOUT, obs)


def test_consolidate_uses_peer_views_for_unreachable_instances() -> None:
    def connect(address: str, port: int) -> FakeClient:
        label = f"lab{address[-1]}:{port}"
        if label == lab(1, P):  # the only captured view; everyone else is unreachable here
            return FakeClient(capture_replies("failed-after-failover", label))
        return FakeClient(Unreachable("cannot connect to lab: Connection refused"))

    obs = observe(LAYOUT, PASSWORD, connect=connect)
    topo = consolidate(LAYOUT, obs)
    lab3p = topo.planned(LAYOUT.shards[2].master)
    assert lab3p is not None and lab3p.down and lab3p.slots == frozenset()
    found = {(f.severity.value, f.what): f for f in findings(LAYOUT, obs)}
    assert found[("drift", "shard 3: master")].actual == f"{lab(1, R)} (roles swapped inside the shard; safe)"
    assert found[("error", f"{lab(1, R)}: replicas")].actual == "none"
