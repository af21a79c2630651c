"""The redis component's part of ``nr backup``: one consistent RDB snapshot per shard.

Where the snapshot is taken: on the shard's **replica**, when it is in sync with its master
(``master_link_status:up``, no sync in progress); on the master only when it has no such replica (a
note says so). BGSAVE forks the instance: the fork copies the page tables (milliseconds per GB, during
which the instance answers nobody) and every page written during the save is copied (memory). On a
replica that pause and memory cost fall on an instance no client writes to, so clients see nothing; the
price is that the snapshot lags the master by the replication delay (sub-millisecond on a LAN, and the
snapshot of a live cluster is a point in time per shard anyway: Redis Cluster has no cross-shard
snapshot).

For each shard: ``BGSAVE SCHEDULE`` (it waits for an AOF rewrite in progress instead of failing; a BGSAVE
already running is waited for, then ours is asked), then poll ``INFO persistence`` until ``rdb_saves``
has moved and nothing is saving, and ``rdb_last_bgsave_status`` is ``ok``. The RDB is fetched over the
host's SSH connection (staged, sha256 checked: :meth:`nr.backup.folder.Part.fetch`); its key count is
read from the file itself (:mod:`tasks.redis.rdb`), with the slot ranges and node ids it covers.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from nr.backup.folder import Part
from nr.errors import NrError
from nr.outcome import Outcome
from nr.play import HostRun, PlayContext
from nr.secrets import SecretRef
from tasks.redis.config import InstanceConfig
from tasks.redis.contract import GROUP
from tasks.redis.errors import AccessError
from tasks.redis.observe import ClusterObservation, Connector, NodeClient, require_access
from tasks.redis.parse import as_text, parse_info
from tasks.redis.rdb import RdbError, summarize_file
from tasks.redis.session import pending_slots, pending_state_ok
from tasks.redis.site import RedisSite
from tasks.redis.slots import SlotRange, format_ranges, ranges_from_slots
from tasks.redis.topology import NodeState, consolidate

SAVE_TIMEOUT = 900.0  # a BGSAVE of a large shard on a slow disk
POLL = 0.2


@dataclass(frozen=True)
class Source:
    """One shard: its slots, its master, and the instance its snapshot is taken on."""

    number: int  # 1-based, in slot order
    slots: tuple[SlotRange, ...]
    master: NodeState
    saver: NodeState
    config: InstanceConfig  # the saver's: its data folder and RDB file name

    @property
    def on_replica(self) -> bool:
        return self.saver.node_id != self.master.node_id

    @property
    def path(self) -> str:
        return f"{self.config.dir}/{self.config.dbfilename}"


def in_sync(obs: ClusterObservation, node: NodeState) -> bool:
    state = obs.get(node.endpoint)
    if state is None or not state.reachable:
        return False
    repl = state.replication
    return repl.get("master_link_status") == "up" and repl.get("master_sync_in_progress", "0") == "0"


def sources(site: RedisSite, obs: ClusterObservation) -> list[Source]:
    """The shards to save and where; NrError when the cluster cannot give a consistent snapshot."""
    try:
        require_access(obs)
    except AccessError as exc:
        raise NrError(f"redis backup: {exc}") from None
    why = pending_state_ok(obs) or pending_slots(site.layout, obs)
    if why:
        raise NrError(f"redis backup: the cluster is not settled ({why}); nothing was saved")
    topo = consolidate(site.layout, obs)
    masters = sorted(
        (n for n in topo.nodes.values() if n.role == "master" and n.slots), key=lambda n: min(n.slots)
    )
    out = []
    for number, m in enumerate(masters, 1):
        if m.planned is None:
            raise NrError(f"redis backup: {m.label} serves slots but is not an instance of the inventory")
        replicas = [r for r in topo.replicas_of(m.node_id) if r.planned is not None and in_sync(obs, r)]
        saver = replicas[0] if replicas else m
        config = next(c for c in site.configs[str(saver.host)] if c.port == saver.port)
        out.append(Source(number, ranges_from_slots(m.slots), m, saver, config))
    return out


def _info(client: NodeClient) -> dict[str, str]:
    return parse_info(client.execute_command("INFO", "persistence"))


def bgsave(
    client: NodeClient,
    timeout: float = SAVE_TIMEOUT,
    poll: float = POLL,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, str]:
    """A new RDB snapshot on ``client``'s instance, started after this call; its ``INFO persistence``."""
    deadline = time.monotonic() + timeout
    while True:
        before = int(_info(client).get("rdb_saves", "0"))
        try:
            client.execute_command("BGSAVE", "SCHEDULE")
            break
        except Exception as exc:
            if "already in progress" not in str(exc):
                raise
        _wait(client, lambda i: i.get("rdb_bgsave_in_progress") == "0", deadline, poll, sleep)
    info = _wait(
        client,
        lambda i: int(i.get("rdb_saves", "0")) > before and i.get("rdb_bgsave_in_progress") == "0",
        deadline,
        poll,
        sleep,
    )
    if info.get("rdb_last_bgsave_status") != "ok":
        raise NrError("BGSAVE failed (rdb_last_bgsave_status:err; the instance's log says why: disk full?)")
    return info


