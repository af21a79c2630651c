"""Pure planning: layout, slot split, redis.conf, membership changes, plan_actions and findings on synthetic
observations (CLUSTER NODES text built per instance and parsed by the real parser)."""

from __future__ import annotations

import hashlib
import itertools
import re
from dataclasses import replace
from pathlib import Path

import pytest

from tasks.redis.actions import AddSlots, Failover, Forget, MoveSlots, Replicate, SettleSlots
from tasks.redis.config import (
    InstanceConfig,
    RedisConfigOptions,
    instance_configs,
    render_redis_conf,
    render_redis_conf_redacted,
    validate_password,
)
from tasks.redis.errors import AccessError, PlanError
from tasks.redis.findings import Severity, findings
from tasks.redis.membership import Member, plan_membership, plan_slot_moves
from tasks.redis.observe import Access, ClusterObservation, InstanceState
from tasks.redis.parse import parse_cluster_info, parse_cluster_nodes
from tasks.redis.plan import Layout, RedisHost, plan_layout
from tasks.redis.reconcile import plan_actions
from tasks.redis.slots import SLOT_COUNT, SlotRange, even_slot_ranges
from tasks.redis.topology import consolidate, disagreements

PASSWORD = "s3cret-Pa55word-16"  # at least 16 characters (issue 10 item 9)


def hosts(n: int) -> list[RedisHost]:
    return [RedisHost(f"vm{i}", f"198.18.0.{10 + i}") for i in range(1, n + 1)]


def table(layout: Layout) -> list[tuple[str, str, int]]:
    return [(i.label, i.role, i.shard) for i in layout.instances]


# ------------------------------------------------------------------------------------------- layout


def test_three_hosts_exact_table() -> None:
    layout = plan_layout(hosts(3))
    assert table(layout) == [
        ("vm1:7000", "master", 1),
        ("vm1:7003", "replica", 3),
        ("vm2:7000", "master", 2),
        ("vm2:7003", "replica", 1),
        ("vm3:7000", "master", 3),
        ("vm3:7003", "replica", 2),
    ]
    assert [s.slots for s in layout.shards] == [
        (SlotRange(0, 5460),),
        (SlotRange(5461, 10922),),
        (SlotRange(10923, 16383),),
    ]
    assert layout.shards[0].replica.endpoint == "198.18.0.12:7003"
    assert layout.table() == "\n".join(
        [
            "| host | port 7000 | port 7003 |",
            "|------|-----------|-----------|",
            "| vm1 | master of shard 1 | replica of shard 3 |",
            "| vm2 | master of shard 2 | replica of shard 1 |",
            "| vm3 | master of shard 3 | replica of shard 2 |",
        ]
    )


def test_four_and_five_hosts_rotate_replicas() -> None:
    assert table(plan_layout(hosts(4))) == [
        ("vm1:7000", "master", 1),
        ("vm1:7003", "replica", 4),
        ("vm2:7000", "master", 2),
        ("vm2:7003", "replica", 1),
        ("vm3:7000", "master", 3),
        ("vm3:7003", "replica", 2),
        ("vm4:7000", "master", 4),
        ("vm4:7003", "replica", 3),
    ]
    five = plan_layout(hosts(5))
    assert table(five) == [
        ("vm1:7000", "master", 1),
        ("vm1:7003", "replica", 5),
        ("vm2:7000", "master", 2),
        ("vm2:7003", "replica", 1),
        ("vm3:7000", "master", 3),
        ("vm3:7003", "replica", 2),
        ("vm4:7000", "master", 4),
        ("vm4:7003", "replica", 3),
        ("vm5:7000", "master", 5),
        ("vm5:7003", "replica", 4),
    ]
    assert [str(s.slots[0]) for s in five.shards] == [
        "0-3276",
        "3277-6553",
        "6554-9829",
        "9830-13106",
        "13107-16383",
    ]
    for shard in five.shards:  # no master shares a host with its replica
        assert shard.master.host != shard.replica.host


