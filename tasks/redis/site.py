"""The Redis site model: the layout, its options, addresses, ports and the password, from the inventory.

This is the redis component's public API for other components (the deploy play renders the app's
Redis settings from it)::

    from tasks.redis.site import load_site

    site = load_site(ctx)   # -> RedisSite; NrError naming the host and field on bad input
    site.nodes              # ((address, port), ...) every instance, host by host, in inventory order
    site.addresses          # the redis hosts' addresses, in inventory order
    site.ports              # (master port, replica port), the same on every host
    site.password           # a nr.secrets.Secret: reveal() only where a file or manifest is rendered
    site.node_timeout_ms    # cluster-node-timeout: how long a lost master blocks writes to its shards

``load_site(ctx: PlayContext) -> RedisSite`` keeps this signature. The rules that span hosts live here
and only here: the password is the same secret reference on every redis host (read once through
``ctx.secret``), and so are the ports, the node timeout and the firewall settings.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from nornir.core.inventory import Host

from nr.errors import NrError
from nr.ops.files import FileSpec
from nr.play import PlayContext
from nr.secrets import Secret
from tasks.redis.config import (
    SECRET_DIRECTIVES,
    InstanceConfig,
    RedisConfigOptions,
    instance_configs,
    render_redis_conf,
    validate_password,
)
from tasks.redis.contract import GROUP, NODE_TIMEOUT_DEFAULT_MS
from tasks.redis.errors import PlanError
from tasks.redis.plan import DEFAULT_MASTER_PORT, DEFAULT_REPLICA_PORT, Layout, RedisHost, plan_layout

# The pod network the app's pods reach Redis from (k3s's --cluster-cidr; its default when not set).
POD_NETWORK_KEY = "k3s_cluster_cidr"
DEFAULT_POD_NETWORK = "10.42.0.0/16"


@dataclass(frozen=True)
class RedisSite:
    """Everything the redis play needs, resolved from the inventory (the password stays a Secret)."""

    layout: Layout
    options: RedisConfigOptions
    password: Secret
    configs: Mapping[str, tuple[InstanceConfig, ...]]  # host name -> its two instances
    firewall: bool = True  # restrict the client and bus ports with nftables
    clients: tuple[str, ...] = ()  # networks allowed to the client ports (besides the site's hosts)
    site_addresses: tuple[str, ...] = ()  # every inventory host's address (k3s nodes reach Redis from it)

    @property
    def ports(self) -> tuple[int, int]:
        return self.layout.master_port, self.layout.replica_port

    @property
    def addresses(self) -> tuple[str, ...]:
        return tuple(h.address for h in self.layout.hosts)

    @property
    def nodes(self) -> tuple[tuple[str, int], ...]:
        return tuple((i.address, i.port) for i in self.layout.instances)

    @property
    def node_timeout_ms(self) -> int:
        return self.options.cluster_node_timeout_ms

    def files(self, host: str) -> list[FileSpec]:
        """The host's redis.conf files: the one place the password is revealed (to render them)."""
        return [
            FileSpec.text(
                c.conf_path,
                render_redis_conf(c, self.password.reveal()),
                0o640,
                "redis",
                "redis",
                secrets=[self.password.reveal()],
                secret_keys=SECRET_DIRECTIVES,
            )
            for c in self.configs[host]
        ]


def host_address(host: Host) -> str:
    return str(host.get("node_ip") or host.hostname)


def _same(hosts: list[Host], key: str, default: Any) -> Any:
    """``data.<key>``, which must be the same on every redis host."""
    values = {h.name: h.get(key) for h in hosts}
    distinct = {repr(v) for v in values.values()}
    if len(distinct) > 1:
        detail = ", ".join(f"{h}: {v}" for h, v in values.items())
        raise NrError(f"data.{key} must be the same on every redis host ({detail})")
    value = next(iter(values.values()))
    return default if value is None else value


def _password(ctx: PlayContext, hosts: list[Host]) -> Secret:
    """The password: the same secret reference on every redis host, read once, at least 16 characters."""
    refs = {str(h.get("redis_password") or "") for h in hosts}
    if "" in refs or len(refs) > 1:
        raise NrError("data.redis_password must be set, to the same secret reference, on every redis host")
    secret = ctx.secret(hosts[0], "redis_password")
    try:
        validate_password(secret.reveal())
    except PlanError as exc:  # the message never holds the password
        raise NrError(f"data.redis_password ({hosts[0].get('redis_password')}): {exc}") from None
    return secret


def _pod_networks(ctx: PlayContext) -> tuple[str, ...]:
    for host in ctx.all_hosts():
        value = host.get(POD_NETWORK_KEY)
        if value:
            return tuple(n.strip() for n in str(value).split(",") if n.strip())
    return (DEFAULT_POD_NETWORK,)


def _clients(ctx: PlayContext, hosts: list[Host]) -> tuple[str, ...]:
    listed = tuple(_same(hosts, "redis_clients", ()))
    for net in (*listed, *_pod_networks(ctx)):
        try:
            ipaddress.ip_network(net, strict=False)
        except ValueError:
            raise NrError(
                f"redis: {net!r} (data.redis_clients or data.{POD_NETWORK_KEY}) is not a network"
            ) from None
    return (*listed, *_pod_networks(ctx))


def load_site(ctx: PlayContext) -> RedisSite:
    """Plan the site from the inventory; raises NrError with a message naming host and field."""
    hosts = ctx.all_hosts(GROUP)
    if not hosts:
        raise NrError(f"the inventory has no host in group '{GROUP}' (the redis play needs at least 3)")
    master_port, replica_port = _same(hosts, "redis_ports", (DEFAULT_MASTER_PORT, DEFAULT_REPLICA_PORT))
    timeout = int(_same(hosts, "redis_node_timeout", NODE_TIMEOUT_DEFAULT_MS))
    firewall = bool(_same(hosts, "redis_firewall", True))
    password = _password(ctx, hosts)
    try:
        layout = plan_layout([RedisHost(h.name, host_address(h)) for h in hosts], master_port, replica_port)
        # Each master has exactly one replica, so waiting 5 s (Redis's default) for more replicas to
        # share a full sync only delays the first sync after forming or repairing the cluster.
        options = RedisConfigOptions(
            cluster_node_timeout_ms=timeout, extra=(("repl-diskless-sync-delay", "0"),)
        )
    except PlanError as exc:
        raise NrError(f"redis: {exc}") from None
    configs: dict[str, list[InstanceConfig]] = {}
    for c in instance_configs(layout, options):
        configs.setdefault(c.host, []).append(c)
    return RedisSite(
        layout,
        options,
        password,
        {h: tuple(c) for h, c in configs.items()},
        firewall,
        _clients(ctx, hosts),
        tuple(host_address(h) for h in ctx.all_hosts()),
    )
