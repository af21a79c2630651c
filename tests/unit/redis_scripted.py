"""A scripted redis site for orchestration tests: three hosts (ScriptedRemote), a fake cluster, facts fixtures."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from nr.play import PlayContext
from nr.report import RunReport
from tasks.redis.config import InstanceConfig, RedisConfigOptions
from tasks.redis.install import HostSpec
from tasks.redis.play import RedisComponent
from tasks.redis.site import RedisSite, load_site
from tests.fakes.nft import nft_json
from tests.fakes.redis_cluster import FakeRedisCluster
from tests.fakes.remote import Reply, ScriptedRemote, facts_reply, scripted_context
from tests.support.systemd import show as systemd_show

PASSWORD = "scripted-redis-password-0123"
CONTROLLER = "198.18.0.1"
NAMES = ("vm1", "vm2", "vm3")
HOSTS = {n: {"hostname": f"198.18.0.1{i}", "groups": ["redis"]} for i, n in enumerate(NAMES, start=1)}
ENV = "NR_TEST_REDIS_PASSWORD"


def inventory(**data: Any) -> dict[str, Any]:
    return {"data": {"redis_password": f"env:{ENV}", **data}}


@dataclass
class Site:
    """The inventory (as data), the cluster as it runs, and a scripted remote per host."""

    monkeypatch: pytest.MonkeyPatch
    data: dict[str, Any] = field(default_factory=dict)
    hosts: dict[str, Any] = field(default_factory=lambda: dict(HOSTS))
    running: dict[str, Any] = field(default_factory=dict)  # inventory data the processes were started with
    remotes: dict[str, ScriptedRemote] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.monkeypatch.setenv(ENV, PASSWORD)
        before = self.context(data={**self.data, **self.running})[0]
        old = load_site(before)
        self.cluster = FakeRedisCluster(old.layout, configs(old), PASSWORD)
        self.remotes = {n: ScriptedRemote(n) for n in self.hosts}

    def context(self, *, data: dict[str, Any] | None = None, **kw: Any) -> tuple[PlayContext, RunReport]:
        defaults = inventory(**(self.data if data is None else data))
        return scripted_context(self.hosts, self.remotes, defaults=defaults, component="redis", **kw)

    def site(self) -> RedisSite:
        return load_site(self.context()[0])

    def component(self, **kw: Any) -> RedisComponent:
        options = {"up_timeout": 1.0, "restart_timeout": 1.0, "poll": 0.01, **kw}
        return RedisComponent(self.cluster.connector, lambda _: CONTROLLER, **options)

    def spec(self, host: str) -> HostSpec:
        return self.component()._specs(self.site(), [self.context()[0].nornir.inventory.hosts[host]])[host]

    def facts(
        self,
        host: str,
        *,
        old: RedisSite | None = None,
        fresh: bool = False,
        files: dict[str, bytes | None] | None = None,
        **outputs: Any,
    ) -> Reply:
        """A facts reply: the host as the current inventory wants it (or with ``old``'s config files,
        ``fresh``: none of its files yet, or some ``files`` as given)."""
        spec = self.spec(host)
        found: dict[str, bytes | None] = {f.path: None if fresh else f.content for f in spec.files()}
        if old is not None:
            found.update({f.path: f.content for f in old.files(host)})
        found.update(files or {})
        out = converged_outputs(spec)
        out.update(outputs)
        modes = {f.path: (f.mode, f.owner, f.group) for f in spec.files()}
        return facts_reply(found, out, modes=modes, strict=True)

    def expect_apply(self, host: str, on_apply: Callable[[str], str] | None = None) -> None:
        """The host accepts one apply script (``on_apply`` sees it, e.g. to write config files)."""
        self.remotes[host].expect(Reply("set -e", on_apply or (lambda _: "")))

    def expect_restart(self, host: str, **reply: Any) -> None:
        self.remotes[host].expect(
            Reply("systemctl restart", lambda s: self.cluster.restart_units(host, s), **reply)
        )

    def sent(self, host: str, text: str) -> list[str]:
        return [s for s in self.remotes[host].scripts if text in s]


def configs(site: RedisSite) -> list[InstanceConfig]:
    return [c for cs in site.configs.values() for c in cs]


def converged_outputs(spec: HostSpec) -> dict[str, Any]:
    units = [("redis-server.service", "inactive", "disabled")]
    units += [(c.unit, "active", "enabled") for c in spec.configs]
    out: dict[str, Any] = {f"dir {c.port}": "redis:redis 750" for c in spec.configs}
    out["packages"] = "redis-server installed 5:7.0.15-1~deb12u1\n"
    if spec.firewall is not None:
        out["packages"] += "nftables installed 1.0.6-2+deb12u2\n"
        units.append(("nr-redis-firewall.service", "active", "enabled"))
        out["firewall"] = nft_json(spec.firewall)
    out["units"] = systemd_show(*units)
    return out


def options(timeout: int) -> RedisConfigOptions:
    return RedisConfigOptions(cluster_node_timeout_ms=timeout, extra=(("repl-diskless-sync-delay", "0"),))