def test_custom_ports() -> None:
    layout = plan_layout([("a", "10.0.0.1"), ("b", "10.0.0.2"), ("c", "10.0.0.3")], 6379, 6380)
    assert table(layout) == [
        ("a:6379", "master", 1),
        ("a:6380", "replica", 3),
        ("b:6379", "master", 2),
        ("b:6380", "replica", 1),
        ("c:6379", "master", 3),
        ("c:6380", "replica", 2),
    ]
    assert layout.shards[0].master.bus_port == 16379


def test_even_split_matches_redis_cli() -> None:
    # Expected values produced by redis-cli.c's float arithmetic (compiled and run for N = 1..200).
    assert [str(r) for r in even_slot_ranges(4)] == ["0-4095", "4096-8191", "8192-12287", "12288-16383"]
    assert [str(r) for r in even_slot_ranges(7)] == [
        "0-2340",
        "2341-4680",
        "4681-7021",
        "7022-9361",
        "9362-11702",
        "11703-14042",
        "14043-16383",
    ]
    assert [str(r) for r in even_slot_ranges(11)][:3] == ["0-1488", "1489-2978", "2979-4467"]
    # 78 shards: double precision would give 14073-14282 here; C float gives 14073-14283.
    assert [str(r) for r in even_slot_ranges(78)[67:69]] == ["14073-14283", "14284-14493"]
    for n in range(1, 120):
        ranges = even_slot_ranges(n)
        assert ranges[0].start == 0 and ranges[-1].end == SLOT_COUNT - 1
        assert all(a.end + 1 == b.start for a, b in itertools.pairwise(ranges))
        assert max(r.count for r in ranges) - min(r.count for r in ranges) <= 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((hosts(2),), r"at least 3 hosts .* got 2 \(vm1, vm2\)"),
        (([("a", "10.0.0.1"), ("b", "10.0.0.2"), ("a", "10.0.0.3")],), r"host name 'a' appears twice"),
        (
            ([("a", "10.0.0.1"), ("b", "10.0.0.2"), ("c", "10.0.0.1")],),
            r"hosts a and c share address 10\.0\.0\.1",
        ),
        (
            ([("a", "10.0.0.1"), ("b", "vm2.lan"), ("c", "10.0.0.3")],),
            r"host b: address 'vm2\.lan' is not an IP",
        ),
        (([("a", "0.0.0.0"), ("b", "10.0.0.2"), ("c", "10.0.0.3")],), r"host a: .* unspecified address"),
        (([("", "10.0.0.1"), ("b", "10.0.0.2"), ("c", "10.0.0.3")],), r"host #1 .* empty name"),
        ((hosts(3), 7000, 7000), r"master_port and replica_port are both 7000"),
        (
            (hosts(3), 7000, 17000),
            r"replica_port 17000 clashes with the cluster bus port of master_port 7000",
        ),
        (
            (hosts(3), 17003, 7003),
            r"master_port 17003 clashes with the cluster bus port of replica_port 7003",
        ),
        ((hosts(3), 7000, 55536), r"replica_port 55536: its cluster bus port 65536 .* exceeds 65535"),
        ((hosts(3), 0, 7003), r"master_port 0 is not a valid TCP port"),
        ((hosts(3), True, 7003), r"master_port must be an integer"),
    ],
)
def test_rejections(args: tuple[object, ...], message: str) -> None:
    with pytest.raises(PlanError, match=message):
        plan_layout(*args)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------- config


