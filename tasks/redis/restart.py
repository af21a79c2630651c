"""Rolling restarts that fail no write: one host at a time, its shards handed to their replicas first.

An instance restarts when it runs with other settings than its config file (:mod:`tasks.redis.runtime`):
the file changed in this run, in an earlier run that did not get to restart it, or a setting was
changed at run time. For each host, in inventory order:

1. every instance to restart that masters slots hands its shard to an in-sync replica on another host
   (a coordinated ``CLUSTER FAILOVER`` on the replica; nr waits until the roles switched and the old
   master replicates the new one, in sync). Clients are paused for the switch, then redirected: no
   write fails, no acknowledged write is lost. A master without such a replica is not restarted;
2. ``systemctl restart`` of the host's instances (over SSH);
3. nr waits (bounded) until they answer, the cluster is ok, and each is an in-sync replica again: only
   then is the next host's shard handed over to it. A host that does not come back stops the restarts.

The planned roles come back at the end, in the cluster step (the FAILOVERs that restore planned masters).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from nr.changes import Change
from nr.errors import NrError
from nr.ops import systemd
from nr.outcome import Outcome
from nr.play import HostRun
from nr.transport import CommandFailed
from tasks.redis.config import InstanceConfig
from tasks.redis.errors import ClusterError, PlanError
from tasks.redis.execute import execute
from tasks.redis.observe import ClusterObservation, Connector, observe
from tasks.redis.plan import format_endpoint
from tasks.redis.reconcile import plan_handover
from tasks.redis.runtime import Mismatch
from tasks.redis.site import RedisSite

Observe = Callable[[], ClusterObservation]


@dataclass(frozen=True)
class Restart:
    """The instances of one host to restart, and why (what they run with that their file does not say)."""

    host: str
    instances: tuple[InstanceConfig, ...]
    reasons: Mapping[str, tuple[Mismatch, ...]]  # instance label -> its mismatches

    @property
    def units(self) -> list[str]:
        return [c.unit for c in self.instances]

    @property
    def endpoints(self) -> list[str]:
        return [format_endpoint(c.address, c.port) for c in self.instances]

    def changes(self) -> list[Change]:
        out = []
        for c in self.instances:
            why = "; ".join(m.describe() for m in self.reasons.get(f"{c.host}:{c.port}", ()))
            out.append(
                Change(
                    f"service {c.unit}",
                    "running with its config file",
                    f"running with {why}",
                    systemd.restart_script([c.unit]),
                    f"~ restart {c.unit}: it runs with {why} (one host at a time, its shards on their replicas first)\n",
                )
            )
        return out


def pending_restarts(site: RedisSite, mismatched: Mapping[str, Sequence[Mismatch]]) -> dict[str, Restart]:
    """Host -> the restart it needs, from the instances whose running config differs (label -> mismatches)."""
    out: dict[str, Restart] = {}
    for host, configs in site.configs.items():
        chosen = tuple(c for c in configs if f"{c.host}:{c.port}" in mismatched)
        if chosen:
            reasons = {f"{c.host}:{c.port}": tuple(mismatched[f"{c.host}:{c.port}"]) for c in chosen}
            out[host] = Restart(host, chosen, reasons)
    return out


def back_in_cluster(obs: ClusterObservation, endpoints: Sequence[str]) -> str | None:
    """What is still missing before the restarted instances count as back (None: they are)."""
    for endpoint in endpoints:
        st = obs.get(endpoint)
        if st is None or not st.reachable or st.info is None:
            return f"{endpoint} does not answer ({st.describe_access() if st else 'not observed'})"
        if st.info.known_nodes <= 1:
            continue  # not part of a cluster yet: the cluster step forms it
        if not st.info.ok:
            return f"the cluster is not ok as seen from {endpoint} ({st.info.summary()})"
        me = st.myself
        if me is not None and me.is_replica and st.replication.get("master_link_status") != "up":
            return f"{endpoint} is not in sync with its master yet"
    return None


def wait_back(look: Observe, endpoints: Sequence[str], timeout: float, poll: float = 0.5) -> None:
    deadline = time.monotonic() + timeout
    while True:
        missing = back_in_cluster(look(), endpoints)
        if missing is None:
            return
        if time.monotonic() > deadline:
            raise NrError(f"{missing} {timeout:.0f} s after the restart: no further host is restarted")
        time.sleep(poll)


@dataclass(frozen=True)
class ClusterSession:
    """The Redis site as a controller-driven step reaches it: observe it, bounded waits."""

    site: RedisSite
    connect: Connector
    timeout: float = 60.0  # per wait: a failover, or the instances coming back
    poll: float = 0.5

    def observe(self) -> ClusterObservation:
        return observe(self.site.layout, self.site.password, connect=self.connect)


@dataclass(frozen=True)
class Restarter(ClusterSession):
    """Restarts one host's instances (a host function for ``ctx.run``, serial)."""

    def __call__(self, run: HostRun, restart: Restart) -> Outcome[None]:
        changes = restart.changes()
        if run.dry_run:
            return Outcome(changes=changes)
        try:
            handover = plan_handover(self.site.layout, self.observe(), restart.endpoints)
            execute(
                handover,
                self.site.layout,
                self.site.password,
                timeout=self.timeout,
                connect=self.connect,
                poll=self.poll,
                settle=False,
            )
        except (PlanError, ClusterError, TimeoutError) as exc:
            raise NrError(f"{exc}; {run.name} was not restarted") from None
        try:
            run.remote.run(systemd.restart_script(restart.units))
        except CommandFailed as exc:
            detail = exc.result.stderr.strip()[-300:] or f"exit {exc.result.exited}"
            raise NrError(
                f"restarting {', '.join(restart.units)} failed: {detail}; no further host is restarted"
            ) from None
        wait_back(self.observe, restart.endpoints, self.timeout, self.poll)
        moved = "".join(f"~ {a.description}\n" for a in handover)
        return Outcome(changes=changes, extra_diff=moved, summary=f"restarted {len(changes)} instance(s)")
