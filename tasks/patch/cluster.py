"""The Redis Cluster around a patched host, through the redis component's public machinery.

* :func:`health_problems`: what makes patching unsafe now: an instance that does not answer, a
  ``cluster_state`` that is not ``ok``, or a master holding slots without an in-sync replica on another
  host (its shard would be lost while the host reboots). Patching never starts then.
* :meth:`RedisSide.hand_over`: every master on the host gives its shard to its replica on another host
  (:func:`tasks.redis.reconcile.plan_handover`, a coordinated ``CLUSTER FAILOVER`` on the replica,
  executed by :func:`tasks.redis.execute.execute`, which waits until the roles switched and the old master
  replicates the new one with its link up): no write fails, none is lost.
* :meth:`RedisSide.wait_back`: after the reboot, both instances answer, the cluster is ``ok`` and they
  are in-sync replicas again (:func:`tasks.redis.restart.wait_back`).

The planned roles come back after the last host, by the redis play itself (its cluster step's FAILOVERs).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from nr.errors import NrError
from tasks.redis.actions import Failover
from tasks.redis.errors import ClusterError, PlanError
from tasks.redis.execute import execute
from tasks.redis.observe import ClusterObservation, Connector, Password, access_problems
from tasks.redis.plan import format_endpoint
from tasks.redis.reconcile import plan_handover
from tasks.redis.restart import ClusterSession, wait_back
from tasks.redis.site import RedisSite
from tasks.redis.topology import consolidate

ConnectorFactory = Callable[[Password, float], Connector]


def _in_sync(obs: ClusterObservation, endpoint: str) -> bool:
    state = obs.get(endpoint)
    return state is not None and state.replication.get("master_link_status") == "up"


def health_problems(site: RedisSite, obs: ClusterObservation) -> list[str]:
    """Why the cluster cannot lose a host right now (empty: it can)."""
    problems = access_problems(obs)
    for st in obs.reachable:
        if st.info is None or not st.info.ok:
            problems.append(f"{st.label}: cluster_state {st.info.summary() if st.info else 'unknown'}")
    topo = consolidate(site.layout, obs)
    for node in topo.nodes.values():
        if node.role != "master" or not node.slots or node.planned is None:
            continue
        replicas = topo.replicas_of(node.node_id)
        healthy = [r for r in replicas if not r.down and r.host != node.host and _in_sync(obs, r.endpoint)]
        if not healthy:
            names = ", ".join(f"{r.label}{' (down)' if r.down else ''}" for r in replicas) or "none"
            problems.append(
                f"{node.label} masters {len(node.slots)} slots and has no in-sync replica on another host "
                f"(replicas: {names})"
            )
    return problems


def endpoints(site: RedisSite, host: str) -> list[str]:
    """The host's instances (both ports)."""
    return [format_endpoint(c.address, c.port) for c in site.configs.get(host, ())]


def masters_on(site: RedisSite, obs: ClusterObservation, host: str) -> list[str]:
    """Labels of the host's instances that master slots now."""
    topo = consolidate(site.layout, obs)
    mine = set(endpoints(site, host))
    return [n.label for n in topo.nodes.values() if n.endpoint in mine and n.role == "master" and n.slots]


@dataclass(frozen=True)
class RedisSide(ClusterSession):
    """The patch play's side of the Redis site: hand a host's shards over, wait for it to be back."""

    def plan(self, host: str) -> list[Failover]:
        """The failovers that take every shard off ``host`` (PlanError: a master without a candidate)."""
        return plan_handover(self.site.layout, self.observe(), endpoints(self.site, host))

    def hand_over(self, host: str) -> list[Failover]:
        try:
            actions = self.plan(host)
            execute(actions, self.site.layout, self.site.password, timeout=self.timeout,
                    connect=self.connect, poll=self.poll, settle=False)  # fmt: skip
        except (PlanError, ClusterError, TimeoutError) as exc:
            raise NrError(f"redis: {exc}") from None
        return actions

    def wait_back(self, host: str) -> None:
        wait_back(self.observe, endpoints(self.site, host), self.timeout, self.poll)