def test_render_redis_conf_for_debian_unit() -> None:
    layout = plan_layout(hosts(3))
    cfg = instance_configs(layout)[1]  # vm1:7003
    text = render_redis_conf(cfg, PASSWORD)
    lines = [ln for ln in text.splitlines() if not ln.startswith("#")]
    assert lines == [
        "bind 198.18.0.11",
        "port 7003",
        "protected-mode yes",
        "daemonize no",
        "supervised systemd",
        "pidfile /run/redis-7003/redis-server.pid",
        "loglevel notice",
        "logfile /var/log/redis/redis-server-7003.log",
        "dir /var/lib/redis/7003",
        "dbfilename dump-7003.rdb",
        "appendonly yes",
        'appendfilename "appendonly-7003.aof"',
        "appendfsync everysec",
        "cluster-enabled yes",
        "cluster-config-file /etc/redis/nodes-7003.conf",
        "cluster-node-timeout 5000",
        "cluster-require-full-coverage yes",
        "cluster-allow-replica-migration no",
        "cluster-port 17003",
        "cluster-announce-ip 198.18.0.11",
        "bind-source-addr 198.18.0.11",
        f'requirepass "{PASSWORD}"',
        f'masterauth "{PASSWORD}"',
    ]
    assert cfg.conf_path == "/etc/redis/redis-7003.conf" and cfg.unit == "redis-server@7003.service"
    # the password appears verbatim exactly twice, on the requirepass/masterauth lines only
    assert [ln.split()[0] for ln in text.splitlines() if PASSWORD in ln] == ["requirepass", "masterauth"]
    # no role or shard in the file: re-rotation on scale-out must not change (and restart) instances
    assert "shard" not in text and "replica of" not in text


def test_redacted_rendering_and_masking() -> None:
    cfg = InstanceConfig("vm1", "198.18.0.11", 7000)
    redacted = render_redis_conf_redacted(cfg)
    assert PASSWORD not in redacted
    assert 'requirepass "<redacted>"' in redacted and 'masterauth "<redacted>"' in redacted
    # the engine's masking (replace the exact secret) turns the real file into the redacted one
    assert render_redis_conf(cfg, PASSWORD).replace(PASSWORD, "<redacted>") == redacted


def test_render_options() -> None:
    opts = RedisConfigOptions(
        cluster_node_timeout_ms=2000,
        require_full_coverage=False,
        protected_mode=False,
        announce_address=False,
        extra=(("repl-diskless-sync-delay", "0"),),
    )
    text = render_redis_conf(InstanceConfig("vm1", "198.18.0.11", 7000, opts), PASSWORD)
    assert "cluster-node-timeout 2000\n" in text
    assert "cluster-require-full-coverage no\n" in text and "protected-mode no\n" in text
    assert "cluster-announce-ip" not in text
    assert "repl-diskless-sync-delay 0\n" in text
    with pytest.raises(PlanError, match="managed by nr"):
        RedisConfigOptions(extra=(("requirepass", "x"),))
    with pytest.raises(PlanError, match="too small"):
        RedisConfigOptions(cluster_node_timeout_ms=10)


@pytest.mark.parametrize("bad", ["", "has space", 'quo"te', "back\\slash", "new\nline", "caf\u00e9"])
def test_password_validation_never_echoes_the_password(bad: str) -> None:
    with pytest.raises(PlanError) as err:
        validate_password(bad)
    if bad:
        assert bad not in str(err.value)


def test_config_paths_fit_the_debian_unit_on_this_machine() -> None:
    unit = Path("/lib/systemd/system/redis-server@.service")
    if not unit.exists():
        pytest.skip("redis-server@.service not installed here")
    text = unit.read_text()
    cfg = InstanceConfig("vm1", "198.18.0.11", 7000)
    exec_start = re.search(r"^ExecStart=(.*)$", text, re.M)
    assert exec_start is not None
    assert exec_start.group(1).split()[1].replace("%i", "7000") == cfg.conf_path
    pidfile = re.search(r"^PIDFile=(.*)$", text, re.M)
    assert pidfile is not None and pidfile.group(1).replace("%i", "7000") == cfg.pidfile
    assert re.search(r"^Type=notify$", text, re.M)  # hence supervised systemd
    writable = [
        w.lstrip("-").replace("%i", "7000").replace("/var/run/", "/run/")
        for w in re.findall(r"^ReadWrite(?:Paths|Directories)=(.*)$", text, re.M)
    ]
    for path in (cfg.dir, cfg.logfile, cfg.pidfile, cfg.cluster_config_file):
        assert any(path.startswith(w.rstrip("/") + "/") for w in writable), path


# ------------------------------------------------------------------------------- membership planning