def _wait(
    client: NodeClient,
    done: Callable[[dict[str, str]], bool],
    deadline: float,
    poll: float,
    sleep: Callable[[float], None],
) -> dict[str, str]:
    while True:
        info = _info(client)
        if done(info):
            return info
        if time.monotonic() > deadline:
            raise NrError(
                f"the RDB snapshot did not finish in time (rdb_bgsave_in_progress:{info.get('rdb_bgsave_in_progress')})"
            )
        sleep(poll)


def _node(n: NodeState) -> dict[str, Any]:
    return {"host": n.host, "port": n.port, "node_id": n.node_id}


def _entry(src: Source, name: str, part: Part, saved_at: str) -> dict[str, Any]:
    try:
        rdb = summarize_file(part.path(name))
    except RdbError as exc:
        raise NrError(f"{src.saver.label}: the snapshot cannot be read: {exc}") from None
    return {
        "shard": src.number,
        "slots": format_ranges(src.slots, limit=10**6),
        "ranges": [[r.start, r.end] for r in src.slots],
        "master": _node(src.master),
        "saved_on": {**_node(src.saver), "role": "replica" if src.on_replica else "master"},
        "file": part.name(name),
        "keys": rdb.keys,
        "expires": rdb.expires,
        "rdb_version": rdb.version,
        "redis_version": rdb.redis_version,
        "saved_at": saved_at,
    }


def _secret(ctx: PlayContext, site: RedisSite, part: Part) -> None:
    ref = str(ctx.all_hosts(GROUP)[0].get("redis_password") or "")
    keep_at = None
    if ref.startswith("file:"):
        keep_at = str(SecretRef.parse(ref, ctx.inventory_dir).path)
    part.secret("password", site.password, ref, keep_at)


def backup(
    ctx: PlayContext, part: Part, site: RedisSite, obs: ClusterObservation, connect: Connector
) -> Mapping[str, Any]:
    """The snapshots of the cluster ``obs`` shows (``connect``: the clients that take them)."""
    hosts = {h.name: h for h in ctx.all_hosts(GROUP)}
    for i in obs.instances:  # an instance that cannot be read fails its host, by name
        if not i.reachable and not ctx.failed(i.host):
            ctx.fail_host(hosts[i.host], "snapshot", f"{i.label} ({i.endpoint}): {i.describe_access()}")
    srcs = sources(site, obs)
    for s in srcs:
        if not s.on_replica:
            ctx.note(
                f"shard {s.number}: no replica in sync, the snapshot is taken on its master {s.master.label}"
            )
    _secret(ctx, site, part)
    by_host: dict[str, list[Source]] = {}
    for s in srcs:
        by_host.setdefault(str(s.saver.host), []).append(s)

    def snapshot(run: HostRun) -> Outcome[list[dict[str, Any]]]:
        rows = []
        for src in by_host[run.name]:
            client = connect(src.saver.address, src.saver.port)
            try:
                info = bgsave(client)
            except Exception as exc:
                raise NrError(f"{src.saver.label}: BGSAVE: {as_text(str(exc))}") from None
            finally:
                client.close()
            name = f"shard-{src.number}.rdb"
            part.fetch(run.remote, src.path, name)
            rows.append(_entry(src, name, part, info.get("rdb_last_save_time", "")))
        keys = sum(r["keys"] for r in rows)
        return Outcome(value=rows, summary=f"{len(rows)} shard(s), {keys} keys")

    done = ctx.run("snapshot", snapshot, hosts=[h for h in ctx.all_hosts() if h.name in by_host])
    shards = sorted((row for rows in done.values.values() for row in rows), key=lambda r: int(r["shard"]))
    keys = sum(int(r["keys"]) for r in shards)
    where = "replicas" if all(s.on_replica for s in srcs) else "replicas and masters"
    return {
        "summary": f"{len(shards)}/{len(srcs)} shards, {keys} keys (BGSAVE on {where})",
        "ports": list(site.ports),
        "hosts": [h.name for h in site.layout.hosts],
        "shards": shards,
    }
