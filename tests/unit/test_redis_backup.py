"""The redis component's backup and restore against scripted hosts and an in-memory cluster: where each
snapshot is taken, how BGSAVE is waited for, what a failing host or a cluster that does not fit says,
and the order of a restore (everything stopped, masters loaded with AOF off and checked key for key,
AOF back on, replicas last)."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import pytest

from nr.backup.api import Restoring
from nr.backup.folder import Backup, Writer
from nr.errors import NrError
from tasks.redis import backup as redis_backup
from tasks.redis.observe import observe
from tasks.redis.rdb import summarize_file
from tasks.redis.resp import ReplyError
from tests.fakes.redis_cluster import FakeNode, FakeRedisCluster
from tests.fakes.remote import Reply
from tests.unit.redis_scripted import PASSWORD, Site, configs

FIXTURE = Path(__file__).parent / "fixtures" / "redis" / "small.rdb"  # 4 keys, written by redis-server 7.0


class SavingCluster(FakeRedisCluster):
    """The fake cluster, plus what backups and restores ask: BGSAVE, INFO persistence/server, DBSIZE,
    CONFIG SET appendonly. A save completes on the next INFO; ``bgsave_status`` says how it ends."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.saves: dict[str, int] = {}
        self.saving: set[str] = set()
        self.bgsave_status = "ok"
        self.keys: dict[str, int] = {}  # label -> keys held
        self.loaded: dict[str, int] = {}  # label -> rdb_last_load_keys_loaded
        self.aof: dict[str, bool] = {}

    def _dispatch(self, node: FakeNode, head: list[str], args: tuple[str, ...]) -> Any:
        label = node.label
        if head[:1] == ["BGSAVE"]:
            if label in self.saving:
                raise ReplyError("ERR Background save already in progress")
            self.saving.add(label)
            self.events.append(("bgsave", label))
            return b"Background saving started"
        if head == ["INFO", "PERSISTENCE"]:
            if label in self.saving:
                self.saving.discard(label)
                self.saves[label] = self.saves.get(label, 0) + 1
                return b"rdb_bgsave_in_progress:1\r\nrdb_saves:%d\r\n" % (self.saves[label] - 1)
            aof = "1" if self.aof.get(label) else "0"
            return (f"loading:0\r\nrdb_bgsave_in_progress:0\r\nrdb_saves:{self.saves.get(label, 0)}\r\n"
                    f"rdb_last_bgsave_status:{self.bgsave_status}\r\nrdb_last_save_time:1767225600\r\n"
                    f"rdb_last_load_keys_loaded:{self.loaded.get(label, 0)}\r\nrdb_last_load_keys_expired:0\r\n"
                    f"aof_enabled:{aof}\r\naof_rewrite_in_progress:0\r\naof_rewrite_scheduled:0\r\n"
                    "aof_last_bgrewrite_status:ok\r\n").encode()  # fmt: skip
        if head == ["INFO", "SERVER"]:
            return b"redis_version:7.0.15\r\n"
        if head == ["DBSIZE"]:
            return self.keys.get(label, 0)
        if head == ["CONFIG", "SET"]:
            self.events.append(("aof-on", label))
            self.aof[label] = True
            return b"OK"
        return super()._dispatch(node, head, args)


@pytest.fixture
def site(monkeypatch: pytest.MonkeyPatch) -> Site:
    s = Site(monkeypatch)
    planned = s.site()
    s.cluster = SavingCluster(planned.layout, configs(planned), PASSWORD)
    return s


def serve_rdb(site: Site, host: str, content: bytes, *, fail: str = "") -> None:
    remote = site.remotes[host]

    def stage(script: str) -> str:
        staged = re.search(r"cp \S+ (\S+)", script)
        assert staged
        remote.files[staged.group(1)] = content
        return f"{hashlib.sha256(content).hexdigest()}\n{len(content)}\n"

    if fail:
        remote.expect(Reply("umask 077", stderr=fail, exited=1))
    else:
        remote.expect(Reply("umask 077", stage), Reply("rm -f .nr-upload-get-"))