def test_slot_moves_three_to_four() -> None:
    layout3, layout4 = plan_layout(hosts(3)), plan_layout(hosts(4))
    ownership = {s.master.endpoint: s.slots for s in layout3.shards}
    moves = plan_slot_moves(ownership, [s.master.endpoint for s in layout4.shards])
    assert [(m.source, m.target, [str(r) for r in m.slots]) for m in moves] == [
        ("198.18.0.11:7000", "198.18.0.14:7000", ["4096-5460"]),
        ("198.18.0.12:7000", "198.18.0.14:7000", ["9557-10922"]),
        ("198.18.0.13:7000", "198.18.0.14:7000", ["15019-16383"]),
    ]
    assert [m.count for m in moves] == [1365, 1366, 1365]


def test_slot_moves_three_to_five_share_evenly() -> None:
    layout3, layout5 = plan_layout(hosts(3)), plan_layout(hosts(5))
    ownership = {s.master.endpoint: s.slots for s in layout3.shards}
    moves = plan_slot_moves(ownership, [s.master.endpoint for s in layout5.shards])
    received: dict[str, int] = {}
    given: dict[str, int] = {}
    for m in moves:
        received[m.target] = received.get(m.target, 0) + m.count
        given[m.source] = given.get(m.source, 0) + m.count
    assert sorted(received.values()) == [3276, 3277]
    remaining = {k: sum(r.count for r in v) - given.get(k, 0) for k, v in ownership.items()}
    assert sorted(remaining.values()) == [3277, 3277, 3277]
    assert plan_slot_moves(ownership, list(ownership)) == ()  # nobody empty: nothing moves
    with pytest.raises(PlanError, match="duplicate"):
        plan_slot_moves(ownership, ["x", "x"])


def members_of(layout: Layout) -> list[Member]:
    out = []
    for shard in layout.shards:
        out.append(Member(shard.master.endpoint, f"id-{shard.master.label}", "master", None, shard.slots))
        out.append(
            Member(shard.replica.endpoint, f"id-{shard.replica.label}", "replica", f"id-{shard.master.label}")
        )
    return out


def test_membership_scale_out_and_removal() -> None:
    layout3, layout4 = plan_layout(hosts(3)), plan_layout(hosts(4))
    members = [
        *members_of(layout3),
        Member("198.18.0.14:7000", "id-vm4:7000", "master", None),
        Member("198.18.0.14:7003", "id-vm4:7003", "master", None),
    ]
    change = plan_membership(layout4, members)
    assert [s.number for s in change.new_shards] == [4]
    assert [(r.replica.label, r.current_master, r.new_master.label) for r in change.repoints] == [
        ("vm4:7003", None, "vm3:7000"),  # the fresh instance first: shard 3 keeps a replica throughout
        ("vm1:7003", "198.18.0.13:7000", "vm4:7000"),
    ]
    assert len(change.slot_moves) == 3 and change.forget == ()
    assert plan_membership(layout3, members_of(layout3)).empty

    # vm4 holds slots: removing it from the layout is refused with the way out
    after = members_of(layout4)
    with pytest.raises(PlanError) as err:
        plan_membership(layout3, after)
    text = str(err.value)
    assert "198.18.0.14:7000" in text and "4096 slots" in text
    assert "redis-cli --cluster rebalance 198.18.0.11:7000 --cluster-weight id-vm4:7000=0" in text
    assert "REDISCLI_AUTH" in text and "remove the host from the inventory" in text


# ------------------------------------------------------------------------------ synthetic observations


def nid(label: str) -> str:
    return hashlib.sha1(label.encode()).hexdigest()


