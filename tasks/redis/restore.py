"""The redis component's part of ``nr restore``: each shard's RDB onto the master serving its slots.

Plan (read-only, before anything changes): the cluster must run in its planned layout (on a new site:
``nr run site`` first); each shard of the backup is matched, by its slot ranges, to the master that
serves exactly those slots, whatever the hosts are called now (the plan says what maps to what). A
different shard count or another split of the slots is refused, and so is an RDB newer than the
running Redis can load.

Restore, every redis host taking part:

1. every instance stops, replicas too: a replica left running would be promoted while its master is
   down, and the master would then come back as its replica and drop the restored data;
2. on each master: the shard's RDB becomes its dump file (0640 redis), its AOF folder goes, and its
   config says ``appendonly no`` for the load: with AOF on, Redis reads only the AOF, and with none it
   starts empty (measured with redis-server 7.0). On each replica: its dump and AOF go (it resyncs);
3. the masters start; each must have loaded exactly the keys of its file
   (``rdb_last_load_keys_loaded`` + ``rdb_last_load_keys_expired``);
4. ``CONFIG SET appendonly yes`` on each master, which rewrites the AOF from the loaded data; once
   written, the config file is put back to ``appendonly yes``;
5. the replicas start; nr waits until every replica is in sync, the cluster is ok with all 16384
   slots served, and each master holds the shard's key count.

Interrupted between 2 and 4, an instance keeps ``appendonly no`` in its config: ``nr drift`` shows it,
and the restore should be run again (``nr run redis`` would restart it with AOF on and no AOF: empty).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from shlex import quote
from typing import Any

from nornir.core.inventory import Host

from nr.backup.api import RestorePlan, Restoring
from nr.changes import Change
from nr.errors import NrError
from nr.facts import FileState
from nr.ops.files import plan_upload
from nr.outcome import Outcome
from nr.play import HostRun, PlayContext
from tasks.redis.config import InstanceConfig
from tasks.redis.contract import GROUP
from tasks.redis.errors import AccessError
from tasks.redis.observe import Connector, NodeClient, observe, require_access
from tasks.redis.parse import as_text, parse_info
from tasks.redis.rdb import newest_loadable
from tasks.redis.session import pending_layout
from tasks.redis.site import RedisSite
from tasks.redis.slots import SLOT_COUNT, SlotRange, slots_of
from tasks.redis.topology import consolidate

AOF_DIR = "appendonlydir"  # Redis 7's appenddirname default (nr's redis.conf does not set it)
LOAD_TIMEOUT = 600.0
POLL = 0.3


@dataclass(frozen=True)
class Target:
    """One shard of the backup and the instance it goes to."""

    entry: Mapping[str, Any]  # the backup's shard: slots, keys, file, where it was saved
    master: InstanceConfig

    @property
    def keys(self) -> int:
        return int(self.entry["keys"])

    @property
    def label(self) -> str:
        return f"{self.master.host}:{self.master.port}"


def _slots(entry: Mapping[str, Any]) -> frozenset[int]:
    return slots_of(SlotRange(int(a), int(b)) for a, b in entry.get("ranges") or [])


def _config(site: RedisSite, host: str, port: int) -> InstanceConfig:
    return next(c for c in site.configs[host] if c.port == port)


def _version(connect: Connector, cfg: InstanceConfig) -> str:
    client = connect(cfg.address, cfg.port)
    try:
        return parse_info(client.execute_command("INFO", "server")).get("redis_version", "")
    finally:
        client.close()


def plan(ctx: PlayContext, backup: Restoring, site: RedisSite, connect: Connector) -> RestorePlan:
    shards = list(backup.part.get("shards") or [])
    obs = observe(site.layout, site.password, connect=connect)
    try:
        require_access(obs)
    except AccessError as exc:
        return RestorePlan(problems=[str(exc)])
    why = pending_layout(site.layout, obs)
    if why:
        fix = f"`{ctx.fix_command('redis')}` (on a new site: `{ctx.fix_command('site')}`)"
        return RestorePlan(problems=[f"the cluster is not in its planned layout ({why}): run {fix} first"])
    topo = consolidate(site.layout, obs)
    live = {frozenset(n.slots): n for n in topo.nodes.values() if n.role == "master" and n.slots}
    problems: list[str] = []
    if len(shards) != len(live):
        problems.append(
            f"the backup has {len(shards)} shard(s), the cluster {len(live)}: shards are restored whole onto "
            "a cluster with the same slot split (restore onto as many redis hosts as the backup had)"
        )
    targets = []
    for entry in shards:
        node = live.get(_slots(entry))
        if node is None or node.host is None:
            problems.append(
                f"shard {entry['shard']} (slots {entry['slots']}): no master serves exactly these slots"
            )
            continue
        targets.append(Target(entry, _config(site, node.host, node.port)))
    for t in targets:
        running = _version(connect, t.master)
        newest = newest_loadable(running)
        if newest is not None and int(t.entry["rdb_version"]) > newest:
            problems.append(f"shard {t.entry['shard']}: RDB version {t.entry['rdb_version']} (Redis "
                            f"{t.entry['redis_version']}) is newer than {t.label}'s Redis {running} loads")  # fmt: skip
    if problems:
        return RestorePlan(problems=problems)
    return RestorePlan(lines=_lines(site, targets, backup), data=targets)


def _lines(site: RedisSite, targets: Sequence[Target], backup: Restoring) -> list[str]:
    old = list(backup.part.get("hosts") or [])
    now = [h.name for h in site.layout.hosts]
    hosts = (
        "the same hosts" if old == now else f"backed up from {', '.join(old)}; restored onto {', '.join(now)}"
    )
    lines = [
        f"every instance stops ({len(site.layout.instances)} on {len(now)} hosts, {hosts}): the cluster is "
        "unavailable until the restore ends"
    ]
    for t in targets:
        e = t.entry
        lines.append(
            f"shard {e['shard']}: {e['keys']} keys (slots {e['slots']}, saved on {e['saved_on']['host']}:"
            f"{e['saved_on']['port']}) -> {t.label}, loaded with AOF off, then AOF rewritten"
        )
    lines.append("replicas start empty and resync; then every slot, replica link and key count is checked")
    return lines


# -- restore -------------------------------------------------------------------------------------------
def _unit_change(cfg: InstanceConfig, verb: str) -> Change:
    return Change(f"service {cfg.unit}", "restored" if verb == "start" else "stopped", "running",
                  f"systemctl {verb} {quote(cfg.unit)}", f"~ {verb} {cfg.unit}\n")  # fmt: skip


def _master_changes(t: Target, rdb: Any) -> list[Change]:
    cfg = t.master
    dump = f"{cfg.dir}/{cfg.dbfilename}"
    upload = plan_upload(
        rdb, dump, FileState(dump, False), mode=0o640, owner="redis", group="redis", stamp=False
    )
    assert upload is not None
    aof_off = (
        f"rm -rf {quote(cfg.dir + '/' + AOF_DIR)}\n"
        f"sed -i 's/^appendonly yes$/appendonly no/' {quote(cfg.conf_path)}"
    )
    return [upload, Change(f"config {cfg.conf_path}", "appendonly no (for the load)", "appendonly yes", aof_off,
                           f"~ {cfg.conf_path}: appendonly no until the shard is loaded\n")]  # fmt: skip


def _replica_changes(cfg: InstanceConfig) -> list[Change]:
    script = f"rm -rf {quote(cfg.dir + '/' + AOF_DIR)} {quote(cfg.dir + '/' + cfg.dbfilename)}"
    return [Change(f"data {cfg.dir}", "empty (resyncs from its master)", "old data", script,
                   f"- {cfg.dir}: old data removed, the replica resyncs\n")]  # fmt: skip


@dataclass
class Restorer:
    ctx: PlayContext
    site: RedisSite
    connect: Connector
    targets: Sequence[Target]
    backup: Restoring
    timeout: float = LOAD_TIMEOUT
    poll: float = POLL

    @property
    def masters(self) -> dict[str, list[Target]]:
        out: dict[str, list[Target]] = {}
        for t in self.targets:
            out.setdefault(t.master.host, []).append(t)
        return out

    def replicas(self, host: str) -> list[InstanceConfig]:
        mine = {t.master.port for t in self.masters.get(host, [])}
        return [c for c in self.site.configs[host] if c.port not in mine]

    def step(self, name: str, hosts: Sequence[Host], fn: Any) -> None:
        self.ctx.run(name, fn, hosts=hosts)
        failed = [h.name for h in self.ctx.all_hosts(GROUP) if self.ctx.failed(h)]
        if failed:
            raise NrError(f"the restore stopped at step {name}: {', '.join(failed)} failed (see above); "
                          "run nr restore again once fixed")  # fmt: skip

    def run(self) -> None:
        hosts = self.ctx.all_hosts(GROUP)
        with_masters = [h for h in hosts if h.name in self.masters]
        self.step(
            "stop", hosts, lambda r: r.apply([_unit_change(c, "stop") for c in self.site.configs[r.name]])
        )
        self.step("place", hosts, self._place)
        self.step(
            "start-masters",
            with_masters,
            lambda r: r.apply([_unit_change(t.master, "start") for t in self.masters[r.name]]),
        )
        self.step("load", with_masters, self._loaded)
        self.step("aof", with_masters, self._aof_on)
        self.step(
            "start-replicas",
            hosts,
            lambda r: r.apply([_unit_change(c, "start") for c in self.replicas(r.name)]),
        )
        self.step("verify", hosts[:1], self._verify)

    def _place(self, run: HostRun) -> Outcome[None]:
        changes = [
            c
            for t in self.masters.get(run.name, [])
            for c in _master_changes(t, self.backup.file(str(t.entry["file"])))
        ]
        changes += [c for cfg in self.replicas(run.name) for c in _replica_changes(cfg)]
        return run.apply(changes)

    def _client(self, cfg: InstanceConfig) -> NodeClient:
        return self.connect(cfg.address, cfg.port)

    def _poll(self, cfg: InstanceConfig, section: str, done: Any, what: str) -> dict[str, str]:
        deadline = time.monotonic() + self.timeout
        last = "no answer"
        while True:
            try:
                client = self._client(cfg)
                try:
                    info = parse_info(client.execute_command("INFO", section))
                finally:
                    client.close()
                if done(info):
                    return info
                last = ", ".join(
                    f"{k}:{v}" for k, v in info.items() if k.startswith(("loading", "aof_rewrite"))
                )
            except Exception as exc:
                last = as_text(str(exc))
            if time.monotonic() > deadline:
                raise NrError(f"{cfg.host}:{cfg.port}: {what} not done after {self.timeout:.0f} s ({last})")
            time.sleep(self.poll)

    def _loaded(self, run: HostRun) -> Outcome[None]:
        rows = []
        for t in self.masters[run.name]:
            info = self._poll(t.master, "persistence", lambda i: i.get("loading") == "0", "loading the RDB")
            loaded = int(info.get("rdb_last_load_keys_loaded", "-1"))
            expired = int(info.get("rdb_last_load_keys_expired", "0"))
            if loaded + expired != t.keys:
                raise NrError(f"{t.label} loaded {loaded} keys (+{expired} expired) of shard {t.entry['shard']}'s "
                              f"{t.keys}: its data folder does not hold the restored file")  # fmt: skip
            rows.append(
                f"shard {t.entry['shard']}: {loaded} keys loaded"
                + (f", {expired} had expired" if expired else "")
            )
        return Outcome(summary="; ".join(rows))

    def _aof_on(self, run: HostRun) -> Outcome[None]:
        changes = []
        for t in self.masters[run.name]:
            client = self._client(t.master)
            try:
                client.execute_command("CONFIG", "SET", "appendonly", "yes")
            finally:
                client.close()
            self._poll(t.master, "persistence", _aof_written, "the AOF rewrite")
            cfg = t.master
            changes.append(Change(f"config {cfg.conf_path}", "appendonly yes", "appendonly no (for the load)",
                                  f"sed -i 's/^appendonly no$/appendonly yes/' {quote(cfg.conf_path)}",
                                  f"~ {cfg.conf_path}: appendonly yes again (the AOF holds the shard)\n"))  # fmt: skip
        return run.apply(changes)

    def _verify(self, run: HostRun) -> Outcome[None]:
        deadline = time.monotonic() + self.timeout
        while True:
            obs = observe(self.site.layout, self.site.password, connect=self.connect)
            why = pending_layout(self.site.layout, obs) or _slots_served(obs)
            if why is None:
                break
            if time.monotonic() > deadline:
                raise NrError(f"the cluster did not settle after the restore ({why})")
            time.sleep(self.poll)
        counts = []
        for t in self.targets:  # the exact check was at load time; clients may write since
            client = self._client(t.master)
            try:
                counts.append(f"{t.label} {int(client.execute_command('DBSIZE'))}/{t.keys}")
            finally:
                client.close()
        return Outcome(
            summary=f"{SLOT_COUNT} slots served, replicas in sync; keys now/backed up: {', '.join(counts)}"
        )


def _aof_written(info: Mapping[str, str]) -> bool:
    return (
        info.get("aof_enabled") == "1"
        and info.get("aof_rewrite_in_progress") == "0"
        and info.get("aof_rewrite_scheduled") == "0"
        and info.get("aof_last_bgrewrite_status") == "ok"
    )


def _slots_served(obs: Any) -> str | None:
    for st in obs.reachable:
        if st.info is None or st.info.slots_ok != SLOT_COUNT:
            return f"{st.label} sees {st.info.slots_ok if st.info else '?'} of {SLOT_COUNT} slots served"
        if (
            st.myself is not None
            and st.myself.is_replica
            and st.replication.get("master_link_status") != "up"
        ):
            return f"{st.label} is not in sync with its master yet"
    return None
