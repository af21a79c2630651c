"""The deploy play's view of the inventory: the k3s hosts, the first server, the app's settings and
the Redis Cluster the services use.

:func:`redis_endpoints` is the one place deploy reads the redis component's site model
(``tasks.redis.site.load_site``: addresses, ports and the password as a Secret), so both plays agree
on every rule (the same password reference on every host, its length, the ports).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field

from nornir.core.inventory import Host

from nr.errors import NrError
from nr.play import PlayContext
from nr.secrets import Secret
from tasks.deploy.images import DEFAULT_BASE_IMAGE, project_version, source_tag
from tasks.deploy.manifests import DEFAULT_NODE_PORT, AppSite
from tasks.k3s.contract import AGENTS as K3S_AGENTS
from tasks.k3s.contract import SERVERS as K3S_SERVERS
from tasks.redis.contract import GROUP as REDIS
from tasks.redis.site import load_site as load_redis_site

K3S = "/usr/local/bin/k3s"
KUBECTL = f"{K3S} kubectl"
# whether k3s is on the first server: deploy and checks declare this very text, so a run reads it once
K3S_INSTALLED_CMD = f"test -x {K3S} && echo yes || echo no"


@dataclass(frozen=True)
class RedisEndpoints:
    """The Redis Cluster as the services see it: every instance and the password."""

    nodes: tuple[tuple[str, int], ...]  # (address, port) of every instance, host by host
    password: Secret = field(repr=False)

    @property
    def addresses(self) -> list[str]:
        return list(dict.fromkeys(a for a, _ in self.nodes))


def redis_endpoints(ctx: PlayContext) -> RedisEndpoints:
    """The redis component's site model, as deploy needs it (raises NrError naming host and field)."""
    if not ctx.all_hosts(REDIS):
        raise NrError(
            f"deploy: the services keep reservations in Redis: the inventory needs a '{REDIS}' group"
        )
    site = load_redis_site(ctx)
    return RedisEndpoints(site.nodes, site.password)


def k3s_hosts(ctx: PlayContext) -> list[Host]:
    """Every k3s node (servers and agents), in inventory order."""
    servers, agents = ctx.all_hosts(K3S_SERVERS), ctx.all_hosts(K3S_AGENTS)
    return [h for h in ctx.all_hosts() if h in servers or h in agents]


def first_server(ctx: PlayContext) -> Host | None:
    servers = ctx.all_hosts(K3S_SERVERS)
    return servers[0] if servers else None


@dataclass(frozen=True)
class DeploySite:
    """Everything the deploy play needs, resolved from the inventory (the password stays a Secret)."""

    app: AppSite
    password: Secret = field(repr=False)
    first: Host
    base_image: str


def load_site(ctx: PlayContext) -> DeploySite:
    """The site's settings: Redis from the redis component, the rest from the first k3s server."""
    first = first_server(ctx)
    if first is None:
        raise NrError(f"deploy: no host in group '{K3S_SERVERS}'")
    redis = redis_endpoints(ctx)
    registry = first.get("image_registry") or None
    app = AppSite(
        # images built here get a tag per source content (a code change rolls the pods); a registry
        # holds what the operator pushed there: the released version
        tag=project_version() if registry else source_tag(),
        redis_nodes=redis.nodes,
        node_port=int(first.get("adapter_node_port") or DEFAULT_NODE_PORT),
        registry=registry,
    )
    return DeploySite(app, redis.password, first, str(first.get("image_base") or DEFAULT_BASE_IMAGE))


def problems(ctx: PlayContext) -> list[str]:
    """What stops a deploy, found before any host is touched."""
    if first_server(ctx) is None:
        return []
    try:  # the redis site model refuses what the app cannot use too (e.g. a host named by DNS name:
        redis_endpoints(ctx)  # the app's NetworkPolicy allows Redis by IP)
    except NrError as exc:
        return [str(exc)]
    out = []
    first = first_server(ctx)
    if first is not None and not first.get("image_registry") and shutil.which("docker") is None:
        out.append(
            "deploy: Docker is needed on this machine to build the images (or set data.image_registry to pull "
            "them from a registry)"
        )
    return out