class Synth:
    """Build a ClusterObservation: every instance's CLUSTER NODES is rendered as text and parsed."""

    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self.nodes: dict[str, dict[str, object]] = {}
        for inst in layout.instances:
            self.nodes[inst.label] = {
                "id": nid(inst.label),
                "ip": inst.address,
                "port": inst.port,
                "role": "master",
                "master": None,
                "slots": "",
                "flags": [],
                "extra": "",
            }
        self.known: dict[str, set[str]] = {label: {label} for label in self.nodes}
        self.access: dict[str, tuple[Access, str]] = {}

    def meet_all(self) -> Synth:
        for label in self.known:
            self.known[label] = set(self.nodes)
        return self

    def set(
        self, label: str, role: str = "master", master: str | None = None, slots: str = "", **extra: object
    ) -> Synth:
        node = self.nodes[label]
        node.update(role=role, master=master, slots=slots, **extra)
        return self

    def planned(self) -> Synth:
        self.meet_all()
        for shard in self.layout.shards:
            self.set(shard.master.label, slots=" ".join(str(r) for r in shard.slots))
            self.set(shard.replica.label, "replica", shard.master.label)
        return self

    def add_foreign(
        self,
        label: str,
        ip: str,
        port: int,
        role: str = "master",
        master: str | None = None,
        slots: str = "",
        flags: tuple[str, ...] = (),
    ) -> Synth:
        self.nodes[label] = {
            "id": nid(label),
            "ip": ip,
            "port": port,
            "role": role,
            "master": master,
            "slots": slots,
            "flags": list(flags),
            "extra": "",
        }
        for known in self.known.values():
            known.add(label)
        return self

    def line(self, label: str, myself: bool) -> str:
        n = self.nodes[label]
        flags = (["myself"] if myself else []) + ["slave" if n["role"] == "replica" else "master"]
        flags += list(n["flags"])  # type: ignore[call-overload]
        master = nid(str(n["master"])) if n["master"] else "-"
        return (
            f"{n['id']} {n['ip']}:{n['port']}@{int(n['port']) + 10000} {','.join(flags)} {master} "  # type: ignore[call-overload]
            f"0 0 1 connected {n['slots']} {n['extra']}"
        ).rstrip()

    def build(self) -> ClusterObservation:
        states = []
        assigned = sum(
            r.count
            for n in self.nodes.values()
            if n["role"] == "master" and n["slots"]
            for r in (parse_cluster_nodes(f"x 1.1.1.1:1@2 master - 0 0 0 connected {n['slots']}")[0].slots)
        )
        for inst in self.layout.instances:
            label = inst.label
            if label in self.access:
                access, error = self.access[label]
                states.append(InstanceState(inst.host, inst.address, inst.port, access=access, error=error))
                continue
            text = "\n".join(self.line(k, k == label) for k in sorted(self.known[label]))
            ok = "ok" if assigned == SLOT_COUNT else "fail"
            info = parse_cluster_info(
                f"cluster_state:{ok}\r\ncluster_slots_assigned:{assigned}\r\ncluster_slots_ok:{assigned}\r\n"
                f"cluster_known_nodes:{len(self.known[label])}\r\n"
            )
            rep = (
                {"role": "slave", "master_link_status": "up"}
                if self.nodes[label]["role"] == "replica"
                else {}
            )
            states.append(
                InstanceState(
                    inst.host,
                    inst.address,
                    inst.port,
                    access=Access.OK,
                    node_id=nid(label),
                    info=info,
                    nodes=parse_cluster_nodes(text),
                    replication=rep,
                )
            )
        return ClusterObservation(tuple(states))


L3 = plan_layout(hosts(3))
L4 = plan_layout(hosts(4))


def descriptions(actions: list[object]) -> list[str]:
    return [a.description for a in actions]  # type: ignore[attr-defined]


def test_plan_fresh_cluster() -> None:
    actions = plan_actions(L3, Synth(L3).build())
    assert descriptions(actions) == [
        "MEET 198.18.0.11:7003 from 198.18.0.11:7000",
        "MEET 198.18.0.12:7000 from 198.18.0.11:7000",
        "MEET 198.18.0.12:7003 from 198.18.0.11:7000",
        "MEET 198.18.0.13:7000 from 198.18.0.11:7000",
        "MEET 198.18.0.13:7003 from 198.18.0.11:7000",
        "ADDSLOTSRANGE 0 5460 on vm1:7000",
        "ADDSLOTSRANGE 5461 10922 on vm2:7000",
        "ADDSLOTSRANGE 10923 16383 on vm3:7000",
        "REPLICATE vm2:7003 -> master of shard 1 (vm1:7000)",
        "REPLICATE vm3:7003 -> master of shard 2 (vm2:7000)",
        "REPLICATE vm1:7003 -> master of shard 3 (vm3:7000)",
    ]
    replicate = actions[-1]
    assert isinstance(replicate, Replicate) and replicate.master.node_id == nid("vm3:7000")


