"""Capture real CLUSTER NODES / INFO / SHARDS output into tests/unit/fixtures/redis/.

Run from the repository root (needs redis-server; takes ~10 s):

    .venv/bin/python -m tests.redis_local.capture_fixtures

It starts 3 simulated hosts (see conftest.py), forms the cluster with plain redis-py commands (deliberately not
with the tasks.redis modules, so the parser fixtures do not depend on the code they test) and records:

* fresh: a node before any MEET;
* healthy: the formed 3-shard cluster (views of a master and of a replica);
* flags: a node in handshake, a replica with nofailover and a node with an announced hostname;
* migrating: one slot half-way through a migration (source, target and a third node's view);
* pfail / failed: both lab3 instances killed (fail? then fail, before and after lab1:R took over shard 3);
* failover: lab3 restarted; lab3:P came back as the replica of lab1:R (roles swapped in shard 3).

manifest.json maps node ids and ports to labels and says what each capture shows.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

from tests.redis_local.conftest import LocalRedisHosts, local_redis_hosts

OUT = Path(__file__).resolve().parents[1] / "unit" / "fixtures" / "redis"


def text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, dict):
        return {text(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


def wait(what: str, cond: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if cond():
                return
        except redis.RedisError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"timed out waiting for {what}")


class Capture:
    def __init__(self, hosts: LocalRedisHosts) -> None:
        self.hosts = hosts
        self.manifest: dict[str, Any] = {"ports": list(hosts.ports), "captures": {}, "ids": {}}
        OUT.mkdir(parents=True, exist_ok=True)

    def cmd(self, label: str, *args: Any) -> Any:
        client = self.hosts.client(label)
        try:
            return client.execute_command(*args)
        finally:
            client.close()

    def nodes(self, label: str) -> str:
        return text(self.cmd(label, "CLUSTER", "NODES"))

    def save(self, name: str, label: str, note: str, shards: bool = True) -> None:
        (OUT / f"{name}.nodes.txt").write_text(self.nodes(label))
        (OUT / f"{name}.info.txt").write_text(text(self.cmd(label, "CLUSTER", "INFO")))
        entry: dict[str, Any] = {"view": label, "note": note}
        if shards:
            inst = self.hosts.instances[label]
            client = redis.Redis(
                host=inst.address, port=inst.port, password=self.hosts.password, decode_responses=True
            )
            try:
                reply = client.execute_command("CLUSTER SHARDS")
            finally:
                client.close()
            (OUT / f"{name}.shards.json").write_text(json.dumps(jsonable(reply), indent=1) + "\n")
        self.manifest["captures"][name] = entry
        print(f"captured {name} from {label}")

    def finish(self) -> None:
        (OUT / "manifest.json").write_text(json.dumps(self.manifest, indent=1, sort_keys=True) + "\n")


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp, local_redis_hosts(Path(tmp), "lab1", "lab2", "lab3") as hosts:
        p, r = hosts.ports
        cap = Capture(hosts)
        labels = [f"lab{i}:{port}" for i in (1, 2, 3) for port in (p, r)]
        ids = {label: text(cap.cmd(label, "CLUSTER", "MYID")) for label in labels}
        cap.manifest["ids"] = ids
        cap.save("fresh", f"lab1:{p}", "a node before any MEET: no address yet, only itself")

        for label in labels[1:]:
            inst = hosts.instances[label]
            cap.cmd(f"lab1:{p}", "CLUSTER", "MEET", inst.address, inst.port)
        wait(
            "all nodes to know each other",
            lambda: all(
                len([ln for ln in cap.nodes(lb).splitlines() if "handshake" not in ln]) == 6 for lb in labels
            ),
        )
        for i, (start, end) in enumerate(((0, 5460), (5461, 10922), (10923, 16383)), start=1):
            cap.cmd(f"lab{i}:{p}", "CLUSTER", "ADDSLOTSRANGE", start, end)
        wait(
            "slots to propagate",
            lambda: all(
                text(cap.cmd(lb, "CLUSTER", "INFO")).count("cluster_slots_assigned:16384") for lb in labels
            ),
        )
        for i in (1, 2, 3):  # host i's second instance replicates the master of host i-1
            master = f"lab{(i - 2) % 3 + 1}:{p}"
            cap.cmd(f"lab{i}:{r}", "CLUSTER", "REPLICATE", ids[master])
        wait(
            "cluster ok",
            lambda: all("cluster_state:ok" in text(cap.cmd(lb, "CLUSTER", "INFO")) for lb in labels),
        )
        wait(
            "replicas in sync",
            lambda: all(
                cap.cmd(f"lab{i}:{r}", "INFO", "replication")["master_link_status"] == "up" for i in (1, 2, 3)
            ),
        )
        wait(
            "all views agree",
            lambda: all(
                sum("slave" in ln.split()[2] for ln in cap.nodes(lb).splitlines()) == 3 for lb in labels
            ),
        )
        cap.save("healthy", f"lab1:{p}", "3 shards formed, rotated replicas, all connected")
        cap.save("healthy-replica", f"lab2:{r}", "same cluster seen from a replica (myself,slave)")

        # flags: handshake (MEET to a port nobody listens on), nofailover, announced hostname
        cap.cmd(f"lab1:{r}", "CONFIG", "SET", "cluster-replica-no-failover", "yes")
        cap.cmd(f"lab1:{p}", "CONFIG", "SET", "cluster-announce-hostname", "lab1.example")
        cap.cmd(f"lab1:{p}", "CLUSTER", "MEET", "127.0.0.1", 9)
        wait(
            "flags to show",
            lambda: (
                "nofailover" in cap.nodes(f"lab1:{p}")
                and "handshake" in cap.nodes(f"lab1:{p}")
                and "lab1.example" in cap.nodes(f"lab2:{p}")
            ),
        )
        cap.save("flags", f"lab1:{p}", "handshake node, replica lab1:R with nofailover, lab1:P hostname")
        cap.save("flags-peer", f"lab2:{p}", "peer view: lab1:P announced hostname lab1.example")
        cap.cmd(f"lab1:{r}", "CONFIG", "SET", "cluster-replica-no-failover", "no")
        cap.cmd(f"lab1:{p}", "CONFIG", "SET", "cluster-announce-hostname", "")
        wait("handshake to expire", lambda: "handshake" not in cap.nodes(f"lab1:{p}"), timeout=20)

        # migrating: slot 100 (shard 1, lab1:P) half-way to lab2:P, with keys on both sides
        src, dst, slot = f"lab1:{p}", f"lab2:{p}", 100
        keys = [text(k) for k in cap.cmd(src, "CLUSTER", "GETKEYSINSLOT", slot, 10)]
        cluster = redis.RedisCluster(host="127.0.0.1", port=p, password=hosts.password)
        names = [f"k{n}" for n in range(100000) if cluster.keyslot(f"k{n}") == slot][:4]
        for name in names:
            cluster.set(name, "v")
        cluster.close()
        cap.cmd(dst, "CLUSTER", "SETSLOT", slot, "IMPORTING", ids[src])
        cap.cmd(src, "CLUSTER", "SETSLOT", slot, "MIGRATING", ids[dst])
        dst_inst = hosts.instances[dst]
        cap.cmd(src, "MIGRATE", dst_inst.address, dst_inst.port, names[0], 0, 5000, "AUTH", hosts.password)
        cap.save(
            "migrating-source", src, f"slot {slot} migrating from lab1:P to lab2:P (keys {names} {keys})"
        )
        cap.save("migrating-target", dst, f"slot {slot} importing into lab2:P from lab1:P")
        cap.save("migrating-other", f"lab3:{p}", "a third master: no migration markers")
        cap.cmd(
            src,
            "MIGRATE",
            dst_inst.address,
            dst_inst.port,
            "",
            0,
            5000,
            "AUTH",
            hosts.password,
            "KEYS",
            *names[1:],
        )
        for label in (dst, src, f"lab3:{p}"):
            cap.cmd(label, "CLUSTER", "SETSLOT", slot, "NODE", ids[dst])
        wait("migration settled", lambda: all("[" not in cap.nodes(lb) for lb in labels))

        # pfail / fail: kill lab3 (master of shard 3 and replica of shard 2)
        hosts.kill_host("lab3")
        wait("fail? flag", lambda: "fail?" in cap.nodes(f"lab1:{p}"), timeout=10)
        cap.save("pfail", f"lab1:{p}", "lab3 killed just now: lab3 nodes flagged fail? (PFAIL)")
        wait(
            "fail flag",
            lambda: all(",fail " in ln for ln in cap.nodes(f"lab1:{p}").splitlines() if "127.0.0.3" in ln),
            timeout=15,
        )
        cap.save("failed", f"lab1:{p}", "lab3 nodes flagged fail, failover of shard 3 under way or done")
        wait("shard 3 taken over by lab1:R", lambda: "myself,master" in cap.nodes(f"lab1:{r}"), timeout=20)
        wait("cluster ok again", lambda: "cluster_state:ok" in text(cap.cmd(f"lab1:{p}", "CLUSTER", "INFO")))
        cap.save("failed-after-failover", f"lab1:{p}", "lab3 down, lab1:R now master of shard 3")
        hosts.start_host("lab3")
        wait(
            "lab3:P back as replica of lab1:R",
            lambda: (
                all("fail" not in ln for ln in cap.nodes(f"lab1:{p}").splitlines())
                and "myself,slave" in cap.nodes(f"lab3:{p}")
            ),
            timeout=20,
        )
        cap.save("failover", f"lab1:{p}", "shard 3 roles swapped: lab1:R master, lab3:P its replica")
        cap.save("failover-old-master", f"lab3:{p}", "the old master's own view: myself,slave of lab1:R")
        cap.finish()


if __name__ == "__main__":
    main()