def serve_fixture_everywhere(site: Site) -> None:
    for h in ("vm1", "vm2", "vm3"):
        serve_rdb(site, h, FIXTURE.read_bytes())


def test_each_shard_is_saved_on_its_replica_and_fetched_with_its_slots_and_key_count(
    site: Site, tmp_path: Path
) -> None:
    serve_fixture_everywhere(site)
    ctx, report = site.context()
    part = Writer(tmp_path).part("redis")
    doc = site.component().backup(ctx, part)
    assert report.ok, report.failed_reasons
    assert sorted(e[1] for e in site.cluster.events if e[0] == "bgsave") == [
        "vm1:7003",
        "vm2:7003",
        "vm3:7003",
    ]
    shards = doc["shards"]
    assert [(s["shard"], s["slots"], s["saved_on"]["host"], s["saved_on"]["role"]) for s in shards] == [
        (1, "0-5460", "vm2", "replica"), (2, "5461-10922", "vm3", "replica"), (3, "10923-16383", "vm1", "replica")]  # fmt: skip
    assert shards[0]["master"]["host"] == "vm1" and shards[0]["keys"] == 4 and shards[0]["rdb_version"] == 10
    assert "/var/lib/redis/7003/dump-7003.rdb" in next(
        s for s in site.remotes["vm2"].scripts if "umask 077" in s
    )
    assert doc["summary"] == "3/3 shards, 12 keys (BGSAVE on replicas)"


def test_the_cluster_the_preflight_observed_is_the_one_backed_up_not_observed_again(
    site: Site, tmp_path: Path
) -> None:
    serve_fixture_everywhere(site)
    ctx, report = site.context()
    comp = site.component()
    assert comp.preflight(ctx) == []
    looks = [c for c in site.cluster.commands if c[1][:2] == ("CLUSTER", "NODES")]
    assert len(looks) == 6  # one look at each instance
    comp.backup(ctx, Writer(tmp_path).part("redis"))
    assert report.ok, report.failed_reasons
    assert [c for c in site.cluster.commands if c[1][:2] == ("CLUSTER", "NODES")] == looks