def test_plan_matching_cluster_is_empty() -> None:
    assert plan_actions(L3, Synth(L3).planned().build()) == []
    assert findings(L3, Synth(L3).planned().build()) == []


def test_plan_half_formed_clusters() -> None:
    met = Synth(L3).meet_all().build()
    assert [type(a) for a in plan_actions(L3, met)] == [AddSlots] * 3 + [Replicate] * 3

    no_replicas = Synth(L3).planned()
    for shard in L3.shards:
        no_replicas.set(shard.replica.label)  # still empty masters
    assert [type(a) for a in plan_actions(L3, no_replicas.build())] == [Replicate] * 3

    one_missing = Synth(L3).planned().set("vm1:7003")
    assert descriptions(plan_actions(L3, one_missing.build())) == [
        "REPLICATE vm1:7003 -> master of shard 3 (vm3:7000)"
    ]

    partial = Synth(L3).meet_all().set("vm1:7000", slots="0-5460")
    assert descriptions(plan_actions(L3, partial.build()))[:2] == [
        "ADDSLOTSRANGE 5461 10922 on vm2:7000",
        "ADDSLOTSRANGE 10923 16383 on vm3:7000",
    ]

    not_met = Synth(L3).planned()
    not_met.known["vm3:7003"] = {"vm3:7003"}
    for label in not_met.known:
        if label != "vm3:7003":
            not_met.known[label].discard("vm3:7003")
    not_met.set("vm3:7003")
    assert descriptions(plan_actions(L3, not_met.build())) == [
        "MEET 198.18.0.13:7003 from 198.18.0.11:7000",
        "REPLICATE vm3:7003 -> master of shard 2 (vm2:7000)",
    ]


def swapped(layout: Layout = L3, shard: int = 2) -> Synth:
    s = layout.shard(shard)
    return (
        Synth(layout)
        .planned()
        .set(s.replica.label, slots=" ".join(str(r) for r in s.slots))
        .set(s.master.label, "replica", s.replica.label)
    )


def test_plan_swapped_shard_fails_over() -> None:
    actions = plan_actions(L3, swapped().build())
    assert descriptions(actions) == [
        "FAILOVER on vm2:7000 to restore planned master of shard 2 (current master vm3:7003)"
    ]
    assert isinstance(actions[0], Failover) and not actions[0].force


def test_findings_swapped_shard_is_drift_only() -> None:
    found = findings(L3, swapped().build())
    assert len(found) == 1
    assert found[0].severity is Severity.DRIFT and (found[0].host, found[0].instance) == ("vm2", "vm2:7000")
    assert found[0].message == (
        "shard 2: master is vm3:7003 (roles swapped inside the shard; safe), plan says vm2:7000 "
        "— fix: nr run redis"
    )


def test_findings_replica_on_its_masters_host_is_an_error() -> None:
    # vm2:7003 follows vm2:7000 (same host) instead of vm1:7000; vm1:7000 is left without a replica
    obs = Synth(L3).planned().set("vm2:7003", "replica", "vm2:7000").build()
    found = {(f.severity, f.what) for f in findings(L3, obs)}
    assert (Severity.ERROR, "vm2:7003: placement") in found
    assert (Severity.ERROR, "vm1:7000: replicas") in found
    assert (Severity.WARNING, "vm2:7000: replicas") in found  # two replicas now
    assert (Severity.DRIFT, "vm2:7003: role") in found
    assert descriptions(plan_actions(L3, obs)) == [
        "REPLICATE vm2:7003 -> master of shard 1 (vm1:7000) (was replica of vm2:7000)"
    ]


def test_findings_fresh_and_unreachable() -> None:
    fresh = {(f.severity, f.what) for f in findings(L3, Synth(L3).build())}
    assert (Severity.ERROR, "slots assigned") in fresh
    assert (Severity.ERROR, "vm1:7000: cluster_state") in fresh
    assert (Severity.DRIFT, "vm2:7000: membership") in fresh

    down = swapped()
    down.access["vm2:7000"] = (
        Access.UNREACHABLE,
        "Error 111 connecting to 198.18.0.12:7000. Connection refused.",
    )
    found = {(f.severity, f.what): f for f in findings(L3, down.build())}
    assert found[(Severity.ERROR, "vm2:7000: access")].actual.startswith("unreachable")
    with pytest.raises(AccessError, match=r"vm2:7000 \(198\.18\.0\.12:7000\): unreachable"):
        plan_actions(L3, down.build())


