"""What a patch run works on (pure once loaded): the hosts in their order, their settings, and the parts of
the site around them (the Redis Cluster, the k3s cluster).

Order (:func:`order`): k3s agents first, then hosts that are no k3s node, then the k3s servers, the
first server last; inventory order within each group. Agents carry only workloads, so they go first
while every server is up; the first server (the API nr drives kubectl through, and the one the
others joined) goes last, so the cluster is least long without it. With ``--limit``, the same
order among the hosts chosen.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from nornir.core.inventory import Host

from nr.errors import NrError
from nr.play import PlayContext
from tasks.k3s.contract import AGENTS, SERVERS
from tasks.k3s.prepare import cluster_of, ready_timeout
from tasks.k3s.spec import ClusterSpec
from tasks.patch.contract import APT_TIMEOUT, DRAIN_TIMEOUT, REBOOT, REBOOT_TIMEOUT, UPGRADE
from tasks.redis.contract import GROUP as REDIS
from tasks.redis.site import RedisSite, load_site

DEFAULTS = {REBOOT: "needed", UPGRADE: "upgrade", REBOOT_TIMEOUT: 600, DRAIN_TIMEOUT: 300, APT_TIMEOUT: 1800}


def order(hosts: Sequence[str], servers: Sequence[str], agents: Sequence[str]) -> list[str]:
    """Agents, then the hosts that are no k3s node, then the servers with the first server last."""
    first = servers[0] if servers else None
    return (
        [h for h in hosts if h in agents]
        + [h for h in hosts if h not in agents and h not in servers]
        + [h for h in hosts if h in servers and h != first]
        + [h for h in hosts if h == first]
    )


@dataclass(frozen=True)
class Settings:
    reboot: str  # needed | always
    upgrade: str  # upgrade | full-upgrade
    reboot_timeout: float
    drain_timeout: float
    apt_timeout: float

    @classmethod
    def of(cls, host: Host) -> Settings:
        def get(key: str) -> object:
            value = host.get(key)
            return DEFAULTS[key] if value is None else value

        return cls(str(get(REBOOT)), str(get(UPGRADE)), float(str(get(REBOOT_TIMEOUT))),
                   float(str(get(DRAIN_TIMEOUT))), float(str(get(APT_TIMEOUT))))  # fmt: skip


@dataclass(frozen=True)
class PatchSite:
    """The hosts to patch in order (within ``--limit``) and the clusters they belong to."""

    order: tuple[Host, ...]
    redis: RedisSite | None
    redis_hosts: frozenset[str]
    k3s: ClusterSpec | None
    k3s_ready_timeout: float = 300.0

    @property
    def first(self) -> str | None:
        return self.k3s.first.name if self.k3s else None

    def k3s_node(self, host: str) -> bool:
        return self.k3s is not None and any(n.name == host for n in self.k3s.nodes)

    def names(self, hosts: Sequence[Host] | None = None) -> list[str]:
        return [h.name for h in (self.order if hosts is None else hosts)]


def load(ctx: PlayContext) -> PatchSite:
    """The site from the inventory (NrError naming host and field on bad input)."""
    redis = load_site(ctx) if ctx.all_hosts(REDIS) else None
    k3s = None
    timeout = 300.0
    if ctx.all_hosts(SERVERS) or ctx.all_hosts(AGENTS):
        found = cluster_of(ctx)
        if found is not None:
            k3s = found[0]
            timeout = ready_timeout(found[1][k3s.first.name])
    servers = [n.name for n in k3s.servers] if k3s else []
    agents = [n.name for n in k3s.agents] if k3s else []
    chosen = {h.name: h for h in ctx.hosts()}
    names = order(list(chosen), servers, agents)
    if not names:
        raise NrError("patch: no host to patch (is --limit right?)")
    return PatchSite(
        tuple(chosen[n] for n in names),
        redis,
        frozenset(h.name for h in ctx.all_hosts(REDIS)),
        k3s,
        timeout,
    )