def test_a_shard_without_a_replica_in_sync_is_saved_on_its_master(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    planned = site.site()
    look = lambda: observe(planned.layout, planned.password, connect=site.cluster.connector(planned.password))  # noqa: E731
    site.cluster.by_label("vm2:7003").alive = False  # an instance down: no consistent snapshot of the site
    with pytest.raises(NrError, match="not every instance is usable"):
        redis_backup.sources(planned, look())
    site.cluster.by_label("vm2:7003").alive = True
    assert all(s.on_replica for s in redis_backup.sources(planned, look()))
    original = redis_backup.in_sync  # shard 1's replica still syncing (master_sync_in_progress:1)
    monkeypatch.setattr(redis_backup, "in_sync", lambda o, n: n.label != "vm2:7003" and original(o, n))
    srcs = redis_backup.sources(planned, look())
    assert [(s.number, s.saver.label) for s in srcs] == [(1, "vm1:7000"), (2, "vm3:7003"), (3, "vm1:7003")]


def test_bgsave_waits_for_a_save_in_progress_then_asks_for_its_own(site: Site) -> None:
    client = site.cluster.connector(site.site().password)("198.18.0.12", 7003)
    site.cluster.saving.add("vm2:7003")  # a save (for a replica's full sync, say) already runs
    info = redis_backup.bgsave(client, timeout=5, poll=0, sleep=lambda _: None)
    assert info["rdb_last_bgsave_status"] == "ok" and site.cluster.saves["vm2:7003"] == 2
    site.cluster.bgsave_status = "err"
    with pytest.raises(NrError, match=r"BGSAVE failed .*disk full"):
        redis_backup.bgsave(client, timeout=5, poll=0, sleep=lambda _: None)


def test_a_host_whose_file_cannot_be_read_fails_the_backup_and_is_named(site: Site, tmp_path: Path) -> None:
    serve_rdb(site, "vm1", FIXTURE.read_bytes())
    serve_rdb(site, "vm2", b"", fail="/var/lib/redis/7003/dump-7003.rdb: no such file")
    serve_rdb(site, "vm3", FIXTURE.read_bytes())
    ctx, report = site.context()
    doc = site.component().backup(ctx, Writer(tmp_path).part("redis"))
    assert (
        report.failed_hosts == ["vm2"]
        and "cannot read /var/lib/redis/7003/dump-7003.rdb" in report.failed_reasons["vm2"]
    )
    assert doc["summary"].startswith("2/3 shards")


def make_backup(
    tmp_path: Path,
    site: Site,
    shards: list[tuple[str, list[list[int]]]],
    rdb_version: int = 10,
    hosts: tuple[str, ...] = ("vm1", "vm2", "vm3"),
) -> Restoring:
    w = Writer(tmp_path / "b")
    entries = []
    for i, (slots, ranges) in enumerate(shards, 1):
        w.write(f"redis/shard-{i}.rdb", FIXTURE.read_bytes())
        entries.append({"shard": i, "slots": slots, "ranges": ranges, "keys": 4, "expires": 1, "file": f"redis/shard-{i}.rdb",
                        "rdb_version": rdb_version, "redis_version": "7.0.15",
                        "saved_on": {"host": f"vm{i % 3 + 1}", "port": 7003, "role": "replica"}})  # fmt: skip
    part = {"shards": entries, "hosts": list(hosts)}
    return Restoring(Backup(w.root, {"files": w.files, "components": {"redis": part}}), "redis")


THREE = [("0-5460", [[0, 5460]]), ("5461-10922", [[5461, 10922]]), ("10923-16383", [[10923, 16383]])]


def test_the_plan_maps_shards_by_slots_and_refuses_what_does_not_fit(site: Site, tmp_path: Path) -> None:
    ctx, _ = site.context()
    comp = site.component()
    plan = comp.restore_plan(ctx, make_backup(tmp_path / "a", site, THREE))
    assert not plan.problems and [t.label for t in plan.data] == ["vm1:7000", "vm2:7000", "vm3:7000"]
    assert "shard 2: 4 keys (slots 5461-10922, saved on vm3:7003) -> vm2:7000" in plan.lines[2]
    renamed = comp.restore_plan(ctx, make_backup(tmp_path / "r", site, THREE, hosts=("old1", "old2", "old3")))
    assert (
        not renamed.problems
        and "backed up from old1, old2, old3; restored onto vm1, vm2, vm3" in renamed.lines[0]
    )
    four = [
        ("0-4095", [[0, 4095]]),
        ("4096-8191", [[4096, 8191]]),
        ("8192-12287", [[8192, 12287]]),
        ("12288-16383", [[12288, 16383]]),
    ]
    plan = comp.restore_plan(ctx, make_backup(tmp_path / "b", site, four))
    assert any("the backup has 4 shard(s), the cluster 3" in p for p in plan.problems)
    plan = comp.restore_plan(ctx, make_backup(tmp_path / "c", site, THREE, rdb_version=12))
    assert any(
        "RDB version 12 (Redis 7.0.15) is newer than vm1:7000's Redis 7.0.15 loads" in p
        for p in plan.problems
    )
    site.cluster.failover(site.cluster.by_label("vm2:7003"))  # shard 1's roles swapped after a failover
    plan = comp.restore_plan(ctx, make_backup(tmp_path / "d", site, THREE))
    assert (
        plan.problems
        and "not in its planned layout" in plan.problems[0]
        and "nr run redis" in plan.problems[0]
    )


class Hosts:
    """What the restore's scripts do to the fake cluster: stop, place, start (loading the placed RDB)."""

    def __init__(self, site: Site) -> None:
        self.site, self.placed, self.order = site, {}, []
        for host in ("vm1", "vm2", "vm3"):
            site.remotes[host].expect(Reply("set -e", lambda s, h=host: self.apply(h, s), times=None))

    def apply(self, host: str, script: str) -> str:
        c = self.site.cluster
        for port in re.findall(r"systemctl stop redis-server@(\d+)", script):
            c.by_label(f"{host}:{port}").alive = False
            self.order.append(f"stop {host}:{port}")
        if "dump-7000.rdb" in script:
            local = self.site.remotes[host].puts[-1][0]
            self.placed[f"{host}:7000"] = summarize_file(local).keys
            self.order.append(f"place {host}:7000")
        if "appendonly no" in script and "s/^appendonly yes$/appendonly no/" in script:
            self.order.append(f"aof-off {host}")
        for port in re.findall(r"systemctl start redis-server@(\d+)", script):
            label = f"{host}:{port}"
            c.by_label(label).alive = True
            c.loaded[label] = c.keys[label] = self.placed.get(label, 0)
            self.order.append(f"start {label}")
        if "s/^appendonly no$/appendonly yes/" in script:
            self.order.append(f"aof-file {host}")
        return ""


def test_the_restore_stops_everything_loads_masters_with_aof_off_then_starts_replicas(
    site: Site, tmp_path: Path
) -> None:
    ctx, report = site.context()
    comp = site.component()
    backup = make_backup(tmp_path, site, THREE)
    plan = comp.restore_plan(ctx, backup)
    hosts = Hosts(site)
    comp.restore(ctx, backup, plan)
    assert report.ok, report.failed_reasons
    order = hosts.order
    last_stop = max(i for i, e in enumerate(order) if e.startswith("stop"))
    first_start = min(i for i, e in enumerate(order) if e.startswith("start"))
    assert last_stop < first_start and sum(e.startswith("stop") for e in order) == 6
    masters = [i for i, e in enumerate(order) if e.startswith("start") and e.endswith(":7000")]
    replicas = [i for i, e in enumerate(order) if e.startswith("start") and e.endswith(":7003")]
    aof_files = [i for i, e in enumerate(order) if e.startswith("aof-file")]
    assert max(masters) < min(aof_files) and max(aof_files) < min(replicas)
    assert {e[1] for e in site.cluster.events if e[0] == "aof-on"} == {"vm1:7000", "vm2:7000", "vm3:7000"}
    (verify,) = [r for r in report.rows if r.task == "redis.verify"]
    assert not verify.failed


def test_a_master_that_loads_other_keys_stops_the_restore_before_any_replica_starts(
    site: Site, tmp_path: Path
) -> None:
    ctx, report = site.context()
    comp = site.component()
    backup = make_backup(tmp_path, site, THREE)
    plan = comp.restore_plan(ctx, backup)
    hosts = Hosts(site)
    original = hosts.apply

    def lossy(host: str, script: str) -> str:
        out = original(host, script)
        if host == "vm2" and "systemctl start redis-server@7000" in script:
            site.cluster.loaded["vm2:7000"] = 3  # one key did not load
        return out

    for r in site.remotes.values():
        r.replies = [x for x in r.replies if x.match != "set -e"]
    for h in ("vm1", "vm2", "vm3"):
        site.remotes[h].expect(Reply("set -e", lambda s, h=h: lossy(h, s), times=None))
    with pytest.raises(NrError, match="the restore stopped at step load: vm2 failed"):
        comp.restore(ctx, backup, plan)
    assert "vm2:7000 loaded 3 keys (+0 expired) of shard 2's 4" in report.failed_reasons["vm2"]
    assert not any(e.startswith("start") and e.endswith(":7003") for e in hosts.order)


def test_an_instance_that_does_not_answer_fails_its_host_by_name(site: Site, tmp_path: Path) -> None:
    site.cluster.by_label("vm3:7000").alive = False
    ctx, report = site.context()
    with pytest.raises(NrError, match="not every instance is usable"):
        site.component().backup(ctx, Writer(tmp_path).part("redis"))
    assert (
        report.failed_hosts == ["vm3"]
        and "vm3:7000 (198.18.0.13:7000): unreachable" in report.failed_reasons["vm3"]
    )
    assert not [e for e in site.cluster.events if e[0] == "bgsave"]  # nothing was saved