def test_wrong_password_is_a_clear_error_without_the_password() -> None:
    s = Synth(L3).planned()
    s.access["vm3:7000"] = (
        Access.WRONG_PASSWORD,
        "authentication failed: the redis password is wrong (invalid username-password pair)",
    )
    with pytest.raises(AccessError) as err:
        plan_actions(L3, s.build())
    assert str(err.value).startswith("the redis password is wrong for vm3:7000; nothing was changed")
    assert PASSWORD not in str(err.value)


def test_plan_force_failover_only_when_the_current_master_failed() -> None:
    # vm2:7000 replicates a node outside the layout that holds shard 2 and is flagged failed
    s = Synth(L3).planned().set("vm2:7000", "replica", "old").set("vm3:7003", "replica", "old")
    s.add_foreign("old", "198.18.0.99", 7000, slots="5461-10922", flags=("fail",))
    actions = plan_actions(L3, s.build())
    assert descriptions(actions)[0] == (
        "FAILOVER FORCE on vm2:7000 to restore planned master of shard 2 (current master 198.18.0.99:7000)"
    )
    assert isinstance(actions[0], Failover) and actions[0].force
    assert isinstance(actions[-1], Forget) and actions[-1].node.node_id == nid("old")


def test_plan_refuses_a_planned_master_replicating_another_planned_master() -> None:
    s = Synth(L3).planned().set("vm1:7000", "replica", "vm2:7000")
    with pytest.raises(
        PlanError,
        match=r"vm1:7000 is planned as master of shard 1 but replicates vm2:7000.*"
        r"CLUSTER RESET SOFT",
    ):
        plan_actions(L3, s.build())


def test_plan_planned_master_came_back_empty() -> None:
    # vm2 was reinstalled: vm2:7000 is a new empty node; vm3:7003 took shard 2 over; the old id is failed
    s = Synth(L3).planned().set("vm2:7000").set("vm3:7003", slots="5461-10922")
    s.add_foreign("vm2-old", "198.18.0.12", 7000, flags=("fail",))
    assert descriptions(plan_actions(L3, s.build())) == [
        "REPLICATE vm2:7000 -> current master of shard 2 (vm3:7003), so that FAILOVER can make it master again",
        "FAILOVER on vm2:7000 to restore planned master of shard 2 (current master vm3:7003)",
        f"FORGET 198.18.0.12:7000 (stale id of vm2:7000) (node {nid('vm2-old')[:12]}, not in the layout, "
        "holds no slots) on all 6 instances",
    ]


def scaled_out(layout4: Layout = L4) -> Synth:
    s = Synth(layout4)
    three = plan_layout(hosts(3))
    for shard in three.shards:
        s.set(shard.master.label, slots=" ".join(str(r) for r in shard.slots))
        s.set(shard.replica.label, "replica", shard.master.label)
    in_cluster = {i.label for i in three.instances}
    for label in in_cluster:
        s.known[label] = set(in_cluster)
    return s


def test_plan_scale_out_new_host() -> None:
    actions = plan_actions(L4, scaled_out().build())
    assert descriptions(actions) == [
        "MEET 198.18.0.14:7000 from 198.18.0.11:7000",
        "MEET 198.18.0.14:7003 from 198.18.0.11:7000",
        "REPLICATE vm4:7003 -> master of shard 3 (vm3:7000)",
        "REPLICATE vm1:7003 -> master of shard 4 (vm4:7000) (was replica of vm3:7000)",
        "MIGRATE 1365 slots 4096-5460 from vm1:7000 to vm4:7000 (shard 4), keys moved online",
        "MIGRATE 1366 slots 9557-10922 from vm2:7000 to vm4:7000 (shard 4), keys moved online",
        "MIGRATE 1365 slots 15019-16383 from vm3:7000 to vm4:7000 (shard 4), keys moved online",
    ]
    move = actions[-1]
    assert isinstance(move, MoveSlots)
    assert [m.label for m in move.masters] == ["vm1:7000", "vm2:7000", "vm3:7000", "vm4:7000"]


def test_plan_scale_out_with_a_swapped_shard_restores_roles_first() -> None:
    s = scaled_out().set("vm1:7003", slots="10923-16383").set("vm3:7000", "replica", "vm1:7003")
    actions = plan_actions(L4, s.build())
    assert isinstance(actions[2], Failover)
    assert descriptions(actions)[2:5] == [
        "FAILOVER on vm3:7000 to restore planned master of shard 3 (current master vm1:7003)",
        "REPLICATE vm4:7003 -> master of shard 3 (vm3:7000)",
        "REPLICATE vm1:7003 -> master of shard 4 (vm4:7000) (was replica of vm3:7000)",
    ]


def test_plan_removing_a_host_with_slots_is_refused() -> None:
    s = Synth(L3).planned()
    s.set("vm1:7000", slots="0-4095").set("vm2:7003", "replica", "vm1:7000")
    s.add_foreign("vm4:7000", "198.18.0.14", 7000, slots="4096-5460")
    with pytest.raises(PlanError) as err:
        plan_actions(L3, s.build())
    text = str(err.value)
    assert "198.18.0.14:7000" in text and "1365 slots (4096-5460)" in text
    assert "--cluster rebalance 198.18.0.11:7000 --cluster-weight" in text
    assert PASSWORD not in text


def test_plan_removing_a_drained_host_forgets_it() -> None:
    s = Synth(L3).planned().set("vm1:7003", "replica", "vm4:7000")
    s.add_foreign("vm4:7000", "198.18.0.14", 7000)
    s.add_foreign("vm4:7003", "198.18.0.14", 7003, role="replica", master="vm3:7000")
    actions = plan_actions(L3, s.build())
    assert [type(a) for a in actions] == [Replicate, Forget, Forget]
    assert actions[0].description == (
        "REPLICATE vm1:7003 -> master of shard 3 (vm3:7000) (was replica of 198.18.0.14:7000)"
    )
    assert {a.node.label for a in actions[1:] if isinstance(a, Forget)} == {
        "198.18.0.14:7000",
        "198.18.0.14:7003",
    }


def test_plan_finishes_a_half_done_migration() -> None:
    s = Synth(L3).planned()
    s.nodes["vm1:7000"]["extra"] = f"[100->-{nid('vm2:7000')}]"
    s.nodes["vm2:7000"]["extra"] = f"[100-<-{nid('vm1:7000')}]"
    actions = plan_actions(L3, s.build())
    assert descriptions(actions) == [
        "finish migrating 1 slots 100 from vm1:7000 to vm2:7000 (shard 2), keys moved online"
    ]
    # the migration finished on the target only: close the markers everywhere
    s.set("vm1:7000", slots="0-99 101-5460").set("vm2:7000", slots="100 5461-10922")
    s.nodes["vm1:7000"]["extra"] = ""
    actions = plan_actions(L3, s.build())
    assert [type(a) for a in actions] == [SettleSlots]


def test_an_instance_whose_view_of_slot_owners_differs_is_named_with_its_first_slot() -> None:
    synth = Synth(L3).planned()
    obs = synth.build()
    assert disagreements(obs, consolidate(L3, obs)) == []
    # vm1:7003 (a replica) still sees vm2:7000 without its first 100 slots
    synth.set("vm2:7000", slots="5561-10922")
    stale = parse_cluster_nodes(
        "\n".join(synth.line(k, k == "vm1:7003") for k in sorted(synth.known["vm1:7003"]))
    )
    states = tuple(replace(s, nodes=stale) if s.label == "vm1:7003" else s for s in obs.instances)
    assert disagreements(ClusterObservation(states), consolidate(L3, obs)) == [
        "vm1:7003 disagrees on 100 slots (slot 5461: it says nobody, the owner is vm2:7000)"
    ]
